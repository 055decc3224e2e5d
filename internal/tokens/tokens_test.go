package tokens_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/tokens"
)

func newStore(t *testing.T, b *bus.Bus, now func() time.Time) *tokens.Store {
	t.Helper()
	s, err := tokens.New(t.Context(), tokens.Config{Bus: b, TTL: time.Hour, Now: now})
	if err != nil {
		t.Fatalf("tokens.New: %v", err)
	}
	return s
}

func TestNewNamesMissingFields(t *testing.T) {
	b, _ := bustest.Open(t)
	for _, tc := range []struct {
		name string
		cfg  tokens.Config
		want string
	}{
		{"a config without a bus is refused", tokens.Config{TTL: time.Hour}, "Bus"},
		{"a config without a TTL is refused", tokens.Config{Bus: b}, "TTL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tokens.New(t.Context(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestMintedTokenIsConsumedOnce(t *testing.T) {
	b, _ := bustest.Open(t)
	s := newStore(t, b, nil)
	tok, err := s.Mint(t.Context(), "eph-small-abc")
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	if !tokens.WellFormed(tok) {
		t.Fatalf("Mint returned %q, want 64 lowercase hex characters", tok)
	}
	runner, err := s.Consume(t.Context(), tok)
	if err != nil || runner != "eph-small-abc" {
		t.Fatalf("first Consume = %q, %v; want eph-small-abc, nil", runner, err)
	}
	if _, err := s.Consume(t.Context(), tok); !errors.Is(err, tokens.ErrUnknownToken) {
		t.Fatalf("second Consume: got %v, want ErrUnknownToken", err)
	}
}

func TestUnknownAndMalformedTokensAreRefused(t *testing.T) {
	b, _ := bustest.Open(t)
	s := newStore(t, b, nil)
	for _, tok := range []string{"", "abc", strings.Repeat("0", 64), strings.Repeat("A", 64), strings.Repeat("g", 64)} {
		if _, err := s.Consume(t.Context(), tok); !errors.Is(err, tokens.ErrUnknownToken) {
			t.Errorf("Consume(%q): got %v, want ErrUnknownToken", tok, err)
		}
	}
}

func TestExpiredTokenIsRefused(t *testing.T) {
	b, _ := bustest.Open(t)
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	s := newStore(t, b, func() time.Time { return *now.Load() })
	tok, err := s.Mint(t.Context(), "eph-small-abc")
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	later := start.Add(time.Hour + time.Second)
	now.Store(&later)
	if _, err := s.Consume(t.Context(), tok); !errors.Is(err, tokens.ErrUnknownToken) {
		t.Fatalf("Consume after the TTL: got %v, want ErrUnknownToken", err)
	}
}

func TestConcurrentConsumersOnTwoConnectionsAcceptOnce(t *testing.T) {
	_, srv := bustest.Open(t)
	a := newStore(t, bustest.Connect(t, srv.ClientURL()), nil)
	b := newStore(t, bustest.Connect(t, srv.ClientURL()), nil)
	for round := range 20 {
		tok, err := a.Mint(t.Context(), "eph-small-abc")
		if err != nil {
			t.Fatalf("Mint: %v", err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() { consumeCounting(t, s, tok, &wins) })
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d consumers accepted the token, want exactly 1", round, n)
		}
	}
}

func TestTokensSurviveARestartOfTheServer(t *testing.T) {
	dir := t.TempDir()
	srv := bustest.RunServer(t, dir)
	b1, err := bus.Open(t.Context(), bus.Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatalf("open bus: %v", err)
	}
	tok, err := newStore(t, b1, nil).Mint(t.Context(), "eph-small-abc")
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	b1.Close()
	srv.Shutdown()
	srv.WaitForShutdown()

	srv2 := bustest.RunServer(t, dir)
	s2 := newStore(t, bustest.Connect(t, srv2.ClientURL()), nil)
	if runner, err := s2.Consume(t.Context(), tok); err != nil || runner != "eph-small-abc" {
		t.Fatalf("Consume after restart = %q, %v; want eph-small-abc, nil", runner, err)
	}
}

func TestBucketHoldsNoRawToken(t *testing.T) {
	b, _ := bustest.Open(t)
	s := newStore(t, b, nil)
	tok, err := s.Mint(t.Context(), "eph-small-abc")
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	kv, err := b.JS.KeyValue(t.Context(), tokens.Bucket)
	if err != nil {
		t.Fatalf("bucket: %v", err)
	}
	keys, err := kv.Keys(t.Context())
	if err != nil {
		t.Fatalf("keys: %v", err)
	}
	if len(keys) != 1 {
		t.Fatalf("bucket has %d keys, want 1", len(keys))
	}
	e, err := kv.Get(t.Context(), keys[0])
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if strings.Contains(keys[0], tok) || strings.Contains(string(e.Value()), tok) {
		t.Fatal("the bucket holds the raw token")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if st.TTL() != time.Hour {
		t.Fatalf("bucket TTL = %v, want 1h", st.TTL())
	}
}

// A bucket's direct gets may be answered by a follower that has not yet
// applied the token's write (minted a moment ago through another node):
// "not found" from it must not refuse the runner's one check. The stream
// leader decides, and a spent or never-minted token stays refused.
func TestATokenMissingOnALaggingReplicaIsFoundOnTheLeader(t *testing.T) {
	b, _ := bustest.Open(t)
	s := newStore(t, b, nil)
	tok, err := s.Mint(t.Context(), "eph-small-lag")
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	tokens.ReadFromALaggingReplica(s)
	if runner, err := s.Consume(t.Context(), tok); err != nil || runner != "eph-small-lag" {
		t.Fatalf("Consume through a lagging replica = %q, %v; want eph-small-lag, nil", runner, err)
	}
	if _, err := s.Consume(t.Context(), tok); !errors.Is(err, tokens.ErrUnknownToken) {
		t.Fatalf("second Consume: got %v, want ErrUnknownToken (the leader holds its purge)", err)
	}
	never := strings.Repeat("ab", tokens.Len/2)
	if _, err := s.Consume(t.Context(), never); !errors.Is(err, tokens.ErrUnknownToken) {
		t.Fatalf("Consume of a token never minted: got %v, want ErrUnknownToken", err)
	}
}

// A read whose reply is lost (a NATS node restarting) is asked again
// within the caller's deadline, as the policy service's 5 s for a check's
// token: the runner's pre-job check is not failed for it.
func TestAReadWhoseReplyIsLostIsAskedAgain(t *testing.T) {
	b, _ := bustest.Open(t)
	s := newStore(t, b, time.Now)
	tok, err := s.Mint(t.Context(), "eph-small-a")
	if err != nil {
		t.Fatal(err)
	}
	tokens.LoseTheFirstReplyToEachRead(s)
	ctx, cancel := context.WithTimeout(t.Context(), 2*tokens.ReadTimeout+time.Second)
	defer cancel()
	if runner, err := s.Consume(ctx, tok); err != nil || runner != "eph-small-a" {
		t.Fatalf("Consume = %q, %v; want the runner once the lost read is asked again", runner, err)
	}
}

func TestExtendedTokenOutlivesItsFirstTTL(t *testing.T) {
	b, _ := bustest.Open(t)
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	s := newStore(t, b, func() time.Time { return *now.Load() })
	tok, err := s.Mint(t.Context(), "eph-small-abc")
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	// Extended every 40 minutes, it stays valid for three hours.
	at := start
	for range 5 {
		at = at.Add(40 * time.Minute)
		now.Store(&at)
		exp, err := s.Extend(t.Context(), tokens.ID(tok), "eph-small-abc")
		if err != nil {
			t.Fatalf("Extend at %s: %v", at.Sub(start), err)
		}
		if want := at.Add(time.Hour).UTC(); !exp.Equal(want) {
			t.Fatalf("Extend at %s: expires %s, want %s", at.Sub(start), exp, want)
		}
	}
	if runner, err := s.Consume(t.Context(), tok); err != nil || runner != "eph-small-abc" {
		t.Fatalf("Consume %s after minting = %q, %v; want eph-small-abc, nil", at.Sub(start), runner, err)
	}
}

func TestTokensThatCannotBeExtended(t *testing.T) {
	b, _ := bustest.Open(t)
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	s := newStore(t, b, func() time.Time { return *now.Load() })
	mint := func() string {
		tok, err := s.Mint(t.Context(), "eph-small-abc")
		if err != nil {
			t.Fatalf("Mint: %v", err)
		}
		return tok
	}
	consumed, expired, other := mint(), mint(), mint()
	if _, err := s.Consume(t.Context(), consumed); err != nil {
		t.Fatalf("Consume: %v", err)
	}
	for _, tc := range []struct {
		name, id, runner string
		at               time.Duration
	}{
		{"a consumed token stays consumed", tokens.ID(consumed), "eph-small-abc", 0},
		{"a token is extended only for the runner it was minted for", tokens.ID(other), "eph-small-xyz", 0},
		{"an ID never minted is unknown", tokens.ID(strings.Repeat("0", 64)), "eph-small-abc", 0},
		{"a malformed ID is unknown", "abc", "eph-small-abc", 0},
		{"an expired token is not brought back", tokens.ID(expired), "eph-small-abc", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := start.Add(tc.at)
			now.Store(&at)
			if exp, err := s.Extend(t.Context(), tc.id, tc.runner); !errors.Is(err, tokens.ErrUnknownToken) {
				t.Fatalf("Extend = %s, %v; want ErrUnknownToken", exp, err)
			}
		})
	}
	now.Store(&start)
	if _, err := s.Consume(t.Context(), other); err != nil {
		t.Fatalf("the token another runner tried to extend: Consume: %v", err)
	}
}

func TestConsumeRacingExtendAcceptsTheTokenOnce(t *testing.T) {
	_, srv := bustest.Open(t)
	a := newStore(t, bustest.Connect(t, srv.ClientURL()), nil)
	b := newStore(t, bustest.Connect(t, srv.ClientURL()), nil)
	for round := range 30 {
		tok, err := a.Mint(t.Context(), "eph-small-abc")
		if err != nil {
			t.Fatalf("Mint: %v", err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				// Extensions from one connection, consumers on both: an
				// extension never makes a consumer fail.
				if _, err := a.Extend(t.Context(), tokens.ID(tok), "eph-small-abc"); err != nil && !errors.Is(err, tokens.ErrUnknownToken) {
					t.Errorf("Extend: %v", err)
				}
			})
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() { consumeCounting(t, s, tok, &wins) })
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d consumers accepted the token, want exactly 1", round, n)
		}
	}
}

