package tokens

import (
	"context"

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
