package scaler

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
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/jobs"
	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// takeoverGrace is how long past a claim's deadline another replica
// waits before it takes the claim over: the claimant's own create was
// bounded by the deadline, so by then it has given up.
const takeoverGrace = time.Second

func ensureConsumer(ctx context.Context, js jetstream.StreamConsumerManager, cfg Config) (jetstream.Consumer, error) {
	c, err := js.CreateOrUpdateConsumer(ctx, jobs.Stream, jetstream.ConsumerConfig{
		Durable:       cfg.Consumer,
		Description:   "ephemera scaler replicas: workflow_job events",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		FilterSubject: jobs.SubjectAll,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxAckPending: 20000,
	})
	if err != nil {
		return nil, fmt.Errorf("scaler: consumer %s: %w", cfg.Consumer, err)
	}
	return c, nil
}

// disposition is what to do with a message once handled.
type disposition struct {
	kind   int // ack, nak, term
	delay  time.Duration
	reason string
}

const (
	dAck = iota
	dNak
	dTerm
)

func ack() disposition                { return disposition{kind: dAck} }
func nak(d time.Duration) disposition { return disposition{kind: dNak, delay: d} }
func term(reason string) disposition  { return disposition{kind: dTerm, reason: reason} }
func (d disposition) String() string  { return [...]string{"ack", "nak", "term"}[d.kind] }

// backoff is the delay before the n-th retry after a failure: it
// doubles from CapacityRetry up to a minute.
func (s *Scaler) backoff(n uint64) time.Duration {
	d := s.cfg.CapacityRetry
	for i := uint64(1); i < n && d < time.Minute; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}

// consume handles the shared consumer's messages, Concurrency at a time,
// until ctx ends; then it stops pulling, lets in-flight work finish for
// ShutdownGrace, and cancels (and undoes) what is still running.
func (s *Scaler) consume(ctx context.Context) error {
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	cc, err := s.cons.Consume(func(msg jetstream.Msg) {
		if ctx.Err() != nil {
			_ = msg.Nak() // shutting down: let another replica have it now
			return
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.handle(work, msg)
		}()
	}, jetstream.PullMaxMessages(s.cfg.Concurrency), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if ctx.Err() == nil && !errors.Is(err, jetstream.ErrNoHeartbeat) {
			s.log.Warn().Err(err).Msg("consume")
		}
	}))
	if err != nil {
		return fmt.Errorf("scaler: consume: %w", err)
	}
	<-ctx.Done()
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(s.cfg.ShutdownGrace):
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownGrace):
		cancelWork()
		<-done
	}
	return nil
}

// handle decides one message's fate and tells JetStream.
func (s *Scaler) handle(ctx context.Context, msg jetstream.Msg) {
	meta, _ := msg.Metadata()
	var delivered uint64 = 1
	if meta != nil {
		delivered = meta.NumDelivered
	}
	var ev jobs.Event
	d := s.decide(ctx, msg, delivered, &ev)
	if ctx.Err() != nil && d.kind == dNak {
		d.delay = 0 // cancelled mid-work: another replica should take it at once
	}
	log := s.log.With().Str(logkey.Delivery, ev.Delivery).Int64(logkey.Job, ev.JobID).Str(logkey.Pool, ev.Pool).
		Str(logkey.Action, string(ev.Action)).Str(logkey.Outcome, d.String()).Logger()
	var err error
	switch d.kind {
	case dAck:
		err = msg.Ack()
	case dNak:
		if d.delay > 0 {
			err = msg.NakWithDelay(d.delay)
		} else {
			err = msg.Nak()
		}
	case dTerm:
		s.m.terminated.WithLabelValues(d.reason).Inc()
		log.Error().Str(logkey.Reason, d.reason).Msg("job message terminated: it can never be processed")
		err = msg.TermWithReason(d.reason)
	}
	if err != nil {
		log.Warn().Err(err).Msg("answer jetstream")
		return
	}
	log.Debug().Uint64(logkey.Delivered, delivered).Dur(logkey.RetryIn, d.delay).Msg("job message handled")
}

