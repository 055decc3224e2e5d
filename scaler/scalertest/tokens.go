package scalertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/ephemera-ci/ephemera/internal/tokens"
)

// Minter mints 64-hex one-time tokens and remembers them; Extend accepts
// the ID of any token it minted, for its runner, and counts the calls.
// Its zero value works.
type Minter struct {
	// OnMint, when set, is called (synchronously, before Mint returns)
	// with the runner a token is minted for: a point inside provisioning,
	// before its fences, at which a test can make something happen.
	OnMint func(runner string)

	mu       sync.Mutex
	tokens   map[string]string // runner → token
	extended map[string]int    // runner → Extend calls that succeeded
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

// Extend implements scaler.TokenMinter: the token is valid for an hour
// from now.
func (m *Minter) Extend(_ context.Context, id, runner string) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if tok, ok := m.tokens[runner]; !ok || tokens.ID(tok) != id {
		return time.Time{}, tokens.ErrUnknownToken
	}
	if m.extended == nil {
		m.extended = map[string]int{}
	}
	m.extended[runner]++
	return time.Now().Add(time.Hour), nil
}

// Extended returns how many times runner's token was extended.
func (m *Minter) Extended(runner string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.extended[runner]
}

// Token returns the token minted for runner.
func (m *Minter) Token(runner string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tokens[runner]
}
