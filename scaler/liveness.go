package scaler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// Liveness and fencing. Every replica keeps a key <replica id> in
// BucketAlive, whose TTL (LivenessTTL, default 5s) ends it unless it is
// renewed; the replica renews it every LivenessTTL/5 for as long as it
// runs, in-flight work included, and deletes it when it stops. A claim or
// runner record written by a replica that heartbeats says so
// (Heartbeats); when its owner's key is gone, the owner is dead, paused or
// cut off, and its provisioning is taken over at once instead of after
// the record's deadline (ProvisionTimeout): the leader reconciles as soon
// as it sees a key vanish, and a queued delivery that meets such a claim
// takes it over.
//
// A paused or cut-off owner may wake up. Fencing keeps it from going on:
// immediately before each irreversible step — the JIT registration and
// the instance create — it re-checks by compare-and-set that its slot
// still names its runner and that its job's claim still names its runner
// and itself, moving both revisions. A takeover is a compare-and-set of
// the claim at the revision the taker read, and a slot release deletes
// the slot at the revision the planner saw, so of the owner's fence and
// the takeover (or release) one fails, never both pass. An owner that
// loses aborts and undoes (GitHub first).
//
// What remains: an owner paused after its last fence and before its
// create returns — a window of one create call — creates an instance
// after its job was taken over. Two things close it soon after: the
// owner, when it comes to mark its claim provisioned, finds another
// runner named and removes its own (GitHub first); and the reconciler
// removes any job-bound instance whose job's claim names another runner
// ("superseded"), so an owner that dies right after its create leaves
// nothing behind for longer than one reconcile pass. For buffer runners
// the same window may put a pool one instance over max until the
// reconciler adopts or removes it.

// BucketAlive holds one key per running replica: replica id → when it
// last renewed it.
const BucketAlive = "ephemera_scaler_alive"

// errFenced: the claim or runner record this replica was provisioning
// for is no longer its own (taken over, or released as abandoned).
var errFenced = errors.New("provisioning taken over by another replica")

// heartbeat keeps this replica's liveness key until ctx ends, then
// deletes it.
func (s *Scaler) heartbeat(ctx context.Context) {
	t := time.NewTicker(s.cfg.LivenessTTL / 5)
	defer t.Stop()
	for {
		s.beat(ctx)
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.kv.alive.Delete(dctx, s.cfg.ReplicaID); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				s.log.Warn().Err(err).Msg("delete liveness key")
			}
			return
		case <-t.C:
		}
	}
}

func (s *Scaler) beat(ctx context.Context) {
	if _, err := s.kv.alive.Put(ctx, s.cfg.ReplicaID, encode(s.now().UTC())); err != nil && ctx.Err() == nil {
		s.log.Warn().Err(err).Msg("renew liveness key")
	}
}

// replicasAlive lists the replicas whose liveness key exists.
func (s *Scaler) replicasAlive(ctx context.Context) (map[string]bool, error) {
	keys, err := s.kv.alive.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list live replicas: %w", err)
	}
	out := make(map[string]bool, len(keys))
	for _, k := range keys {
		out[k] = true
	}
	return out, nil
}

// ownerGone reports whether owner, a replica that heartbeats, has no
// liveness key. An error reading it counts as alive: only a replica known
// to be gone is taken over early.
func (s *Scaler) ownerGone(ctx context.Context, owner string, heartbeats bool) bool {
	if !heartbeats || owner == "" || owner == s.cfg.ReplicaID {
		return false
	}
	_, err := s.kv.alive.Get(ctx, owner)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return true
	}
	if err != nil {
		s.log.Warn().Err(err).Str(logkey.PreviousOwner, owner).Msg("read a claimant's liveness key")
	}
	return false
}

// fence re-checks, right before an irreversible step, that the
// provisioning r is still this replica's: its slot still names its
// runner and, for a job, its claim still names its runner and this
// replica, by compare-and-set. It fails with errFenced when it lost.
func (s *Scaler) fence(ctx context.Context, r provisionReq, slot string) error {
	own, err := s.fenceSlot(ctx, slot, r.name)
	if err != nil {
		return err
	}
	if !own {
		return fmt.Errorf("slot %s of runner %s: %w", slot, r.name, errFenced)
	}
	if r.jobID == 0 {
		return nil
	}
	rev, own, err := s.kv.claims.fence(ctx, r.jobID, r.name, s.cfg.ReplicaID, s.now())
	if err == nil && !own {
		// Confirmed by the stream leader: a lagging follower may answer
		// with the claim as it was before this replica claimed it.
		rev, own, err = s.kv.leaderClaims.fence(ctx, r.jobID, r.name, s.cfg.ReplicaID, s.now())
	}
	if err != nil {
		return fmt.Errorf("fence claim %d: %w", r.jobID, err)
	}
	if !own {
		return fmt.Errorf("job %d: %w", r.jobID, errFenced)
	}
	if r.claimRev != nil {
		*r.claimRev = rev
	}
	return nil
}