func (s *Scaler) decide(ctx context.Context, msg jetstream.Msg, delivered uint64, ev *jobs.Event) disposition {
	subjPool, action, err := jobs.ParseSubject(msg.Subject())
	if err != nil {
		return term("bad_subject")
	}
	if err := json.Unmarshal(msg.Data(), ev); err != nil {
		return term("malformed")
	}
	if ev.V != jobs.Version {
		return term("unknown_version")
	}
	if ev.Pool == "" {
		ev.Pool = subjPool
	}
	if ev.Action == "" {
		ev.Action = action
	}
	if ev.JobID <= 0 {
		return term("no_job_id")
	}
	pool, ok := s.pools[ev.Pool]
	if !ok {
		return term("unknown_pool")
	}
	switch ev.Action {
	case jobs.Queued:
		return s.onQueued(ctx, msg, delivered, *ev, pool)
	case jobs.InProgress:
		return s.onInProgress(ctx, delivered, *ev, pool)
	case jobs.Completed:
		return s.onCompleted(ctx, delivered, *ev, pool)
	default: // waiting: nothing to do until it is queued
		return ack()
	}
}

func (s *Scaler) jobLog(ev jobs.Event) zerolog.Logger {
	return s.log.With().Int64(logkey.Job, ev.JobID).Str(logkey.Pool, ev.Pool).Str(logkey.Repo, ev.Repository).Logger()
}

// onQueued gives a queued job its one job-bound runner. The job's claim
// key, created first-wins, makes every other delivery of the job (a
// redelivery, a duplicate under a new delivery id, another replica) a
// no-op; a claim whose claimant died is taken over past its deadline. A
// job whose pool is at max waits (its claim says so, for `ephemera
// status`) and is delivered again after CapacityRetry.
func (s *Scaler) onQueued(ctx context.Context, msg jetstream.Msg, delivered uint64, ev jobs.Event, pool config.Pool) disposition {
	key := jobKey(ev.JobID)
	if !ev.CreatedAt.IsZero() && s.now().Sub(ev.CreatedAt) > MaxJobAge {
		return s.ignoreQueued(ev, pool, "ignored_stale", "the job was created longer ago than GitHub keeps a run: a replay")
	}
	for range 3 {
		var doneAt time.Time // the job completed with its claim expired since
		c, err := s.kv.claims.get(ctx, ev.JobID)
		if err != nil {
			log := s.jobLog(ev)
			log.Warn().Err(err).Msg("read job claim")
			return nak(s.backoff(delivered))
		}
		switch {
		case c.Found && c.Val.V > schemaVersion:
			// Written by a newer ephemera during a rolling upgrade: the
			// newer replicas serve this job.
			s.m.jobs.WithLabelValues(pool.Name, "newer_version").Inc()
			return nak(s.backoff(delivered))
		case c.Found && c.Val.NoRunner:
			s.m.jobs.WithLabelValues(pool.Name, "cancelled").Inc()
			return ack()
		case c.Found && c.Val.Tombstone && !receivedBefore(ev, c.Val.ClaimedAt):
			return s.ignoreQueued(ev, pool, "ignored_completed", "received after its job was recorded completed: a late redelivery or a replay")
		case c.Found && c.Val.Tombstone:
			// Received before the job's completion was recorded, handled
			// after it (a backlog in the stream, a retry): the runner the
			// job took, another job's or a buffer one, is owed. The claim
			// stays completed.
		case !c.Found:
			// The claim may have expired (JobClaimTTL) long after the job
			// completed: a replayed body must not provision.
			done, err := get[time.Time](ctx, s.kv.done, key)
			if err != nil {
				log := s.jobLog(ev)
				log.Warn().Err(err).Msg("read completed jobs")
				return nak(s.backoff(delivered))
			}
			if done.Found && !receivedBefore(ev, done.Val) {
				return s.ignoreQueued(ev, pool, "ignored_completed", "received after its job completed at "+done.Val.Format(time.RFC3339)+": a replay")
			}
			if done.Found {
				doneAt = done.Val
			}
		case c.Val.State == claimWaiting:
		case c.Val.State == claimProvisioned:
			s.m.jobs.WithLabelValues(pool.Name, "duplicate").Inc()
			return ack()
		case s.now().Before(c.Val.Deadline.Add(takeoverGrace)) && !s.ownerGone(ctx, c.Val.Owner, c.Val.Heartbeats):
			// Being provisioned (by us or another replica): look again later.
			return nak(s.cfg.CapacityRetry)
		default:
			return s.takeOver(ctx, msg, delivered, ev, pool, c)
		}
		now := s.now().UTC()
		claim := claimRec{
			JobID: ev.JobID, Pool: pool.Name, Repo: ev.Repository, InstallationID: ev.InstallationID,
			State: claimWaiting, ClaimedAt: now, JobCreatedAt: ev.CreatedAt, ReceivedAt: ev.ReceivedAt,
		}
		if c.Found {
			claim = c.Val
		} else if !doneAt.IsZero() {
			claim.Completed, claim.CompletedAt = true, doneAt // owed, but no open claim
		}
		// A slot for this job to try, that no other job here tries: when
		// none looks free, the job waits without a write.
		ticket, free := s.slots.reserve(pool.Name, pool.Max, nil)
		if !free {
			s.sweepSoon(pool)
			s.m.jobs.WithLabelValues(pool.Name, "capacity_wait").Inc()
			if !c.Found {
				// For `ephemera status`: the job waits. A claim made
				// meanwhile (a conflict) says more already.
				if _, err := s.kv.claims.create(ctx, claim); err != nil && !bus.IsConflict(err) {
					log := s.jobLog(ev)
					log.Warn().Err(err).Msg("record job waiting for capacity")
				}
			}
			return nak(s.cfg.CapacityRetry)
		}
		claim.claim(runnerName(pool.Name), s.cfg.ReplicaID, now.Add(s.cfg.ProvisionTimeout))
		var rev uint64
		if c.Found {
			rev, err = s.kv.claims.swap(ctx, claim, c.Rev)
		} else {
			rev, err = s.kv.claims.create(ctx, claim)
		}
		if bus.IsConflict(err) {
			ticket.release()
			continue // someone else claimed it just now: look at their claim
		}
		if err != nil {
			ticket.release()
			log := s.jobLog(ev)
			log.Warn().Err(err).Msg("claim job")
			return nak(s.backoff(delivered))
		}
		return s.serveClaim(ctx, msg, delivered, ev, pool, claim, rev, ticket)
	}
	return nak(s.cfg.CapacityRetry)
}

