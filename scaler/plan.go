package scaler

import (
	"cmp"
	"errors"
	"slices"
	"time"

	"github.com/ephemera-ci/ephemera/internal/config"
)

// Reconciling is split in two: plan reads one snapshot of the world and
// decides, as a pure function of it and the clock, what to do; apply (in
// reconcile.go) does it. Every decision is in this file, and
// plan_test.go covers each case without NATS, GitHub or LXD.

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
	ghOK   bool // gh was read: GitHub-side decisions may be taken
	// ghSkipped: gh was not read this pass (listing.go), so the census
	// stays as the last pass that read it left it.
	ghSkipped bool
	// alive lists the replicas whose liveness key exists; nil when it
	// could not be read (then every owner counts as alive).
	alive map[string]bool
	// listedAt is when the instance list was asked for.
	listedAt time.Time
}

// slotOf maps each runner name to the slot key that holds it.
func (w *world) slotOf() map[string]string {
	m := make(map[string]string, len(w.slots))
	for k, sl := range w.slots {
		m[sl.Val] = k
	}
	return m
}

// actionKind names what an action does; the reconcile actions counted in
// ephemera_reconcile_actions_total carry the same names.
type actionKind string

const (
	// actAdopt records an instance KV does not know and gives it a slot.
	actAdopt actionKind = "adopt"
	// actDelete removes the registration (GitHubID, when not 0), then
	// the instance, its slot and its record. Reason says why; Count the
	// counter it is counted under.
	actDelete actionKind = "delete"
	// actMarkBusy, actMarkIdle and actMarkDone move a runner's record.
	actMarkBusy actionKind = "mark_busy"
	actMarkIdle actionKind = "mark_idle"
	actMarkDone actionKind = "mark_done"
	// actRemoveOrphan removes a registration that has no instance, unless
	// its record says (when read again) that it is being provisioned.
	actRemoveOrphan actionKind = "orphan_registration"
	// actReleaseSlot frees a slot whose instance is gone, at SlotRev.
	actReleaseSlot actionKind = "release_slot"
	// actStatus sets the pool's gauges and status record.
	actStatus actionKind = "status"
	// actTrim removes Idle runners (longest idle first) until N are gone,
	// GitHub first.
	actTrim actionKind = "trim"
	// actTopUp provisions N buffer runners, plus one for each runner
	// that actTrim took out of the idle set.
	actTopUp actionKind = "top_up"
	// actClaimProvisioned marks a claim provisioned whose claimant
	// created the runner and died before saying so.
	actClaimProvisioned actionKind = "claim_provisioned"
	// actCheckStuck reads a stuck job on GitHub and serves it again when
	// it is still queued.
	actCheckStuck actionKind = "check_stuck"
	// actExtendToken keeps the one-time token of an idle runner (Rec
	// names it) valid for another token TTL: a KV write, no GitHub call.
	actExtendToken actionKind = "extend_token"
)

// action is one thing plan decided. Only the fields its kind uses are set.
type action struct {
	Kind     actionKind
	Pool     string
	Runner   string       // the runner (and instance) acted on
	Rec      runnerRec    // its record (adopt: the one to create)
	GitHubID int64        // the registration to remove; 0: none
	At       time.Time    // mark_idle: idle since; mark_busy, mark_done: now
	Slot     string       // release_slot
	SlotRev  uint64       // release_slot: the revision the slot was seen at
	Counts   poolCounts   // status
	Idle     []idleRunner // trim: candidates, longest idle first
	N        int          // trim: how many to remove; top_up: how many to add
	Claim    entry[claimRec]
	Count    string // delete: the counter (delete_finished, bootstrap_timeout, max_age, …)
	Reason   string // delete, check_stuck: why, for the log
}

// idleRunner is an idle runner, a candidate for trimming.
type idleRunner struct {
	Rec   runnerRec
	GHID  int64
	Since time.Time
}

// maxJobChecks bounds GitHub job-status reads per reconcile.
const maxJobChecks = 20

