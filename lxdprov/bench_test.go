package lxdprov_test

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	lxd "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdfake"
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

// BenchmarkLXDBusyboxContainers measures create+start and delete latency
// of ephemeral containers from the busybox test image (ephemera-test) on
// this machine's LXD, through the Provider and, in the same run, through
// the raw LXD client — the floor: the byte-identical create request
// (CreateInstance and the operation's wait, then, on an LXD without
// instance_create_start such as this 5.0.2, the start and its wait) and the least a
// delete takes (a forced stop and its wait, then DeleteInstance and its
// wait when the instance is still there). The provider's overhead reads as
// the -vs-raw ratio. Each b.N runs 10 one at a time (provider and raw
// client alternating, each first every other time) and 20 at once
// (provider, then raw client). Virtual
// machines cannot run here (no KVM), so these are container figures.
func BenchmarkLXDBusyboxContainers(b *testing.B) {
	lxdtest.Require(b)
	pool := lxdtest.Pool()
	p := lxdtest.Provider(b, pool)
	raw := &rawLXD{c: lxdtest.Client(b), post: providerPost(b, pool)}
	ctx := context.Background()

	var prov, ref results
	b.ResetTimer()
	for range b.N {
		// One at a time, alternating, so drift in the machine's load hits
		// both alike; and which goes first alternates too, because a
		// create that follows the other path's delete pays for LXD's
		// clean-up of it (measured: provider first read 1.27-1.35,
		// raw first 0.99).
		for i := range benchSeq {
			provRound := func() {
				spec := lxdtest.Spec(pool.Name)
				prov.seqCreate.time(b, func() error { return p.Create(ctx, spec) })
				prov.seqDelete.time(b, func() error { return p.Delete(ctx, spec.Name) })
			}
			rawRound := func() {
				spec := lxdtest.Spec(pool.Name)
				ref.seqCreate.time(b, func() error { return raw.create(ctx, spec.Name) })
				ref.seqDelete.time(b, func() error { return raw.delete(ctx, spec.Name) })
			}
			if i%2 == 0 {
				provRound()
				rawRound()
			} else {
				rawRound()
				provRound()
			}
		}
		concurrently(b, pool.Name, &prov.conCreate, &prov.conDelete,
			func(s scaler.InstanceSpec) error { return p.Create(ctx, s) },
			func(name string) error { return p.Delete(ctx, name) })
		concurrently(b, pool.Name, &ref.conCreate, &ref.conDelete,
			func(s scaler.InstanceSpec) error { return raw.create(ctx, s.Name) },
			func(name string) error { return raw.delete(ctx, name) })
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
		b.ReportMetric(ms(r50), row.name+"-raw-p50-ms")
		b.ReportMetric(ms(p50)/ms(r50), row.name+"-p50-vs-raw")
		b.Logf("%-13s provider p50 %6.0f ms  p99 %6.0f ms | raw client p50 %6.0f ms  p99 %6.0f ms | ratio p50 %.2f  p99 %.2f",
			row.name, ms(p50), ms(p99), ms(r50), ms(r99), ms(p50)/ms(r50), ms(p99)/ms(r99))
	}
}

// providerPost returns the create request the provider sends for pool's
// instances, captured on lxdfake (given the real default profile), so that
// the raw client sends the same bytes.
func providerPost(b *testing.B, pool config.Pool) api.InstancesPost {
	b.Helper()
	prof, _, err := lxdtest.Client(b).GetProfile("default")

	if err != nil {
		b.Fatal(err)
	}
	c := lxdtest.Client(b)
	fake := &lxdfake.Server{}
	if !c.HasExtension("instance_create_start") {
		fake.NoExtensions = []string{"instance_create_start"}
	}
	fake.AddImage(lxdtest.Image)
	fake.SetProfile(*prof)
	cfg := lxdtest.Config(b, pool)
	fp, err := lxdprov.NewOnServer(context.Background(), cfg, fake)
	if err != nil {
		b.Fatal(err)
	}
	if err := fp.Create(context.Background(), lxdtest.Spec(pool.Name)); err != nil {
		b.Fatal(err)
	}
	return fake.Created()[0]
}

// rawLXD does with LXD's client alone what the provider does.
type rawLXD struct {
	c    lxd.InstanceServer
	post api.InstancesPost
}

func (r *rawLXD) create(ctx context.Context, name string) error {
	post := r.post
	post.Name = name
	post.Config = maps.Clone(post.Config)
	post.Config[lxdprov.KeyCreated] = time.Now().UTC().Format(time.RFC3339)
	op, err := r.c.CreateInstance(post)
	if err == nil {
		_, err = lxdtest.Wait(r.c, op)
	}
	if err != nil || post.Start {
		return err
	}
	// This LXD cannot create and start in one operation (5.0.2 cannot).
	op, err = r.c.UpdateInstanceState(name, api.InstanceStatePut{Action: "start", Timeout: -1}, "")
	if err != nil {
		return err
	}
	_, err = lxdtest.Wait(r.c, op)
	return err
}

func (r *rawLXD) delete(ctx context.Context, name string) error {
	op, err := r.c.UpdateInstanceState(name, api.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}, "")
	if err == nil {
		_, err = lxdtest.Wait(r.c, op)
	}
	if err != nil {
		return err
	}
	// An ephemeral instance is gone once stopped; delete whatever is left.
	op, err = r.c.DeleteInstance(name)
	if err == nil {
		_, err = lxdtest.Wait(r.c, op)
	}
	if api.StatusErrorCheck(err, http.StatusNotFound) {
		return nil
	}
	return err
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
