package scaler_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/jobs"
	"github.com/ephemera-ci/ephemera/scaler"
)

func TestMinIdleIsKeptAndRestoredAfterJobsTakeIdleRunners(t *testing.T) {
	p := pool("small", 2, 6)
	e := newEnv(t, p)
	e.start(e.config())
	waitFor(t, 10*time.Second, "two idle runners", func() bool { return e.idle() == 2 })
	ids := e.queue(5, p, 100*time.Millisecond)
	waitFor(t, 15*time.Second, "every job to complete", e.allCompleted(ids))
	e.succeeded(t, ids)
	waitFor(t, 10*time.Second, "two idle runners and nothing more", func() bool {
		return e.idle() == 2 && len(e.prov.Instances()) == 2 && len(e.fake.Runners()) == 2
	})
	if peak := e.prov.Peak("small"); peak > 6 {
		t.Errorf("pool peak %d, want ≤ 6", peak)
	}
}

func TestRunnersThatNeverComeOnlineAreDeletedAfterBootstrapTimeout(t *testing.T) {
	p := pool("small", 1, 2)
	e := newEnv(t, p)
	e.prov.OnCreated = nil // no runner ever comes online
	r := e.start(e.config(func(c *scaler.Config) { c.BootstrapTimeout = 500 * time.Millisecond }))
	waitFor(t, 10*time.Second, "a first instance", func() bool { return len(e.prov.Instances()) == 1 })
	first := e.prov.Instances()[0].Name
	waitFor(t, 10*time.Second, "it to be deleted, registration first, and counted", func() bool {
		_, onGH := e.fake.RunnerByName(first)
		for _, in := range e.prov.Instances() {
			if in.Name == first {
				return false
			}
		}
		return !onGH && metricSum(t, r.reg, "ephemera_reconcile_actions_total", map[string]string{"action": "bootstrap_timeout"}) >= 1
	})
	if peak := e.prov.Peak("small"); peak > 2 {
		t.Errorf("pool peak %d, want ≤ 2", peak)
	}
}

func TestARegistrationWithoutAnInstanceIsRemovedAndOthersLeftAlone(t *testing.T) {
	p := pool("small", 0, 2)
	e := newEnv(t, p)
	for _, name := range []string{"eph-small-orphan00", "someone-elses-runner"} {
		if _, err := e.gh.RegisterRunner(t.Context(), scaler.Registration{Name: name, Labels: p.Labels}); err != nil {
			t.Fatal(err)
		}
	}
	r := e.start(e.config())
	waitFor(t, 10*time.Second, "the orphan registration to go", func() bool {
		_, ok := e.fake.RunnerByName("eph-small-orphan00")
		return !ok && metricSum(t, r.reg, "ephemera_reconcile_actions_total", map[string]string{"action": "orphan_registration"}) >= 1
	})
	if _, ok := e.fake.RunnerByName("someone-elses-runner"); !ok {
		t.Error("a runner that is not ephemera's was removed")
	}
	if n := metricSum(t, r.reg, "ephemera_reconcile_actions_total", map[string]string{"action": "orphan_registration"}); n != 1 {
		t.Errorf("orphan_registration actions: %v, want 1", n)
	}
}

func TestAStoppedInstanceIsDeletedAndFreesItsSlot(t *testing.T) {
	p := pool("small", 1, 1)
	e := newEnv(t, p)
	e.start(e.config())
	waitFor(t, 10*time.Second, "an idle runner", func() bool { return e.idle() == 1 })
	first := e.prov.Instances()[0].Name
	e.prov.SetState(first, scaler.StateStopped)
	waitFor(t, 10*time.Second, "a new idle runner in the one slot", func() bool {
		ins := e.prov.Instances()
		return len(ins) == 1 && ins[0].Name != first && e.idle() == 1
	})
	if _, ok := e.fake.RunnerByName(first); ok {
		t.Error("the stopped instance's registration is still on GitHub")
	}
}

func TestAnInstanceUnknownToTheStateIsAdoptedAndCountsAgainstMax(t *testing.T) {
	p := pool("small", 2, 2)
	e := newEnv(t, p)
	e.prov.Add(scaler.Instance{Name: "eph-small-stray000", Pool: "small", State: scaler.StateRunning, CreatedAt: time.Now()})
	r := e.start(e.config(func(c *scaler.Config) { c.BootstrapTimeout = time.Second }))
	waitFor(t, 10*time.Second, "the stray to be adopted", func() bool {
		return metricSum(t, r.reg, "ephemera_reconcile_actions_total", map[string]string{"action": "adopt"}) == 1
	})
	waitFor(t, 10*time.Second, "two idle runners", func() bool { return e.idle() == 2 })
	if peak := e.prov.Peak("small"); peak > 2 {
		t.Errorf("pool peak %d, want ≤ 2", peak)
	}
}

