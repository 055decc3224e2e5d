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
// reconcile interval for slots that are free already. A sweep is the
// reconciler's slot release alone: the same planSlots, the same apply.

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
			if s.now().Sub(last[name]) < s.cfg.CapacityRetry {
				continue
			}
			last[name] = s.now()
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
	recs, err := s.kv.runners.all(ctx)
	if err != nil {
		return err
	}
	slots, err := loadAll[string](ctx, s.kv.slots)
	if err != nil {
		return err
	}
	list, err := s.cfg.Provisioner.List(ctx)
	if err != nil {
		return err
	}
	insts := make(map[string]Instance, len(list))
	for _, in := range list {
		insts[in.Name] = in
	}
	w := &world{recs: recs, slots: slots, insts: insts}
	s.apply(ctx, w, s.planner().planSlots(pool, slots, recs, insts))
	return nil
}
