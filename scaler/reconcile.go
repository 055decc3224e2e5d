package scaler

import (
	"context"
	"errors"
	"sync"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/ghbudget"
	"github.com/ephemera-ci/ephemera/internal/logkey"
	"github.com/ephemera-ci/ephemera/internal/tokens"
)

// reconcile runs one pass: it reads the world (KV, then GitHub, then the
// provisioner), plans what to do (plan.go), and applies the plan; then it
// redelivers failed webhooks. Every action is logged with its reason and
// counted.
func (s *Scaler) reconcile(ctx context.Context) {
	// Reads are Listing in the shared GitHub budget; removals and
	// redeliveries say Cleanup, registrations their own.
	ctx = ghbudget.WithPriority(ctx, ghbudget.Listing)
	start := s.now()
	s.ensureNetworkGuard(ctx)
	w, err := s.observeKV(ctx)
	if err == nil {
		p := s.planner()
		p.minIdle = s.sizeBuffers(w)
		list, why := s.listNow(p, w)
		if err = s.observeRest(ctx, w, list); err == nil {
			s.log.Debug().Bool(logkey.Listed, list).Str(logkey.Reason, why).Msg("reconcile: world read")
			s.apply(ctx, w, p.plan(w))
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("reconcile: cannot read the state; skipped")
		}
		return
	}
	s.redeliverFailed(ctx)
	s.checkRunnerVersions(ctx)
	took := s.now().Sub(start)
	s.m.passes.Observe(took.Seconds())
	s.log.Debug().Dur(logkey.Duration, took).Msg("reconciled")
}

