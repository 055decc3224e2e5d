package policy

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
)

// A replica whose read of the document fails (NATS unreachable) applies
// the document it read last, for a while; past documentMaxStale, or
// with none read yet, the read fails and the check with it.
func TestTheDocumentReadLastAppliesWhileKVCannotBeRead(t *testing.T) {
	b, srv := bustest.Open(t)
	s, err := newDocStore(t.Context(), b, DefaultDocument(false), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	posted := DefaultDocument(true)
	if err := s.put(t.Context(), posted); err != nil {
		t.Fatal(err)
	}
	cold, err := newDocStore(t.Context(), b, DefaultDocument(false), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()

	s.mu.Lock()
	s.at = time.Now().Add(-documentFreshness) // due for a read, which fails
	s.mu.Unlock()
	if got, err := s.get(t.Context()); err != nil || !got.Enabled(SectionPullRequest, RuleDisallowFork) {
		t.Errorf("get with NATS down, read a second ago = %+v, %v; want the document posted", got, err)
	}
	s.mu.Lock()
	s.at = time.Now().Add(-documentMaxStale)
	s.mu.Unlock()
	if _, err := s.get(t.Context()); err == nil {
		t.Error("get with NATS down, read documentMaxStale ago: no error, want the read's")
	}
	if _, err := cold.get(t.Context()); err == nil {
		t.Error("get with NATS down, never read: no error, want the read's")
	}
}