// receivedBefore reports whether the webhook receiver stored ev before t
// (the receiver's clock against the scaler's: replicas are expected to
// keep time with NTP, and only deliveries within the skew of a job's
// completion can be misjudged).
func receivedBefore(ev jobs.Event, t time.Time) bool {
	return !ev.ReceivedAt.IsZero() && ev.ReceivedAt.Before(t)
}

// ignoreQueued acks a queued delivery that must provision nothing,
// counting it as action and logging why.
func (s *Scaler) ignoreQueued(ev jobs.Event, pool config.Pool, action, reason string) disposition {
	s.m.jobs.WithLabelValues(pool.Name, action).Inc()
	log := s.jobLog(ev)
	log.Info().Str(logkey.Delivery, ev.Delivery).Str(logkey.Reason, reason).Msg("queued delivery ignored")
	return ack()
}

// serveClaim provisions the runner a claim (at revision rev) names, in
// the slot of ticket when one is given (nil: any free slot).
func (s *Scaler) serveClaim(ctx context.Context, msg jetstream.Msg, delivered uint64, ev jobs.Event, pool config.Pool, claim claimRec, rev uint64, ticket *slotTicket) disposition {
	log := s.jobLog(ev)
	since := ev.ReceivedAt
	if since.IsZero() {
		since = s.now()
	}
	err := s.provision(ctx, provisionReq{
		pool: pool, name: claim.Runner, jobID: ev.JobID, inst: ev.InstallationID,
		since: since, deadline: claim.Deadline, heartbeat: func() { _ = msg.InProgress() }, claimRev: &rev, ticket: ticket,
	})
	if errors.Is(err, errFenced) {
		if cur, still := s.stillClaimed(ctx, ev.JobID, claim.Runner); still {
			// Nobody took the job over: the slot went (a sweep judged it
			// abandoned). The job still needs its runner: a failure.
			claim, rev = cur.Val, cur.Rev
		} else {
			// Taken over while this replica was paused or cut off: the
			// job is another replica's now, and what was done here is
			// undone.
			s.m.jobs.WithLabelValues(pool.Name, "fenced").Inc()
			log.Warn().Err(err).Msg("job taken over by another replica mid-provisioning; undone here")
			return ack()
		}
	}
	if err != nil {
		// Give the claim back so that the next delivery, anywhere, starts
		// afresh — on top of the claim as it is now: the job's own
		// in_progress or completed event may have moved it on meanwhile,
		// and a give-back lost to that write left the job to wait out
		// the claim's deadline for a takeover.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		last := s.cfg.MaxDeliver > 0 && delivered >= uint64(s.cfg.MaxDeliver) && !errors.Is(err, errPoolFull)
		if _, _, uerr := s.kv.claims.apply(uctx, ev.JobID, func(c *claimRec) bool {
			return c.release(claim.Runner, claim.Owner, last, s.now())
		}); uerr != nil {
			log.Warn().Err(uerr).Msg("release job claim")
		}
		if errors.Is(err, errPoolFull) {
			s.sweepSoon(pool)
			s.m.jobs.WithLabelValues(pool.Name, "capacity_wait").Inc()
			return nak(s.cfg.CapacityRetry)
		}
		s.m.jobs.WithLabelValues(pool.Name, "failed").Inc()
		// Backed off by the job's provisioning attempts, not its
		// deliveries: waits for capacity are deliveries too, and a job
		// that waited long for a slot must not wait a minute more after
		// its first failure.
		delay := s.backoff(uint64(max(claim.Attempts, 1)))
		if errors.Is(err, ErrMisconfigured) {
			delay = time.Minute
		}
		if rl, ok := errors.AsType[*RateLimitedError](err); ok {
			delay = max(delay, rl.Until.Sub(s.now()))
		}
		log.Warn().Err(err).Dur(logkey.RetryIn, delay).Msg("provision job runner failed; undone, will retry")
		return nak(delay)
	}
	// The runner exists: record it even when ctx ends right now.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	// The fences rewrote the claim from fresh reads (a completed or
	// in_progress event may have moved it on before them): provisioned
	// goes on top of the claim as it is at rev, never on the copy read
	// before provisioning, which would drop those events.
	if cur, gerr := s.kv.claims.get(ctx, ev.JobID); gerr == nil && cur.Found && cur.Rev == rev {
		claim = cur.Val
	}
	claim.provisioned(claim.Runner)
	if _, err := s.kv.claims.swap(ctx, claim, rev); err != nil {
		// Someone took the claim over meanwhile (or moved it on): ours is
		// a runner too many for this job. Remove it, GitHub first.
		after, gerr := s.kv.claims.get(ctx, ev.JobID)
		if gerr == nil && after.Found && after.Val.Runner != claim.Runner {
			rec, rerr := s.kv.runners.get(ctx, claim.Runner)
			if rerr != nil {
				// Without its record the registration's id is unknown: the
				// instance goes, and the reconciler removes the
				// registration left without one.
				log.Warn().Err(rerr).Str(logkey.Runner, claim.Runner).Msg("read surplus job runner's record")
				rec.Val = runnerRec{Name: claim.Runner}
			}
			if rerr := s.removeRunner(ctx, rec.Val, 0); rerr != nil {
				log.Warn().Err(rerr).Str(logkey.Runner, claim.Runner).Msg("remove surplus job runner")
			}
			return ack()
		}
		// Still ours, moved on by the job's own in_progress or completed
		// event meanwhile: record provisioned on top of that.
		if _, _, uerr := s.kv.claims.apply(ctx, ev.JobID, func(c *claimRec) bool { return c.provisioned(claim.Runner) }); uerr != nil {
			log.Warn().Err(uerr).Msg("record job provisioned")
		}
	}
	s.m.jobs.WithLabelValues(pool.Name, "provisioned").Inc()
	return ack()
}

