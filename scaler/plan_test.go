package scaler

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ephemera-ci/ephemera/internal/config"
)

// The reconciler's decisions, case by case: plan is a pure function of
// one reading of the world and the clock. Each test runs in a synctest
// bubble, so time.Now is the bubble's fixed clock and nothing here waits.

var small = config.Pool{Name: "small", MinIdle: 1, Max: 4}

func testPlanner(now time.Time) planner {
	return planner{
		pools: []config.Pool{small}, bootstrapTimeout: 10 * time.Minute, idleGrace: 2 * time.Minute,
		provisionTimeout: 5 * time.Minute, interval: 30 * time.Second, tokenTTL: 70 * time.Minute, maxRunnerAge: 24 * time.Hour, now: now,
	}
}

// worldOf builds a world; ghOK unless gh is nil.
type worldOf struct {
	recs   []runnerRec
	slots  map[string]string // key → runner
	claims []claimRec
	insts  []Instance
	gh     []GitHubRunner
	noGH   bool
	alive  []string // replicas with a liveness key; nil: liveness not read
}

func (wo worldOf) build(now time.Time) *world {
	w := &world{recs: map[string]entry[runnerRec]{}, slots: map[string]entry[string]{}, claims: map[string]entry[claimRec]{},
		insts: map[string]Instance{}, gh: map[string]GitHubRunner{}, ghOK: !wo.noGH, listedAt: now}
	for _, r := range wo.recs {
		w.recs[r.Name] = entry[runnerRec]{Key: r.Name, Val: r, Rev: 1, Found: true}
	}
	for k, r := range wo.slots {
		w.slots[k] = entry[string]{Key: k, Val: r, Rev: 7, Created: now.Add(-time.Minute), Found: true}
	}
	for _, c := range wo.claims {
		w.claims[jobKey(c.JobID)] = entry[claimRec]{Key: jobKey(c.JobID), Val: c, Rev: 3, Found: true}
	}
	for _, in := range wo.insts {
		w.insts[in.Name] = in
	}
	for _, g := range wo.gh {
		w.gh[g.Name] = g
	}
	if wo.alive != nil {
		w.alive = map[string]bool{}
		for _, r := range wo.alive {
			w.alive[r] = true
		}
	}
	return w
}

func running(name string, created time.Time) Instance {
	return Instance{Name: name, Pool: "small", State: StateRunning, CreatedAt: created}
}

func started(name string, now time.Time) runnerRec {
	return runnerRec{Name: name, Pool: "small", State: runnerStarted, Slot: "small.0", CreatedAt: now.Add(-time.Minute), StartedAt: now.Add(-time.Minute)}
}

// halfMade is a runner whose provisioning began an hour ago: its slot
// held, its instance created (or not) and never started.
func halfMade(name string, now time.Time) runnerRec {
	return runnerRec{Name: name, Pool: "small", State: runnerProvisioning, Slot: "small.0", CreatedAt: now.Add(-time.Hour), Deadline: now.Add(-time.Hour)}
}

// idleRec is a runner recorded idle for a minute.
func idleRec(name string, now time.Time) runnerRec {
	r := started(name, now)
	r.IdleSince, r.OnlineAt = now.Add(-time.Minute), now.Add(-time.Minute)
	return r
}

// withToken gives r a token that expires at exp.
func withToken(r runnerRec, exp time.Time) runnerRec {
	r.TokenID, r.TokenExpires = fmt.Sprintf("%064x", len(r.Name)), exp
	return r
}

func status(now time.Time, idle, busy, prov, fin int) action {
	return action{Kind: actStatus, Pool: "small", Counts: poolCounts{Idle: idle, Busy: busy, Provisioning: prov, Finishing: fin, MinIdle: small.MinIdle, At: now.UTC()}}
}

func topUp(n int) action { return action{Kind: actTopUp, Pool: "small", N: n} }

var planOpts = cmp.Options{cmpopts.IgnoreUnexported(entry[claimRec]{}), cmpopts.EquateEmpty()}

