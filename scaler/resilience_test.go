package scaler_test

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/scaler"
	"github.com/ephemera-ci/ephemera/scaler/scalertest"
)

// hangingProv puts the instance in place (its runner never comes online)
// and then hangs until its context ends: a provisioning caught half way.
type hangingProv struct {
	*scalertest.Provisioner
	entered chan string
}

func (h *hangingProv) Create(ctx context.Context, spec scaler.InstanceSpec) error {
	h.Add(scaler.Instance{Name: spec.Name, Pool: spec.Pool, JobID: spec.JobID, State: scaler.StateRunning, CreatedAt: time.Now()})
	select {
	case h.entered <- spec.Name:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

func TestAReplicaCancelledMidProvisionLeavesTheJobToAnotherReplicaAndNothingLeaks(t *testing.T) {
	p := pool("small", 0, 5)
	e := newEnv(t, p)
	h := &hangingProv{Provisioner: e.prov, entered: make(chan string, 1)}
	a := e.start(e.config(func(c *scaler.Config) { c.Provisioner = h; c.ShutdownGrace = 200 * time.Millisecond }))
	ids := e.queue(1, p, 50*time.Millisecond)
	var half string
	select {
	case half = <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("replica a never started provisioning")
	}
	e.start(e.config())
	a.stop()

	waitFor(t, 15*time.Second, "the job to complete", e.allCompleted(ids))
	if n := e.prov.JobPeak(ids[0]); n != 1 {
		t.Errorf("job-bound runners at once for the job: %d, want 1", n)
	}
	if _, ok := e.fake.RunnerByName(half); ok {
		t.Errorf("the cancelled provisioning's registration %s is still on GitHub", half)
	}
	e.waitClean(t, 10*time.Second)
}

func TestAReplicaThatLosesNATSMidProvisionIsTakenOverAfterItsDeadline(t *testing.T) {
	p := pool("small", 0, 5)
	e := newEnv(t, p)
	h := &hangingProv{Provisioner: e.prov, entered: make(chan string, 1)}
	a := e.start(e.config(func(c *scaler.Config) { c.Provisioner = h; c.ShutdownGrace = 200 * time.Millisecond }))
	ids := e.queue(1, p, 50*time.Millisecond)
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("replica a never started provisioning")
	}
	// Replica a is cut off from NATS: it can neither answer the message
	// nor clean its claim, slot and record up. It is as good as dead.
	a.bus.Conn.Close()
	a.stop()
	b := e.start(e.config())
	waitFor(t, 20*time.Second, "the job to complete", e.allCompleted(ids))
	e.succeeded(t, ids)
	if n := e.prov.JobPeak(ids[0]); n != 1 {
		t.Errorf("job-bound runners at once for the job: %d, want 1", n)
	}
	if n := metricSum(t, b.reg, "ephemera_jobs_total", map[string]string{"action": "takeover"}); n != 1 {
		t.Errorf("takeovers: %v, want 1", n)
	}
	waitFor(t, 10*time.Second, "nothing left behind", func() bool { return e.clean() && e.countKeys(scaler.BucketRunners) == 0 })
}

func TestJobsAreServedAndNothingLeaksDespiteGitHubAndProvisionerFailures(t *testing.T) {
	const jit = "/orgs/acme/actions/runners/generate-jitconfig"
	tests := []struct {
		name  string
		fault githubfake.Fault
		prov  func(*scalertest.Provisioner)
		check func(t *testing.T, e *env)
	}{
		{name: "GitHub answers 5xx to JIT registrations", fault: githubfake.Fault{Method: http.MethodPost, Path: jit, Status: http.StatusBadGateway, Times: 4}},
		{name: "GitHub answers JIT registrations slower than the client waits", fault: githubfake.Fault{Method: http.MethodPost, Path: jit, Delay: 1500 * time.Millisecond, Times: 2}},
		{
			name:  "a JIT answer is lost and the retry under the same name meets 409",
			fault: githubfake.Fault{Method: http.MethodPost, Path: jit, LoseResponse: true, Times: 2},
			check: func(t *testing.T, e *env) {
				n := 0
				for _, c := range e.fake.Calls() {
					if c.Path == jit && c.Status == http.StatusConflict {
						n++
					}
				}
				if n == 0 {
					t.Error("no registration met a 409: the lost-answer path was not exercised")
				}
			},
		},
		{name: "GitHub rate-limits with Retry-After", fault: githubfake.Fault{Method: http.MethodPost, Path: jit, Status: http.StatusForbidden, RetryAfter: 1, Times: 1}},
		{name: "GitHub answers 5xx to runner lists", fault: githubfake.Fault{Method: http.MethodGet, Path: "/orgs/acme/actions/runners", Status: http.StatusInternalServerError, Times: 5}},
		{name: "GitHub answers 5xx to runner removals", fault: githubfake.Fault{Method: http.MethodDelete, Path: "/orgs/acme/actions/runners/*", Status: http.StatusInternalServerError, Times: 3}},
		{name: "the provisioner fails creates", prov: func(p *scalertest.Provisioner) { p.Fail = scalertest.FailTimes(3) }},
		{name: "the provisioner is slow", prov: func(p *scalertest.Provisioner) { p.CreateDelay = 300 * time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pool("small", 0, 3)
			e := newEnv(t, p)
			if tt.prov != nil {
				tt.prov(e.prov)
			}
			if tt.fault.Path != "" {
				e.fake.InjectFault(tt.fault)
			}
			e.start(e.config())
			e.start(e.config())
			ids := e.queue(4, p, 50*time.Millisecond)
			waitFor(t, 20*time.Second, "every job to complete", e.allCompleted(ids))
			e.succeeded(t, ids)
			waitFor(t, 10*time.Second, "every job to get its own runner", func() bool { return len(e.jobBoundCreates()) == len(ids) })
			for _, id := range ids {
				if n := e.prov.JobPeak(id); n > 1 {
					t.Errorf("job %d: %d job-bound runners at once", id, n)
				}
			}
			if peak := e.prov.Peak("small"); peak > 3 {
				t.Errorf("pool peak %d, want ≤ 3", peak)
			}
			e.waitClean(t, 15*time.Second)
			if tt.check != nil {
				tt.check(t, e)
			}
		})
	}
}

func TestScaleDownRacingWithAnAssignmentDoesNotKillTheJob(t *testing.T) {
	p := pool("small", 1, 5)
	e := newEnv(t, p)
	r1 := e.start(e.config())
	waitFor(t, 10*time.Second, "one idle runner, recorded", func() bool {
		return e.idle() == 1 && metricSum(t, r1.reg, "ephemera_reconcile_actions_total", map[string]string{"action": "top_up"}) == 1
	})
	idle := e.fake.Runners()[0].Name
	r1.stop()

	// The same runners, now surplus: min_idle 0. While the reconciler's
	// removal of the idle runner is on its way to GitHub, a job lands on it.
	p.MinIdle = 0
	var job atomic.Int64
	e.fake.InjectFault(githubfake.Fault{
		Method: http.MethodDelete, Path: "/orgs/acme/actions/runners/*", Delay: 300 * time.Millisecond, Times: 1,
		OnMatch: func() {
			job.Store(e.fake.QueueJob(githubfake.JobSpec{Labels: []string{"self-hosted", "small"}, Duration: 500 * time.Millisecond}))
		},
	})
	r2 := e.start(e.config(func(c *scaler.Config) { c.Pools = append(c.Pools[:0:0], p) }))
	waitFor(t, 15*time.Second, "the job to complete", func() bool {
		j, ok := e.fake.GetJob(job.Load())
		return ok && j.Status == githubfake.JobCompleted
	})
	j, _ := e.fake.GetJob(job.Load())
	if j.RunnerName != idle || j.Conclusion != githubfake.ConclusionSuccess {
		t.Errorf("job ran on %q with conclusion %q; want on the surplus runner %q with success", j.RunnerName, j.Conclusion, idle)
	}
	if n := metricSum(t, r2.reg, "ephemera_reconcile_actions_total", map[string]string{"action": "trim_busy"}); n < 1 {
		t.Errorf("trim_busy actions: %v, want ≥ 1", n)
	}
	e.waitClean(t, 10*time.Second)
}

func TestLostWebhooksAreRedeliveredSoJobsAreServedAndMinIdleRestored(t *testing.T) {
	p := pool("small", 2, 10)
	e := newEnv(t, p)
	r := e.start(e.config())
	waitFor(t, 10*time.Second, "two idle runners", func() bool { return e.idle() == 2 })
	e.fake.SetKnobs(githubfake.Knobs{DropQueued: 3})
	ids := e.queue(6, p, 100*time.Millisecond)
	waitFor(t, 15*time.Second, "every job to complete", e.allCompleted(ids))
	e.succeeded(t, ids)
	// A job whose lost delivery is redelivered while it still waits gets
	// its own runner; one that ran on an idle runner and completed before
	// the redelivery gets none (a late redelivery never provisions), and
	// the reconciler tops the buffer up instead.
	ignored := func() int {
		return int(metricSum(t, r.reg, "ephemera_jobs_total", map[string]string{"action": "ignored_completed"}))
	}
	waitFor(t, 10*time.Second, "every job to get its own runner or be known completed", func() bool {
		return len(e.jobBoundCreates())+ignored() == len(ids)
	})
	for id, n := range e.jobBoundCreates() {
		if n != 1 {
			t.Errorf("job %d: %d job-bound runners, want 1", id, n)
		}
	}
	waitFor(t, 10*time.Second, "min_idle restored", func() bool { return e.idle() == 2 && len(e.prov.Instances()) == 2 })
	if n := metricSum(t, r.reg, "ephemera_reconcile_actions_total", map[string]string{"action": "redeliver"}); n < 3 {
		t.Errorf("redelivered: %v, want ≥ 3", n)
	}
}

func TestJobsQueuedWhileTheWebhookEndpointIsDownAreServedOnceItIsBack(t *testing.T) {
	tests := []struct {
		name          string
		scalerRunning bool // while the endpoint is down
	}{
		{name: "the scaler starts after the endpoint is back", scalerRunning: false},
		{name: "the scaler runs all along and its first redeliveries fail too", scalerRunning: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pool("small", 0, 10)
			e := newEnv(t, p)
			e.bridge.Down.Store(true)
			var r *replica
			if tt.scalerRunning {
				r = e.start(e.config())
			}
			ids := e.queue(3, p, 50*time.Millisecond)
			waitFor(t, 5*time.Second, "failed deliveries", func() bool {
				failed, failedRedeliveries := 0, 0
				for _, d := range e.fake.Deliveries() {
					if !d.Pending && !d.OK() {
						failed++
						if d.Redelivery {
							failedRedeliveries++
						}
					}
				}
				return failed >= 3 && (!tt.scalerRunning || failedRedeliveries >= 1)
			})
			e.bridge.Down.Store(false)
			if !tt.scalerRunning {
				r = e.start(e.config())
			}
			waitFor(t, 15*time.Second, "every job to complete", e.allCompleted(ids))
			e.succeeded(t, ids)
			// The runners are made at once: a later job's may come up first
			// and take an earlier job, which can complete before its own
			// redelivery is handled; that redelivery then provisions
			// nothing (a late delivery never does), and the later job is
			// served again as displaced.
			ignored := func() int {
				return int(metricSum(t, r.reg, "ephemera_jobs_total", map[string]string{"action": "ignored_completed"}))
			}
			waitFor(t, 10*time.Second, "every job to get its own runner or be known completed", func() bool {
				return len(e.jobBoundCreates())+ignored() == len(ids)
			})
			e.waitClean(t, 10*time.Second)
		})
	}
}

