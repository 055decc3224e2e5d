package scaler_test

import (
	"regexp"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
)

var tokenRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
var nameRE = regexp.MustCompile(`^eph-small-[a-z0-9]{8}$`)

func TestAQueuedJobGetsOneRunnerWithNameTokenAndJITConfig(t *testing.T) {
	p := pool("small", 0, 5)
	e := newEnv(t, p)
	e.start(e.config())
	ids := e.queue(1, p, 50*time.Millisecond)
	waitFor(t, 10*time.Second, "the job to complete", e.allCompleted(ids))

	specs := e.prov.Specs()
	if len(specs) != 1 {
		t.Fatalf("creates: got %d, want 1", len(specs))
	}
	s := specs[0]
	if !nameRE.MatchString(s.Name) || s.Pool != "small" || s.JobID != ids[0] {
		t.Errorf("spec: name %q pool %q job %d; want eph-small-<8>, small, %d", s.Name, s.Pool, s.JobID, ids[0])
	}
	if !tokenRE.MatchString(s.PolicyToken) || s.PolicyToken != e.tokens.Token(s.Name) {
		t.Errorf("policy token is not the minted 64-hex token")
	}
	jit, err := githubfake.DecodeJITConfig(s.JITConfig)
	if err != nil || jit.Name != s.Name {
		t.Errorf("jit config: %+v, %v; want one for %s", jit, err, s.Name)
	}
	e.waitClean(t, 5*time.Second)
}

func TestDuplicateQueuedDeliveriesYieldOneRunnerPerJob(t *testing.T) {
	p := pool("small", 0, 20)
	e := newEnv(t, p)
	e.fake.SetKnobs(githubfake.Knobs{DuplicateSameID: true, DuplicateNewID: true})
	e.start(e.config())
	e.start(e.config())
	ids := e.queue(8, p, 50*time.Millisecond)
	waitFor(t, 15*time.Second, "every job to complete", e.allCompleted(ids))
	e.succeeded(t, ids)
	// Let any late duplicate be handled before counting.
	time.Sleep(500 * time.Millisecond)
	creates := e.jobBoundCreates()
	for _, id := range ids {
		if creates[id] != 1 {
			t.Errorf("job %d: %d job-bound runners, want 1", id, creates[id])
		}
	}
	if len(creates) != len(ids) {
		t.Errorf("job-bound runners for %d jobs, want %d", len(creates), len(ids))
	}
	e.waitClean(t, 5*time.Second)
}

func TestThreeReplicasABurstOf300JobsNeverExceedsMax40(t *testing.T) {
	if testing.Short() {
		t.Skip("burst test")
	}
	p := pool("small", 0, 40)
	e := newEnv(t, p)
	var reps []*replica
	for range 3 {
		reps = append(reps, e.start(e.config()))
	}
	defer func() {
		for _, a := range []string{"provisioned", "duplicate", "capacity_wait", "failed", "cancelled", "in_progress", "completed"} {
			n := 0.0
			for _, r := range reps {
				n += metricSum(t, r.reg, "ephemera_jobs_total", map[string]string{"action": a})
			}
			t.Logf("jobs_total{action=%s} = %v", a, n)
		}
		for _, a := range []string{"reprovision", "trim", "release_slot", "bootstrap_timeout", "orphan_registration", "delete_finished", "redeliver", "adopt"} {
			n := 0.0
			for _, r := range reps {
				n += metricSum(t, r.reg, "ephemera_reconcile_actions_total", map[string]string{"action": a})
			}
			t.Logf("reconcile{action=%s} = %v", a, n)
		}
		t.Logf("creates %d, deliveries %d", e.prov.Creates(), len(e.fake.Deliveries()))
	}()
	ids := e.queue(300, p, 30*time.Millisecond)
	waitFor(t, 90*time.Second, "all 300 jobs to complete", e.allCompleted(ids))
	e.succeeded(t, ids)
	if peak := e.prov.Peak("small"); peak > 40 {
		t.Errorf("peak instances + creates in pool: %d, want ≤ 40", peak)
	}
	// Jobs often start on another job's runner before their own queued
	// delivery got a slot; that delivery still yields the job's runner.
	if waitfor.Within(30*time.Second, func() bool { return len(e.jobBoundCreates()) == len(ids) }) != nil {
		bound := e.jobBoundCreates()
		for _, id := range ids {
			if bound[id] == 0 {
				t.Logf("job %d has no runner of its own; its claim: %s", id, e.rawClaim(id))
			}
		}
		t.Fatalf("%d of %d jobs got their own runner in 30s", len(bound), len(ids))
	}
	for _, id := range ids {
		if e.prov.JobPeak(id) > 1 {
			t.Errorf("job %d had %d job-bound runners at once", id, e.prov.JobPeak(id))
		}
	}
	e.waitClean(t, 10*time.Second)
}
