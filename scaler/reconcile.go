package scaler

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// world is one reconcile's reading of the truth, read in this order: KV,
// then GitHub, then the instances. Whatever KV said was running and is
// missing from the lists after is really gone; a registration GitHub
// listed whose instance is missing from the later instance list is
// either being provisioned (its record says so) or orphaned.
type world struct {
	recs   map[string]entry[runnerRec]
	slots  map[string]entry[string]
	claims map[string]entry[claimRec]
	insts  map[string]Instance
	gh     map[string]GitHubRunner
	ghOK   bool
	slotOf map[string]string // runner name → slot key
	// listedAt is when the instance list was asked for.
	listedAt time.Time
	poolSet  map[string]struct{}
}

// maxJobChecks bounds GitHub job-status reads per reconcile.
const maxJobChecks = 20

// reconcile runs one pass: it rebuilds the picture from KV, the
// provisioner and GitHub, then per pool releases what is gone, deletes
// what is finished, stuck or orphaned, trims surplus idle runners and tops
// the idle buffer up; then it re-serves stuck jobs and redelivers failed
// webhooks. Every action is logged with its reason and counted.
func (s *Scaler) reconcile(ctx context.Context) {
	start := time.Now()
	s.ensureNetworkGuard(ctx)
	w, err := s.observe(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("reconcile: cannot read the state; skipped")
		}
		return
	}
	for _, p := range s.cfg.Pools {
		s.reconcilePool(ctx, p, w)
	}
	if w.ghOK {
		s.reprovisionStuck(ctx, w)
	}
	s.redeliverFailed(ctx)
	s.log.Debug().Dur(logkey.Duration, time.Since(start)).Msg("reconciled")
}

func (s *Scaler) observe(ctx context.Context) (*world, error) {
	w := &world{insts: map[string]Instance{}, gh: map[string]GitHubRunner{}, slotOf: map[string]string{}, poolSet: map[string]struct{}{}}
	var err error
	if w.recs, err = loadAll[runnerRec](ctx, s.kv.runners); err != nil {
		return nil, err
	}
	if w.slots, err = loadAll[string](ctx, s.kv.slots); err != nil {
		return nil, err
	}
	if w.claims, err = loadAll[claimRec](ctx, s.kv.jobs); err != nil {
		return nil, err
	}
	for k, sl := range w.slots {
		w.slotOf[sl.Val] = k
	}
	for _, p := range s.cfg.Pools {
		w.poolSet[p.Name] = struct{}{}
	}
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
	if gerr != nil {
		s.log.Warn().Err(gerr).Msg("reconcile: cannot list GitHub runners; GitHub-side actions skipped this time")
	} else {
		w.ghOK = true
		for _, r := range runners {
			w.gh[r.Name] = r
		}
	}
	w.listedAt = s.now()
	insts, err := s.cfg.Provisioner.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, in := range insts {
		w.insts[in.Name] = in
	}
	return w, nil
}

func (s *Scaler) act(pool, action string, log zerolog.Logger, reason string) {
	s.m.reconcile.WithLabelValues(pool, action).Inc()
	log.Info().Str(logkey.Action, action).Str(logkey.Reason, reason).Msg("reconcile")
}

type idleRunner struct {
	rec   runnerRec
	ghID  int64
	since time.Time
}

