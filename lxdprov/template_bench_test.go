package lxdprov_test

import (
	"context"
	"os/exec"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
)

// benchCreates is how many instances each sub-benchmark creates, one at a
// time, per b.N.
const benchCreates = 6

// BenchmarkLXDCreateByStorageAndSource measures Provider.Create — create
// and start, until LXD reports the container running — one at a time, for
// each storage driver (the dir pool of this machine's default profile, and
// a loop-backed btrfs pool made for the run) and each source: a new
// instance from the image, or a copy of the pool's prepared template
// (template: true, built before the clock starts). Images: the busybox test
// image (ephemera-test, 2 MB) and, when this machine has it, the Debian
// base image (ephemera-base-bookworm, make runner-base; ~300 MB, systemd
// and cloud-init). Each instance is deleted before the next is created;
// deletes are not timed. Sub-benchmarks are named image/storage/source.
func BenchmarkLXDCreateByStorageAndSource(b *testing.B) {
	lxdtest.Require(b)
	images := []struct{ name, alias string }{{"busybox", lxdtest.Image}, {"debian", "ephemera-base-bookworm"}}
	btrfs := "" // made once, for every sub-benchmark, when btrfs-progs is here
	if _, err := exec.LookPath("mkfs.btrfs"); err == nil {
		btrfs = lxdtest.BtrfsPool(b)
	}
	for _, img := range images {
		for _, storage := range []string{lxdprov.DriverDir, lxdprov.DriverBtrfs} {
			for _, source := range []string{lxdprov.SourceImage, lxdprov.SourceTemplate} {
				b.Run(img.name+"/"+storage+"/"+source, func(b *testing.B) {
					if _, _, err := lxdtest.Client(b).GetImageAlias(img.alias); err != nil {
						b.Skipf("image %s not in LXD: %v", img.alias, err)
					}
					if storage == lxdprov.DriverBtrfs && btrfs == "" {
						b.Skip("mkfs.btrfs not found on PATH: apt-get install btrfs-progs")
					}
					pool := lxdtest.Pool()
					pool.Image = img.alias
					pool.Disk = 0 // the profile's root disk as it is: no per-instance quota
					if storage == lxdprov.DriverBtrfs {
						pool.StoragePool = btrfs
					}
					pool.Template = source == lxdprov.SourceTemplate
					cfg := lxdtest.Config(b, pool)
					reg := prometheus.NewRegistry()
					cfg.Registerer = reg
					p := lxdtest.New(b, cfg)
					ctx := context.Background()
					if pool.Template {
						p.SyncTemplates(ctx)
					}
					var create latencies
					b.ResetTimer()
					for range b.N {
						for range benchCreates {
							spec := lxdtest.Spec(pool.Name)
							create.time(b, func() error { return p.Create(ctx, spec) })
							b.StopTimer()
							if err := p.Delete(ctx, spec.Name); err != nil {
								b.Fatal(err)
							}
							b.StartTimer()
						}
					}
					b.StopTimer()
					if got := createsFrom(b, reg, source); got != float64(b.N*benchCreates) {
						b.Fatalf("%v of %d creates came from the %s", got, b.N*benchCreates, source)
					}
					b.ReportMetric(ms(create.percentile(50)), "create-p50-ms")
					b.ReportMetric(ms(create.percentile(99)), "create-p99-ms")
					b.ReportMetric(0, "ns/op")
				})
			}
		}
	}
}

// createsFrom sums ephemera_lxd_creates_total{source}.
func createsFrom(b *testing.B, reg *prometheus.Registry, source string) float64 {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "ephemera_lxd_creates_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == source {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