// planner decides; it holds the configuration and the time of the pass.
type planner struct {
	pools            []config.Pool
	bootstrapTimeout time.Duration
	idleGrace        time.Duration
	provisionTimeout time.Duration
	interval         time.Duration
	tokenTTL         time.Duration // 0: tokens are neither extended nor watched
	maxRunnerAge     time.Duration // 0: no maximum
	now              time.Time
	alive            map[string]bool // the world's; set by plan
	// minIdle is the buffer of each pool with min_idle: auto, as the
	// leader sized it for this pass (SizeIdle); a pool missing from it
	// keeps idle_min.
	minIdle map[string]int
}

// bufferOf is the idle buffer pool keeps this pass.
func (p planner) bufferOf(pool config.Pool) int {
	if !pool.AutoIdle {
		return pool.MinIdle
	}
	if n, ok := p.minIdle[pool.Name]; ok {
		return n
	}
	return pool.IdleMin
}

func (s *Scaler) planner() planner {
	return planner{
		pools: s.cfg.Pools, bootstrapTimeout: s.cfg.BootstrapTimeout, idleGrace: s.cfg.IdleGrace,
		provisionTimeout: s.cfg.ProvisionTimeout, interval: s.cfg.Interval,
		tokenTTL: s.cfg.TokenTTL, maxRunnerAge: s.cfg.MaxRunnerAge, now: s.now(),
	}
}

// plan decides one reconcile pass: per pool, in order, the census of its
// instances (adopt, delete, mark), orphan registrations, slots to
// release, the status, and — when GitHub was read — trim and top-up;
// then the stuck jobs.
func (p planner) plan(w *world) []action {
	p.alive = w.alive
	var out []action
	spare := map[string]int{}
	for _, pool := range p.pools {
		acts, n := p.planPool(pool, w)
		out = append(out, acts...)
		spare[pool.Name] = n
	}
	if w.ghOK {
		out = append(out, p.planStuck(w, spare)...)
	}
	return out
}

// inProvisioning reports whether a runner's record says it is being
// provisioned, within its deadline, by a replica that is alive.
func (p planner) inProvisioning(r runnerRec) bool {
	return r.State == runnerProvisioning && p.now.Before(r.Deadline.Add(takeoverGrace)) && !p.gone(r.Owner, r.Heartbeats)
}

// gone reports whether owner, a replica that heartbeats, has no liveness
// key in w: it is dead, paused or cut off.
func (p planner) gone(owner string, heartbeats bool) bool {
	return heartbeats && owner != "" && p.alive != nil && !p.alive[owner]
}

