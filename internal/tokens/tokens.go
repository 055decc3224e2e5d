// Package tokens is the store of one-time tokens the policy service accepts
// from runners: minted for a runner by the scaler (or by an operator),
// bound to the runner's name, valid for a TTL — which the scaler extends
// while the runner waits idle (Extend) — and consumed atomically by the
// first request that presents one. The store is a JetStream key-value
// bucket, so every policy replica sees the same tokens and tokens survive
// restarts. Only the SHA-256 of a token is stored: a dump of the bucket
// reveals no usable token.
package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/bus"
)

// Bucket is the key-value bucket holding the tokens.
const Bucket = "ephemera_tokens"

// Len is the length of a token: 64 lowercase hexadecimal characters.
const Len = 64

// ErrUnknownToken is returned by Consume for a token that was never minted,
// was already consumed, or has expired.
var ErrUnknownToken = errors.New("unknown, used or expired one-time token")

// Config configures a Store.
type Config struct {
	// Bus holds the JetStream connection; required.
	Bus *bus.Bus
	// TTL is how long a token stays valid after it was minted or last
	// extended; required (policy.token_ttl, by default
	// reconcile.bootstrap_timeout plus an hour).
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Store mints and consumes one-time tokens.
type Store struct {
	kv     jetstream.KeyValue
	leader jetstream.KeyValue // kv, with reads answered by the stream leader
	ttl    time.Duration
	now    func() time.Time
}

// record is what the bucket holds under a token's hash.
type record struct {
	Runner  string    `json:"runner"`
	Expires time.Time `json:"expires"`
}

// New checks cfg and creates the bucket, or updates its TTL, idempotently.
func New(ctx context.Context, cfg Config) (*Store, error) {
	switch {
	case cfg.Bus == nil:
		return nil, errors.New("tokens: Bus is required")
	case cfg.TTL <= 0:
		return nil, errors.New("tokens: TTL must be greater than zero")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	kv, err := cfg.Bus.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "one-time tokens of the policy service, keyed by their SHA-256",
		History:     1,
		// The bucket forgets a token some time after it expired; the
		// record's own expiry is what Consume enforces.
		TTL: cfg.TTL,
	})
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return &Store{kv: kv, leader: bus.LeaderReads(cfg.Bus.Conn, kv), ttl: cfg.TTL, now: cfg.Now}, nil
}

// Mint creates a token bound to runnerName and valid for the TTL.
func (s *Store) Mint(ctx context.Context, runnerName string) (string, error) {
	if runnerName == "" {
		return "", errors.New("mint token: runner name is empty")
	}
	raw := make([]byte, Len/2)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	token := hex.EncodeToString(raw)
	val, err := json.Marshal(record{Runner: runnerName, Expires: s.now().Add(s.ttl).UTC()})
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	if _, err := s.kv.Create(ctx, key(token), val); err != nil {
		return "", fmt.Errorf("mint token for %s: %w", runnerName, err)
	}
	return token, nil
}

// Consume accepts token once: it returns the runner the token was minted
// for and deletes it, so that of any number of concurrent callers, on any
// number of replicas, exactly one succeeds. Every other caller, and any
// caller with an unknown or expired token, gets ErrUnknownToken. Other
// errors mean the store could not be asked. A token extended while it is
// being consumed is still consumed.
func (s *Store) Consume(ctx context.Context, token string) (string, error) {
	if !WellFormed(token) {
		return "", ErrUnknownToken
	}
	k := key(token)
	fresh := false
	for range maxRaces {
		val, rev, err := s.read(ctx, k, fresh)
		if errors.Is(err, ErrUnknownToken) {
			return "", ErrUnknownToken
		}
		if err != nil {
			return "", fmt.Errorf("consume token: %w", err)
		}
		// Purge only if nobody wrote it since we read it: the revision
		// check makes the consumption atomic across replicas. A write in
		// between (or one a lagging replica had not shown us) is a
		// consumption (then the key is gone when read again) or an
		// extension (then it is read again, from the leader, and purged).
		err = s.kv.Purge(ctx, k, jetstream.LastRevision(rev))
		if bus.IsConflict(err) {
			fresh = true
			continue
		}
		if err != nil {
			return "", fmt.Errorf("consume token: %w", err)
		}
		var r record
		if err := json.Unmarshal(val, &r); err != nil {
			return "", ErrUnknownToken
		}
		if !s.now().Before(r.Expires) {
			return "", ErrUnknownToken
		}
		return r.Runner, nil
	}
	return "", errors.New("consume token: too many concurrent writes")
}