func TestOnlyOneReplicaReconcilesAtATime(t *testing.T) {
	p := pool("small", 0, 2)
	e := newEnv(t, p)
	var reps []*replica
	for range 3 {
		reps = append(reps, e.start(e.config()))
	}
	leaders := func() float64 {
		n := 0.0
		for _, r := range reps {
			n += metricSum(t, r.reg, "ephemera_scaler_leader", nil)
		}
		return n
	}
	waitFor(t, 5*time.Second, "a leader", func() bool { return leaders() == 1 })
	for range 10 {
		if n := leaders(); n > 1 {
			t.Fatalf("%v leaders at once", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The leader stops: another takes over.
	for _, r := range reps {
		if metricSum(t, r.reg, "ephemera_scaler_leader", nil) == 1 {
			r.stop()
			reps = append(reps[:0:0], without(reps, r)...)
			break
		}
	}
	waitFor(t, 5*time.Second, "a new leader", func() bool { return leaders() == 1 })
}

func without(rs []*replica, x *replica) []*replica {
	var out []*replica
	for _, r := range rs {
		if r != x {
			out = append(out, r)
		}
	}
	return out
}

func TestACancelledJobWhoseQueuedDeliveryComesLastGetsNoRunner(t *testing.T) {
	p := pool("small", 0, 3)
	e := newEnv(t, p)
	e.fake.SetKnobs(githubfake.Knobs{QueuedDelay: 400 * time.Millisecond})
	r := e.start(e.config())
	id := e.queue(1, p, 0)[0]
	if err := e.fake.CancelJob(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the late queued delivery to be handled", func() bool {
		return metricSum(t, r.reg, "ephemera_jobs_total", map[string]string{"action": "cancelled"}) >= 2
	})
	if n := e.prov.Creates(); n != 0 {
		t.Errorf("creates: %d, want 0 for a job cancelled before it started", n)
	}
}

func TestMessagesThatCanNeverBeProcessedAreTerminatedWithAReason(t *testing.T) {
	p := pool("small", 0, 3)
	e := newEnv(t, p)
	r := e.start(e.config())
	unknown, _ := json.Marshal(jobs.Event{V: 1, JobID: 7, Action: jobs.Queued, Pool: "nope"})
	future, _ := json.Marshal(jobs.Event{V: 99, JobID: 8, Action: jobs.Queued, Pool: "small"})
	for _, m := range []struct {
		subj string
		data []byte
	}{
		{jobs.Subject("small", jobs.Queued), []byte("{not json")},
		{jobs.Subject("nope", jobs.Queued), unknown},
		{jobs.Subject("small", jobs.Queued), future},
	} {
		if _, err := e.bus.JS.Publish(t.Context(), m.subj, m.data); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]float64{"malformed": 1, "unknown_pool": 1, "unknown_version": 1}
	waitFor(t, 5*time.Second, "three terminated messages", func() bool {
		return metricSum(t, r.reg, "ephemera_scaler_messages_terminated_total", nil) == 3
	})
	got := map[string]float64{}
	for reason := range want {
		got[reason] = metricSum(t, r.reg, "ephemera_scaler_messages_terminated_total", map[string]string{"reason": reason})
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("terminated by reason (-got +want):\n%s", d)
	}
}

func TestReadStatusReportsEachPoolFromKVAlone(t *testing.T) {
	small, big := pool("small", 0, 1), pool("big", 1, 4)
	e := newEnv(t, small, big)
	e.prov.OnCreated = func(spec scaler.InstanceSpec) {
		if spec.Pool == "big" {
			_ = e.fake.RunnerOnline(spec.Name) // small's runners never come online: its jobs wait
		}
	}
	e.start(e.config())
	e.queue(2, small, time.Second)
	want := []scaler.PoolStatus{
		{Pool: "small", MinIdle: 0, Max: 1, Provisioning: 1, Instances: 1, WaitingJobs: 2},
		{Pool: "big", MinIdle: 1, Max: 4, Idle: 1, Instances: 1},
	}
	var got []scaler.PoolStatus
	var diff string
	ignore := cmpopts.IgnoreFields(scaler.PoolStatus{}, "UpdatedAt", "OldestWaitingSeconds")
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		got, err = scaler.ReadStatus(context.Background(), e.bus.JS, e.pools)
		if err != nil {
			t.Fatal(err)
		}
		if diff = cmp.Diff(got, want, ignore); diff == "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if diff != "" {
		t.Fatalf("status (-got +want):\n%s", diff)
	}
	if got[0].OldestWaitingSeconds <= 0 || got[0].UpdatedAt.IsZero() {
		t.Errorf("small: oldest waiting %vs, updated %v; want both set", got[0].OldestWaitingSeconds, got[0].UpdatedAt)
	}
}

func TestReadStatusBeforeAnyScalerRanIsEmpty(t *testing.T) {
	p := pool("small", 1, 2)
	e := newEnv(t, p)
	got, err := scaler.ReadStatus(context.Background(), e.bus.JS, e.pools)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(got, []scaler.PoolStatus{{Pool: "small", MinIdle: 1, Max: 2}}); d != "" {
		t.Errorf("status (-got +want):\n%s", d)
	}
}

func TestEachReconcilePassIsTimed(t *testing.T) {
	e := newEnv(t, pool("small", 0, 2))
	r := e.start(e.config(func(c *scaler.Config) { c.Interval = 100 * time.Millisecond }))
	waitFor(t, 10*time.Second, "two reconcile passes in ephemera_reconcile_seconds", func() bool {
		return metricSum(t, r.reg, "ephemera_reconcile_seconds", nil) >= 2
	})
}
