package scaler_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/scaler"
)

// The leader applies min_idle: auto: a pool no job came to keeps
// idle_min; a burst of jobs raises its buffer (ephemera_pool_min_idle,
// `ephemera status`) above idle_min and the reconciler tops it up to
// that; once the jobs are older than the lookback the buffer falls back
// to idle_min and the surplus is trimmed. Runners boot in 300ms here, and
// the target is no wait at all, so a burst of 12 jobs at once asks for
// idle_max.
func TestTheLeaderSizesAnAutoPoolFromArrivalsAndShrinksItWhenTheyStop(t *testing.T) {
	p := pool("auto", 0, 20)
	p.AutoIdle, p.IdleMin, p.IdleMax = true, 0, 8
	p.TargetWait = config.TargetWait{Quantile: 0.95}
	e := newEnv(t, p)
	reg := prometheus.NewRegistry()
	reg.MustRegister(scaler.NewStatusCollector(e.bus.JS, e.pools, testLog(t)))
	e.prov.OnCreated = func(spec scaler.InstanceSpec) {
		time.AfterFunc(300*time.Millisecond, func() { _ = e.fake.RunnerOnline(spec.Name) })
	}
	clock := &testClock{}
	r := e.start(e.config(func(c *scaler.Config) { c.Now = clock.Now }))

	status := func() scaler.PoolStatus {
		st, err := scaler.ReadStatus(context.Background(), e.bus.JS, e.pools)
		if err != nil {
			t.Fatal(err)
		}
		return st[0]
	}
	gauge := func() float64 { return metricSum(t, reg, "ephemera_pool_min_idle", map[string]string{"pool": "auto"}) }
	waitfor.True(t, 10*time.Second, "a pass with no job: the buffer at idle_min", func() bool {
		st := status()
		return !st.UpdatedAt.IsZero() && st.MinIdle == 0 && st.Instances == 0
	})

	ids := e.queue(12, p, 50*time.Millisecond)
	waitfor.True(t, 20*time.Second, "the burst's jobs completed", e.allCompleted(ids))
	waitfor.True(t, 10*time.Second, "the buffer sized to idle_max, shown by the gauge, and topped up", func() bool {
		st := status()
		return st.MinIdle == 8 && gauge() == 8 && st.Idle == 8
	})
	// The burst's jobs waited for runners booting since after they were
	// queued: their times are exact.
	if n := metricSum(t, r.reg, "ephemera_runner_online_seconds", map[string]string{"pool": "auto", "via": "waiting_job"}); n == 0 {
		t.Error("no exact queued → online time observed")
	}

	clock.advance(scaler.IdleLookback + time.Minute)
	waitfor.True(t, 10*time.Second, "the buffer back at idle_min and the surplus trimmed", func() bool {
		st := status()
		return st.MinIdle == 0 && gauge() == 0 && st.Idle == 0 && len(e.prov.Instances()) == 0
	})
}

// A pass can see a runner busy in GitHub's list before its job's
// in_progress event is handled (the event is late, or behind others).
// The leader does not sample such a runner from the list while the
// event may still come: handled, the event gives the exact queued →
// online time, which min_idle: auto sizes from.
func TestARunnerListedBusyBeforeItsInProgressEventGetsItsExactOnlineTime(t *testing.T) {
	p := pool("small", 0, 2)
	e := newEnv(t, p)
	e.fake.SetKnobs(githubfake.Knobs{HoldInProgress: true})
	r := e.start(e.config())
	online := func(via string) float64 {
		return metricSum(t, r.reg, "ephemera_runner_online_seconds", map[string]string{"pool": "small", "via": via})
	}
	passed := func() time.Time {
		st, err := scaler.ReadStatus(context.Background(), e.bus.JS, e.pools)
		if err != nil {
			t.Fatal(err)
		}
		return st[0].UpdatedAt
	}

	id := e.fake.QueueJob(githubfake.JobSpec{Labels: []string{"self-hosted", p.Name}})
	waitfor.True(t, 10*time.Second, "the runner marked busy from GitHub's runner list", func() bool {
		runners, _, err := scaler.ReadRunnersAndJobs(context.Background(), e.bus.JS)
		return err == nil && len(runners) == 1 && runners[0].State == "busy"
	})
	// Two more passes of the leader: without the event, it has not
	// sampled the runner.
	for range 2 {
		since := passed()
		waitfor.True(t, 5*time.Second, "another reconcile pass", func() bool { return passed().After(since) })
	}
	if n := online("listing"); n != 0 {
		t.Fatalf("%v samples from the runner list while the in_progress event may still come", n)
	}

	e.fake.SetKnobs(githubfake.Knobs{})
	waitfor.True(t, 10*time.Second, "the exact queued → online time, from the in_progress event", func() bool {
		return online("waiting_job") == 1
	})
	if err := e.fake.CompleteJob(id, "success"); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 10*time.Second, "nothing left", e.clean)
	if n := online("listing") + online("later_job"); n != 0 {
		t.Errorf("%v more samples of the one runner", n)
	}
}

// An in_progress event that never comes (lost, and not redelivered)
// leaves the runner's time to the list: sampled once ListedBusyGrace has
// passed.
func TestARunnerListedBusyWhoseInProgressEventNeverComesIsSampledFromTheList(t *testing.T) {
	p := pool("small", 0, 2)
	e := newEnv(t, p)
	e.fake.SetKnobs(githubfake.Knobs{HoldInProgress: true})
	clock := &testClock{}
	r := e.start(e.config(func(c *scaler.Config) { c.Now = clock.Now }))
	listed := func() float64 {
		return metricSum(t, r.reg, "ephemera_runner_online_seconds", map[string]string{"pool": "small", "via": "listing"})
	}

	e.fake.QueueJob(githubfake.JobSpec{Labels: []string{"self-hosted", p.Name}})
	waitfor.True(t, 10*time.Second, "the runner marked busy from GitHub's runner list", func() bool {
		runners, _, err := scaler.ReadRunnersAndJobs(context.Background(), e.bus.JS)
		return err == nil && len(runners) == 1 && runners[0].State == "busy"
	})
	if n := listed(); n != 0 {
		t.Fatalf("%v samples from the list before the grace passed", n)
	}
	clock.advance(scaler.ListedBusyGrace)
	waitfor.True(t, 10*time.Second, "one sample from the runner list", func() bool { return listed() == 1 })
}