func (s *Scaler) reconcilePool(ctx context.Context, p config.Pool, w *world) {
	now := s.now()
	plog := s.log.With().Str(logkey.Pool, p.Name).Logger()
	var idle []idleRunner
	var busy, booting, bootingBuffer, finishing int

	for name, in := range w.insts {
		if in.Pool != p.Name {
			continue
		}
		log := plog.With().Str(logkey.Runner, name).Logger()
		e, hasRec := w.recs[name]
		if !hasRec {
			rec, ok := s.adopt(ctx, p, in, w, log)
			if !ok {
				continue
			}
			e = entry[runnerRec]{Key: name, Val: rec, Found: true}
		}
		rec := e.Val
		if rec.Slot == "" {
			rec.Slot = w.slotOf[name]
		}
		ghr, onGH := w.gh[name]
		switch {
		case in.State == StateStopping:
			finishing++ // LXD removes an ephemeral instance as it stops
		case in.State != StateRunning && in.State != StateStarting:
			if w.ghOK && onGH && ghr.Busy {
				busy++
				continue
			}
			if s.removeAndDestroy(ctx, rec, ghr, onGH && w.ghOK, log) {
				s.act(p.Name, "delete_finished", log, "instance "+string(in.State))
			}
		case !w.ghOK:
			// Without GitHub's view, idle and booting cannot be told apart.
			booting++
		case onGH && ghr.Online && ghr.Busy:
			busy++
			if rec.State.rank() < runnerBusy.rank() {
				s.setRunner(ctx, name, func(r *runnerRec) bool {
					if r.State.rank() >= runnerBusy.rank() {
						return false
					}
					r.State, r.IdleSince = runnerBusy, time.Time{}
					if r.OnlineAt.IsZero() {
						r.OnlineAt = now.UTC()
					}
					return true
				})
			}
		case onGH && ghr.Online && rec.State != runnerDone:
			since := rec.IdleSince
			if since.IsZero() {
				since = now.UTC()
				s.setRunner(ctx, name, func(r *runnerRec) bool {
					if !r.IdleSince.IsZero() || r.State.rank() >= runnerBusy.rank() {
						return false
					}
					r.IdleSince = since
					if r.OnlineAt.IsZero() {
						r.OnlineAt = since
					}
					return true
				})
			}
			idle = append(idle, idleRunner{rec: rec, ghID: ghr.ID, since: since})
		case rec.State == runnerDone || (!onGH && !rec.OnlineAt.IsZero()):
			// Its job is over (or it left GitHub after being online): the
			// instance powers off by itself. Delete it if it lingers.
			finishing++
			doneAt := rec.DoneAt
			if doneAt.IsZero() {
				s.setRunner(ctx, name, func(r *runnerRec) bool {
					if !r.DoneAt.IsZero() {
						return false
					}
					r.State, r.DoneAt = runnerDone, now.UTC()
					return true
				})
				continue
			}
			if now.Sub(doneAt) > s.cfg.BootstrapTimeout && s.removeAndDestroy(ctx, rec, ghr, onGH, log) {
				s.act(p.Name, "delete_finished", log, "runner finished long ago but its instance still runs")
			}
		case now.Sub(in.CreatedAt) > s.cfg.BootstrapTimeout && (rec.State != runnerProvisioning || now.After(rec.Deadline.Add(takeoverGrace))):
			if s.removeAndDestroy(ctx, rec, ghr, onGH, log) {
				s.act(p.Name, "bootstrap_timeout", log, "runner did not come online within bootstrap_timeout")
			}
		default:
			booting++
			if rec.JobID == 0 {
				bootingBuffer++
			} else if c, ok := w.claims[jobKey(rec.JobID)]; ok && !c.Val.waiting() {
				bootingBuffer++ // its job went to another runner: this one will be idle
			}
		}
	}

	// Registrations without an instance, and runners being provisioned.
	provisioning := 0
	for name, e := range w.recs {
		if e.Val.Pool != p.Name || w.insts[name].Name != "" {
			continue
		}
		if e.Val.State == runnerProvisioning && now.Before(e.Val.Deadline.Add(takeoverGrace)) {
			provisioning++
		}
	}
	if w.ghOK {
		for name, ghr := range w.gh {
			if pn, ok := poolOfName(name, w.poolSet); !ok || pn != p.Name {
				continue
			}
			if _, ok := w.insts[name]; ok || ghr.Busy {
				continue
			}
			log := plog.With().Str(logkey.Runner, name).Logger()
			// A provisioning that started after KV was read has its record now.
			e, err := get[runnerRec](ctx, s.kv.runners, name)
			switch {
			case err != nil:
				continue
			case e.Found && e.Val.State == runnerProvisioning && now.Before(e.Val.Deadline.Add(takeoverGrace)):
				continue
			case e.Found && e.Val.StartedAt.After(w.listedAt.Add(-time.Second)):
				continue // its instance came up after the list was taken
			}
			err = s.cfg.GitHub.RemoveRunner(ctx, e.Val.InstallationID, ghr.ID)
			switch {
			case errors.Is(err, ErrRunnerBusy):
			case err != nil:
				log.Warn().Err(err).Msg("remove orphan registration")
			default:
				s.act(p.Name, "orphan_registration", log, "GitHub registration without an instance")
			}
		}
	}

	// Slots whose instance is gone.
	for key, sl := range w.slots {
		if pn, _, ok := parseSlotKey(key); !ok || pn != p.Name {
			continue
		}
		if s.slotGone(sl, w.recs, presentSet(w.insts)) {
			released, err := s.releaseGoneSlot(ctx, key, sl)
			if err != nil {
				plog.Warn().Err(err).Msg("release slot")
				continue
			}
			if released {
				s.act(p.Name, "release_slot", plog.With().Str(logkey.Runner, sl.Val).Logger(), "instance gone")
			}
		}
	}

	s.m.runners.WithLabelValues(p.Name, "idle").Set(float64(len(idle)))
	s.m.runners.WithLabelValues(p.Name, "busy").Set(float64(busy))
	s.m.runners.WithLabelValues(p.Name, "provisioning").Set(float64(booting + provisioning))
	s.m.runners.WithLabelValues(p.Name, "finishing").Set(float64(finishing))
	s.writeStatus(ctx, p, len(idle), busy, booting+provisioning, finishing)
	if !w.ghOK {
		return
	}

	// Trim: surplus idle runners past idle_grace, longest idle first.
	// GitHub first: it refuses (422) a runner that took a job meanwhile.
	slices.SortFunc(idle, func(a, b idleRunner) int { return a.since.Compare(b.since) })
	surplus := len(idle) - p.MinIdle
	idleLeft := len(idle)
	for _, ir := range idle {
		if surplus <= 0 {
			break
		}
		if now.Sub(ir.since) < s.cfg.IdleGrace {
			continue
		}
		log := plog.With().Str(logkey.Runner, ir.rec.Name).Logger()
		err := s.removeRunner(ctx, ir.rec, ir.ghID)
		switch {
		case errors.Is(err, ErrRunnerBusy):
			idleLeft--
			s.act(p.Name, "trim_busy", log, "surplus idle runner took a job before it was removed; kept")
		case err != nil:
			log.Warn().Err(err).Msg("trim idle runner")
		default:
			surplus--
			idleLeft--
			s.act(p.Name, "trim", log, "idle above min_idle for longer than idle_grace")
		}
	}

	// Top up the idle buffer, never past max (the slots see to that).
	deficit := p.MinIdle - idleLeft - bootingBuffer - s.provisioningBuffer(w, p)
	s.topUp(ctx, p, deficit, plog)
}

