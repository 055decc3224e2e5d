package e2etest

import (
	"os/exec"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/demo"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
)

// ByStorageAndSource runs bench as sub-benchmarks named storage/source:
// for each storage driver (dir, the pool of this machine's default
// profile; btrfs, a loop-backed pool made once for the run and skipped
// without mkfs.btrfs) and each source (the image; a copy of the pool's
// prepared template), with spec's pool, StoragePool and Template set to
// match.
func ByStorageAndSource(b *testing.B, spec demo.Spec, bench func(b *testing.B, spec demo.Spec)) {
	btrfs := ""
	if _, err := exec.LookPath("mkfs.btrfs"); err == nil {
		btrfs = lxdtest.BtrfsPool(b)
	}
	for _, storage := range []string{lxdprov.DriverDir, lxdprov.DriverBtrfs} {
		for _, source := range []string{lxdprov.SourceImage, lxdprov.SourceTemplate} {
			b.Run(storage+"/"+source, func(b *testing.B) {
				spec := spec
				spec.Pools = []string{"b" + demo.RandomHex(2)}
				spec.Template = source == lxdprov.SourceTemplate
				if storage == lxdprov.DriverBtrfs {
					if btrfs == "" {
						b.Skip("mkfs.btrfs not found on PATH: apt-get install btrfs-progs")
					}
					spec.StoragePool = btrfs
				}
				bench(b, spec)
			})
		}
	}
}

// RunWhenReady starts a system from spec, submits plan once its pools'
// templates are ready (within ready; at once for pools without one, so
// that a template's own first boot is not in the figures), refreshing
// every refresh, and closes the system.
func RunWhenReady(b *testing.B, spec demo.Spec, ready time.Duration, plan demo.Plan, refresh time.Duration) demo.Result {
	b.Helper()
	sys, err := demo.Start(b.Context(), spec)
	if err != nil {
		b.Fatal(err)
	}
	defer sys.Close()
	if err := waitfor.Within(ready, sys.TemplatesReady); err != nil {
		b.Fatalf("the pool's template was not ready within %s", ready)
	}
	res, err := sys.Run(b.Context(), plan, refresh, func(demo.Snapshot) {})
	if err != nil {
		b.Fatal(err)
	}
	return res
}
