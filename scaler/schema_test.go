package scaler_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-ci/ephemera/internal/jobs"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/scaler"
)

// During a rolling upgrade an older replica meets records a newer one
// wrote: it never rewrites them, and it creates nothing for a job whose
// claim it does not understand; events about them are still acked.
func TestRecordsOfANewerVersionAreNeverRewritten(t *testing.T) {
	p := pool("small", 0, 2)
	e := newEnv(t, p)
	const job = 616161
	claim := fmt.Sprintf(`{"v":99,"job_id":%d,"pool":"small","repo":"acme/app","state":"claimed","runner":"eph-small-newer000","owner":"scaler-next","claimed_at":"2026-01-01T00:00:00Z","deadline":"2026-01-01T00:05:00Z","attempts":1,"epoch":7}`, job)
	runner := `{"v":99,"name":"eph-small-newer000","pool":"small","job_id":616161,"owner":"scaler-next","state":"provisioning","slot":"","created_at":"2026-01-01T00:00:00Z","deadline":"2026-01-01T00:05:00Z"}`
	e.putKV(scaler.BucketJobs, fmt.Sprint(job), claim)
	e.putKV(scaler.BucketRunners, "eph-small-newer000", runner)
	r := e.start(e.config())

	seq := e.publish(jobs.Event{Action: jobs.InProgress, JobID: job, Pool: "small", Repository: "acme/app", RunnerName: "eph-small-newer000", CreatedAt: time.Now().UTC()})
	waitfor.True(t, 5*time.Second, "the in_progress event to be acked", e.handled(seq))
	e.publish(jobs.Event{Action: jobs.Queued, JobID: job, Pool: "small", Repository: "acme/app", CreatedAt: time.Now().UTC()})
	waitfor.True(t, 5*time.Second, "the queued delivery to be put back for a newer replica", func() bool {
		return metricSum(t, r.reg, "ephemera_jobs_total", map[string]string{"action": "newer_version"}) >= 1
	})
	// Two whole reconcile passes (Interval 200ms) see both records.
	passed := func() time.Time {
		st, err := scaler.ReadStatus(context.Background(), e.bus.JS, e.pools)
		if err != nil {
			t.Fatal(err)
		}
		return st[0].UpdatedAt
	}
	waitfor.True(t, 5*time.Second, "a reconcile pass", func() bool { return !passed().IsZero() })
	first := passed()
	waitfor.True(t, 5*time.Second, "another reconcile pass", func() bool { return passed().After(first) })
	if n := e.jobBoundCreates()[job]; n != 0 {
		t.Errorf("%d runners created for a job a newer version claimed", n)
	}
	for _, rec := range []struct{ bucket, key, want string }{
		{scaler.BucketJobs, fmt.Sprint(job), claim},
		{scaler.BucketRunners, "eph-small-newer000", runner},
	} {
		bucket, key := rec.bucket, rec.key
		kv, err := e.bus.JS.KeyValue(context.Background(), bucket)
		if err != nil {
			t.Fatal(err)
		}
		got, err := kv.Get(context.Background(), key)
		if err != nil {
			t.Fatalf("%s/%s: %v", bucket, key, err)
		}
		if diff := cmp.Diff(rec.want, string(got.Value())); diff != "" {
			t.Errorf("%s/%s rewritten (-want +got):\n%s", bucket, key, diff)
		}
	}
}