func TestARestartOfAllReplicasMidRunRebuildsStateAndDuplicatesNothing(t *testing.T) {
	p := pool("small", 1, 10)
	e := newEnv(t, p)
	a, b := e.start(e.config()), e.start(e.config())
	ids := e.queue(40, p, 100*time.Millisecond)
	waitFor(t, 20*time.Second, "a quarter of the jobs to complete", func() bool {
		n := 0
		for _, id := range ids {
			if j, _ := e.fake.GetJob(id); j.Status == githubfake.JobCompleted {
				n++
			}
		}
		return n >= 10
	})
	a.stop()
	b.stop()
	e.start(e.config())
	e.start(e.config())
	waitFor(t, 30*time.Second, "every job to complete", e.allCompleted(ids))
	e.succeeded(t, ids)
	waitFor(t, 15*time.Second, "every job to get its own runner", func() bool { return len(e.jobBoundCreates()) == len(ids) })
	for _, id := range ids {
		if n := e.prov.JobPeak(id); n > 1 {
			t.Errorf("job %d: %d job-bound runners at once", id, n)
		}
	}
	if peak := e.prov.Peak("small"); peak > 10 {
		t.Errorf("pool peak %d, want ≤ 10", peak)
	}
	waitFor(t, 15*time.Second, "min_idle and nothing else", func() bool {
		return e.idle() == 1 && len(e.prov.Instances()) == 1 && len(e.fake.Runners()) == 1 && e.countKeys(scaler.BucketSlots) == 1
	})
}

