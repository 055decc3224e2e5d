package scaler

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// The reconciler runs on one replica at a time: the holder of the lease
// key in BucketLeader. The bucket's TTL (3 × interval) expires a lease
// whose holder died; the holder renews it with a compare-and-set every
// interval/2 and deletes it when it stops, so another replica takes over
// at once.

type lease struct {
	held atomic.Bool
	rev  uint64
}

// renew takes or keeps the lease and reports whether this replica holds it.
func (s *Scaler) renew(ctx context.Context, l *lease) bool {
	id := encode(s.cfg.ReplicaID)
	if l.held.Load() {
		rev, err := s.kv.leader.Update(ctx, leaderKey, id, l.rev)
		if err == nil {
			l.rev = rev
			return true
		}
		s.log.Warn().Err(err).Msg("reconciler lease lost")
		l.held.Store(false)
		s.m.leader.Set(0)
	}
	rev, err := s.kv.leader.Create(ctx, leaderKey, id)
	if err != nil {
		// Held by someone; by ourselves when we restarted with the same id.
		e, gerr := s.kv.leader.Get(ctx, leaderKey)
		if gerr != nil || string(e.Value()) != string(id) {
			return false
		}
		if rev, err = s.kv.leader.Update(ctx, leaderKey, id, e.Revision()); err != nil {
			return false
		}
	}
	l.rev = rev
	l.held.Store(true)
	s.m.leader.Set(1)
	s.log.Info().Msg("reconciler lease taken: this replica reconciles")
	return true
}

func (s *Scaler) release(l *lease) {
	if !l.held.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.kv.leader.Delete(ctx, leaderKey, jetstream.LastRevision(l.rev))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		s.log.Warn().Err(err).Msg("release reconciler lease")
	}
	l.held.Store(false)
	s.m.leader.Set(0)
}

// lead holds the lease while ctx lasts (renewing it on its own
// goroutine, so that a long reconcile does not lose it) and reconciles
// every interval while it is held, at once when it is taken.
func (s *Scaler) lead(ctx context.Context) error {
	var l lease
	renewEvery := max(s.cfg.Interval/2, 50*time.Millisecond)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		defer s.release(&l)
		t := time.NewTicker(renewEvery)
		defer t.Stop()
		for {
			s.renew(ctx, &l)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	defer func() { <-renewed }()
	t := time.NewTicker(min(renewEvery, 100*time.Millisecond))
	defer t.Stop()
	var last, lastLook time.Time
	var alive map[string]bool
	was := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		held := l.held.Load()
		lost := false
		if held && s.now().Sub(lastLook) >= s.cfg.LivenessTTL/5 {
			lastLook = s.now()
			lost, alive = s.replicaLost(ctx, alive)
		}
		if held && !was {
			s.deliveryPass = 0 // a new leader reads the delivery log at once
			s.listPass = 0     // and the runner list
		}
		if held && (!was || lost || s.now().Sub(last) >= s.cfg.Interval) {
			last = s.now()
			s.reconcile(ctx)
		}
		was = held
	}
}

// replicaLost reads which replicas are alive and reports whether one of
// those in before is not any more: its in-flight provisioning is to be
// taken over now, not at the next interval.
func (s *Scaler) replicaLost(ctx context.Context, before map[string]bool) (bool, map[string]bool) {
	now, err := s.replicasAlive(ctx)
	if err != nil {
		return false, before
	}
	for id := range before {
		if !now[id] {
			s.log.Info().Str(logkey.PreviousOwner, id).Msg("replica's liveness key gone: taking its work over")
			return true, now
		}
	}
	return false, now
}
