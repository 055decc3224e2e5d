package scaler

import (
	"context"
	"time"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// A full pool frees a slot only when an instance is gone from the
// provisioner. The reconciler notices that every interval; a replica that
// finds a pool full asks for a sweep sooner (at most once per
// CapacityRetry per pool), so that at capacity jobs do not wait a whole
// reconcile interval for slots that are free already.

// sweepSoon asks the sweeper to look at pool; it never blocks.
func (s *Scaler) sweepSoon(pool config.Pool) {
	select {
	case s.sweepReq <- pool.Name:
	default:
	}
}

// sweeper runs requested sweeps until ctx ends.
func (s *Scaler) sweeper(ctx context.Context) error {
	last := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case name := <-s.sweepReq:
			if time.Since(last[name]) < s.cfg.CapacityRetry {
				continue
			}
			last[name] = time.Now()
			if err := s.sweep(ctx, name); err != nil && ctx.Err() == nil {
				s.log.Warn().Err(err).Str(logkey.Pool, name).Msg("sweep slots")
			}
		}
	}
}

// sweep releases the slots of pool whose instance is gone.
func (s *Scaler) sweep(ctx context.Context, pool string) error {
	// Records and slots are read before the instances: a runner recorded
	// as started then and missing from the list after is really gone.
	recs, err := loadAll[runnerRec](ctx, s.kv.runners)
	if err != nil {
		return err
	}
	slots, err := loadAll[string](ctx, s.kv.slots)
	if err != nil {
		return err
	}
	insts, err := s.cfg.Provisioner.List(ctx)
	if err != nil {
		return err
	}
	present := map[string]bool{}
	for _, in := range insts {
		present[in.Name] = true
	}
	for key, sl := range slots {
		if p, _, ok := parseSlotKey(key); !ok || p != pool {
			continue
		}
		if s.slotGone(sl, recs, present) {
			released, err := s.releaseGoneSlot(ctx, key, sl)
			if err != nil {
				return err
			}
			if released {
				s.m.reconcile.WithLabelValues(pool, "release_slot").Inc()
			}
		}
	}
	return nil
}

// slotGone reports whether slot's runner has no instance and none is
// being created: the slot may be released.
func (s *Scaler) slotGone(sl entry[string], recs map[string]entry[runnerRec], present map[string]bool) bool {
	if present[sl.Val] {
		return false
	}
	now := s.now()
	rec, ok := recs[sl.Val]
	switch {
	case !ok:
		// Between taking the slot and recording the runner, or a claimant
		// that died there: wait out a provisioning's length.
		return now.Sub(sl.Created) > s.cfg.ProvisionTimeout+takeoverGrace
	case rec.Val.State == runnerProvisioning:
		return now.After(rec.Val.Deadline.Add(takeoverGrace))
	default:
		return true
	}
}