func TestADeadClaimantsInstanceIsAdoptedNotDuplicated(t *testing.T) {
	p := pool("small", 0, 3)
	e := newEnv(t, p)
	const dead = "eph-small-dead0001"
	id := e.queue(1, p, 200*time.Millisecond)[0]
	// A replica died right after creating the job's instance: its claim,
	// record and slot say "claimed"/"provisioning", past their deadline.
	if _, err := e.gh.RegisterRunner(t.Context(), scaler.Registration{Name: dead, Labels: p.Labels}); err != nil {
		t.Fatal(err)
	}
	e.prov.Add(scaler.Instance{Name: dead, Pool: "small", JobID: id, State: scaler.StateRunning, CreatedAt: time.Now()})
	past := time.Now().Add(-10 * time.Second).UTC().Format(time.RFC3339Nano)
	e.putKV(scaler.BucketJobs, strconv.FormatInt(id, 10), `{"job_id":`+strconv.FormatInt(id, 10)+`,"pool":"small","repo":"acme/app","state":"claimed","runner":"`+dead+`","owner":"dead","claimed_at":"`+past+`","deadline":"`+past+`","attempts":1}`)
	e.putKV(scaler.BucketRunners, dead, `{"name":"`+dead+`","pool":"small","job_id":`+strconv.FormatInt(id, 10)+`,"owner":"dead","state":"provisioning","slot":"small.0","created_at":"`+past+`","deadline":"`+past+`"}`)
	e.putKV(scaler.BucketSlots, "small.0", `"`+dead+`"`)
	_ = e.fake.RunnerOnline(dead) // the runner in it comes up and takes the job

	r := e.start(e.config())
	waitFor(t, 10*time.Second, "the job to complete", e.allCompleted([]int64{id}))
	e.succeeded(t, []int64{id})
	waitFor(t, 10*time.Second, "the takeover", func() bool {
		return metricSum(t, r.reg, "ephemera_jobs_total", map[string]string{"action": "takeover"}) == 1
	})
	if n := e.prov.Creates(); n != 0 {
		t.Errorf("creates: %d, want 0: the dead claimant's instance serves the job", n)
	}
	if n := e.prov.JobPeak(id); n != 1 {
		t.Errorf("job-bound runners at once: %d, want 1", n)
	}
	waitFor(t, 10*time.Second, "nothing left behind", func() bool { return e.clean() && e.countKeys(scaler.BucketRunners) == 0 })
}