// stillClaimed reports whether job's claim still names runner as this
// replica's, being provisioned, and returns it. An unreadable claim
// counts as taken over: the reconciler serves a claim left behind.
func (s *Scaler) stillClaimed(ctx context.Context, job int64, runner string) (entry[claimRec], bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	cur, err := s.kv.leaderClaims.get(ctx, job) // a follower may lag
	if err != nil || !cur.Found {
		return cur, false
	}
	c := cur.Val
	return cur, c.State == claimClaimed && c.Owner == s.cfg.ReplicaID && c.Runner == runner
}

// takeOver continues a job whose claimant is past its deadline: it adopts
// the claimant's runner when that got created after all, and otherwise
// cleans up after it and provisions afresh under a compare-and-set, so
// that only one replica takes over.
func (s *Scaler) takeOver(ctx context.Context, msg jetstream.Msg, delivered uint64, ev jobs.Event, pool config.Pool, c entry[claimRec]) disposition {
	log := s.jobLog(ev).With().Str(logkey.PreviousOwner, c.Val.Owner).Str(logkey.Runner, c.Val.Runner).Logger()
	s.m.jobs.WithLabelValues(pool.Name, "takeover").Inc()
	old, err := s.kv.runners.get(ctx, c.Val.Runner)
	if err != nil {
		return nak(s.backoff(delivered))
	}
	exists := old.Found && old.Val.State.rank() >= runnerStarted.rank()
	if !exists && c.Val.Runner != "" {
		insts, err := s.cfg.Provisioner.List(ctx)
		if err != nil {
			log.Warn().Err(err).Msg("list instances for takeover")
			return nak(s.backoff(delivered))
		}
		for _, in := range insts {
			if in.Name == c.Val.Runner && (in.State == StateRunning || in.State == StateStarting) {
				exists = true
			}
		}
	}
	if exists {
		if old.Found {
			s.setRunner(ctx, c.Val.Runner, func(r *runnerRec) bool { return r.adoptStarted(0, s.now()) })
		}
		c.Val.provisioned(c.Val.Runner)
		if _, err := s.kv.claims.swap(ctx, c.Val, c.Rev); err != nil && !bus.IsConflict(err) {
			return nak(s.backoff(delivered))
		}
		log.Info().Msg("job claim adopted: its runner exists")
		return ack()
	}
	if old.Found {
		if err := s.removeRunner(ctx, old.Val, 0); err != nil {
			log.Warn().Err(err).Msg("clean up after dead claimant; the reconciler will retry")
		}
	}
	now := s.now()
	claim := c.Val
	claim.takeOver(runnerName(pool.Name), s.cfg.ReplicaID, now, now.Add(s.cfg.ProvisionTimeout))
	rev, err := s.kv.claims.swap(ctx, claim, c.Rev)
	if err != nil {
		return nak(s.cfg.CapacityRetry) // another replica took over first
	}
	log.Info().Str(logkey.NewRunner, claim.Runner).Msg("job claim taken over from a claimant past its deadline")
	return s.serveClaim(ctx, msg, delivered, ev, pool, claim, rev, nil)
}