// planPool plans pool's census, trim and top-up; it also returns how
// many spare runners (see displacedJobs) the pool has or is adding in
// this pass, counted when GitHub was read.
func (p planner) planPool(pool config.Pool, w *world) ([]action, int) {
	now := p.now
	var out []action
	var idle []idleRunner
	var busy, booting, bootingBuffer, finishing int
	slotOf := w.slotOf()

	for _, name := range sortedKeys(w.insts) {
		in := w.insts[name]
		if in.Pool != pool.Name {
			continue
		}
		e, hasRec := w.recs[name]
		rec := e.Val
		if rec.V > schemaVersion {
			booting++ // a newer ephemera's runner: it looks after it
			continue
		}
		if !hasRec {
			rec = runnerRec{
				Name: in.Name, Pool: pool.Name, JobID: in.JobID, State: runnerStarted,
				CreatedAt: in.CreatedAt.UTC(), StartedAt: in.CreatedAt.UTC(), Deadline: in.CreatedAt.UTC(),
				Slot: slotOf[in.Name],
			}
			out = append(out, action{Kind: actAdopt, Pool: pool.Name, Runner: name, Rec: rec})
		}
		if rec.Slot == "" {
			rec.Slot = slotOf[name]
		}
		ghr, onGH := w.gh[name]
		del := func(count, reason string, removeGH bool) {
			a := action{Kind: actDelete, Pool: pool.Name, Runner: name, Rec: rec, Count: count, Reason: reason}
			if removeGH {
				a.GitHubID = ghr.ID
			}
			out = append(out, a)
		}
		switch {
		case in.State == StateStopping:
			finishing++ // LXD removes an ephemeral instance as it stops
		case in.State != StateRunning && in.State != StateStarting:
			if w.ghOK && onGH && ghr.Busy {
				busy++
				continue
			}
			del("delete_finished", "instance "+string(in.State), onGH && w.ghOK)
		case !w.ghOK:
			// Without GitHub's view, idle and booting cannot be told apart.
			booting++
		case onGH && ghr.Online && ghr.Busy:
			// Busy, superseded or not: GitHub refuses to remove a runner
			// with a job, and its job ends it.
			busy++
			if rec.State.rank() < runnerBusy.rank() {
				out = append(out, action{Kind: actMarkBusy, Pool: pool.Name, Runner: name, At: now.UTC()})
			}
		case w.ghOK && hasRec && p.superseded(rec, in, w):
			// Its job's claim names another runner: a replica that was
			// paused or cut off created it after the job was taken over,
			// or the job was displaced (see displacedJobs). Only a runner
			// recorded when KV was read is judged: the claims, read after
			// the records, are then at least as new as the claim that
			// made it, while one without a record may be the runner of a
			// takeover provisioned since, newer than the claim in w.
			del("superseded", "job-bound runner whose job's claim names another runner", onGH)
		case onGH && ghr.Online && rec.State != runnerDone:
			if count, reason := p.retire(rec); count != "" {
				// Deregistered first: GitHub refuses a runner that took a
				// job meanwhile, and then the instance stays.
				finishing++
				del(count, reason, true)
				continue
			}
			if p.tokenDue(rec) {
				out = append(out, action{Kind: actExtendToken, Pool: pool.Name, Runner: name, Rec: rec})
			}
			since := rec.IdleSince
			if since.IsZero() {
				since = now.UTC()
				out = append(out, action{Kind: actMarkIdle, Pool: pool.Name, Runner: name, At: since})
			}
			idle = append(idle, idleRunner{Rec: rec, GHID: ghr.ID, Since: since})
		case rec.State == runnerDone || (!onGH && !rec.OnlineAt.IsZero()):
			// Its job is over (or it left GitHub after being online): the
			// instance powers off by itself. Delete it if it lingers.
			finishing++
			if rec.DoneAt.IsZero() {
				out = append(out, action{Kind: actMarkDone, Pool: pool.Name, Runner: name, At: now.UTC()})
				continue
			}
			if now.Sub(rec.DoneAt) > p.bootstrapTimeout {
				del("delete_finished", "runner finished long ago but its instance still runs", onGH)
			}
		case now.Sub(in.CreatedAt) > p.bootstrapTimeout && !p.inProvisioning(rec):
			del("bootstrap_timeout", "runner did not come online within bootstrap_timeout", onGH)
		default:
			booting++
			if rec.JobID == 0 {
				bootingBuffer++
			} else if c, ok := w.claims[jobKey(rec.JobID)]; ok && !c.Val.waiting() {
				bootingBuffer++ // its job went to another runner: this one will be idle
			}
		}
	}

	// Runners being provisioned, and registrations without an instance.
	provisioning, provisioningBuffer := 0, 0
	for name, e := range w.recs {
		if e.Val.Pool != pool.Name || w.insts[name].Name != "" || !p.inProvisioning(e.Val) {
			continue
		}
		provisioning++
		if e.Val.JobID == 0 {
			provisioningBuffer++
		} else if c, ok := w.claims[jobKey(e.Val.JobID)]; ok && !c.Val.waiting() {
			// Its job went to another (idle) runner: this one will be
			// idle. A buffer runner started now would be trimmed later —
			// a registration and a removal spent for nothing.
			provisioningBuffer++
		}
	}
	if w.ghOK {
		for _, name := range sortedKeys(w.gh) {
			ghr := w.gh[name]
			if pn, ok := poolOfName(name, p.poolSet()); !ok || pn != pool.Name {
				continue
			}
			if _, ok := w.insts[name]; ok || ghr.Busy {
				continue
			}
			out = append(out, action{Kind: actRemoveOrphan, Pool: pool.Name, Runner: name, GitHubID: ghr.ID})
		}
	}

	out = append(out, p.planSlots(pool.Name, w.slots, w.recs, w.insts)...)

	minIdle := p.bufferOf(pool)
	counts := poolCounts{Idle: len(idle), Busy: busy, Provisioning: booting + provisioning, Finishing: finishing, MinIdle: minIdle, At: now.UTC()}
	if !w.ghSkipped {
		out = append(out, action{Kind: actStatus, Pool: pool.Name, Counts: counts})
	}
	if !w.ghOK {
		return out, 0
	}
	spare := len(idle) + bootingBuffer + provisioningBuffer

	// Trim: surplus idle runners past idle_grace, longest idle first.
	slices.SortFunc(idle, func(a, b idleRunner) int {
		return cmp.Or(a.Since.Compare(b.Since), cmp.Compare(a.Rec.Name, b.Rec.Name))
	})
	var past []idleRunner
	for _, ir := range idle {
		if now.Sub(ir.Since) >= p.idleGrace {
			past = append(past, ir)
		}
	}
	if surplus := len(idle) - minIdle; surplus > 0 && len(past) > 0 {
		out = append(out, action{Kind: actTrim, Pool: pool.Name, Idle: past, N: surplus})
	}
	// Top up the idle buffer, never past max (the slots see to that).
	// A runner it adds is spare too: planStuck must not serve a
	// displaced job again that the top-up's runner will take.
	topUp := minIdle - spare
	out = append(out, action{Kind: actTopUp, Pool: pool.Name, N: topUp})
	return out, spare + max(0, topUp)
}