// A runner lost before it came online, after its job started on the
// runner made for another job, leaves that other job displaced with no
// runner coming (the scale-out burst with a replica SIGKILLed left 6 of
// 1,000 jobs so): the reconciler checks it on GitHub and serves it
// again, and the runner it was made for keeps the job that took it.
func TestADisplacedJobWhoseRunnerWasTakenAndWhoseSpareWasLostIsServedAgain(t *testing.T) {
	p := pool("small", 0, 3)
	e := newEnv(t, p)
	older, younger, lost := e.loseTheOlderJobsRunner(p, nil)
	r := e.start(e.config())
	waitFor(t, 20*time.Second, "the younger job to complete", e.allCompleted([]int64{younger}))
	e.succeeded(t, []int64{younger})
	j, _ := e.fake.GetJob(older)
	if j.Status != githubfake.JobInProgress || j.RunnerName == "" || j.RunnerName == lost.Load() {
		t.Errorf("the older job: %s on %q, want in progress on the runner made for the younger job", j.Status, j.RunnerName)
	}
	if n := metricSum(t, r.reg, "ephemera_reconcile_actions_total", map[string]string{"action": "reprovision"}); n != 1 {
		t.Errorf("reprovisions: %v, want 1", n)
	}
	if got := e.jobBoundCreates(); got[older] != 1 || got[younger] != 2 {
		t.Errorf("job-bound creates: %v, want 1 for the older job (lost) and 2 for the younger", got)
	}
}

