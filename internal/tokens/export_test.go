package tokens

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// laggingKV answers every read the way a replica that has not caught up
// with the leader does: not found.
type laggingKV struct{ jetstream.KeyValue }

func (laggingKV) Get(context.Context, string) (jetstream.KeyValueEntry, error) {
	return nil, jetstream.ErrKeyNotFound
}

// ReadFromALaggingReplica makes s's key-value reads miss, as a lagging
// follower's direct gets do; writes and the leader's answers are real.
func ReadFromALaggingReplica(s *Store) { s.kv = laggingKV{s.kv} }

// staleKV answers reads of the keys it froze with the entry they held
// when frozen, as a follower that stopped applying writes does.
type staleKV struct {
	jetstream.KeyValue
	mu     sync.Mutex
	frozen map[string]jetstream.KeyValueEntry
}

func (s *staleKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	s.mu.Lock()
	e, ok := s.frozen[key]
	s.mu.Unlock()
	if ok {
		return e, nil
	}
	return s.KeyValue.Get(ctx, key)
}

// ReadFirstRevisionsFromALaggingReplica makes s's key-value reads of the
// token IDs ids answer, from now on, the revision they hold now; writes
// and the leader's answers are real.
func ReadFirstRevisionsFromALaggingReplica(ctx context.Context, s *Store, ids ...string) {
	kv := &staleKV{KeyValue: s.kv, frozen: map[string]jetstream.KeyValueEntry{}}
	for _, id := range ids {
		if e, err := s.kv.Get(ctx, id); err == nil {
			kv.frozen[id] = e
		}
	}
	s.kv = kv
}

// lostReplyKV never answers the first read of each key, as when a NATS
// node restarts with the request in flight.
type lostReplyKV struct {
	jetstream.KeyValue
	mu   sync.Mutex
	seen map[string]bool
}

func (l *lostReplyKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	l.mu.Lock()
	first := !l.seen[key]
	l.seen[key] = true
	l.mu.Unlock()
	if first {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return l.KeyValue.Get(ctx, key)
}

// LoseTheFirstReplyToEachRead makes the first read of each key through s
// go unanswered until its context ends.
func LoseTheFirstReplyToEachRead(s *Store) {
	s.kv = &lostReplyKV{KeyValue: s.kv, seen: map[string]bool{}}
}

// ReadTimeout is readTimeout, for tests.
const ReadTimeout = readTimeout