// A lagging replica may show an older revision of a token extended since:
// the consumption's compare-and-set fails on it, and the token is read
// again from the stream leader and consumed; an extension likewise.
func TestATokenExtendedBeyondWhatALaggingReplicaShowsIsStillConsumedOnce(t *testing.T) {
	b, _ := bustest.Open(t)
	fresh, stale := newStore(t, b, nil), newStore(t, b, nil)
	tok, err := fresh.Mint(t.Context(), "eph-small-lag")
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	tokens.ReadFirstRevisionsFromALaggingReplica(t.Context(), stale, tokens.ID(tok))
	if _, err := fresh.Extend(t.Context(), tokens.ID(tok), "eph-small-lag"); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	if _, err := stale.Extend(t.Context(), tokens.ID(tok), "eph-small-lag"); err != nil {
		t.Fatalf("Extend through a lagging replica: %v", err)
	}
	if runner, err := stale.Consume(t.Context(), tok); err != nil || runner != "eph-small-lag" {
		t.Fatalf("Consume through a lagging replica = %q, %v; want eph-small-lag, nil", runner, err)
	}
	if _, err := fresh.Consume(t.Context(), tok); !errors.Is(err, tokens.ErrUnknownToken) {
		t.Fatalf("second Consume: got %v, want ErrUnknownToken", err)
	}
}

// BenchmarkExtend measures one extension of an idle runner's token (a read
// and a compare-and-set on the embedded JetStream), what the reconciler
// spends per idle runner once every half TTL.
func BenchmarkExtend(b *testing.B) {
	bb, _ := bustest.Open(b)
	s, err := tokens.New(b.Context(), tokens.Config{Bus: bb, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	tok, err := s.Mint(b.Context(), "eph-small-abc")
	if err != nil {
		b.Fatal(err)
	}
	id := tokens.ID(tok)
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Extend(b.Context(), id, "eph-small-abc"); err != nil {
			b.Fatal(err)
		}
	}
}

// consumeCounting consumes tok through s and counts a success in wins;
// any error but ErrUnknownToken (another consumer won) fails the test.
func consumeCounting(t *testing.T, s *tokens.Store, tok string, wins *atomic.Int32) {
	_, err := s.Consume(t.Context(), tok)
	switch {
	case err == nil:
		wins.Add(1)
	case !errors.Is(err, tokens.ErrUnknownToken):
		t.Errorf("Consume: %v", err)
	}
}
