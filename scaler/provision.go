package scaler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/ghbudget"
	"github.com/ephemera-ci/ephemera/internal/logkey"
	"github.com/ephemera-ci/ephemera/internal/tokens"
)

// provisionReq is one runner to bring up.
type provisionReq struct {
	pool     config.Pool
	name     string
	jobID    int64 // 0: a buffer runner
	inst     int64 // GitHub App installation; 0: configured
	since    time.Time
	deadline time.Time
	// heartbeat, when set, is called every AckWait/3 while the work runs,
	// so that JetStream does not redeliver the message meanwhile.
	heartbeat func()
	// claimRev, for a job, is the revision of its claim as this replica
	// last wrote it; each fence moves it.
	claimRev *uint64
	// ticket, when set, is the slot to try first (provision owns it).
	ticket *slotTicket
}

// undoTimeout bounds the clean-up of a half-done provisioning.
const undoTimeout = 30 * time.Second

// provision takes a slot, records the runner, mints its policy token,
// JIT-registers it and creates its instance. On failure it undoes what it
// did, in reverse: instance, registration, record, slot — and keeps the
// slot and record when the instance could not be deleted, for the
// reconciler to finish. It returns errPoolFull when no slot is free.
func (s *Scaler) provision(ctx context.Context, r provisionReq) (err error) {
	defer r.ticket.release() // when returning before the slot was tried
	ctx, cancel := context.WithDeadline(ctx, r.deadline)
	defer cancel()
	log := s.log.With().Str(logkey.Pool, r.pool.Name).Str(logkey.Runner, r.name).Int64(logkey.Job, r.jobID).Logger()

	if r.heartbeat != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(max(s.cfg.AckWait/3, 10*time.Millisecond))
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					r.heartbeat()
				}
			}
		}()
	}

	var undo []func(context.Context) error
	var regID int64
	defer func() {
		if err == nil {
			return
		}
		uctx, ucancel := context.WithTimeout(ghbudget.WithPriority(context.WithoutCancel(ctx), ghbudget.Cleanup), undoTimeout)
		defer ucancel()
		for i := len(undo) - 1; i >= 0; i-- {
			uerr := undo[i](uctx)
			if errors.Is(uerr, ErrRunnerBusy) {
				// The runner came up after all and runs a job: the work
				// is done, not to be undone.
				log.Info().Msg("runner took a job while its provisioning was being undone; kept")
				s.setRunner(uctx, r.name, func(rec *runnerRec) bool { return rec.adoptStarted(regID, s.now()) })
				err = nil
				return
			}
			if uerr != nil {
				log.Warn().Err(uerr).Msg("undo half-done provisioning: stopped; the reconciler will finish it")
				return
			}
		}
	}()

	slot, err := s.claimSlot(ctx, r.pool, r.name, r.ticket)
	if err != nil {
		return err
	}
	undo = append(undo, func(ctx context.Context) error { return s.releaseSlot(ctx, slot, r.name) })

	// The token first, so that the record names it (by its ID, never the
	// token itself) for the reconciler to keep valid while the runner
	// waits idle. A token whose runner never comes to be just expires.
	minted := s.now()
	token, err := s.cfg.Tokens.Mint(ctx, r.name)
	if err != nil {
		return fmt.Errorf("mint policy token for %s: %w", r.name, err)
	}
	rec := runnerRec{
		Name: r.name, Pool: r.pool.Name, JobID: r.jobID, InstallationID: r.inst, Owner: s.cfg.ReplicaID,
		State: runnerProvisioning, Slot: slot, CreatedAt: s.now().UTC(), Deadline: r.deadline.UTC(), Heartbeats: true,
		QueuedAt: r.since.UTC(),
		TokenID:  tokens.ID(token), TokenExpires: minted.Add(s.cfg.TokenTTL).UTC(),
	}
	if err := s.kv.runners.create(ctx, rec); err != nil {
		return err
	}
	undo = append(undo, func(ctx context.Context) error { return s.kv.runners.forget(ctx, r.name) })
	if err := s.fence(ctx, r, slot); err != nil {
		return err
	}
	// A waiting job's registration goes first in the GitHub budget
	// shared by every replica; a buffer runner's after policy checks.
	prio := ghbudget.TopUp
	if r.jobID != 0 {
		prio = ghbudget.Registration
	}
	reg, err := s.register(ghbudget.WithPriority(ctx, prio), Registration{Name: r.name, Labels: r.pool.Labels, InstallationID: r.inst})
	if err != nil {
		return fmt.Errorf("register runner %s: %w", r.name, err)
	}
	regID = reg.ID
	// Undo GitHub first, then the instance (which may exist even when
	// the create failed half way): a runner busy with a job is kept.
	undo = append(undo, func(ctx context.Context) error {
		if err := s.cfg.GitHub.RemoveRunner(ctx, r.inst, reg.ID); errors.Is(err, ErrRunnerBusy) {
			return err
		} else if err != nil {
			// A registration without instance is found and removed by
			// the reconciler; carry on undoing.
			log.Warn().Err(err).Msg("remove registration of failed runner")
		}
		return s.cfg.Provisioner.Delete(ctx, r.name)
	})

	if err := s.fence(ctx, r, slot); err != nil {
		return err
	}
	err = s.cfg.Provisioner.Create(ctx, InstanceSpec{
		Name: r.name, Pool: r.pool.Name, JobID: r.jobID, JITConfig: reg.JITConfig, PolicyToken: token,
	})
	if err != nil {
		return fmt.Errorf("create instance %s: %w", r.name, err)
	}

	// The instance exists: record it even when ctx ends right now.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer rcancel()
	if _, err := s.kv.runners.apply(rctx, r.name, func(rec *runnerRec) bool { return rec.created(reg.ID, s.now()) }); err != nil {
		return fmt.Errorf("record runner %s started: %w", r.name, err)
	}
	took := s.now().Sub(r.since)
	s.m.provision.WithLabelValues(r.pool.Name).Observe(took.Seconds())
	log.Info().Int64(logkey.RunnerID, reg.ID).Dur(logkey.Duration, took).Msg("runner provisioned")
	return nil
}

