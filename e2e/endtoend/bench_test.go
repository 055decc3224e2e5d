package endtoend

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/demo"
)

// BenchmarkQueuedToRunningOnLXD measures, on real LXD containers, how long
// a job waits from being queued on GitHub to running on a fresh runner
// when no idle runner is kept (min_idle 0): webhook, JetStream, scaler,
// JIT registration, container create and start, the stand-in runner coming
// online and taking the job. With an idle buffer the wait is the broker's
// hand-over alone; this is the cold path that buffer hides.
func BenchmarkQueuedToRunningOnLXD(b *testing.B) {
	e2etest.RequireStandinImage(b)
	for range b.N {
		sys, err := demo.Start(b.Context(), demo.Spec{
			Pools: []string{"b" + demo.RandomHex(2)}, MinIdle: 0, Max: 10, Image: e2etest.StandinImage,
			Interval: time.Second, BootstrapTimeout: time.Minute, IdleGrace: 5 * time.Second, Log: zerolog.Nop(),
		})
		if err != nil {
			b.Fatal(err)
		}
		res, err := sys.Run(b.Context(), demo.Plan{Jobs: 20, Rate: 2, Duration: 500 * time.Millisecond, Timeout: 5 * time.Minute}, 200*time.Millisecond, func(demo.Snapshot) {})
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
