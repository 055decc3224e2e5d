package realimage

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/demo"
)

// BenchmarkQueuedToRunningColdRealImageContainers is the cold path of
// e2e/endtoend's busybox benchmark on a real runner image: LXD containers
// (not VMs) from the Debian base made into a runner image by `ephemera
// image build`, booted by real systemd and cloud-init, which run
// ephemera's user-data and start the stand-in runner (not the real
// Actions runner) from run.sh; the runner runs the real pre-job hook.
// min_idle 0, so each job waits for a fresh runner: webhook, JetStream,
// scaler, JIT registration, container create and start, the boot, the
// runner coming online (queued-to-online) and taking the job
// (queued-to-running, which includes nothing of the hook: the job counts
// as running once a runner took it).
//
// Each iteration builds the image, starts a system and submits 10 jobs;
// the percentiles are over every job of every iteration.
func BenchmarkQueuedToRunningColdRealImageContainers(b *testing.B) {
	e2etest.TakeTurn(b)
	image := buildRunnerImage(b)
	var (
		online, running []time.Duration
		jobs            int
	)
	spec := demo.Spec{
		Pools: []string{"b" + demo.RandomHex(2)}, MinIdle: 0, Max: 5, Image: image, Memory: 512 << 20,
		Interval: time.Second, BootstrapTimeout: 3 * time.Minute, IdleGrace: 5 * time.Second, Log: zerolog.Nop(),
	}
	for range b.N {
		res := e2etest.RunWhenReady(b, spec, time.Minute, demo.Plan{Jobs: 10, Rate: 0.5, Duration: 500 * time.Millisecond, Timeout: 10 * time.Minute}, 250*time.Millisecond)
		online = append(online, res.OnlineLatencies...)
		running = append(running, res.Latencies...)
		jobs += len(res.Jobs)
	}
	reportOnlineAndRunning(b, online, running, jobs)
}

// BenchmarkQueuedToRunningRealImageByStorageAndSource is
// BenchmarkQueuedToRunningColdRealImageContainers on each storage driver
// — the dir pool of this machine's default profile, and a loop-backed
// btrfs pool made for the run — with instances from the runner image or
// copied from the pool's prepared template (template: true; the jobs are
// submitted once the template is ready, so its own first boot is not in
// the figures). Each b.N submits 10 jobs, one every 2 s; sub-benchmarks
// are named storage/source.
func BenchmarkQueuedToRunningRealImageByStorageAndSource(b *testing.B) {
	e2etest.TakeTurn(b)
	base := demo.Spec{
		MinIdle: 0, Max: 5, Image: buildRunnerImage(b), Memory: 512 << 20,
		Interval: time.Second, BootstrapTimeout: 3 * time.Minute, IdleGrace: 5 * time.Second, Log: zerolog.Nop(),
	}
	e2etest.ByStorageAndSource(b, base, func(b *testing.B, spec demo.Spec) {
		var online, running []time.Duration
		jobs := 0
		for range b.N {
			res := e2etest.RunWhenReady(b, spec, 5*time.Minute, demo.Plan{Jobs: 10, Rate: 0.5, Duration: 500 * time.Millisecond, Timeout: 10 * time.Minute}, 250*time.Millisecond)
			online = append(online, res.OnlineLatencies...)
			running = append(running, res.Latencies...)
			jobs += len(res.Jobs)
		}
		reportOnlineAndRunning(b, online, running, jobs)
	})
}

// reportOnlineAndRunning reports the queued → online and queued →
// running percentiles of a run's jobs, and how many jobs it submitted.
func reportOnlineAndRunning(b *testing.B, online, running []time.Duration, jobs int) {
	b.ReportMetric(float64(demo.Percentile(online, 50).Milliseconds()), "queued-to-online-p50-ms")
	b.ReportMetric(float64(demo.Percentile(online, 99).Milliseconds()), "queued-to-online-p99-ms")
	b.ReportMetric(float64(demo.Percentile(running, 50).Milliseconds()), "queued-to-running-p50-ms")
	b.ReportMetric(float64(demo.Percentile(running, 99).Milliseconds()), "queued-to-running-p99-ms")
	b.ReportMetric(float64(jobs), "jobs")
	b.ReportMetric(0, "ns/op")
}