// provisioningBuffer counts buffer runners being provisioned right now.
func (s *Scaler) provisioningBuffer(w *world, p config.Pool) int {
	n := 0
	now := s.now()
	for name, e := range w.recs {
		if e.Val.Pool == p.Name && e.Val.JobID == 0 && e.Val.State == runnerProvisioning &&
			w.insts[name].Name == "" && now.Before(e.Val.Deadline.Add(takeoverGrace)) {
			n++
		}
	}
	return n
}

func presentSet(insts map[string]Instance) map[string]bool {
	m := make(map[string]bool, len(insts))
	for n := range insts {
		m[n] = true
	}
	return m
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
				s.act(p.Name, "top_up", l, "idle runners below min_idle")
			}
		}()
	}
	wg.Wait()
}

// removeAndDestroy removes the registration (when there is one) and then
// the instance; it reports whether it did.
func (s *Scaler) removeAndDestroy(ctx context.Context, rec runnerRec, ghr GitHubRunner, onGH bool, log zerolog.Logger) bool {
	if onGH {
		if err := s.cfg.GitHub.RemoveRunner(ctx, rec.InstallationID, ghr.ID); err != nil {
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

func (s *Scaler) setRunner(ctx context.Context, name string, f func(*runnerRec) bool) {
	if _, _, err := update(ctx, s.kv.runners, name, f); err != nil {
		s.log.Warn().Err(err).Str(logkey.Runner, name).Msg("update runner record")
	}
}

// adopt records an instance KV does not know (state lost, or left by a
// replica that died between create and record) and makes sure a slot
// holds it, so that max stays true.
func (s *Scaler) adopt(ctx context.Context, p config.Pool, in Instance, w *world, log zerolog.Logger) (runnerRec, bool) {
	// It may have been recorded since KV was read.
	if e, err := get[runnerRec](ctx, s.kv.runners, in.Name); err != nil {
		return runnerRec{}, false
	} else if e.Found {
		return e.Val, true
	}
	rec := runnerRec{
		Name: in.Name, Pool: p.Name, JobID: in.JobID, Owner: s.cfg.ReplicaID, State: runnerStarted,
		CreatedAt: in.CreatedAt.UTC(), StartedAt: in.CreatedAt.UTC(), Deadline: in.CreatedAt.UTC(),
		Slot: w.slotOf[in.Name],
	}
	if rec.Slot == "" {
		slot, err := s.claimSlot(ctx, p, in.Name)
		if err != nil {
			log.Warn().Err(err).Msg("adopt instance: no slot; the pool is over max until it goes")
		} else {
			rec.Slot = slot
		}
	}
	if _, err := s.kv.runners.Create(ctx, in.Name, encode(rec)); err != nil {
		return runnerRec{}, false
	}
	s.act(p.Name, "adopt", log, "instance unknown to the scaler's state")
	return rec, true
}

// reprovisionStuck re-serves jobs whose runner came and went while the
// job, as far as ephemera knows, never started: when GitHub still has the
// job queued, it gets a new job-bound runner under a compare-and-set of
// its claim.
func (s *Scaler) reprovisionStuck(ctx context.Context, w *world) {
	now := s.now()
	checks := 0
	for key, c := range w.claims {
		cl := c.Val
		p, ok := s.pools[cl.Pool]
		if !ok || checks >= maxJobChecks || !cl.waiting() {
			continue
		}
		switch cl.State {
		case claimProvisioned:
			if _, ok := w.insts[cl.Runner]; ok {
				continue
			}
			if r, ok := w.recs[cl.Runner]; ok && r.Val.State == runnerProvisioning {
				continue
			}
			if now.Sub(cl.ClaimedAt) < s.cfg.BootstrapTimeout {
				continue // other jobs' runners may take it meanwhile
			}
		case claimClaimed:
			if now.Before(cl.Deadline.Add(takeoverGrace + 2*s.cfg.Interval)) {
				continue
			}
			if _, ok := w.insts[cl.Runner]; ok {
				// Its claimant created the runner and died before saying so.
				cl.State = claimProvisioned
				_, _ = s.kv.jobs.Update(ctx, key, encode(cl), c.Rev)
				continue
			}
		default:
			continue
		}
		checks++
		log := s.log.With().Int64(logkey.Job, cl.JobID).Str(logkey.Pool, cl.Pool).Str(logkey.Runner, cl.Runner).Logger()
		st, err := s.cfg.GitHub.JobStatus(ctx, cl.InstallationID, cl.Repo, cl.JobID)
		moved := false
		switch {
		case errors.Is(err, ErrJobNotFound):
			cl.Completed, moved = true, true
		case err != nil:
			log.Warn().Err(err).Msg("read stuck job's status")
			continue
		case st.Status == "in_progress":
			cl.Started, moved = true, true
		case st.Status == "completed":
			cl.Completed, moved = true, true
		case st.Status != "queued":
			continue
		}
		if moved {
			_, _ = s.kv.jobs.Update(ctx, key, encode(cl), c.Rev)
			continue
		}
		if old, ok := w.recs[cl.Runner]; ok {
			if err := s.removeRunner(ctx, old.Val, w.gh[cl.Runner].ID); err != nil {
				log.Warn().Err(err).Msg("clean up the stuck job's previous runner")
			}
		}
		cl.Runner, cl.Owner, cl.ClaimedAt = runnerName(p.Name), s.cfg.ReplicaID, now.UTC()
		cl.Deadline, cl.Attempts, cl.State = now.Add(s.cfg.ProvisionTimeout).UTC(), cl.Attempts+1, claimClaimed
		rev, err := s.kv.jobs.Update(ctx, key, encode(cl), c.Rev)
		if err != nil {
			continue // a replica moved it meanwhile
		}
		err = s.provision(ctx, provisionReq{pool: p, name: cl.Runner, jobID: cl.JobID, inst: cl.InstallationID, since: now, deadline: cl.Deadline})
		if err != nil {
			log.Warn().Err(err).Msg("re-provision stuck job; a later pass tries again")
			cl.Deadline = s.now().UTC()
			_, _ = s.kv.jobs.Update(ctx, key, encode(cl), rev)
			continue
		}
		cl.State = claimProvisioned
		_, _ = s.kv.jobs.Update(ctx, key, encode(cl), rev)
		s.act(p.Name, "reprovision", log.With().Str(logkey.NewRunner, cl.Runner).Logger(), "job still queued on GitHub after its runner came and went")
	}
}
