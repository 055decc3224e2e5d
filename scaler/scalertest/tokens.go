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
	mu     sync.Mutex
	tokens map[string]string // runner → token
}

// Mint implements scaler.TokenMinter.
func (m *Minter) Mint(_ context.Context, runner string) (string, error) {
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
