package scaler_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/scaler"
	"github.com/ephemera-ci/ephemera/scaler/scalertest"
)

// A job that waited for capacity many times and then failed once is
// retried after one failure's backoff: waiting for a slot is not a
// failure. (Counting every delivery made a job that had waited ~10 times
// wait a minute after one transient KV timeout.)
func TestAFailureAfterLongWaitsForCapacityBacksOffAsAFirstFailure(t *testing.T) {
	p := pool("small", 0, 1)
	e := newEnv(t, p)
	var target atomic.Int64
	var failed atomic.Bool
	e.prov.Fail = func(spec scaler.InstanceSpec) error {
		if spec.JobID != 0 && spec.JobID == target.Load() && failed.CompareAndSwap(false, true) {
			return scalertest.ErrInjected
		}
		return nil
	}
	e.start(e.config(func(c *scaler.Config) { c.CapacityRetry = 20 * time.Millisecond }))

	// The one slot is busy for 1.5 s: the second job is delivered again
	// every 20 ms meanwhile, some 70 times, then fails its first create.
	first := e.queue(1, p, 1500*time.Millisecond)
	waitFor(t, 10*time.Second, "the first job to run", func() bool {
		j, _ := e.fake.GetJob(first[0])
		return j.Status == githubfake.JobInProgress
	})
	second := e.fake.QueueJob(githubfake.JobSpec{Labels: []string{"self-hosted", p.Name}, Duration: 50 * time.Millisecond})
	target.Store(second)
	waitFor(t, 20*time.Second, "the second job's first create to fail", failed.Load)

	// Backing off by deliveries, the retry would come a minute later.
	waitFor(t, 15*time.Second, "both jobs to complete after the one failure", e.allCompleted([]int64{first[0], second}))
	e.succeeded(t, []int64{first[0], second})
	if n := e.jobBoundCreates()[second]; n != 1 {
		t.Errorf("second job: %d job-bound runners, want 1", n)
	}
	e.waitClean(t, 10*time.Second)
}

// A slot lost mid-provisioning while the job's claim is still this
// replica's (a sweep judged the slot abandoned) is a failure to retry,
// not a takeover: acking it as one left the job without a runner, its
// claim "claimed" by a replica that had given up (seen at 1,000 runners).
func TestASlotLostMidProvisioningWithoutATakeoverIsRetried(t *testing.T) {
	p := pool("small", 0, 5)
	e := newEnv(t, p)
	var once sync.Once
	e.tokens.OnMint = func(runner string) {
		once.Do(func() {
			kv, err := e.bus.JS.KeyValue(context.Background(), scaler.BucketSlots)
			if err != nil {
				t.Error(err)
				return
			}
			for n := range p.Max {
				key := p.Name + "." + strconv.Itoa(n)
				if v, err := kv.Get(context.Background(), key); err == nil && string(v.Value()) == strconv.Quote(runner) {
					if err := kv.Delete(context.Background(), key); err != nil {
						t.Error(err)
					}
					return
				}
			}
			t.Errorf("no slot names %s", runner)
		})
	}
	r := e.start(e.config())
	ids := e.queue(1, p, 50*time.Millisecond)
	waitFor(t, 15*time.Second, "the job to complete", e.allCompleted(ids))
	e.succeeded(t, ids)
	if n := e.jobBoundCreates()[ids[0]]; n != 1 {
		t.Errorf("job-bound runners: %d, want 1", n)
	}
	if n := metricSum(t, r.reg, "ephemera_jobs_total", map[string]string{"action": "fenced"}); n != 0 {
		t.Errorf("jobs_total{action=fenced} = %v: the lost slot was taken for a takeover", n)
	}
	if n := metricSum(t, r.reg, "ephemera_jobs_total", map[string]string{"action": "failed"}); n != 1 {
		t.Errorf("jobs_total{action=failed} = %v, want 1 (the attempt that lost its slot)", n)
	}
	e.waitClean(t, 10*time.Second)
}