// removeRunner scales a runner down safely: unregister on GitHub first —
// GitHub refuses a busy runner, and then the instance is left alone — and
// only then delete the instance, release its slot and forget it.
func (s *Scaler) removeRunner(ctx context.Context, rec runnerRec, ghID int64) error {
	if ghID == 0 {
		ghID = rec.RunnerID
	}
	if ghID != 0 {
		if err := s.cfg.GitHub.RemoveRunner(ctx, rec.InstallationID, ghID); err != nil {
			return err // ErrRunnerBusy included: never delete a busy runner's instance
		}
	}
	return s.destroy(ctx, rec.Name, rec.Slot)
}

// destroy deletes the instance, then releases the slot and the record.
func (s *Scaler) destroy(ctx context.Context, name, slot string) error {
	if err := s.cfg.Provisioner.Delete(ctx, name); err != nil && !errors.Is(err, ErrInstanceNotFound) {
		return fmt.Errorf("delete instance %s: %w", name, err)
	}
	return s.forget(ctx, name, slot)
}

// forget releases the slot and deletes the record of a runner whose
// instance is gone.
func (s *Scaler) forget(ctx context.Context, name, slot string) error {
	if err := s.releaseSlot(ctx, slot, name); err != nil {
		return err
	}
	return s.kv.runners.forget(ctx, name)
}

// registerAttempts bounds JIT registration tries within one provisioning.
const registerAttempts = 3

// register JIT-registers with a few quick retries under the same name: a
// retry after a lost answer meets GitHub's 409, which RegisterRunner
// resolves. A rate limit is not retried here: the job waits it out.
func (s *Scaler) register(ctx context.Context, reg Registration) (RegisteredRunner, error) {
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rr, err := s.cfg.GitHub.RegisterRunner(ctx, reg)
		if _, limited := errors.AsType[*RateLimitedError](err); err == nil || limited || attempt == registerAttempts {
			return rr, err
		}
		select {
		case <-ctx.Done():
			return rr, err
		case <-time.After(wait):
		}
		wait *= 2
	}
}