// maxRaces bounds the compare-and-set retries of one Consume or Extend.
const maxRaces = 10

// Extend keeps the token whose ID is id valid for another TTL from now
// and returns its new expiry, provided it is still unconsumed, unexpired
// and minted for runnerName: a consumed token stays consumed, an expired
// one expired. Otherwise it returns ErrUnknownToken. The scaler extends
// the tokens of runners that wait idle, so that a runner that waited
// longer than the TTL still passes its pre-job check.
func (s *Store) Extend(ctx context.Context, id, runnerName string) (time.Time, error) {
	if !WellFormed(id) || runnerName == "" {
		return time.Time{}, ErrUnknownToken
	}
	fresh := false
	for range maxRaces {
		cur, rev, err := s.read(ctx, id, fresh)
		if errors.Is(err, ErrUnknownToken) {
			return time.Time{}, ErrUnknownToken
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("extend token: %w", err)
		}
		var r record
		if err := json.Unmarshal(cur, &r); err != nil || r.Runner != runnerName || !s.now().Before(r.Expires) {
			return time.Time{}, ErrUnknownToken
		}
		r.Expires = s.now().Add(s.ttl).UTC()
		val, err := json.Marshal(r)
		if err != nil {
			return time.Time{}, fmt.Errorf("extend token: %w", err)
		}
		// A new revision: the bucket's TTL counts from it again.
		_, err = s.kv.Update(ctx, id, val, rev)
		if bus.IsConflict(err) {
			fresh = true // consumed (then gone when read again) or extended meanwhile
			continue
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("extend token: %w", err)
		}
		return r.Expires, nil
	}
	return time.Time{}, errors.New("extend token: too many concurrent writes")
}

// TTL is how long a minted or extended token stays valid.
func (s *Store) TTL() time.Duration { return s.ttl }

// ID is the identifier of token: the key it is stored under, its SHA-256
// in hex. It reveals nothing usable (the store holds only IDs), so a
// runner's record may keep it to extend the runner's token later.
func ID(token string) string { return key(token) }

// read returns the record stored under k and its revision, or
// ErrUnknownToken when there is none.
//
// A key-value read is a direct get, which any replica of the bucket's
// stream may answer, and a follower that lags behind the leader answers
// "not found" for a token minted a moment ago through another node: the
// runner's one check would be refused. So "not found" is confirmed by the
// stream's leader, whose answer is current. A record found may be an older
// revision of a token extended since: the compare-and-set that follows
// then fails, and the caller reads again with fresh, from the leader.
func (s *Store) read(ctx context.Context, k string, fresh bool) ([]byte, uint64, error) {
	if !fresh {
		e, err := bus.GetAskingAgain(ctx, s.kv, k, readTimeout)
		if err == nil {
			return e.Value(), e.Revision(), nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, 0, err
		}
	}
	e, err := bus.GetAskingAgain(ctx, s.leader, k, readTimeout)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrUnknownToken
	}
	if err != nil {
		return nil, 0, fmt.Errorf("confirm with the stream leader: %w", err)
	}
	return e.Value(), e.Revision(), nil
}

// readTimeout bounds one read of a token: a reply lost while a NATS node
// restarts is asked again (a read changes nothing) instead of spending the
// caller's whole deadline, which fails a runner's pre-job check.
const readTimeout = 2 * time.Second

// WellFormed reports whether token has the shape of a one-time token.
func WellFormed(token string) bool {
	if len(token) != Len {
		return false
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// key is the bucket key of token: its SHA-256 in hex.
func key(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
