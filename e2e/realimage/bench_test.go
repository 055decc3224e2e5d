package realimage

import (
	"os/exec"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/demo"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
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
	for range b.N {
		sys, err := demo.Start(b.Context(), demo.Spec{
			Pools: []string{"b" + demo.RandomHex(2)}, MinIdle: 0, Max: 5, Image: image, Memory: 512 << 20,
			Interval: time.Second, BootstrapTimeout: 3 * time.Minute, IdleGrace: 5 * time.Second, Log: zerolog.Nop(),
		})
		if err != nil {
			b.Fatal(err)
		}
		res, err := sys.Run(b.Context(), demo.Plan{Jobs: 10, Rate: 0.5, Duration: 500 * time.Millisecond, Timeout: 10 * time.Minute}, 250*time.Millisecond, func(demo.Snapshot) {})
		sys.Close()
		if err != nil {
			b.Fatal(err)
		}
		online = append(online, res.OnlineLatencies...)
		running = append(running, res.Latencies...)
		jobs += len(res.Jobs)
	}
	b.ReportMetric(float64(demo.Percentile(online, 50).Milliseconds()), "queued-to-online-p50-ms")
	b.ReportMetric(float64(demo.Percentile(online, 99).Milliseconds()), "queued-to-online-p99-ms")
	b.ReportMetric(float64(demo.Percentile(running, 50).Milliseconds()), "queued-to-running-p50-ms")
	b.ReportMetric(float64(demo.Percentile(running, 99).Milliseconds()), "queued-to-running-p99-ms")
	b.ReportMetric(float64(jobs), "jobs")
	b.ReportMetric(0, "ns/op")
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
	image := buildRunnerImage(b)
	btrfs := "" // made once, for both btrfs sub-benchmarks
	if _, err := exec.LookPath("mkfs.btrfs"); err == nil {
		btrfs = lxdtest.BtrfsPool(b)
	}
	for _, storage := range []string{lxdprov.DriverDir, lxdprov.DriverBtrfs} {
		for _, source := range []string{lxdprov.SourceImage, lxdprov.SourceTemplate} {
			b.Run(storage+"/"+source, func(b *testing.B) {
				spec := demo.Spec{
					Pools: []string{"b" + demo.RandomHex(2)}, MinIdle: 0, Max: 5, Image: image, Memory: 512 << 20,
					Interval: time.Second, BootstrapTimeout: 3 * time.Minute, IdleGrace: 5 * time.Second, Log: zerolog.Nop(),
					Template: source == lxdprov.SourceTemplate,
				}
				if storage == lxdprov.DriverBtrfs {
					if btrfs == "" {
						b.Skip("mkfs.btrfs not found on PATH: apt-get install btrfs-progs")
					}
					spec.StoragePool = btrfs
				}
				var online, running []time.Duration
				for range b.N {
					sys, err := demo.Start(b.Context(), spec)
					if err != nil {
						b.Fatal(err)
					}
					if err := waitfor.Within(5*time.Minute, sys.TemplatesReady); err != nil {
						sys.Close()
						b.Fatal("the pool's template was not ready within 5 minutes")
					}
					res, err := sys.Run(b.Context(), demo.Plan{Jobs: 10, Rate: 0.5, Duration: 500 * time.Millisecond, Timeout: 10 * time.Minute}, 250*time.Millisecond, func(demo.Snapshot) {})
					sys.Close()
					if err != nil {
						b.Fatal(err)
					}
					online = append(online, res.OnlineLatencies...)
					running = append(running, res.Latencies...)
				}
				b.ReportMetric(float64(demo.Percentile(online, 50).Milliseconds()), "queued-to-online-p50-ms")
				b.ReportMetric(float64(demo.Percentile(online, 99).Milliseconds()), "queued-to-online-p99-ms")
				b.ReportMetric(float64(demo.Percentile(running, 50).Milliseconds()), "queued-to-running-p50-ms")
				b.ReportMetric(float64(demo.Percentile(running, 99).Milliseconds()), "queued-to-running-p99-ms")
				b.ReportMetric(float64(len(running)), "jobs")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
