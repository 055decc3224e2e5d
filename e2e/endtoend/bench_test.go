package endtoend

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/demo"
)

// BenchmarkQueuedToRunningColdStandinContainers measures how long a job
// waits from being queued on GitHub to running on a fresh runner when no
// idle runner is kept (min_idle 0, the cold path): webhook, JetStream,
// scaler, JIT registration, the create and start of an LXD container
// from the busybox image with the stand-in runner (not a VM, not the
// real Actions runner, no systemd or cloud-init: e2e/realimage measures
// that path), the stand-in coming online (queued-to-online) and taking the job
// from the GitHub stand-in's broker. With an idle buffer the wait is the
// broker's hand-over alone; this is the path that buffer hides.
//
// Each iteration starts a system and submits 20 jobs; the percentiles
// are over every job of every iteration, and jobs says how many that is.
func BenchmarkQueuedToRunningColdStandinContainers(b *testing.B) {
	e2etest.RequireStandinImage(b)
	var (
		lat      []time.Duration
		online   []time.Duration
		requests int
		jobs     int
	)
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
		lat = append(lat, res.Latencies...)
		online = append(online, res.OnlineLatencies...)
		requests += res.GitHubRequests
		jobs += len(res.Jobs)
	}
	b.ReportMetric(float64(demo.Percentile(online, 50).Milliseconds()), "queued-to-online-p50-ms")
	b.ReportMetric(float64(demo.Percentile(online, 99).Milliseconds()), "queued-to-online-p99-ms")
	b.ReportMetric(float64(demo.Percentile(lat, 50).Milliseconds()), "queued-to-running-p50-ms")
	b.ReportMetric(float64(demo.Percentile(lat, 99).Milliseconds()), "queued-to-running-p99-ms")
	b.ReportMetric(float64(requests)/float64(jobs), "github-req/job")
	b.ReportMetric(float64(len(lat)), "jobs")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkQueuedToRunningByStorageAndSource is the cold path of
// BenchmarkQueuedToRunningColdStandinContainers (min_idle 0, the stand-in
// image) on each storage driver — the dir pool of this machine's default
// profile, and a loop-backed btrfs pool made for the run — with instances
// from the image or copied from the pool's prepared template (template:
// true; the jobs are submitted once the template is ready). Each b.N
// submits 12 jobs, 2 a second; sub-benchmarks are named storage/source.
func BenchmarkQueuedToRunningByStorageAndSource(b *testing.B) {
	e2etest.RequireStandinImage(b)
	e2etest.TakeTurn(b)
	base := demo.Spec{
		MinIdle: 0, Max: 10, Image: e2etest.StandinImage,
		Interval: time.Second, BootstrapTimeout: time.Minute, IdleGrace: 5 * time.Second, Log: zerolog.Nop(),
	}
	e2etest.ByStorageAndSource(b, base, func(b *testing.B, spec demo.Spec) {
		var lat []time.Duration
		for range b.N {
			res := e2etest.RunWhenReady(b, spec, 3*time.Minute, demo.Plan{Jobs: 12, Rate: 2, Duration: 500 * time.Millisecond, Timeout: 5 * time.Minute}, 200*time.Millisecond)
			lat = append(lat, res.Latencies...)
		}
		b.ReportMetric(float64(demo.Percentile(lat, 50).Milliseconds()), "queued-to-running-p50-ms")
		b.ReportMetric(float64(demo.Percentile(lat, 99).Milliseconds()), "queued-to-running-p99-ms")
		b.ReportMetric(float64(len(lat)), "jobs")
		b.ReportMetric(0, "ns/op")
	})
}