// An idle runner waits for a job with a one-time token that expires: the
// plan extends the token once less than half of its TTL is left, while
// the runner is registered and idle, and replaces the runner instead once
// it is older than max_runner_age, or when its token cannot be extended
// (found consumed or expired, or a record that names none: adopted, or
// written by an older version) before it would expire. A busy runner's
// token is never extended: the pre-job check consumed it, or is about to.

// tokenExpiry is when rec's token expires as far as the record knows.
func (p planner) tokenExpiry(rec runnerRec) time.Time {
	if !rec.TokenExpires.IsZero() {
		return rec.TokenExpires
	}
	return rec.CreatedAt.Add(p.tokenTTL)
}

// tokenDue reports whether an idle runner's token is to be extended now.
func (p planner) tokenDue(rec runnerRec) bool {
	return p.tokenTTL > 0 && rec.TokenID != "" && p.tokenExpiry(rec).Sub(p.now) < p.tokenTTL/2
}

// retire says whether an idle runner is to be replaced, and why: the
// counter and the reason of its delete action; "" to keep it.
func (p planner) retire(rec runnerRec) (count, reason string) {
	switch {
	case p.maxRunnerAge > 0 && !rec.CreatedAt.IsZero() && p.now.Sub(rec.CreatedAt) >= p.maxRunnerAge:
		return "max_age", "idle runner older than max_runner_age"
	case p.tokenTTL > 0 && rec.TokenID == "" && p.tokenExpiry(rec).Sub(p.now) < p.tokenTTL/2:
		return "token_unrenewable", "idle runner whose one-time token cannot be kept valid"
	}
	return "", ""
}

// superseded reports whether in is a job-bound runner whose job's claim
// now names another runner (and is one this version understands): two
// job-bound runners for one job must not exist at once, and the claim's
// is the one that stays. planPool asks only of a runner that is not busy.
func (p planner) superseded(rec runnerRec, in Instance, w *world) bool {
	job := cmp.Or(rec.JobID, in.JobID)
	if job == 0 {
		return false
	}
	c, ok := w.claims[jobKey(job)]
	return ok && c.Val.V <= schemaVersion && c.Val.Runner != "" && c.Val.Runner != in.Name
}

// orphanConfirmed reports whether a registration planned for removal as
// an orphan still is one, given its record read again just before: a
// provisioning that started after KV was read has its record now, and an
// instance that came up after the list was taken has started since.
func (p planner) orphanConfirmed(e entry[runnerRec], listedAt time.Time) bool {
	switch {
	case e.Found && e.Val.V > schemaVersion:
		return false // a newer ephemera's runner: it looks after it
	case e.Found && p.inProvisioning(e.Val):
		return false
	case e.Found && e.Val.StartedAt.After(listedAt.Add(-time.Second)):
		return false
	}
	return true
}

