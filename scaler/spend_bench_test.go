package scaler_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/scaler"
)

// BenchmarkGitHubSpendPerJob is the fixed scenario GitHub spending is
// measured in: one pool with min_idle 2, a job arriving every 6 s for 10
// minutes (100 jobs of one minute each), reconciles every 30 s — on a
// clock compressed 60× (SCALED: the 10 minutes take 10 s, the interval
// 500 ms). Every REST request the GitHub stand-in receives from the
// scaler is counted, by kind (method and route), from the first arrival
// until every job has completed and the pool is back at min_idle.
// Policy checks are not part of this scenario (no pre-job hook runs
// here); they cost what the policy benchmarks print, per job.
func BenchmarkGitHubSpendPerJob(b *testing.B) {
	const (
		compress = 60
		jobsRun  = 100
	)
	var total float64
	byKind := map[string]int{}
	for range b.N {
		p := pool("spend", 2, 40)
		e := newEnv(b, p)
		e.start(e.config(func(c *scaler.Config) {
			c.Interval = 30 * time.Second / compress
			c.IdleGrace = 2 * time.Minute / compress
			c.BootstrapTimeout = 10 * time.Minute / compress
			c.ProvisionTimeout = 5 * time.Minute / compress
		}))
		waitFor(b, time.Minute, "2 idle runners", func() bool { return e.idle() == 2 })
		e.fake.ResetCounts()
		b.ResetTimer()
		gap := 10 * time.Minute / jobsRun / compress
		next := time.Now()
		var ids []int64
		for range jobsRun {
			ids = append(ids, e.fake.QueueJob(githubfake.JobSpec{Labels: []string{"self-hosted", p.Name}, Duration: time.Minute / compress}))
			next = next.Add(gap)
			time.Sleep(time.Until(next)) // the arrival rate, not synchronisation
		}
		waitFor(b, time.Minute, "every job to complete", e.allCompleted(ids))
		waitFor(b, time.Minute, "the pool back at min_idle", func() bool { return e.idle() == 2 })
		b.StopTimer()
		for k, n := range e.fake.RequestsByKind() {
			total += float64(n)
			byKind[kindName(k)] += n
		}
		if a := e.fake.RateLimitAnswers(); a.Total() > 0 {
			b.Errorf("rate-limit answers: %+v", a)
		}
	}
	jobs := float64(b.N * jobsRun)
	b.ReportMetric(total/jobs, "gh-requests/job")
	for k, n := range byKind {
		b.ReportMetric(float64(n)/jobs, k+"/job")
	}
	b.ReportMetric(0, "policy-calls/job")
	b.ReportMetric(0, "ns/op")
}

// kindName is a short, unit-safe name of a request kind.
func kindName(k githubfake.Kind) string {
	ep := k.Endpoint
	switch {
	case strings.HasSuffix(ep, "/generate-jitconfig"):
		ep = "jit"
	case strings.HasSuffix(ep, "/actions/runners"):
		ep = "runners"
	case strings.HasSuffix(ep, "/actions/runners/{id}"):
		ep = "runner"
	case strings.HasPrefix(ep, "/app/hook/deliveries"):
		ep = "deliveries"
	case strings.HasSuffix(ep, "/access_tokens"):
		ep = "token"
	case strings.Contains(ep, "/actions/jobs/"):
		ep = "job"
	default:
		ep = "other"
	}
	return strings.ToLower(k.Method) + "-" + ep
}
