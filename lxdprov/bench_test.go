package lxdprov_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
	"github.com/ephemera-ci/ephemera/scaler"
)

// How many instances each phase creates and deletes: one at a time, and at
// once. Sequential rounds cost about 2 s each (both paths), so they are kept
// to 10 and the whole benchmark to about 30 s.
const (
	benchSeq = 10
	benchCon = 20
)

// BenchmarkLXD measures create+start and delete latency of containers from
// the test image on this machine's LXD, through the Provider and, in the
// same run, through the lxc command line doing the same work (same config,
// limits, root disk size and user-data), so the provider's overhead reads
// as a ratio. Each b.N runs 10 one at a time (provider and lxc alternating)
// and 20 at once (provider, then lxc).
func BenchmarkLXD(b *testing.B) {
	lxdtest.Require(b)
	lxc, err := exec.LookPath("lxc")
	if err != nil {
		b.Skip("the lxc command is not installed")
	}
	pool := lxdtest.Pool()
	p := lxdtest.Provider(b, pool)
	cli := &lxcCLI{path: lxc, pool: pool}
	ctx := context.Background()

	var prov, ref results
	b.ResetTimer()
	for range b.N {
		// One at a time, alternating, so drift in the machine's load hits
		// both alike.
		for range benchSeq {
			spec := lxdtest.Spec(pool.Name)
			prov.seqCreate.time(b, func() error { return p.Create(ctx, spec) })
			prov.seqDelete.time(b, func() error { return p.Delete(ctx, spec.Name) })
			spec = lxdtest.Spec(pool.Name)
			ref.seqCreate.time(b, func() error { return cli.launch(ctx, spec) })
			ref.seqDelete.time(b, func() error { return cli.delete(ctx, spec.Name) })
		}
		concurrently(b, pool.Name, &prov.conCreate, &prov.conDelete,
			func(s scaler.InstanceSpec) error { return p.Create(ctx, s) },
			func(name string) error { return p.Delete(ctx, name) })
		concurrently(b, pool.Name, &ref.conCreate, &ref.conDelete,
			func(s scaler.InstanceSpec) error { return cli.launch(ctx, s) },
			func(name string) error { return cli.delete(ctx, name) })
	}
	b.StopTimer()

	for _, row := range []struct {
		name      string
		prov, ref *latencies
	}{
		{"seq-create", &prov.seqCreate, &ref.seqCreate},
		{"seq-delete", &prov.seqDelete, &ref.seqDelete},
		{"con20-create", &prov.conCreate, &ref.conCreate},
		{"con20-delete", &prov.conDelete, &ref.conDelete},
	} {
		p50, p99 := row.prov.percentile(50), row.prov.percentile(99)
		r50, r99 := row.ref.percentile(50), row.ref.percentile(99)
		b.ReportMetric(ms(p50), row.name+"-p50-ms")
		b.ReportMetric(ms(p99), row.name+"-p99-ms")
		b.ReportMetric(ms(p50)/ms(r50), row.name+"-p50-vs-lxc")
		b.Logf("%-13s provider p50 %6.0f ms  p99 %6.0f ms | lxc p50 %6.0f ms  p99 %6.0f ms | ratio p50 %.2f  p99 %.2f",
			row.name, ms(p50), ms(p99), ms(r50), ms(r99), ms(p50)/ms(r50), ms(p99)/ms(r99))
	}
}

type results struct{ seqCreate, seqDelete, conCreate, conDelete latencies }

// latencies collects durations; safe for concurrent use.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) time(b *testing.B, f func() error) {
	start := time.Now()
	if err := f(); err != nil {
		b.Fatal(err)
	}
	l.mu.Lock()
	l.d = append(l.d, time.Since(start))
	l.mu.Unlock()
}

// percentile is the nearest-rank percentile.
func (l *latencies) percentile(p int) time.Duration {
	d := slices.Sorted(slices.Values(l.d))
	if len(d) == 0 {
		return 0
	}
	i := (p*len(d)+99)/100 - 1
	return d[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// concurrently creates benchCon instances at once, then deletes them at once.
func concurrently(b *testing.B, pool string, create, del *latencies, mk func(scaler.InstanceSpec) error, rm func(string) error) {
	specs := make([]scaler.InstanceSpec, benchCon)
	for i := range specs {
		specs[i] = lxdtest.Spec(pool)
	}
	var wg sync.WaitGroup
	for _, s := range specs {
		wg.Go(func() { create.time(b, func() error { return mk(s) }) })
	}
	wg.Wait()
	for _, s := range specs {
		wg.Go(func() { del.time(b, func() error { return rm(s.Name) }) })
	}
	wg.Wait()
}

// lxcCLI does through the lxc command what the provider does through the
// API.
type lxcCLI struct {
	path string
	pool config.Pool
}

func (c *lxcCLI) launch(ctx context.Context, s scaler.InstanceSpec) error {
	userData := "#cloud-config\nruncmd:\n  - \"/opt/ephemera/run-once.sh /opt/actions-runner/run.sh --jitconfig " + s.JITConfig + "\"\n"
	args := []string{"launch", c.pool.Image, s.Name, "--ephemeral", "--quiet",
		"-c", lxdprov.KeyPool + "=" + s.Pool,
		"-c", lxdprov.KeyJob + "=0",
		"-c", lxdprov.KeyCreated + "=" + time.Now().UTC().Format(time.RFC3339),
		"-c", lxdprov.KeyUserData + "=" + userData,
		"-c", fmt.Sprintf("limits.cpu=%d", c.pool.CPU),
		"-c", "limits.memory=" + c.pool.Memory.String(),
		"-d", "root,size=" + c.pool.Disk.String(),
	}
	return c.run(ctx, args...)
}

func (c *lxcCLI) delete(ctx context.Context, name string) error {
	return c.run(ctx, "delete", "--force", name)
}

func (c *lxcCLI) run(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, c.path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lxc %s: %w: %s", args[0], err, out)
	}
	return nil
}