// observeKV reads the world's first part, KV: the runner records, slots
// and claims.
func (s *Scaler) observeKV(ctx context.Context) (*world, error) {
	w := &world{insts: map[string]Instance{}, gh: map[string]GitHubRunner{}}
	var err error
	if w.recs, err = s.kv.runners.all(ctx); err != nil {
		return nil, err
	}
	if w.slots, err = loadAll[string](ctx, s.kv.slots); err != nil {
		return nil, err
	}
	if w.claims, err = s.kv.claims.all(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

// observeRest reads the rest of the world after KV: GitHub's runner list
// when list says so (listing.go), then the instances.
func (s *Scaler) observeRest(ctx context.Context, w *world, list bool) error {
	w.ghSkipped = !list
	if list {
		s.listRunners(ctx, w)
	}
	var err error
	if w.alive, err = s.replicasAlive(ctx); err != nil {
		s.log.Warn().Err(err).Msg("reconcile: cannot read which replicas are alive; owners count as alive")
	}
	w.listedAt = s.now()
	insts, err := s.cfg.Provisioner.List(ctx)
	if err != nil {
		return err
	}
	for _, in := range insts {
		w.insts[in.Name] = in
	}
	return nil
}

// listRunners reads GitHub's runner list into w.
func (s *Scaler) listRunners(ctx context.Context, w *world) {
	runners, gerr := s.cfg.GitHub.ListRunners(ctx, 0)
	if errors.Is(gerr, ErrNoInstallation) {
		// No installation configured and none seen in an event since
		// this replica started: use one a runner was registered with.
		for _, e := range w.recs {
			if e.Val.InstallationID != 0 {
				runners, gerr = s.cfg.GitHub.ListRunners(ctx, e.Val.InstallationID)
				break
			}
		}
	}
	s.listFailed = gerr != nil
	if gerr != nil {
		s.log.Warn().Err(gerr).Msg("reconcile: cannot list GitHub runners; GitHub-side actions skipped this time")
		return
	}
	w.ghOK = true
	for _, r := range runners {
		w.gh[r.Name] = r
	}
}

func (s *Scaler) act(pool, action string, log zerolog.Logger, reason string) {
	s.m.reconcile.WithLabelValues(pool, action).Inc()
	log.Info().Str(logkey.Action, action).Str(logkey.Reason, reason).Msg("reconcile")
}

// apply carries out a plan, in order. Actions that act on what may have
// changed since the world was read check it again first (orphan
// registrations, adoption); the rest rely on compare-and-set and on
// GitHub refusing to remove a busy runner.
func (s *Scaler) apply(ctx context.Context, w *world, plan []action) {
	adoptedSlot := map[string]string{}
	trimmed := map[string]int{} // pool → runners trim took out of the idle set
	for _, a := range plan {
		if ctx.Err() != nil {
			return
		}
		log := s.log.With().Str(logkey.Pool, a.Pool).Logger()
		if a.Runner != "" {
			log = log.With().Str(logkey.Runner, a.Runner).Logger()
		}
		switch a.Kind {
		case actAdopt:
			if slot, ok := s.adopt(ctx, a.Rec, log); ok {
				adoptedSlot[a.Runner] = slot
			}
		case actDelete:
			rec := a.Rec
			if rec.Slot == "" {
				rec.Slot = adoptedSlot[a.Runner]
			}
			if s.removeAndDestroy(ctx, rec, a.GitHubID, log) {
				s.act(a.Pool, a.Count, log, a.Reason)
			}
		case actMarkBusy:
			s.setRunner(ctx, a.Runner, func(r *runnerRec) bool { return r.busy(0, a.At) })
		case actMarkIdle:
			s.setRunner(ctx, a.Runner, func(r *runnerRec) bool { return r.idle(a.At) })
		case actMarkDone:
			s.setRunner(ctx, a.Runner, func(r *runnerRec) bool { return r.done(a.At) })
		case actRemoveOrphan:
			s.removeOrphan(ctx, w, a, log)
		case actReleaseSlot:
			s.applyRelease(ctx, a, log)
		case actStatus:
			c := a.Counts
			s.m.runners.WithLabelValues(a.Pool, "idle").Set(float64(c.Idle))
			s.m.runners.WithLabelValues(a.Pool, "busy").Set(float64(c.Busy))
			s.m.runners.WithLabelValues(a.Pool, "provisioning").Set(float64(c.Provisioning))
			s.m.runners.WithLabelValues(a.Pool, "finishing").Set(float64(c.Finishing))
			s.writeStatus(ctx, a.Pool, c)
		case actTrim:
			trimmed[a.Pool] = s.trim(ctx, a, log)
		case actTopUp:
			s.topUp(ctx, s.pools[a.Pool], a.N+trimmed[a.Pool], log)
		case actClaimProvisioned:
			cl := a.Claim.Val
			cl.State = claimProvisioned
			if _, err := s.kv.claims.swap(ctx, cl, a.Claim.Rev); err != nil && !bus.IsConflict(err) {
				log.Warn().Err(err).Int64(logkey.Job, cl.JobID).Msg("record a dead claimant's runner provisioned")
			}
		case actCheckStuck:
			s.serveStuck(ctx, a)
		case actExtendToken:
			s.extendToken(ctx, a, log)
		}
	}
}

// extendToken keeps an idle runner's token valid for another TTL. A
// token found consumed or expired is recorded lost: the runner cannot pass
// a pre-job check any more, and the next pass replaces it while it is
// idle (deregistered first, so never once it took a job).
func (s *Scaler) extendToken(ctx context.Context, a action, log zerolog.Logger) {
	until, err := s.cfg.Tokens.Extend(ctx, a.Rec.TokenID, a.Runner)
	switch {
	case errors.Is(err, tokens.ErrUnknownToken):
		s.setRunner(ctx, a.Runner, func(r *runnerRec) bool { return r.TokenID == a.Rec.TokenID && r.tokenLost(s.now()) })
		s.act(a.Pool, "token_lost", log, "idle runner's one-time token is consumed or expired; the runner is replaced")
	case err != nil:
		log.Warn().Err(err).Msg("extend idle runner's one-time token")
	default:
		s.setRunner(ctx, a.Runner, func(r *runnerRec) bool { return r.TokenID == a.Rec.TokenID && r.tokenExtended(until) })
		s.m.reconcile.WithLabelValues(a.Pool, string(actExtendToken)).Inc()
		log.Debug().Time(logkey.Until, until).Msg("one-time token of idle runner extended")
	}
}

// removeOrphan removes a registration without an instance, once its
// record, read again, confirms it is no provisioning in flight.
func (s *Scaler) removeOrphan(ctx context.Context, w *world, a action, log zerolog.Logger) {
	e, err := s.kv.runners.get(ctx, a.Runner)
	if err != nil || !s.planner().orphanConfirmed(e, w.listedAt) {
		return
	}
	err = s.cfg.GitHub.RemoveRunner(ghbudget.WithPriority(ctx, ghbudget.Cleanup), e.Val.InstallationID, a.GitHubID)
	switch {
	case errors.Is(err, ErrRunnerBusy):
	case err != nil:
		log.Warn().Err(err).Msg("remove orphan registration")
	default:
		s.act(a.Pool, string(actRemoveOrphan), log, "GitHub registration without an instance")
	}
}

func (s *Scaler) applyRelease(ctx context.Context, a action, log zerolog.Logger) {
	released, err := s.releaseGoneSlot(ctx, a.Slot, entry[string]{Key: a.Slot, Val: a.Runner, Rev: a.SlotRev})
	switch {
	case err != nil:
		log.Warn().Err(err).Msg("release slot")
	case released:
		s.act(a.Pool, string(actReleaseSlot), log, "instance gone")
	}
}

// trim removes up to a.N of the idle runners a.Idle, in order, GitHub
// first: it refuses (422) a runner that took a job meanwhile. It returns
// how many left the idle set (removed, or found busy).
func (s *Scaler) trim(ctx context.Context, a action, plog zerolog.Logger) int {
	surplus, gone := a.N, 0
	for _, ir := range a.Idle {
		if surplus <= 0 {
			break
		}
		log := plog.With().Str(logkey.Runner, ir.Rec.Name).Logger()
		err := s.removeRunner(ghbudget.WithPriority(ctx, ghbudget.Cleanup), ir.Rec, ir.GHID)
		switch {
		case errors.Is(err, ErrRunnerBusy):
			gone++
			s.act(a.Pool, "trim_busy", log, "surplus idle runner took a job before it was removed; kept")
		case err != nil:
			log.Warn().Err(err).Msg("trim idle runner")
		default:
			surplus--
			gone++
			s.act(a.Pool, "trim", log, "idle above min_idle for longer than idle_grace")
		}
	}
	return gone
}

func (s *Scaler) topUp(ctx context.Context, p config.Pool, n int, log zerolog.Logger) {
	if n <= 0 {
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name := runnerName(p.Name)
			err := s.provision(ctx, provisionReq{pool: p, name: name, since: s.now(), deadline: s.now().Add(s.cfg.ProvisionTimeout)})
			l := log.With().Str(logkey.Runner, name).Logger()
			switch {
			case errors.Is(err, errPoolFull):
			case err != nil:
				l.Warn().Err(err).Msg("top up idle buffer")
			default:
				s.act(p.Name, string(actTopUp), l, "idle runners below min_idle")
			}
		}()
	}
	wg.Wait()
}

// removeAndDestroy removes the registration ghID (when not 0) and then
// the instance; it reports whether it did.
func (s *Scaler) removeAndDestroy(ctx context.Context, rec runnerRec, ghID int64, log zerolog.Logger) bool {
	if ghID != 0 {
		if err := s.cfg.GitHub.RemoveRunner(ghbudget.WithPriority(ctx, ghbudget.Cleanup), rec.InstallationID, ghID); err != nil {
			if !errors.Is(err, ErrRunnerBusy) {
				log.Warn().Err(err).Msg("remove registration")
			}
			return false
		}
	}
	if err := s.destroy(ctx, rec.Name, rec.Slot); err != nil {
		log.Warn().Err(err).Msg("delete instance")
		return false
	}
	return true
}

func (s *Scaler) setRunner(ctx context.Context, name string, t func(*runnerRec) bool) {
	if _, err := s.kv.runners.apply(ctx, name, t); err != nil {
		s.log.Warn().Err(err).Str(logkey.Runner, name).Msg("update runner record")
	}
}

// adopt records an instance KV does not know (state lost, or left by a
// replica that died between create and record) and makes sure a slot
// holds it, so that max stays true. It returns the slot it took.
func (s *Scaler) adopt(ctx context.Context, rec runnerRec, log zerolog.Logger) (string, bool) {
	// It may have been recorded since KV was read.
	if e, err := s.kv.runners.get(ctx, rec.Name); err != nil || e.Found {
		return "", false
	}
	rec.Owner = s.cfg.ReplicaID
	if rec.Slot == "" {
		slot, err := s.claimSlot(ctx, s.pools[rec.Pool], rec.Name, nil)
		if err != nil {
			log.Warn().Err(err).Msg("adopt instance: no slot; the pool is over max until it goes")
		} else {
			rec.Slot = slot
		}
	}
	if err := s.kv.runners.create(ctx, rec); err != nil {
		return "", false
	}
	s.act(rec.Pool, string(actAdopt), log, "instance unknown to the scaler's state")
	return rec.Slot, true
}

// serveStuck reads a stuck job's status on GitHub; when the job is still
// queued, it gives the job a new job-bound runner under a compare-and-set
// of its claim.
func (s *Scaler) serveStuck(ctx context.Context, a action) {
	cl, rev := a.Claim.Val, a.Claim.Rev
	p := s.pools[cl.Pool]
	log := s.log.With().Int64(logkey.Job, cl.JobID).Str(logkey.Pool, cl.Pool).Str(logkey.Runner, cl.Runner).Logger()
	st, err := s.cfg.GitHub.JobStatus(ctx, cl.InstallationID, cl.Repo, cl.JobID)
	switch judgeStuck(st.Status, err) {
	case stuckLeave:
		if err != nil {
			log.Warn().Err(err).Msg("read stuck job's status")
		}
		return
	case stuckStarted:
		// The runner it names is busy with it: not a spare (comingRunners).
		cl.started(s.now(), st.RunnerName)
		s.swapClaim(ctx, cl, rev, log, "record a stuck job started")
		return
	case stuckCompleted:
		cl.completed(false, s.now())
		s.swapClaim(ctx, cl, rev, log, "record a stuck job completed")
		return
	}
	if a.Rec.Name != "" {
		if err := s.removeRunner(ghbudget.WithPriority(ctx, ghbudget.Cleanup), a.Rec, a.GitHubID); err != nil {
			log.Warn().Err(err).Msg("clean up the stuck job's previous runner")
		}
	}
	now := s.now()
	cl.takeOver(runnerName(p.Name), s.cfg.ReplicaID, now, now.Add(s.cfg.ProvisionTimeout))
	rev, err = s.kv.claims.swap(ctx, cl, rev)
	if err != nil {
		if !bus.IsConflict(err) {
			log.Warn().Err(err).Msg("claim a stuck job")
		}
		return // a replica moved it meanwhile
	}
	err = s.provision(ctx, provisionReq{pool: p, name: cl.Runner, jobID: cl.JobID, inst: cl.InstallationID, since: now, deadline: cl.Deadline, claimRev: &rev})
	if errors.Is(err, errFenced) {
		log.Warn().Err(err).Msg("stuck job taken over by another replica mid-provisioning; undone here")
		return
	}
	if err != nil {
		log.Warn().Err(err).Msg("re-provision stuck job; a later pass tries again")
		cl.expire(s.now())
		s.swapClaim(ctx, cl, rev, log, "give a stuck job's claim back")
		return
	}
	cl.State = claimProvisioned
	s.swapClaim(ctx, cl, rev, log, "record a stuck job provisioned")
	s.act(p.Name, "reprovision", log.With().Str(logkey.NewRunner, cl.Runner).Logger(), a.Reason)
}

// swapClaim writes cl at rev; losing to a concurrent write is expected
// (another replica or event moved the claim on) and only logged at debug.
func (s *Scaler) swapClaim(ctx context.Context, cl claimRec, rev uint64, log zerolog.Logger, what string) {
	_, err := s.kv.claims.swap(ctx, cl, rev)
	switch {
	case err == nil:
	case bus.IsConflict(err):
		log.Debug().Err(err).Msg(what + ": the claim moved meanwhile")
	default:
		log.Warn().Err(err).Msg(what)
	}
}