// onInProgress records that a runner took a job.
func (s *Scaler) onInProgress(ctx context.Context, delivered uint64, ev jobs.Event, pool config.Pool) disposition {
	if s.ownRunner(ev.RunnerName) {
		moved, err := s.kv.runners.apply(ctx, ev.RunnerName, func(r *runnerRec) bool {
			return r.tookJob(ev.JobID, ev.CreatedAt, eventTime(ev.StartedAt, s.now()))
		})
		if err != nil {
			return nak(s.backoff(delivered))
		}
		if moved && !ev.CreatedAt.IsZero() && !ev.StartedAt.IsZero() {
			s.m.jobWait.WithLabelValues(pool.Name).Observe(max(0, ev.StartedAt.Sub(ev.CreatedAt).Seconds()))
		}
	}
	if _, _, err := s.kv.claims.apply(ctx, ev.JobID, func(c *claimRec) bool {
		return c.started(eventTime(ev.StartedAt, s.now()), ev.RunnerName)
	}); err != nil {
		return nak(s.backoff(delivered))
	}
	s.m.jobs.WithLabelValues(pool.Name, "in_progress").Inc()
	return ack()
}

// onCompleted records a finished (or cancelled) job, for MaxJobAge in
// BucketDone and on its claim. A job with no claim yet — none of its
// queued deliveries handled: lost, failed, delayed — gets a tombstone
// claim, so that a queued delivery handled after this one (a late
// redelivery, a replay) creates no runner and opens no claim. A job that
// had a claim keeps it: its runner is owed (it took another job's, or a
// buffer runner) and is still created. A job cancelled before any runner
// took it is marked as needing none.
func (s *Scaler) onCompleted(ctx context.Context, delivered uint64, ev jobs.Event, pool config.Pool) disposition {
	if _, err := s.kv.done.Put(ctx, jobKey(ev.JobID), encode(s.now().UTC())); err != nil {
		log := s.jobLog(ev)
		log.Warn().Err(err).Msg("remember completed job")
		return nak(s.backoff(delivered))
	}
	if s.ownRunner(ev.RunnerName) {
		if _, err := s.kv.runners.apply(ctx, ev.RunnerName, func(r *runnerRec) bool { return r.done(s.now()) }); err != nil {
			return nak(s.backoff(delivered))
		}
	}
	noRunner := ev.RunnerName == ""
	found, _, err := s.kv.claims.apply(ctx, ev.JobID, func(c *claimRec) bool {
		return c.completed(noRunner, eventTime(ev.CompletedAt, s.now()))
	})
	if err != nil {
		return nak(s.backoff(delivered))
	}
	if !found {
		tomb := claimRec{JobID: ev.JobID, Pool: pool.Name, Repo: ev.Repository, State: claimWaiting, ClaimedAt: s.now().UTC(), Completed: true, NoRunner: noRunner, Tombstone: true, CompletedAt: eventTime(ev.CompletedAt, s.now())}
		if _, err := s.kv.claims.create(ctx, tomb); bus.IsConflict(err) {
			return nak(s.cfg.CapacityRetry) // a claim appeared meanwhile: mark it next time
		} else if err != nil {
			return nak(s.backoff(delivered))
		}
	}
	action := "completed"
	if ev.Conclusion == "cancelled" {
		action = "cancelled"
	}
	s.m.jobs.WithLabelValues(pool.Name, action).Inc()
	return ack()
}
