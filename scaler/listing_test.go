package scaler

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-ci/ephemera/internal/config"
)

// Whether a pass must read GitHub's runner list, decided from KV alone:
// each case is a world that needs it (and why), or one that does not.
func TestListDueWhenOnlyTheRunnerListCanSettleADecision(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		p := testPlanner(now) // pool small: min_idle 1
		booting := func(name string) runnerRec { return started(name, now) }
		busy := func(name string) runnerRec {
			r := started(name, now)
			r.State, r.BusyJob = runnerBusy, 7
			return r
		}
		idleFor := func(name string, d time.Duration) runnerRec {
			r := idleRec(name, now)
			r.IdleSince = now.Add(-d)
			return r
		}
		for _, c := range []struct {
			name string
			w    worldOf
			want string
		}{
			{"one runner booting, the buffer's: nothing due", worldOf{recs: []runnerRec{booting("eph-small-a")}}, ""},
			{"one idle runner past idle_grace, buffer of one: nothing due", worldOf{recs: []runnerRec{idleFor("eph-small-a", time.Hour)}}, ""},
			{"a busy runner and one booting: nothing due", worldOf{recs: []runnerRec{busy("eph-small-a"), booting("eph-small-b")}}, ""},
			{"a runner in provisioning counts toward the buffer", worldOf{recs: []runnerRec{{Name: "eph-small-a", Pool: "small", State: runnerProvisioning, CreatedAt: now.Add(-time.Hour)}}}, ""},
			{"no runner at all, buffer of one", worldOf{}, "a buffer to top up"},
			{"only busy runners, buffer of one", worldOf{recs: []runnerRec{busy("eph-small-a")}}, "a buffer to top up"},
			{"two idle runners past idle_grace, buffer of one", worldOf{recs: []runnerRec{idleFor("eph-small-a", time.Hour), idleFor("eph-small-b", 3*time.Minute)}}, "idle runners to trim"},
			{"two idle, one of them within idle_grace", worldOf{recs: []runnerRec{idleFor("eph-small-a", time.Hour), idleFor("eph-small-b", time.Minute)}}, ""},
			{"a runner never seen online past bootstrap_timeout", worldOf{recs: []runnerRec{func() runnerRec {
				r := booting("eph-small-a")
				r.CreatedAt = now.Add(-11 * time.Minute)
				return r
			}()}}, "a runner not seen online within bootstrap_timeout"},
			{"an idle runner older than max_runner_age", worldOf{recs: []runnerRec{func() runnerRec {
				r := idleFor("eph-small-a", time.Minute)
				r.CreatedAt = now.Add(-25 * time.Hour)
				return r
			}()}}, "an idle runner to retire"},
			{"an idle runner whose token has less than half its TTL left", worldOf{recs: []runnerRec{func() runnerRec {
				r := idleFor("eph-small-a", time.Minute)
				r.TokenID, r.TokenExpires = "tok", now.Add(10*time.Minute)
				return r
			}()}}, "an idle runner's token to extend"},
			{"a displaced job with no spare runner waits for a pass that lists anyway", worldOf{recs: []runnerRec{busy("eph-small-a"), jobBound(booting("eph-small-c"), 3)},
				claims: displacedBy(now, 1, 101, "eph-small-a", 3, "eph-small-c")}, ""},
			{"a claim past its deadline", worldOf{recs: []runnerRec{booting("eph-small-a")},
				claims: []claimRec{{JobID: 1, Pool: "small", State: claimClaimed, Runner: "eph-small-x", Deadline: now.Add(-time.Hour)}}}, "a job that may be stuck"},
			{"a claim whose claimant's liveness key is gone", worldOf{recs: []runnerRec{booting("eph-small-a")}, alive: []string{"r-live"},
				claims: []claimRec{{JobID: 1, Pool: "small", State: claimClaimed, Runner: "eph-small-x", Owner: "r-dead", Heartbeats: true, Deadline: now.Add(time.Minute)}}}, "a job that may be stuck"},
			{"a claim within its deadline", worldOf{recs: []runnerRec{booting("eph-small-a")},
				claims: []claimRec{{JobID: 1, Pool: "small", State: claimClaimed, Runner: "eph-small-x", Deadline: now.Add(time.Minute)}}}, ""},
			{"a provisioned claim waiting longer than bootstrap_timeout", worldOf{recs: []runnerRec{booting("eph-small-a")},
				claims: []claimRec{{JobID: 1, Pool: "small", State: claimProvisioned, Runner: "eph-small-x", ClaimedAt: now.Add(-11 * time.Minute)}}}, "a job that may be stuck"},
			{"a provisioned claim whose job started", worldOf{recs: []runnerRec{booting("eph-small-a")},
				claims: []claimRec{{JobID: 1, Pool: "small", State: claimProvisioned, Runner: "eph-small-x", ClaimedAt: now.Add(-11 * time.Minute), Started: true}}}, ""},
		} {
			w := c.w.build(now)
			p.alive = w.alive
			if got := p.listDue(w); got != c.want {
				t.Errorf("%s: listDue = %q, want %q", c.name, got, c.want)
			}
		}
	})
}

