package scaler

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Every transition of a runner's record and of a job's claim, from every
// state it may meet: each either moves the record forward or reports that
// it did not and leaves it as it was.

func TestRunnerTransitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now().UTC()
		earlier := now.Add(-time.Minute)
		rec := func(st runnerState, mod func(*runnerRec)) runnerRec {
			r := runnerRec{Name: "eph-small-a", Pool: "small", State: st}
			if mod != nil {
				mod(&r)
			}
			return r
		}
		cases := []struct {
			name    string
			from    runnerRec
			t       func(*runnerRec) bool
			want    runnerRec
			changed bool
		}{
			{"a provisioning runner whose instance was created is started with its GitHub id",
				rec(runnerProvisioning, nil), func(r *runnerRec) bool { return r.created(7, now) },
				rec(runnerStarted, func(r *runnerRec) { r.RunnerID, r.StartedAt = 7, now }), true},
			{"a runner the reconciler saw busy before its creation was recorded keeps its state and gets its id",
				rec(runnerBusy, nil), func(r *runnerRec) bool { return r.created(7, now) },
				rec(runnerBusy, func(r *runnerRec) { r.RunnerID, r.StartedAt = 7, now }), true},
			{"a started runner with its id is not recorded created twice",
				rec(runnerStarted, func(r *runnerRec) { r.RunnerID = 7 }), func(r *runnerRec) bool { return r.created(8, now) },
				rec(runnerStarted, func(r *runnerRec) { r.RunnerID = 7 }), false},
			{"a provisioning runner found existing after all is adopted as started",
				rec(runnerProvisioning, nil), func(r *runnerRec) bool { return r.adoptStarted(0, now) },
				rec(runnerStarted, func(r *runnerRec) { r.StartedAt = now }), true},
			{"a started runner is not adopted again",
				rec(runnerStarted, nil), func(r *runnerRec) bool { return r.adoptStarted(7, now) },
				rec(runnerStarted, nil), false},
			{"a started runner that takes a job is busy, online since now, no longer idle",
				rec(runnerStarted, func(r *runnerRec) { r.IdleSince = earlier }), func(r *runnerRec) bool { return r.busy(42, now) },
				rec(runnerBusy, func(r *runnerRec) { r.BusyJob, r.OnlineAt = 42, now }), true},
			{"a busy runner's online time is kept when it was known",
				rec(runnerStarted, func(r *runnerRec) { r.OnlineAt = earlier }), func(r *runnerRec) bool { return r.busy(42, now) },
				rec(runnerBusy, func(r *runnerRec) { r.BusyJob, r.OnlineAt = 42, earlier }), true},
			{"a done runner does not go back to busy",
				rec(runnerDone, nil), func(r *runnerRec) bool { return r.busy(42, now) },
				rec(runnerDone, nil), false},
			{"a started runner seen idle is idle and online since then",
				rec(runnerStarted, nil), func(r *runnerRec) bool { return r.idle(now) },
				rec(runnerStarted, func(r *runnerRec) { r.IdleSince, r.OnlineAt = now, now }), true},
			{"an idle runner keeps when it became idle",
				rec(runnerStarted, func(r *runnerRec) { r.IdleSince = earlier }), func(r *runnerRec) bool { return r.idle(now) },
				rec(runnerStarted, func(r *runnerRec) { r.IdleSince = earlier }), false},
			{"a busy runner is never idle again",
				rec(runnerBusy, nil), func(r *runnerRec) bool { return r.idle(now) },
				rec(runnerBusy, nil), false},
			{"a busy runner whose job completed is done",
				rec(runnerBusy, nil), func(r *runnerRec) bool { return r.done(now) },
				rec(runnerDone, func(r *runnerRec) { r.DoneAt = now }), true},
			{"an idle runner that left GitHub is done and no longer idle",
				rec(runnerStarted, func(r *runnerRec) { r.IdleSince = earlier }), func(r *runnerRec) bool { return r.done(now) },
				rec(runnerDone, func(r *runnerRec) { r.DoneAt = now }), true},
			{"a done runner keeps when it was done",
				rec(runnerDone, func(r *runnerRec) { r.DoneAt = earlier }), func(r *runnerRec) bool { return r.done(now) },
				rec(runnerDone, func(r *runnerRec) { r.DoneAt = earlier }), false},
			{"an extended token's new expiry is recorded",
				rec(runnerStarted, func(r *runnerRec) { r.TokenID, r.TokenExpires = "ab", earlier }), func(r *runnerRec) bool { return r.tokenExtended(now) },
				rec(runnerStarted, func(r *runnerRec) { r.TokenID, r.TokenExpires = "ab", now }), true},
			{"an extension older than the recorded expiry changes nothing",
				rec(runnerStarted, func(r *runnerRec) { r.TokenID, r.TokenExpires = "ab", now }), func(r *runnerRec) bool { return r.tokenExtended(earlier) },
				rec(runnerStarted, func(r *runnerRec) { r.TokenID, r.TokenExpires = "ab", now }), false},
			{"a record that names no token records no extension",
				rec(runnerStarted, nil), func(r *runnerRec) bool { return r.tokenExtended(now) },
				rec(runnerStarted, nil), false},
			{"a lost token is forgotten, expired now",
				rec(runnerStarted, func(r *runnerRec) { r.TokenID, r.TokenExpires = "ab", now.Add(time.Hour) }), func(r *runnerRec) bool { return r.tokenLost(now) },
				rec(runnerStarted, func(r *runnerRec) { r.TokenExpires = now }), true},
			{"a token lost already is not lost twice",
				rec(runnerStarted, func(r *runnerRec) { r.TokenExpires = earlier }), func(r *runnerRec) bool { return r.tokenLost(now) },
				rec(runnerStarted, func(r *runnerRec) { r.TokenExpires = earlier }), false},
		}
		for _, c := range cases {
			got := c.from
			changed := c.t(&got)
			if diff := cmp.Diff(c.want, got); diff != "" || changed != c.changed {
				t.Errorf("%s: changed %v (want %v); record (-want +got):\n%s", c.name, changed, c.changed, diff)
			}
		}
	})
}

func TestClaimTransitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now().UTC()
		deadline := now.Add(5 * time.Minute)
		claim := func(st claimState, mod func(*claimRec)) claimRec {
			c := claimRec{JobID: 1, Pool: "small", State: st, ClaimedAt: now.Add(-time.Hour)}
			if mod != nil {
				mod(&c)
			}
			return c
		}
		cases := []struct {
			name    string
			from    claimRec
			t       func(*claimRec) bool
			want    claimRec
			changed bool
		}{
			{"a waiting claim is claimed for a runner, keeping when the job was first seen",
				claim(claimWaiting, nil), func(c *claimRec) bool { c.claim("eph-small-a", "r1", deadline); return true },
				claim(claimClaimed, func(c *claimRec) {
					c.Runner, c.Owner, c.Deadline, c.Attempts, c.Heartbeats = "eph-small-a", "r1", deadline, 1, true
				}), true},
			{"a claim taken over starts afresh now, one attempt more",
				claim(claimClaimed, func(c *claimRec) { c.Runner, c.Owner, c.Attempts = "eph-small-a", "r1", 1 }),
				func(c *claimRec) bool { c.takeOver("eph-small-b", "r2", now, deadline); return true },
				claim(claimClaimed, func(c *claimRec) {
					c.Runner, c.Owner, c.Deadline, c.Attempts, c.ClaimedAt, c.Heartbeats = "eph-small-b", "r2", deadline, 2, now, true
				}), true},
			{"a claim still its owner's for its runner is fenced: the owner may go on",
				claim(claimClaimed, func(c *claimRec) { c.Runner, c.Owner = "eph-small-a", "r1" }),
				func(c *claimRec) bool { return c.fence("eph-small-a", "r1", now) },
				claim(claimClaimed, func(c *claimRec) { c.Runner, c.Owner, c.FencedAt = "eph-small-a", "r1", now }), true},
			{"a claim taken over by another replica fences its old owner out",
				claim(claimClaimed, func(c *claimRec) { c.Runner, c.Owner = "eph-small-b", "r2" }),
				func(c *claimRec) bool { return c.fence("eph-small-a", "r1", now) },
				claim(claimClaimed, func(c *claimRec) { c.Runner, c.Owner = "eph-small-b", "r2" }), false},
			{"a claim the same replica took over again for a new runner fences the old runner out",
				claim(claimClaimed, func(c *claimRec) { c.Runner, c.Owner = "eph-small-b", "r1" }),
				func(c *claimRec) bool { return c.fence("eph-small-a", "r1", now) },
				claim(claimClaimed, func(c *claimRec) { c.Runner, c.Owner = "eph-small-b", "r1" }), false},
			{"a claim given back meanwhile fences its old owner out",
				claim(claimWaiting, nil),
				func(c *claimRec) bool { return c.fence("eph-small-a", "r1", now) },
				claim(claimWaiting, nil), false},
			{"a claim whose provisioning failed goes back to waiting without a runner",
				claim(claimClaimed, func(c *claimRec) { c.Runner, c.Owner, c.Attempts = "eph-small-a", "r1", 1 }),
				func(c *claimRec) bool { c.giveBack(); return true },
				claim(claimWaiting, func(c *claimRec) { c.Attempts = 1 }), true},
			{"an expired claim's deadline is now",
				claim(claimClaimed, func(c *claimRec) { c.Deadline = deadline }), func(c *claimRec) bool { c.expire(now); return true },
				claim(claimClaimed, func(c *claimRec) { c.Deadline = now }), true},
			{"a claim whose provisioning failed is released: given back, its job's started kept",
				claim(claimClaimed, func(c *claimRec) { c.Runner, c.Owner, c.Attempts, c.Started = "eph-small-a", "r1", 1, true }),
				func(c *claimRec) bool { return c.release("eph-small-a", "r1", false, now) },
				claim(claimWaiting, func(c *claimRec) { c.Attempts, c.Started = 1, true }), true},
			{"a claim whose last delivery's provisioning failed is released: expired for the reconciler",
				claim(claimClaimed, func(c *claimRec) { c.Runner, c.Owner, c.Deadline = "eph-small-a", "r1", deadline }),
				func(c *claimRec) bool { return c.release("eph-small-a", "r1", true, now) },
				claim(claimClaimed, func(c *claimRec) { c.Runner, c.Owner, c.Deadline = "eph-small-a", "r1", now }), true},
			{"a claim taken over by another replica is not released by its old owner",
				claim(claimClaimed, func(c *claimRec) { c.Runner, c.Owner = "eph-small-b", "r2" }),
				func(c *claimRec) bool { return c.release("eph-small-a", "r1", false, now) },
				claim(claimClaimed, func(c *claimRec) { c.Runner, c.Owner = "eph-small-b", "r2" }), false},
			{"a claim already provisioned is not released",
				claim(claimProvisioned, func(c *claimRec) { c.Runner, c.Owner = "eph-small-a", "r1" }),
				func(c *claimRec) bool { return c.release("eph-small-a", "r1", false, now) },
				claim(claimProvisioned, func(c *claimRec) { c.Runner, c.Owner = "eph-small-a", "r1" }), false},
			{"a claim whose runner exists is provisioned",
				claim(claimClaimed, func(c *claimRec) { c.Runner = "eph-small-a" }), func(c *claimRec) bool { return c.provisioned("eph-small-a") },
				claim(claimProvisioned, func(c *claimRec) { c.Runner = "eph-small-a" }), true},
			{"a claim taken over by another runner is not provisioned by the old one",
				claim(claimClaimed, func(c *claimRec) { c.Runner = "eph-small-b" }), func(c *claimRec) bool { return c.provisioned("eph-small-a") },
				claim(claimClaimed, func(c *claimRec) { c.Runner = "eph-small-b" }), false},
			{"a provisioned claim stays provisioned",
				claim(claimProvisioned, func(c *claimRec) { c.Runner = "eph-small-a" }), func(c *claimRec) bool { return c.provisioned("eph-small-a") },
				claim(claimProvisioned, func(c *claimRec) { c.Runner = "eph-small-a" }), false},
			{"a job a runner took is started, with when and on which runner",
				claim(claimProvisioned, nil), func(c *claimRec) bool { return c.started(now, "eph-small-x") },
				claim(claimProvisioned, func(c *claimRec) { c.Started, c.StartedAt, c.RanOn = true, now, "eph-small-x" }), true},
			{"a started job is not started twice",
				claim(claimProvisioned, func(c *claimRec) { c.Started = true }), func(c *claimRec) bool { return c.started(now, "eph-small-y") },
				claim(claimProvisioned, func(c *claimRec) { c.Started = true }), false},
			{"a waiting job cancelled before any runner took it needs no runner",
				claim(claimWaiting, nil), func(c *claimRec) bool { return c.completed(true, now) },
				claim(claimWaiting, func(c *claimRec) { c.Completed, c.CompletedAt, c.NoRunner = true, now, true }), true},
			{"a job cancelled while its runner is being made still gets it (no runner is not recorded)",
				claim(claimClaimed, nil), func(c *claimRec) bool { return c.completed(true, now) },
				claim(claimClaimed, func(c *claimRec) { c.Completed, c.CompletedAt = true, now }), true},
			{"a job that started and completed is completed",
				claim(claimProvisioned, func(c *claimRec) { c.Started = true }), func(c *claimRec) bool { return c.completed(false, now) },
				claim(claimProvisioned, func(c *claimRec) { c.Started, c.Completed, c.CompletedAt = true, true, now }), true},
			{"a completed job is not completed twice",
				claim(claimProvisioned, func(c *claimRec) { c.Completed = true }), func(c *claimRec) bool { return c.completed(true, now) },
				claim(claimProvisioned, func(c *claimRec) { c.Completed = true }), false},
		}
		for _, c := range cases {
			got := c.from
			changed := c.t(&got)
			if diff := cmp.Diff(c.want, got); diff != "" || changed != c.changed {
				t.Errorf("%s: changed %v (want %v); claim (-want +got):\n%s", c.name, changed, c.changed, diff)
			}
		}
	})
}
