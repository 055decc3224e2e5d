package scaler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/bus"
)

// KV buckets. All state is here: any replica may crash at any moment and
// another one carries on from these, LXD and GitHub.
const (
	BucketRunners = "ephemera_scaler_runners" // runner name → runnerRec
	BucketJobs    = "ephemera_scaler_jobs"    // job id → claimRec
	BucketSlots   = "ephemera_scaler_slots"   // <pool>.<n> → runner name
	BucketLeader  = "ephemera_scaler_leader"  // "reconciler" → replica id, TTL
	BucketMeta    = "ephemera_scaler_meta"    // delivery cursor, pool status
	BucketDone    = "ephemera_scaler_done"    // job id → when it completed, for MaxJobAge

	// JobClaimTTL is how long a job claim is remembered: a duplicate or
	// late queued delivery within it gets no second runner.
	JobClaimTTL = 24 * time.Hour

	// MaxJobAge is how long a job is remembered as completed (BucketDone's
	// TTL), and the age past which a queued delivery is ignored outright.
	// GitHub cancels a workflow run that has not finished after 35 days
	// (a job may wait up to 30 of them for an environment approval), so
	// no legitimate queued delivery is older, and a queued body replayed
	// at any time finds its job either remembered as completed or too old.
	MaxJobAge = 35 * 24 * time.Hour

	leaderKey       = "reconciler"
	cursorKey       = "deliveries.cursor"
	statusKeyPrefix = "status."
)

type stores struct {
	// claims and runners own the job claims and the runner records:
	// every change of their state goes through them.
	claims                    claimStore
	runners                   runnerStore
	slots, leader, meta, done jetstream.KeyValue
	alive                     jetstream.KeyValue // liveness.go
	// leaderSlots and leaderClaims read from the stream leader: for
	// confirming a fence that failed on a direct read.
	leaderSlots  jetstream.KeyValue
	leaderClaims claimStore
}

// openStores creates or updates the scaler's buckets. Reads are direct
// gets, which a lagging follower may answer; where a stale answer would
// drop work — a fence that finds its own slot or claim gone — it is
// confirmed by the stream leader (leaderSlots, leaderClaims; see
// bus.LeaderReads). Reading everything from the leader put every read on
// the JetStream API queue and, under load, timed provisionings out.
func openStores(ctx context.Context, js jetstream.KeyValueManager, nc *nats.Conn, replicas int, leaseTTL, livenessTTL time.Duration) (*stores, error) {
	mk := func(name, desc string, ttl time.Duration) (jetstream.KeyValue, error) {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: name, Description: desc, TTL: ttl, Replicas: replicas, Storage: jetstream.FileStorage, History: 1,
		})
		if err != nil {
			return nil, fmt.Errorf("scaler: bucket %s: %w", name, err)
		}
		return kv, nil
	}
	var st stores
	var err error
	if st.runners.kv, err = mk(BucketRunners, "ephemera runners: state of every runner the scaler created", 0); err != nil {
		return nil, err
	}
	if st.claims.kv, err = mk(BucketJobs, "ephemera job claims: one job-bound runner per job", JobClaimTTL); err != nil {
		return nil, err
	}
	if st.slots, err = mk(BucketSlots, "ephemera pool slots: one per instance, at most max per pool", 0); err != nil {
		return nil, err
	}
	st.leaderSlots = bus.LeaderReads(nc, st.slots)
	st.leaderClaims = claimStore{kv: bus.LeaderReads(nc, st.claims.kv)}
	if st.leader, err = mk(BucketLeader, "ephemera reconciler leader lease", leaseTTL); err != nil {
		return nil, err
	}
	if st.meta, err = mk(BucketMeta, "ephemera scaler: hook delivery cursor, pool status", 0); err != nil {
		return nil, err
	}
	if st.done, err = mk(BucketDone, "ephemera completed jobs: a late or replayed queued delivery provisions nothing", MaxJobAge); err != nil {
		return nil, err
	}
	if st.alive, err = mk(BucketAlive, "ephemera scaler replicas alive: one key per replica, renewed while it runs", livenessTTL); err != nil {
		return nil, err
	}
	return &st, nil
}