// The same chain without a loss: the older job's runner comes up late and
// takes the younger job, and the reconciler, counting it spare once the
// older job started elsewhere, serves nothing again.
func TestADisplacedJobWithASpareRunnerComingIsLeftToIt(t *testing.T) {
	p := pool("small", 0, 3)
	e := newEnv(t, p)
	older := e.queue(1, p, time.Hour)[0]
	younger := e.queue(1, p, 200*time.Millisecond)[0]
	online := e.prov.OnCreated
	var tookOlder atomic.Bool
	e.prov.OnCreated = func(spec scaler.InstanceSpec) {
		if spec.JobID == older {
			// Up only once the younger job's runner took the older job,
			// and a few reconcile passes later.
			for !tookOlder.Load() {
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(time.Second)
		}
		online(spec)
		if spec.JobID == younger {
			tookOlder.Store(true)
		}
	}
	r := e.start(e.config())
	waitFor(t, 20*time.Second, "the younger job to complete", e.allCompleted([]int64{younger}))
	e.succeeded(t, []int64{younger})
	if n := metricSum(t, r.reg, "ephemera_reconcile_actions_total", map[string]string{"action": "reprovision"}); n != 0 {
		t.Errorf("reprovisions: %v, want 0: the older job's runner was on its way", n)
	}
	if n := e.prov.Creates(); n != 2 {
		t.Errorf("creates: %d, want 2", n)
	}
}

// A job whose runner was lost and whose in_progress event was lost too
// is found started on GitHub by the stuck-job check, which records the
// runner it took: that runner was made for another job, which is then
// known displaced and served again (recorded without the runner, the
// other job waited for a runner that was busy already).
func TestAStuckJobFoundStartedRecordsTheRunnerItTook(t *testing.T) {
	p := pool("small", 0, 3)
	e := newEnv(t, p)
	// The older job's in_progress event, and its redeliveries, fail until
	// the stuck-job check has recorded the job started.
	older, younger, _ := e.loseTheOlderJobsRunner(p, func() { e.bridge.Down.Store(true) })
	e.start(e.config())
	waitFor(t, 20*time.Second, "the stuck-job check to record the older job started", func() bool {
		_, started := e.claimOf(older)
		return started
	})
	e.bridge.Down.Store(false)
	j, _ := e.fake.GetJob(older)
	if ranOn := e.claimRanOn(older); ranOn == "" || ranOn != j.RunnerName {
		t.Errorf("the older job's claim says it ran on %q, GitHub on %q", ranOn, j.RunnerName)
	}
	waitFor(t, 20*time.Second, "the younger job to complete", e.allCompleted([]int64{younger}))
	e.succeeded(t, []int64{younger})
}

// loseTheOlderJobsRunner queues an older job (running past the test's
// end) and a younger one in p, and makes the older job's first runner
// fail before it comes up; the younger job's runner comes up and takes
// the oldest queued job, the older one, after calling before (when not
// nil). It returns the jobs and, once created, the lost runner's name.
func (e *env) loseTheOlderJobsRunner(p config.Pool, before func()) (older, younger int64, lost *atomic.Value) {
	older = e.queue(1, p, time.Hour)[0]
	younger = e.queue(1, p, 200*time.Millisecond)[0]
	online := e.prov.OnCreated
	lost = new(atomic.Value)
	e.prov.OnCreated = func(spec scaler.InstanceSpec) {
		if spec.JobID == older && lost.CompareAndSwap(nil, spec.Name) {
			e.prov.Exit(spec.Name) // its instance fails before the runner is up
			return
		}
		if spec.JobID == younger && before != nil {
			before()
		}
		online(spec)
	}
	return older, younger, lost
}