// planSlots releases the slots of pool whose instance is gone (present
// lists the instances that exist).
func (p planner) planSlots(pool string, slots map[string]entry[string], recs map[string]entry[runnerRec], present map[string]Instance) []action {
	var out []action
	for _, key := range sortedKeys(slots) {
		sl := slots[key]
		if pn, _, ok := parseSlotKey(key); !ok || pn != pool {
			continue
		}
		if p.slotGone(sl, recs, present) {
			out = append(out, action{Kind: actReleaseSlot, Pool: pool, Runner: sl.Val, Slot: key, SlotRev: sl.Rev})
		}
	}
	return out
}

// slotGone reports whether slot's runner has no instance and none is
// being created: the slot may be released.
func (p planner) slotGone(sl entry[string], recs map[string]entry[runnerRec], present map[string]Instance) bool {
	if _, ok := present[sl.Val]; ok {
		return false
	}
	rec, ok := recs[sl.Val]
	switch {
	case ok && rec.Val.V > schemaVersion:
		return false // a newer ephemera's runner: it looks after it
	case !ok:
		// Between taking the slot and recording the runner, or a claimant
		// that died there: wait out a provisioning's length.
		return p.now.Sub(sl.Created) > p.provisionTimeout+takeoverGrace
	case rec.Val.State == runnerProvisioning:
		return !p.inProvisioning(rec.Val)
	default:
		return true
	}
}

// planStuck picks the jobs whose runner came and went while the job, as
// far as ephemera knows, never started, and the displaced jobs a pool
// has no spare runner for (see displacedJobs), at most maxJobChecks in
// all, to be read on GitHub; and the claims whose claimant created the
// runner and died before it said so. spare is planPool's count of each
// pool's spare runners.
func (p planner) planStuck(w *world, spare map[string]int) []action {
	var out []action
	known := p.poolSet()
	checks := 0
	for _, key := range sortedKeys(w.claims) {
		c := w.claims[key]
		cl := c.Val
		if _, ok := known[cl.Pool]; !ok || checks >= maxJobChecks || !cl.waiting() || cl.V > schemaVersion {
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
			if p.now.Sub(cl.ClaimedAt) < p.bootstrapTimeout {
				continue // other jobs' runners may take it meanwhile
			}
		case claimClaimed:
			if p.now.Before(cl.Deadline.Add(takeoverGrace+2*p.interval)) && !p.gone(cl.Owner, cl.Heartbeats) {
				continue
			}
			// Its runner made and started: adopted, as takeOver does.
			// One made and not started (or stopped) is checked like a
			// runner that never came, and removed if the job is queued.
			if in, ok := w.insts[cl.Runner]; ok && (in.State == StateRunning || in.State == StateStarting) {
				out = append(out, action{Kind: actClaimProvisioned, Pool: cl.Pool, Runner: cl.Runner, Claim: c})
				continue
			}
		default:
			continue
		}
		checks++
		a := action{Kind: actCheckStuck, Pool: cl.Pool, Runner: cl.Runner, Claim: c, Reason: stuckGone}
		if old, ok := w.recs[cl.Runner]; ok {
			a.Rec, a.GitHubID = old.Val, w.gh[cl.Runner].ID
		}
		out = append(out, a)
	}
	displaced := p.displacedJobs(w, func(runner string) bool { _, ok := w.insts[runner]; return ok })
	coming := p.comingRunners(w)
	for _, pool := range p.pools {
		unserved := len(displaced[pool.Name]) - spare[pool.Name] - coming[pool.Name]
		for _, c := range displaced[pool.Name][:max(0, min(unserved, p.freeSlots(pool, w), maxJobChecks-checks))] {
			checks++
			// Its runner is busy with another job: nothing to clean up.
			out = append(out, action{Kind: actCheckStuck, Pool: pool.Name, Runner: c.Val.Runner, Claim: c,
				Reason: stuckDisplaced})
		}
	}
	return out
}

// GitHub gives a runner whichever queued job with its labels it picks,
// not the one the runner was made for: job A's runner may take job B,
// and B's runner then takes A. A is displaced from the moment B's
// in_progress event names A's runner (B's claim ran on it) until a
// runner takes A. That is how a burst goes, and it works out while each
// displaced job has a spare runner coming: one idle, or booting or being
// provisioned for a job that started elsewhere, or a buffer runner, or
// one still to be made for such a job (comingRunners). When
// one is lost on the way (its replica killed mid-creation, its instance
// failed) after its own job started on another runner, the last job of
// the chain waits for a runner that never comes, and looks served: its
// claim's runner exists, busy. So a pool with more displaced jobs than
// spare runners has the difference checked on GitHub (longest displaced
// first, no more than its free slots can serve) and those still queued
// are served again, by a new runner.