// An auto-sized pool is due for a top-up by the buffer the leader sized,
// not by idle_min.
func TestListDueUsesTheSizedBuffer(t *testing.T) {
	now := t0
	p := testPlanner(now)
	p.pools = []config.Pool{{Name: "small", Max: 10, AutoIdle: true, IdleMin: 0, IdleMax: 8}}
	w := worldOf{recs: []runnerRec{started("eph-small-a", now)}}.build(now)
	if got := p.listDue(w); got != "" {
		t.Errorf("idle_min 0, nothing sized: listDue = %q, want nothing", got)
	}
	p.minIdle = map[string]int{"small": 3}
	if got := p.listDue(w); got != "a buffer to top up" {
		t.Errorf("sized to 3 with one runner: listDue = %q, want a top-up", got)
	}
}

// A pass that did not read the runner list leaves the census alone (no
// status: it would count every idle runner as booting) and takes no
// GitHub-side decision; it still releases slots and deletes stopped
// instances, without a registration to remove.
func TestAPassWithoutTheRunnerListLeavesTheCensusAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		p := testPlanner(now)
		stopped := running("eph-small-b", now.Add(-time.Hour))
		stopped.State = StateStopped
		wo := worldOf{
			recs:  []runnerRec{idleRec("eph-small-a", now), started("eph-small-b", now), started("eph-small-gone", now)},
			slots: map[string]string{"small.0": "eph-small-a", "small.1": "eph-small-b", "small.2": "eph-small-gone"},
			insts: []Instance{running("eph-small-a", now.Add(-time.Hour)), stopped},
			noGH:  true,
		}
		w := wo.build(now)
		w.ghSkipped = true
		got := p.plan(w)
		want := []action{
			{Kind: actDelete, Pool: "small", Runner: "eph-small-b", Rec: started("eph-small-b", now), Count: "delete_finished", Reason: "instance stopped"},
			{Kind: actReleaseSlot, Pool: "small", Runner: "eph-small-gone", Slot: "small.2", SlotRev: 7},
		}
		if diff := cmp.Diff(want, got, planOpts); diff != "" {
			t.Errorf("plan without the runner list (-want +got):\n%s", diff)
		}
	})
}

// The runner list is read every listEvery-th pass from the first, after
// a failed read, and whenever a decision is due; a new leader starts
// over (listPass 0).
func TestTheRunnerListIsReadEveryOtherPassUnlessDue(t *testing.T) {
	now := t0
	p := testPlanner(now)
	quiet := worldOf{recs: []runnerRec{started("eph-small-a", now)}}.build(now)
	s := &Scaler{}
	var got []bool
	for range 5 {
		list, _ := s.listNow(p, quiet)
		got = append(got, list)
	}
	if want := []bool{true, false, true, false, true}; !cmp.Equal(got, want) {
		t.Errorf("quiet passes read the list %v, want %v", got, want)
	}
	s.listFailed = true
	if list, why := s.listNow(p, quiet); !list || why != "the last read failed" {
		t.Errorf("after a failed read: list %v (%q), want it read", list, why)
	}
	s.listFailed, s.listPass = false, 1
	if list, why := s.listNow(p, worldOf{}.build(now)); !list || why != "a buffer to top up" {
		t.Errorf("an empty pool on an odd pass: list %v (%q), want it read for the top-up", list, why)
	}
}

func jobBound(r runnerRec, job int64) runnerRec {
	r.JobID = job
	return r
}

// displacedBy is job's claim (made at at), waiting on runner, which job
// took took; then waiting claims for more (job, runner) pairs.
func displacedBy(at time.Time, job, took int64, runner string, more ...any) []claimRec {
	cs := []claimRec{
		{JobID: job, Pool: "small", State: claimProvisioned, Runner: runner, ClaimedAt: at},
		{JobID: took, Pool: "small", State: claimProvisioned, Runner: "eph-small-lost", Started: true, RanOn: runner},
	}
	for i := 0; i+1 < len(more); i += 2 {
		cs = append(cs, claimRec{JobID: int64(more[i].(int)), Pool: "small", State: claimProvisioned, Runner: more[i+1].(string), ClaimedAt: at})
	}
	return cs
}
