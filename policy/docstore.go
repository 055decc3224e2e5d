package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// DocumentBucket is the key-value bucket holding the policy document.
const DocumentBucket = "ephemera_policy"

const documentKey = "document"

// documentFreshness is how long a replica reuses the document it read
// last: a document posted to another replica applies here within it.
const documentFreshness = time.Second

// A read of the document gets documentReadTimeout: a request whose reply
// was lost (its NATS server restarting) must not spend the whole check's
// time. When it fails, the document read last serves for up to
// documentMaxStale (the document changes rarely, and its rules still
// apply, stale); past that, the check fails closed.
const (
	documentReadTimeout = 3 * time.Second
	documentMaxStale    = 10 * time.Minute
)

// docStore keeps the policy document in KV, shared by every replica.
type docStore struct {
	kv  jetstream.KeyValue
	def Document
	log zerolog.Logger

	mu     sync.Mutex
	cached Document
	at     time.Time
}

func newDocStore(ctx context.Context, b *bus.Bus, def Document, log zerolog.Logger) (*docStore, error) {
	kv, err := b.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      DocumentBucket,
		Description: "the policy document of the pre-job compliance service",
		History:     5,
	})
	if err != nil {
		return nil, fmt.Errorf("policy document bucket: %w", err)
	}
	return &docStore{kv: kv, def: def, log: log}, nil
}

// get returns the stored document, or the default one when none was
// posted.
func (s *docStore) get(ctx context.Context) (Document, error) {
	s.mu.Lock()
	if !s.at.IsZero() && time.Since(s.at) < documentFreshness {
		d := s.cached
		s.mu.Unlock()
		return d, nil
	}
	last, lastAt := s.cached, s.at
	s.mu.Unlock()
	d := s.def
	rctx, cancel := context.WithTimeout(ctx, documentReadTimeout)
	defer cancel()
	e, err := s.kv.Get(rctx, documentKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil && !lastAt.IsZero() && time.Since(lastAt) < documentMaxStale:
		s.log.Warn().Err(err).Time(logkey.ReadAt, lastAt).Msg("read policy document; the one read last applies")
		return last, nil
	case err != nil:
		return Document{}, fmt.Errorf("read policy document: %w", err)
	default:
		if d, err = ParseDocument(e.Value()); err != nil {
			return Document{}, fmt.Errorf("stored policy document: %w", err)
		}
	}
	s.remember(d)
	return d, nil
}

// put replaces the stored document whole.
func (s *docStore) put(ctx context.Context, d Document) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("store policy document: %w", err)
	}
	if _, err := s.kv.Put(ctx, documentKey, b); err != nil {
		return fmt.Errorf("store policy document: %w", err)
	}
	s.remember(d)
	return nil
}

func (s *docStore) remember(d Document) {
	s.mu.Lock()
	s.cached, s.at = d, time.Now()
	s.mu.Unlock()
}
