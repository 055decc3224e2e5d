package scale

import (
	"os"
	"testing"
	"time"
)

// TestHarnessSmoke runs the harness itself small — 30 jobs over 4 pools,
// two scaler replicas, the clock compressed 10 times, GitHub's limits
// enforced by the stand-in — and checks that
// every figure the benchmarks report can be taken: each job got its own
// runner and ran, and requests, NATS counters, reconcile passes and
// process usage were all seen.
func TestHarnessSmoke(t *testing.T) {
	if os.Getenv(smokeEnv) != "1" {
		t.Skip("about a minute on a 2-core machine: set " + smokeEnv + "=1 to run it")
	}
	h := Start(t, Options{Pools: 4, Max: 10, Replicas: 2, TimeScale: 10, GitHubLimits: true, Interval: 10 * time.Second, Seed: 1})
	before := h.NATSCounts(t)
	const jobs = 30
	for i := range jobs {
		h.Queue(i, 5*time.Second)
	}
	if !h.WaitStarted(jobs, time.Minute) {
		t.Fatalf("%d of %d jobs started in a minute", h.Started(), jobs)
	}
	l := h.Latencies()
	if len(l.Create) != jobs || len(l.Started) != jobs {
		t.Errorf("%d job-bound creates and %d started jobs, want %d of each", len(l.Create), len(l.Started), jobs)
	}
	byKind, total, limited := h.GitHubRequests()
	if byKind[registrations] < jobs || limited != 0 {
		t.Errorf("%d registrations (want ≥ %d), %d rate-limit answers (want none); by kind %v", byKind[registrations], jobs, limited, byKind)
	}
	after := h.NATSCounts(t)
	if after.API <= before.API || after.KVWrites <= before.KVWrites || after.JobMessages-before.JobMessages < jobs {
		t.Errorf("NATS counters before %+v, after %+v: want each to grow (job messages by ≥ %d)", before, after, jobs)
	}
	waitUntil(t, time.Minute, "a reconcile pass", func() bool { n, _ := h.Reconciles(t); return n >= 1 })
	for _, s := range append(h.Scalers, h.Webhook) {
		if u := s.Usage(t); u.CPU <= 0 || u.PeakRSS <= 0 {
			t.Errorf("%s usage %+v, want CPU time and a peak RSS", s.name, u)
		}
	}
	t.Logf("%d GitHub requests for %d jobs; create p50 %.0f ms, started p50 %.0f ms", total, jobs, percentile(l.Create, 50), percentile(l.Started, 50))
}