// displacedJobs lists each pool's displaced jobs whose claim's runner
// still exists, as exists says (one whose runner is gone is a stuck
// job), longest displaced first.
func (p planner) displacedJobs(w *world, exists func(runner string) bool) map[string][]entry[claimRec] {
	took := map[string]claimRec{} // runner → the job it ran
	for _, c := range w.claims {
		if c.Val.Started && c.Val.RanOn != "" {
			took[c.Val.RanOn] = c.Val
		}
	}
	since := map[int64]time.Time{}
	out := map[string][]entry[claimRec]{}
	for _, c := range w.claims {
		cl := c.Val
		if !cl.waiting() || cl.V > schemaVersion || cl.State != claimProvisioned {
			continue
		}
		other, ok := took[cl.Runner]
		if !ok || other.JobID == cl.JobID || !exists(cl.Runner) {
			continue
		}
		since[cl.JobID] = other.StartedAt
		out[cl.Pool] = append(out[cl.Pool], c)
	}
	for _, cs := range out {
		slices.SortFunc(cs, func(a, b entry[claimRec]) int {
			return cmp.Or(since[a.Val.JobID].Compare(since[b.Val.JobID]), cmp.Compare(a.Val.JobID, b.Val.JobID))
		})
	}
	return out
}

// comingRunners counts, for each pool, the spare runners planPool does
// not see: those owed to a job that started on another runner, still to
// be made (the claim waits for a slot, or its runner has no record yet);
// and runners GitHub shows busy with a job no claim knows of yet (its in_progress event is on its way:
// the job may be one displacedJobs lists, served already). Counting one
// too many only delays a displaced job until the events settle; one too
// few serves a job twice.
func (p planner) comingRunners(w *world) map[string]int {
	out := map[string]int{}
	ran := map[string]bool{}
	for _, c := range w.claims {
		cl := c.Val
		if cl.Started {
			ran[cl.RanOn] = true
		}
		if cl.waiting() || cl.V > schemaVersion || cl.NoRunner {
			continue
		}
		if _, recorded := w.recs[cl.Runner]; cl.State == claimWaiting || cl.State == claimClaimed && !recorded {
			out[cl.Pool]++
		}
	}
	known := p.poolSet()
	for name, g := range w.gh {
		if pool, ok := poolOfName(name, known); ok && g.Busy && !ran[name] {
			out[pool]++
		}
	}
	return out
}

// freeSlots is how many of pool's slots no runner holds.
func (p planner) freeSlots(pool config.Pool, w *world) int {
	taken := 0
	for key := range w.slots {
		if name, _, ok := parseSlotKey(key); ok && name == pool.Name {
			taken++
		}
	}
	return max(0, pool.Max-taken)
}

// The reasons a stuck job, still queued, is served again.
const (
	stuckGone      = "job still queued on GitHub after its runner came and went"
	stuckDisplaced = "job still queued on GitHub after another job took its runner, with no spare runner to take it"
)

// stuckVerdict is what a stuck job's status on GitHub says to do.
type stuckVerdict int

const (
	stuckLeave     stuckVerdict = iota // unknown status, or not readable: look again next pass
	stuckStarted                       // a runner took it: mark the claim started
	stuckCompleted                     // it is over (or gone): mark the claim completed
	stuckServe                         // still queued: give it a new runner
)

// judgeStuck maps a stuck job's status on GitHub (status, or the error
// reading it) to what to do.
func judgeStuck(status string, err error) stuckVerdict {
	switch {
	case errors.Is(err, ErrJobNotFound):
		return stuckCompleted
	case err != nil:
		return stuckLeave
	case status == "in_progress":
		return stuckStarted
	case status == "completed":
		return stuckCompleted
	case status == "queued":
		return stuckServe
	}
	return stuckLeave
}

func (p planner) poolSet() map[string]struct{} {
	m := make(map[string]struct{}, len(p.pools))
	for _, pl := range p.pools {
		m[pl.Name] = struct{}{}
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
