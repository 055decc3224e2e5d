package main

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// BenchmarkQueuedToRunningOnLXD measures, on real LXD containers, how long
// a job waits from being queued on GitHub to running on a fresh runner
// when no idle runner is kept (min_idle 0): webhook, JetStream, scaler,
// JIT registration, container create and start, the stand-in runner coming
// online and taking the job. With an idle buffer the wait is the broker's
// hand-over alone; this is the cold path that buffer hides.
func BenchmarkQueuedToRunningOnLXD(b *testing.B) {
	requireStandinImage(b)
	for range b.N {
		sys, err := startDemoSystem(b.Context(), demoSpec{
			Pools: []string{"b" + randomHex(2)}, MinIdle: 0, Max: 10, Image: standinImage,
			Interval: time.Second, BootstrapTimeout: time.Minute, IdleGrace: 5 * time.Second, Log: zerolog.Nop(),
		})
		if err != nil {
			b.Fatal(err)
		}
		res, err := runDemo(b.Context(), sys, demoPlan{Jobs: 20, Rate: 2, Duration: 500 * time.Millisecond, Timeout: 5 * time.Minute}, 200*time.Millisecond, func(demoSnapshot) {})
		sys.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(res.LatencyP50.Milliseconds()), "queued-to-running-p50-ms")
		b.ReportMetric(float64(res.LatencyP99.Milliseconds()), "queued-to-running-p99-ms")
		b.ReportMetric(float64(res.GitHubRequests)/float64(len(res.Jobs)), "github-req/job")
	}
	b.ReportMetric(0, "ns/op")
}