func TestPlanPerPool(t *testing.T) {
	type tc struct {
		name  string
		world func(now time.Time) worldOf
		want  func(now time.Time) []action
	}
	cases := []tc{
		{
			name:  "an empty pool is topped up to min_idle",
			world: func(now time.Time) worldOf { return worldOf{} },
			want:  func(now time.Time) []action { return []action{status(now, 0, 0, 0, 0), topUp(1)} },
		},
		{
			name: "an instance KV does not know is adopted, keeps the slot that names it, and counts as booting",
			world: func(now time.Time) worldOf {
				return worldOf{insts: []Instance{running("eph-small-stray", now)}, slots: map[string]string{"small.2": "eph-small-stray"}}
			},
			want: func(now time.Time) []action {
				rec := runnerRec{Name: "eph-small-stray", Pool: "small", State: runnerStarted, CreatedAt: now.UTC(), StartedAt: now.UTC(), Deadline: now.UTC(), Slot: "small.2"}
				return []action{{Kind: actAdopt, Pool: "small", Runner: "eph-small-stray", Rec: rec}, status(now, 0, 0, 1, 0), topUp(0)}
			},
		},
		{
			name: "a stopped instance is deleted, its registration first",
			world: func(now time.Time) worldOf {
				in := running("eph-small-a", now)
				in.State = StateStopped
				return worldOf{recs: []runnerRec{started("eph-small-a", now)}, insts: []Instance{in}, gh: []GitHubRunner{{ID: 9, Name: "eph-small-a"}}}
			},
			want: func(now time.Time) []action {
				return []action{{Kind: actDelete, Pool: "small", Runner: "eph-small-a", Rec: started("eph-small-a", now), GitHubID: 9, Count: "delete_finished", Reason: "instance stopped"},
					status(now, 0, 0, 0, 0), topUp(1)}
			},
		},
		{
			name: "a stopped instance whose runner GitHub lists busy is left alone and counted busy",
			world: func(now time.Time) worldOf {
				in := running("eph-small-a", now)
				in.State = StateError
				return worldOf{recs: []runnerRec{started("eph-small-a", now)}, insts: []Instance{in}, gh: []GitHubRunner{{ID: 9, Name: "eph-small-a", Busy: true}}}
			},
			want: func(now time.Time) []action { return []action{status(now, 0, 1, 0, 0), topUp(1)} },
		},
		{
			name: "a stopping instance counts as finishing and is left to LXD",
			world: func(now time.Time) worldOf {
				in := running("eph-small-a", now)
				in.State = StateStopping
				return worldOf{recs: []runnerRec{started("eph-small-a", now)}, insts: []Instance{in}}
			},
			want: func(now time.Time) []action { return []action{status(now, 0, 0, 0, 1), topUp(1)} },
		},
		{
			name: "without GitHub's list a running instance counts as provisioning and nothing is trimmed, topped up or removed",
			world: func(now time.Time) worldOf {
				return worldOf{recs: []runnerRec{started("eph-small-a", now)}, insts: []Instance{running("eph-small-a", now)}, noGH: true}
			},
			want: func(now time.Time) []action { return []action{status(now, 0, 0, 1, 0)} },
		},
		{
			name: "a runner GitHub lists busy is marked busy",
			world: func(now time.Time) worldOf {
				return worldOf{recs: []runnerRec{started("eph-small-a", now)}, insts: []Instance{running("eph-small-a", now)},
					gh: []GitHubRunner{{ID: 9, Name: "eph-small-a", Online: true, Busy: true}}}
			},
			want: func(now time.Time) []action {
				return []action{{Kind: actMarkBusy, Pool: "small", Runner: "eph-small-a", At: now.UTC()}, status(now, 0, 1, 0, 0), topUp(1)}
			},
		},
		{
			name: "a runner recorded busy already is not marked again",
			world: func(now time.Time) worldOf {
				r := started("eph-small-a", now)
				r.State = runnerBusy
				return worldOf{recs: []runnerRec{r}, insts: []Instance{running("eph-small-a", now)},
					gh: []GitHubRunner{{ID: 9, Name: "eph-small-a", Online: true, Busy: true}}}
			},
			want: func(now time.Time) []action { return []action{status(now, 0, 1, 0, 0), topUp(1)} },
		},
		{
			name: "a runner seen online and not busy for the first time is marked idle since now",
			world: func(now time.Time) worldOf {
				return worldOf{recs: []runnerRec{started("eph-small-a", now)}, insts: []Instance{running("eph-small-a", now)},
					gh: []GitHubRunner{{ID: 9, Name: "eph-small-a", Online: true}}}
			},
			want: func(now time.Time) []action {
				return []action{{Kind: actMarkIdle, Pool: "small", Runner: "eph-small-a", At: now.UTC()}, status(now, 1, 0, 0, 0), topUp(0)}
			},
		},
		{
			name: "surplus idle runners past idle_grace are trimmed longest idle first; those within it are kept",
			world: func(now time.Time) worldOf {
				var recs []runnerRec
				var gh []GitHubRunner
				for i, idle := range []time.Duration{3 * time.Minute, 10 * time.Minute, time.Minute} {
					r := started(fmt.Sprintf("eph-small-%d", i), now)
					r.IdleSince = now.Add(-idle)
					recs = append(recs, r)
					gh = append(gh, GitHubRunner{ID: int64(i + 1), Name: r.Name, Online: true})
				}
				return worldOf{recs: recs, gh: gh, insts: []Instance{running("eph-small-0", now), running("eph-small-1", now), running("eph-small-2", now)}}
			},
			want: func(now time.Time) []action {
				r0, r1 := started("eph-small-0", now), started("eph-small-1", now)
				r0.IdleSince, r1.IdleSince = now.Add(-3*time.Minute), now.Add(-10*time.Minute)
				return []action{status(now, 3, 0, 0, 0),
					{Kind: actTrim, Pool: "small", N: 2, Idle: []idleRunner{{Rec: r1, GHID: 2, Since: r1.IdleSince}, {Rec: r0, GHID: 1, Since: r0.IdleSince}}},
					topUp(-2)}
			},
		},
		{
			name: "a runner whose job completed is marked done once and counted finishing",
			world: func(now time.Time) worldOf {
				r := started("eph-small-a", now)
				r.State, r.OnlineAt = runnerBusy, now.Add(-time.Minute)
				return worldOf{recs: []runnerRec{r}, insts: []Instance{running("eph-small-a", now)}}
			},
			want: func(now time.Time) []action {
				return []action{{Kind: actMarkDone, Pool: "small", Runner: "eph-small-a", At: now.UTC()}, status(now, 0, 0, 0, 1), topUp(1)}
			},
		},
		{
			name: "a done runner whose instance lingers past bootstrap_timeout is deleted",
			world: func(now time.Time) worldOf {
				r := started("eph-small-a", now)
				r.State, r.DoneAt = runnerDone, now.Add(-11*time.Minute)
				return worldOf{recs: []runnerRec{r}, insts: []Instance{running("eph-small-a", now)}}
			},
			want: func(now time.Time) []action {
				r := started("eph-small-a", now)
				r.State, r.DoneAt = runnerDone, now.Add(-11*time.Minute)
				return []action{{Kind: actDelete, Pool: "small", Runner: "eph-small-a", Rec: r, Count: "delete_finished", Reason: "runner finished long ago but its instance still runs"},
					status(now, 0, 0, 0, 1), topUp(1)}
			},
		},
		{
			name: "an instance whose runner never came online within bootstrap_timeout is deleted",
			world: func(now time.Time) worldOf {
				return worldOf{recs: []runnerRec{started("eph-small-a", now)}, insts: []Instance{running("eph-small-a", now.Add(-11*time.Minute))},
					gh: []GitHubRunner{{ID: 9, Name: "eph-small-a"}}}
			},
			want: func(now time.Time) []action {
				return []action{{Kind: actDelete, Pool: "small", Runner: "eph-small-a", Rec: started("eph-small-a", now), GitHubID: 9, Count: "bootstrap_timeout", Reason: "runner did not come online within bootstrap_timeout"},
					status(now, 0, 0, 0, 0), topUp(1)}
			},
		},
		{
			name: "an old instance still being provisioned within its deadline is booting, not timed out",
			world: func(now time.Time) worldOf {
				r := started("eph-small-a", now)
				r.State, r.Deadline = runnerProvisioning, now.Add(time.Minute)
				return worldOf{recs: []runnerRec{r}, insts: []Instance{running("eph-small-a", now.Add(-11*time.Minute))}}
			},
			want: func(now time.Time) []action { return []action{status(now, 0, 0, 1, 0), topUp(0)} },
		},
		{
			name: "a booting job-bound runner counts toward the buffer only when its job went to another runner",
			world: func(now time.Time) worldOf {
				a, b := started("eph-small-a", now), started("eph-small-b", now)
				a.JobID, b.JobID = 1, 2
				return worldOf{recs: []runnerRec{a, b}, insts: []Instance{running("eph-small-a", now), running("eph-small-b", now)},
					claims: []claimRec{{JobID: 1, Pool: "small", State: claimProvisioned, Runner: "eph-small-a"}, {JobID: 2, Pool: "small", State: claimProvisioned, Runner: "eph-small-b", Started: true}}}
			},
			want: func(now time.Time) []action { return []action{status(now, 0, 0, 2, 0), topUp(0)} },
		},
		{
			name: "a job-bound runner being provisioned without an instance yet counts toward the buffer once its job went to another runner",
			world: func(now time.Time) worldOf {
				a, b := started("eph-small-a", now), started("eph-small-b", now)
				a.State, a.Deadline, a.JobID = runnerProvisioning, now.Add(time.Minute), 1
				b.State, b.Deadline, b.JobID = runnerProvisioning, now.Add(time.Minute), 2
				return worldOf{recs: []runnerRec{a, b},
					claims: []claimRec{{JobID: 1, Pool: "small", State: claimClaimed, Runner: "eph-small-a"}, {JobID: 2, Pool: "small", State: claimClaimed, Runner: "eph-small-b", Started: true}}}
			},
			// min_idle 1: job 2 started elsewhere, so its runner will be
			// the idle one; no top-up (a buffer runner now would be
			// trimmed later, a registration and a removal for nothing).
			want: func(now time.Time) []action { return []action{status(now, 0, 0, 2, 0), topUp(0)} },
		},
		{
			name: "a buffer runner being provisioned without an instance yet counts as provisioning and toward the buffer",
			world: func(now time.Time) worldOf {
				r := started("eph-small-a", now)
				r.State, r.Deadline = runnerProvisioning, now.Add(time.Minute)
				return worldOf{recs: []runnerRec{r}}
			},
			want: func(now time.Time) []action { return []action{status(now, 0, 0, 1, 0), topUp(0)} },
		},
		{
			name: "a registration without an instance is removed, unless busy, another pool's or not ephemera's",
			world: func(now time.Time) worldOf {
				return worldOf{gh: []GitHubRunner{{ID: 1, Name: "eph-small-orphan"}, {ID: 2, Name: "eph-small-busy", Busy: true},
					{ID: 3, Name: "eph-large-x"}, {ID: 4, Name: "someone-elses"}}}
			},
			want: func(now time.Time) []action {
				return []action{{Kind: actRemoveOrphan, Pool: "small", Runner: "eph-small-orphan", GitHubID: 1}, status(now, 0, 0, 0, 0), topUp(1)}
			},
		},
		{
			name: "the slot of a gone instance is released; those of a present one, of one being provisioned and of a young unrecorded one are kept",
			world: func(now time.Time) worldOf {
				prov := started("eph-small-p", now)
				prov.State, prov.Deadline = runnerProvisioning, now.Add(time.Minute)
				late := started("eph-small-late", now)
				late.State, late.Deadline = runnerProvisioning, now.Add(-2*time.Second)
				return worldOf{
					recs:  []runnerRec{started("eph-small-gone", now), started("eph-small-here", now), prov, late},
					insts: []Instance{running("eph-small-here", now)},
					slots: map[string]string{"small.0": "eph-small-gone", "small.1": "eph-small-here", "small.2": "eph-small-p", "small.3": "eph-small-young", "small.4": "eph-small-late"},
				}
			},
			want: func(now time.Time) []action {
				return []action{
					{Kind: actReleaseSlot, Pool: "small", Runner: "eph-small-gone", Slot: "small.0", SlotRev: 7},
					{Kind: actReleaseSlot, Pool: "small", Runner: "eph-small-late", Slot: "small.4", SlotRev: 7},
					status(now, 0, 0, 2, 0), topUp(-1)}
			},
		},
		{
			name: "a runner being provisioned by a replica whose liveness key is gone is abandoned: its slot is released before its deadline",
			world: func(now time.Time) worldOf {
				dead, live, old := started("eph-small-dead", now), started("eph-small-live", now), started("eph-small-old", now)
				for _, r := range []*runnerRec{&dead, &live, &old} {
					r.State, r.Deadline, r.Heartbeats = runnerProvisioning, now.Add(time.Minute), true
				}
				dead.Owner, live.Owner, old.Owner, old.Heartbeats = "r-dead", "r-live", "r-old", false
				return worldOf{recs: []runnerRec{dead, live, old}, alive: []string{"r-live"},
					slots: map[string]string{"small.0": "eph-small-dead", "small.1": "eph-small-live", "small.2": "eph-small-old"}}
			},
			want: func(now time.Time) []action {
				return []action{{Kind: actReleaseSlot, Pool: "small", Runner: "eph-small-dead", Slot: "small.0", SlotRev: 7}, status(now, 0, 0, 2, 0), topUp(-1)}
			},
		},
		{
			name: "a job-bound instance whose job's claim names another runner is removed, GitHub first",
			world: func(now time.Time) worldOf {
				r := started("eph-small-late", now)
				r.JobID = 1
				return worldOf{recs: []runnerRec{r}, insts: []Instance{running("eph-small-late", now)}, gh: []GitHubRunner{{ID: 4, Name: "eph-small-late", Online: true}},
					claims: []claimRec{{JobID: 1, Pool: "small", State: claimClaimed, Runner: "eph-small-next"}}}
			},
			want: func(now time.Time) []action {
				r := started("eph-small-late", now)
				r.JobID = 1
				return []action{{Kind: actDelete, Pool: "small", Runner: "eph-small-late", Rec: r, GitHubID: 4, Count: "superseded", Reason: "job-bound runner whose job's claim names another runner"},
					status(now, 0, 0, 0, 0), topUp(1)}
			},
		},
		{
			name: "a job-bound instance its job's claim names, or whose job has no claim, is not superseded",
			world: func(now time.Time) worldOf {
				a, b := started("eph-small-a", now), started("eph-small-b", now)
				a.JobID, b.JobID = 1, 2
				return worldOf{recs: []runnerRec{a, b}, insts: []Instance{running("eph-small-a", now), running("eph-small-b", now)},
					claims: []claimRec{{JobID: 1, Pool: "small", State: claimProvisioned, Runner: "eph-small-a"}}}
			},
			want: func(now time.Time) []action { return []action{status(now, 0, 0, 2, 0), topUp(1)} },
		},
		{
			name: "a job-bound instance KV did not know when it was read is not superseded by the claim read then: it may be a takeover's runner, provisioned since",
			world: func(now time.Time) worldOf {
				in := running("eph-small-new", now)
				in.JobID = 1
				return worldOf{insts: []Instance{in},
					claims: []claimRec{{JobID: 1, Pool: "small", State: claimClaimed, Runner: "eph-small-old", Owner: "r-slow", Deadline: now.Add(time.Minute)}}}
			},
			want: func(now time.Time) []action {
				rec := runnerRec{Name: "eph-small-new", Pool: "small", JobID: 1, State: runnerStarted, CreatedAt: now.UTC(), StartedAt: now.UTC(), Deadline: now.UTC()}
				return []action{{Kind: actAdopt, Pool: "small", Runner: "eph-small-new", Rec: rec}, status(now, 0, 0, 1, 0), topUp(1)}
			},
		},
		{
			name: "a newer ephemera's runner is left alone, its slot kept, and counted booting",
			world: func(now time.Time) worldOf {
				in := running("eph-small-new", now.Add(-time.Hour))
				in.State = StateStopped
				r := started("eph-small-new", now)
				r.V = schemaVersion + 1
				gone := started("eph-small-newgone", now)
				gone.V = schemaVersion + 1
				return worldOf{recs: []runnerRec{r, gone}, insts: []Instance{in}, slots: map[string]string{"small.0": "eph-small-new", "small.1": "eph-small-newgone"}}
			},
			want: func(now time.Time) []action { return []action{status(now, 0, 0, 1, 0), topUp(1)} },
		},
		{
			name: "an idle runner whose token has less than half its TTL left has it extended, and still counts idle",
			world: func(now time.Time) worldOf {
				return worldOf{recs: []runnerRec{withToken(idleRec("eph-small-a", now), now.Add(34*time.Minute))}, insts: []Instance{running("eph-small-a", now)},
					gh: []GitHubRunner{{ID: 9, Name: "eph-small-a", Online: true}}}
			},
			want: func(now time.Time) []action {
				return []action{{Kind: actExtendToken, Pool: "small", Runner: "eph-small-a", Rec: withToken(idleRec("eph-small-a", now), now.Add(34*time.Minute))},
					status(now, 1, 0, 0, 0), topUp(0)}
			},
		},
		{
			name: "an idle runner whose token has more than half its TTL left is left as it is",
			world: func(now time.Time) worldOf {
				return worldOf{recs: []runnerRec{withToken(idleRec("eph-small-a", now), now.Add(36*time.Minute))}, insts: []Instance{running("eph-small-a", now)},
					gh: []GitHubRunner{{ID: 9, Name: "eph-small-a", Online: true}}}
			},
			want: func(now time.Time) []action { return []action{status(now, 1, 0, 0, 0), topUp(0)} },
		},
		{
			name: "the token of a runner that took a job is not extended, however close its expiry",
			world: func(now time.Time) worldOf {
				r := withToken(started("eph-small-a", now), now.Add(time.Minute))
				r.State = runnerBusy
				return worldOf{recs: []runnerRec{r}, insts: []Instance{running("eph-small-a", now)},
					gh: []GitHubRunner{{ID: 9, Name: "eph-small-a", Online: true, Busy: true}}}
			},
			want: func(now time.Time) []action { return []action{status(now, 0, 1, 0, 0), topUp(1)} },
		},
		{
			name: "the token of a runner not yet online, or when GitHub could not be read, is not extended",
			world: func(now time.Time) worldOf {
				return worldOf{recs: []runnerRec{withToken(started("eph-small-a", now), now.Add(time.Minute))}, insts: []Instance{running("eph-small-a", now)},
					gh: []GitHubRunner{{ID: 9, Name: "eph-small-a"}}}
			},
			want: func(now time.Time) []action { return []action{status(now, 0, 0, 1, 0), topUp(0)} },
		},
		{
			name: "an idle runner older than max_runner_age is replaced, deregistered first, instead of having its token extended",
			world: func(now time.Time) worldOf {
				r := withToken(idleRec("eph-small-old", now), now.Add(time.Minute))
				r.CreatedAt = now.Add(-24 * time.Hour)
				return worldOf{recs: []runnerRec{r}, insts: []Instance{running("eph-small-old", now)},
					gh: []GitHubRunner{{ID: 9, Name: "eph-small-old", Online: true}}}
			},
			want: func(now time.Time) []action {
				r := withToken(idleRec("eph-small-old", now), now.Add(time.Minute))
				r.CreatedAt = now.Add(-24 * time.Hour)
				return []action{{Kind: actDelete, Pool: "small", Runner: "eph-small-old", Rec: r, GitHubID: 9, Count: "max_age", Reason: "idle runner older than max_runner_age"},
					status(now, 0, 0, 0, 1), topUp(1)}
			},
		},
		{
			name: "a surplus of idle runners is trimmed without counting one being replaced for its age",
			world: func(now time.Time) worldOf {
				old, a, b := idleRec("eph-small-old", now), idleRec("eph-small-a", now), idleRec("eph-small-b", now)
				old.CreatedAt = now.Add(-25 * time.Hour)
				a.IdleSince, b.IdleSince = now.Add(-5*time.Minute), now.Add(-4*time.Minute)
				return worldOf{recs: []runnerRec{old, a, b}, insts: []Instance{running("eph-small-old", now), running("eph-small-a", now), running("eph-small-b", now)},
					gh: []GitHubRunner{{ID: 1, Name: "eph-small-old", Online: true}, {ID: 2, Name: "eph-small-a", Online: true}, {ID: 3, Name: "eph-small-b", Online: true}}}
			},
			want: func(now time.Time) []action {
				old, a, b := idleRec("eph-small-old", now), idleRec("eph-small-a", now), idleRec("eph-small-b", now)
				old.CreatedAt = now.Add(-25 * time.Hour)
				a.IdleSince, b.IdleSince = now.Add(-5*time.Minute), now.Add(-4*time.Minute)
				return []action{
					{Kind: actDelete, Pool: "small", Runner: "eph-small-old", Rec: old, GitHubID: 1, Count: "max_age", Reason: "idle runner older than max_runner_age"},
					status(now, 2, 0, 0, 1),
					{Kind: actTrim, Pool: "small", N: 1, Idle: []idleRunner{{Rec: a, GHID: 2, Since: a.IdleSince}, {Rec: b, GHID: 3, Since: b.IdleSince}}},
					topUp(-1)}
			},
		},
		{
			name: "a busy runner older than max_runner_age is left to finish its job",
			world: func(now time.Time) worldOf {
				r := started("eph-small-old", now)
				r.State, r.CreatedAt = runnerBusy, now.Add(-48*time.Hour)
				return worldOf{recs: []runnerRec{r}, insts: []Instance{running("eph-small-old", now)},
					gh: []GitHubRunner{{ID: 9, Name: "eph-small-old", Online: true, Busy: true}}}
			},
			want: func(now time.Time) []action { return []action{status(now, 0, 1, 0, 0), topUp(1)} },
		},
		{
			name: "an idle runner whose record names no token (adopted, older version, token found gone) is replaced before the token would expire",
			world: func(now time.Time) worldOf {
				legacy, lost := idleRec("eph-small-legacy", now), idleRec("eph-small-lost", now)
				legacy.CreatedAt = now.Add(-36 * time.Minute) // minted then: 34 minutes left
				lost.TokenExpires = now.Add(-time.Second)     // tokenLost
				return worldOf{recs: []runnerRec{legacy, lost}, insts: []Instance{running("eph-small-legacy", now), running("eph-small-lost", now)},
					gh: []GitHubRunner{{ID: 1, Name: "eph-small-legacy", Online: true}, {ID: 2, Name: "eph-small-lost", Online: true}}}
			},
			want: func(now time.Time) []action {
				legacy, lost := idleRec("eph-small-legacy", now), idleRec("eph-small-lost", now)
				legacy.CreatedAt = now.Add(-36 * time.Minute)
				lost.TokenExpires = now.Add(-time.Second)
				return []action{
					{Kind: actDelete, Pool: "small", Runner: "eph-small-legacy", Rec: legacy, GitHubID: 1, Count: "token_unrenewable", Reason: "idle runner whose one-time token cannot be kept valid"},
					{Kind: actDelete, Pool: "small", Runner: "eph-small-lost", Rec: lost, GitHubID: 2, Count: "token_unrenewable", Reason: "idle runner whose one-time token cannot be kept valid"},
					status(now, 0, 0, 0, 2), topUp(1)}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				now := time.Now()
				p := testPlanner(now)
				w := c.world(now).build(now)
				p.alive = w.alive
				got, _ := p.planPool(small, w)
				if diff := cmp.Diff(c.want(now), got, planOpts); diff != "" {
					t.Errorf("plan (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestPlanStuckJobs(t *testing.T) {
	claim := func(now time.Time, st claimState, mod func(*claimRec)) claimRec {
		c := claimRec{JobID: 1, Pool: "small", Repo: "acme/app", State: st, Runner: "eph-small-a", ClaimedAt: now.Add(-time.Hour), Deadline: now.Add(-time.Hour)}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	cases := []struct {
		name  string
		world func(now time.Time) worldOf
		want  func(now time.Time, w *world) []action
	}{
		{
			name: "a claim whose claimant created the runner and died is marked provisioned",
			world: func(now time.Time) worldOf {
				return worldOf{claims: []claimRec{claim(now, claimClaimed, nil)}, insts: []Instance{running("eph-small-a", now)}}
			},
			want: func(now time.Time, w *world) []action {
				return []action{{Kind: actClaimProvisioned, Pool: "small", Runner: "eph-small-a", Claim: w.claims["1"]}}
			},
		},
		{
			name: "a claim whose claimant created the runner and died before starting it is checked on GitHub, with the half-made runner to clean up",
			world: func(now time.Time) worldOf {
				in := running("eph-small-a", now)
				in.State = StateStopped
				return worldOf{claims: []claimRec{claim(now, claimClaimed, nil)}, insts: []Instance{in}, recs: []runnerRec{halfMade("eph-small-a", now)}}
			},
			want: func(now time.Time, w *world) []action {
				return []action{{Kind: actCheckStuck, Pool: "small", Runner: "eph-small-a", Claim: w.claims["1"], Rec: halfMade("eph-small-a", now), Reason: stuckGone}}
			},
		},
		{
			name:  "a claim past its deadline without a runner is checked on GitHub",
			world: func(now time.Time) worldOf { return worldOf{claims: []claimRec{claim(now, claimClaimed, nil)}} },
			want: func(now time.Time, w *world) []action {
				return []action{{Kind: actCheckStuck, Pool: "small", Runner: "eph-small-a", Claim: w.claims["1"], Reason: stuckGone}}
			},
		},
		{
			name: "a claim within its deadline plus two intervals is left to its claimant",
			world: func(now time.Time) worldOf {
				return worldOf{claims: []claimRec{claim(now, claimClaimed, func(c *claimRec) { c.Deadline = now.Add(-30 * time.Second) })}}
			},
			want: func(now time.Time, w *world) []action { return nil },
		},
		{
			name: "a claim within its deadline whose owner's liveness key is gone is checked at once",
			world: func(now time.Time) worldOf {
				return worldOf{alive: []string{"r-live"}, claims: []claimRec{
					claim(now, claimClaimed, func(c *claimRec) { c.Deadline, c.Owner, c.Heartbeats = now.Add(time.Minute), "r-dead", true }),
					claim(now, claimClaimed, func(c *claimRec) {
						c.JobID, c.Deadline, c.Owner, c.Heartbeats = 2, now.Add(time.Minute), "r-live", true
					}),
					claim(now, claimClaimed, func(c *claimRec) { c.JobID, c.Deadline, c.Owner = 3, now.Add(time.Minute), "r-old" }),
				}}
			},
			want: func(now time.Time, w *world) []action {
				return []action{{Kind: actCheckStuck, Pool: "small", Runner: "eph-small-a", Claim: w.claims["1"], Reason: stuckGone}}
			},
		},
		{
			name: "a provisioned claim whose runner is gone is checked on GitHub, with the runner's record to clean up",
			world: func(now time.Time) worldOf {
				return worldOf{claims: []claimRec{claim(now, claimProvisioned, nil)}, recs: []runnerRec{started("eph-small-a", now)}, gh: []GitHubRunner{{ID: 5, Name: "eph-small-a"}}}
			},
			want: func(now time.Time, w *world) []action {
				return []action{{Kind: actCheckStuck, Pool: "small", Runner: "eph-small-a", Claim: w.claims["1"], Rec: started("eph-small-a", now), GitHubID: 5, Reason: stuckGone}}
			},
		},
		{
			name: "a provisioned claim whose runner's instance exists is left alone",
			world: func(now time.Time) worldOf {
				return worldOf{claims: []claimRec{claim(now, claimProvisioned, nil)}, insts: []Instance{running("eph-small-a", now)}}
			},
			want: func(now time.Time, w *world) []action { return nil },
		},
		{
			name: "a provisioned claim younger than bootstrap_timeout is left for other runners to take the job",
			world: func(now time.Time) worldOf {
				return worldOf{claims: []claimRec{claim(now, claimProvisioned, func(c *claimRec) { c.ClaimedAt = now.Add(-time.Minute) })}}
			},
			want: func(now time.Time, w *world) []action { return nil },
		},
		{
			name: "started, completed, waiting and unknown-pool claims are left alone",
			world: func(now time.Time) worldOf {
				return worldOf{claims: []claimRec{
					claim(now, claimClaimed, func(c *claimRec) { c.JobID, c.Started = 1, true }),
					claim(now, claimClaimed, func(c *claimRec) { c.JobID, c.Completed = 2, true }),
					claim(now, claimWaiting, func(c *claimRec) { c.JobID = 3 }),
					claim(now, claimClaimed, func(c *claimRec) { c.JobID, c.Pool = 4, "gone" }),
				}}
			},
			want: func(now time.Time, w *world) []action { return nil },
		},
		{
			name: "a newer ephemera's claim is left alone",
			world: func(now time.Time) worldOf {
				return worldOf{claims: []claimRec{claim(now, claimClaimed, func(c *claimRec) { c.V = schemaVersion + 1 })}}
			},
			want: func(now time.Time, w *world) []action { return nil },
		},
		{
			name: "at most maxJobChecks jobs are read on GitHub per pass",
			world: func(now time.Time) worldOf {
				var cs []claimRec
				for i := range maxJobChecks + 5 {
					cs = append(cs, claim(now, claimClaimed, func(c *claimRec) { c.JobID = int64(100 + i) }))
				}
				return worldOf{claims: cs}
			},
			want: func(now time.Time, w *world) []action {
				var out []action
				for i := range maxJobChecks {
					out = append(out, action{Kind: actCheckStuck, Pool: "small", Runner: "eph-small-a", Claim: w.claims[jobKey(int64(100+i))], Reason: stuckGone})
				}
				return out
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				now := time.Now()
				w := c.world(now).build(now)
				p := testPlanner(now)
				p.alive = w.alive
				if diff := cmp.Diff(c.want(now, w), p.planStuck(w, nil), planOpts); diff != "" {
					t.Errorf("plan (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// A job whose runner another job took (displaced) is checked on GitHub
// only when its pool has more displaced jobs than spare runners, longest
// displaced first, as many as the free slots can serve.
func TestPlanDisplacedJobs(t *testing.T) {
	// displaced: job id waits, its claim names runner, which ran job id+100
	// (started at took).
	displaced := func(id int64, runner string, took time.Time) []claimRec {
		return []claimRec{
			{JobID: id, Pool: "small", Repo: "acme/app", State: claimProvisioned, Runner: runner, ClaimedAt: took},
			{JobID: id + 100, Pool: "small", Repo: "acme/app", State: claimProvisioned, Runner: "eph-small-lost", Started: true, StartedAt: took, RanOn: runner},
		}
	}
	check := func(w *world, id int64, runner string) action {
		return action{Kind: actCheckStuck, Pool: "small", Runner: runner, Claim: w.claims[jobKey(id)], Reason: stuckDisplaced}
	}
	cases := []struct {
		name  string
		world func(now time.Time) worldOf
		spare int
		want  func(w *world) []action
	}{
		{
			name: "a displaced job with no spare runner is checked, its busy runner left out",
			world: func(now time.Time) worldOf {
				return worldOf{claims: displaced(1, "eph-small-a", now), insts: []Instance{running("eph-small-a", now)}}
			},
			want: func(w *world) []action { return []action{check(w, 1, "eph-small-a")} },
		},
		{
			name: "a displaced job with a spare runner coming is left to it",
			world: func(now time.Time) worldOf {
				return worldOf{claims: displaced(1, "eph-small-a", now), insts: []Instance{running("eph-small-a", now)}}
			},
			spare: 1,
			want:  func(w *world) []action { return nil },
		},
		{
			name: "two displaced jobs, one spare runner: the longer displaced is checked",
			world: func(now time.Time) worldOf {
				return worldOf{claims: append(displaced(1, "eph-small-a", now), displaced(2, "eph-small-b", now.Add(-time.Second))...),
					insts: []Instance{running("eph-small-a", now), running("eph-small-b", now)}}
			},
			spare: 1,
			want:  func(w *world) []action { return []action{check(w, 2, "eph-small-b")} },
		},
		{
			name: "no more than the pool's free slots are checked",
			world: func(now time.Time) worldOf {
				return worldOf{claims: append(displaced(1, "eph-small-a", now), displaced(2, "eph-small-b", now.Add(-time.Second))...),
					insts: []Instance{running("eph-small-a", now), running("eph-small-b", now)},
					slots: map[string]string{"small.0": "eph-small-a", "small.1": "eph-small-b", "small.2": "eph-small-c"}}
			},
			want: func(w *world) []action { return []action{check(w, 2, "eph-small-b")} },
		},
		{
			name: "none at all in a full pool",
			world: func(now time.Time) worldOf {
				return worldOf{claims: displaced(1, "eph-small-a", now), insts: []Instance{running("eph-small-a", now)},
					slots: map[string]string{"small.0": "eph-small-a", "small.1": "eph-small-b", "small.2": "eph-small-c", "small.3": "eph-small-d"}}
			},
			want: func(w *world) []action { return nil },
		},
		{
			name: "a displaced job whose runner is gone is left to the stuck-job check",
			world: func(now time.Time) worldOf {
				return worldOf{claims: displaced(1, "eph-small-a", now)}
			},
			want: func(w *world) []action { return nil },
		},
		{
			name: "a displaced job is left to the runner owed to the job that took its runner, still to be made",
			world: func(now time.Time) worldOf {
				cl := displaced(1, "eph-small-a", now)
				cl[1].State, cl[1].Runner = claimWaiting, "" // waiting for a slot
				return worldOf{claims: cl, insts: []Instance{running("eph-small-a", now)}}
			},
			want: func(w *world) []action { return nil },
		},
		{
			name: "... or being made, before its record is written",
			world: func(now time.Time) worldOf {
				cl := displaced(1, "eph-small-a", now)
				cl[1].State = claimClaimed
				return worldOf{claims: cl, insts: []Instance{running("eph-small-a", now)}}
			},
			want: func(w *world) []action { return nil },
		},
		{
			name: "a runner with a record is planPool's to count",
			world: func(now time.Time) worldOf {
				cl := displaced(1, "eph-small-a", now)
				cl[1].State = claimClaimed
				r := started("eph-small-lost", now)
				r.State, r.JobID = runnerProvisioning, 101
				return worldOf{claims: cl, insts: []Instance{running("eph-small-a", now)}, recs: []runnerRec{r}}
			},
			want: func(w *world) []action { return []action{check(w, 1, "eph-small-a")} },
		},
		{
			name: "a displaced job may be the one a busy runner no claim knows of runs",
			world: func(now time.Time) worldOf {
				return worldOf{claims: displaced(1, "eph-small-a", now), insts: []Instance{running("eph-small-a", now), running("eph-small-b", now)},
					gh: []GitHubRunner{{ID: 1, Name: "eph-small-a", Online: true, Busy: true}, {ID: 2, Name: "eph-small-b", Online: true, Busy: true}}}
			},
			want: func(w *world) []action { return nil },
		},
		{
			name: "a job whose runner ran that very job, or that started, is not displaced",
			world: func(now time.Time) worldOf {
				return worldOf{claims: []claimRec{
					{JobID: 1, Pool: "small", State: claimProvisioned, Runner: "eph-small-a", Started: true, RanOn: "eph-small-a"},
					{JobID: 2, Pool: "small", State: claimProvisioned, Runner: "eph-small-b", Started: true, RanOn: "eph-small-c"},
					{JobID: 3, Pool: "small", State: claimProvisioned, Runner: "eph-small-c", Started: true, RanOn: "eph-small-b"},
				}, insts: []Instance{running("eph-small-a", now), running("eph-small-b", now), running("eph-small-c", now)}}
			},
			want: func(w *world) []action { return nil },
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			now := t0
			w := c.world(now).build(now)
			p := testPlanner(now)
			if diff := cmp.Diff(c.want(w), p.planStuck(w, map[string]int{"small": c.spare}), planOpts); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

// A displaced job's runner is busy with the job that took it: it is
// counted busy, not removed as superseded once the job's claim names a
// new runner (GitHub would refuse, at a request a pass).
func TestABusyRunnerWhoseJobWasServedAgainIsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		r := started("eph-small-a", now)
		r.JobID = 1
		w := worldOf{recs: []runnerRec{r}, insts: []Instance{running("eph-small-a", now)}, gh: []GitHubRunner{{ID: 4, Name: "eph-small-a", Online: true, Busy: true}},
			claims: []claimRec{{JobID: 1, Pool: "small", State: claimProvisioned, Runner: "eph-small-next"}}}.build(now)
		p := testPlanner(now)
		got, spare := p.planPool(small, w)
		want := []action{{Kind: actMarkBusy, Pool: "small", Runner: "eph-small-a", At: now.UTC()}, status(now, 0, 1, 0, 0), topUp(1)}
		if diff := cmp.Diff(want, got, planOpts); diff != "" {
			t.Errorf("plan (-want +got):\n%s", diff)
		}
		if spare != 1 {
			t.Errorf("spare runners: %d, want 1 (the top-up's)", spare)
		}
	})
}

// A pool's top-up adds a runner that takes a displaced job: the job is
// not served a second time in the same pass (seen as two job-bound
// runners for one job when all replicas restarted mid-run).
func TestADisplacedJobIsLeftToTheTopUpsRunner(t *testing.T) {
	now := t0
	w := worldOf{
		claims: []claimRec{
			{JobID: 1, Pool: "small", Repo: "acme/app", State: claimProvisioned, Runner: "eph-small-a", ClaimedAt: now},
			{JobID: 2, Pool: "small", Repo: "acme/app", State: claimProvisioned, Runner: "eph-small-lost", Started: true, StartedAt: now, RanOn: "eph-small-a"},
		},
		insts: []Instance{running("eph-small-a", now)},
		gh:    []GitHubRunner{{ID: 4, Name: "eph-small-a", Online: true, Busy: true}},
	}.build(now)
	checked := func(p planner) []int64 {
		var out []int64
		for _, a := range p.plan(w) {
			if a.Kind == actCheckStuck {
				out = append(out, a.Claim.Val.JobID)
			}
		}
		return out
	}
	if got := checked(testPlanner(now)); len(got) != 0 {
		t.Errorf("checked as stuck: %v, want none: the top-up's runner takes job 1", got)
	}
	noBuffer := testPlanner(now)
	noBuffer.pools = []config.Pool{{Name: "small", MinIdle: 0, Max: 4}}
	if got := checked(noBuffer); !slices.Equal(got, []int64{1}) {
		t.Errorf("without a buffer, checked as stuck: %v, want [1]", got)
	}
}

func TestJudgeStuck(t *testing.T) {
	cases := []struct {
		name   string
		status string
		err    error
		want   stuckVerdict
	}{
		{"a job GitHub no longer has is completed", "", fmt.Errorf("read: %w", ErrJobNotFound), stuckCompleted},
		{"a job that cannot be read is looked at again next pass", "", errors.New("timeout"), stuckLeave},
		{"a job in progress is started", "in_progress", nil, stuckStarted},
		{"a completed job is completed", "completed", nil, stuckCompleted},
		{"a job still queued is served again", "queued", nil, stuckServe},
		{"a job in a status ephemera does not know is left alone", "waiting", nil, stuckLeave},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := judgeStuck(c.status, c.err); got != c.want {
				t.Errorf("judgeStuck(%q, %v) = %d, want %d", c.status, c.err, got, c.want)
			}
		})
	}
}

func TestOrphanConfirmed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		p := testPlanner(now)
		cases := []struct {
			name string
			e    entry[runnerRec]
			want bool
		}{
			{"a registration without a record is an orphan", entry[runnerRec]{}, true},
			{"a registration whose record is being provisioned is not", entry[runnerRec]{Found: true, Val: runnerRec{State: runnerProvisioning, Deadline: now.Add(time.Minute)}}, false},
			{"a registration whose provisioning is past its deadline is", entry[runnerRec]{Found: true, Val: runnerRec{State: runnerProvisioning, Deadline: now.Add(-time.Minute)}}, true},
			{"a registration whose instance started after the list was taken is not", entry[runnerRec]{Found: true, Val: runnerRec{State: runnerStarted, StartedAt: now}}, false},
			{"a registration whose record a newer ephemera wrote is left to it", entry[runnerRec]{Found: true, Val: runnerRec{V: schemaVersion + 1, State: runnerStarted}}, false},
			{"a registration whose instance started long before the list is", entry[runnerRec]{Found: true, Val: runnerRec{State: runnerStarted, StartedAt: now.Add(-time.Minute)}}, true},
		}
		for _, c := range cases {
			if got := p.orphanConfirmed(c.e, now); got != c.want {
				t.Errorf("%s: got %v", c.name, got)
			}
		}
	})
}

func TestPlanCoversEveryPoolThenStuckJobsOnlyWhenGitHubWasRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		large := config.Pool{Name: "large", MinIdle: 0, Max: 2}
		p := testPlanner(now)
		p.pools = []config.Pool{small, large}
		stuck := claimRec{JobID: 1, Pool: "small", State: claimClaimed, Runner: "eph-small-a", Deadline: now.Add(-time.Hour)}
		for _, c := range []struct {
			name string
			noGH bool
			want func(w *world) []action
		}{
			{"with GitHub's list: both pools, then the stuck job", false, func(w *world) []action {
				return []action{status(now, 0, 0, 0, 0), topUp(1),
					{Kind: actStatus, Pool: "large", Counts: poolCounts{At: now.UTC()}}, {Kind: actTopUp, Pool: "large"},
					{Kind: actCheckStuck, Pool: "small", Runner: "eph-small-a", Claim: w.claims["1"], Reason: stuckGone}}
			}},
			{"without it: the pools' census and status only", true, func(w *world) []action {
				return []action{status(now, 0, 0, 0, 0), {Kind: actStatus, Pool: "large", Counts: poolCounts{At: now.UTC()}}}
			}},
		} {
			w := worldOf{claims: []claimRec{stuck}, noGH: c.noGH}.build(now)
			if diff := cmp.Diff(c.want(w), p.plan(w), planOpts); diff != "" {
				t.Errorf("%s: plan (-want +got):\n%s", c.name, diff)
			}
		}
	})
}

// A pool with min_idle: auto keeps the buffer the leader sized for the
// pass (planner.minIdle), idle_min until it has sized one: it tops up,
// trims and reports that.
func TestPlanKeepsTheBufferMinIdleAutoSized(t *testing.T) {
	now := t0
	auto := config.Pool{Name: "small", Max: 10, AutoIdle: true, IdleMin: 1, IdleMax: 8}
	idleSince := now.Add(-time.Hour)
	idleRec := func(name string) runnerRec {
		r := started(name, now)
		r.IdleSince, r.OnlineAt = idleSince, idleSince
		return r
	}
	twoIdle := worldOf{
		recs:  []runnerRec{idleRec("eph-small-a"), idleRec("eph-small-b")},
		insts: []Instance{running("eph-small-a", now), running("eph-small-b", now)},
		gh:    []GitHubRunner{{ID: 1, Name: "eph-small-a", Online: true}, {ID: 2, Name: "eph-small-b", Online: true}},
	}
	cases := []struct {
		name      string
		minIdle   map[string]int
		world     worldOf
		wantN     int // top_up
		wantTrim  int // 0: no trim
		wantShown int
	}{
		{"sized to 5: an empty pool is topped up by 5", map[string]int{"small": 5}, worldOf{}, 5, 0, 5},
		{"not sized yet: idle_min", nil, worldOf{}, 1, 0, 1},
		{"sized to 0 with two idle past idle_grace: both trimmed", map[string]int{"small": 0}, twoIdle, -2, 2, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testPlanner(now)
			p.pools, p.minIdle = []config.Pool{auto}, tc.minIdle
			var gotN, gotTrim, shown int
			for _, a := range p.plan(tc.world.build(now)) {
				switch a.Kind {
				case actTopUp:
					gotN = a.N
				case actTrim:
					gotTrim = a.N
				case actStatus:
					shown = a.Counts.MinIdle
				}
			}
			if gotN != tc.wantN || gotTrim != tc.wantTrim || shown != tc.wantShown {
				t.Errorf("top_up %d, trim %d, status min_idle %d; want %d, %d, %d", gotN, gotTrim, shown, tc.wantN, tc.wantTrim, tc.wantShown)
			}
		})
	}
}