func slotKey(pool string, n int) string { return pool + "." + strconv.Itoa(n) }

// entry is a decoded KV value with its revision.
type entry[T any] struct {
	Key      string
	Val      T
	Rev      uint64
	Created  time.Time
	Found    bool
	Deleted  bool
	rawValue []byte
}

func get[T any](ctx context.Context, kv jetstream.KeyValue, key string) (entry[T], error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return entry[T]{Key: key}, nil
	}
	if err != nil {
		return entry[T]{Key: key}, fmt.Errorf("get %s/%s: %w", kv.Bucket(), key, err)
	}
	out := entry[T]{Key: key, Rev: e.Revision(), Created: e.Created(), Found: true, rawValue: e.Value()}
	if err := json.Unmarshal(e.Value(), &out.Val); err != nil {
		return out, fmt.Errorf("decode %s/%s: %w", kv.Bucket(), key, err)
	}
	return out, nil
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own record types are encoded
	}
	return b
}

// Records carry the version of the schema that wrote them, so that two
// versions of ephemera can run side by side during a rolling upgrade.
// The rule: a reader writes a record only when it knows the record's
// version (≤ its own schemaVersion), and then stamps it with its own;
// a record of a newer version is read for what this version knows of it
// and never rewritten, deleted or acted on by the reconciler here — the
// newer replicas look after it. A version may only add fields whose zero
// value means what the older version assumed; anything else bumps
// schemaVersion, and the older replicas then leave such records alone.
//
// Versions: 0 — records written before versions; 1 — the same fields
// and v.
const schemaVersion = 1

// errNewerRecord: the record was written by a newer version of ephemera;
// this one leaves it alone.
var errNewerRecord = errors.New("record written by a newer ephemera")

// stampVersion stamps v with schemaVersion, unless it is newer: then it
// reports so and leaves it.
func stampVersion(v *int) (newer bool) {
	if *v > schemaVersion {
		return true
	}
	*v = schemaVersion
	return false
}

// versioned records say which schema wrote them.
type versioned interface{ stamp() (newer bool) }

// update applies f to the record at key with compare-and-set, retrying on
// a concurrent write. f returns false to leave the record as it is. A
// missing key is left missing. It reports whether the key was found and
// whether f changed it.
func update[T any](ctx context.Context, kv jetstream.KeyValue, key string, f func(*T) bool) (val T, found, changed bool, err error) {
	for range 20 {
		e, err := get[T](ctx, kv, key)
		if err != nil || !e.Found {
			return e.Val, false, false, err
		}
		if v, ok := any(&e.Val).(versioned); ok && v.stamp() {
			return e.Val, true, false, fmt.Errorf("update %s/%s: %w", kv.Bucket(), key, errNewerRecord)
		}
		if !f(&e.Val) {
			return e.Val, true, false, nil
		}
		_, err = kv.Update(ctx, key, encode(e.Val), e.Rev)
		if err == nil {
			return e.Val, true, true, nil
		}
		if !bus.IsConflict(err) {
			return e.Val, true, false, fmt.Errorf("update %s/%s: %w", kv.Bucket(), key, err)
		}
	}
	var zero T
	return zero, true, false, fmt.Errorf("update %s/%s: too much contention", kv.Bucket(), key)
}

// loadAll reads every live key of a bucket.
func loadAll[T any](ctx context.Context, kv jetstream.KeyValue) (map[string]entry[T], error) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", kv.Bucket(), err)
	}
	defer w.Stop() //nolint:errcheck
	out := map[string]entry[T]{}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return out, nil
			}
			if e == nil {
				return out, nil // caught up
			}
			var v T
			if json.Unmarshal(e.Value(), &v) != nil {
				continue
			}
			out[e.Key()] = entry[T]{Key: e.Key(), Val: v, Rev: e.Revision(), Created: e.Created(), Found: true}
		}
	}
}

// deleteRev deletes key if it is still at rev (0: unconditionally).
func deleteRev(ctx context.Context, kv jetstream.KeyValue, key string, rev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if rev != 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	err := kv.Delete(ctx, key, opts...)
	if err != nil && !bus.IsConflict(err) && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete %s/%s: %w", kv.Bucket(), key, err)
	}
	return nil
}
