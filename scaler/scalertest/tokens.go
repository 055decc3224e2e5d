package scalertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
)

// Minter mints 64-hex one-time tokens and remembers them. Its zero value
// works.
type Minter struct {
	// OnMint, when set, is called (synchronously, before Mint returns)
	// with the runner a token is minted for: a point inside provisioning,
	// before its fences, at which a test can make something happen.
	OnMint func(runner string)

	mu     sync.Mutex
	tokens map[string]string // runner → token
}

// Mint implements scaler.TokenMinter.
func (m *Minter) Mint(_ context.Context, runner string) (string, error) {
	if m.OnMint != nil {
		m.OnMint(runner)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tokens == nil {
		m.tokens = map[string]string{}
	}
	m.tokens[runner] = tok
	return tok, nil
}

// Token returns the token minted for runner.
func (m *Minter) Token(runner string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tokens[runner]
}
