package scaler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/jobs"
	"github.com/ephemera-ci/ephemera/internal/tokens"
	"github.com/ephemera-ci/ephemera/scaler"
	"github.com/ephemera-ci/ephemera/scaler/scalertest"
)

// stampProv records, per job, when the scaler called Create.
type stampProv struct {
	*scalertest.Provisioner
	mu     sync.Mutex
	stored map[int64]time.Time
	lat    []time.Duration
	done   chan struct{}
	want   int
}

func (p *stampProv) Create(ctx context.Context, spec scaler.InstanceSpec) error {
	now := time.Now()
	p.mu.Lock()
	if t, ok := p.stored[spec.JobID]; ok {
		p.lat = append(p.lat, now.Sub(t))
		if len(p.lat) == p.want {
			close(p.done)
		}
	}
	p.mu.Unlock()
	return p.Provisioner.Create(ctx, spec)
}

func pct(d []time.Duration, q float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(q*float64(len(s))))].Microseconds()) / 1000
}

// BenchmarkQueuedToCreate measures the latency from a queued event being
// stored in JetStream to the provisioner's create call, with production
// settings: the JIT limiter at its defaults (3 registrations a second per
// replica, burst 10) and policy tokens minted into the KV-backed store
// (internal/tokens) — for 60 jobs into a pool with max 60, one replica,
// GitHub (the stand-in) answering at once, the in-memory provisioner.
// "sequential-publishes" stores the 60 one after another, each publish
// waiting for its PubAck (a burst as fast as one publisher goes): past
// the limiter's burst, jobs queue behind it at 3/s, which is what the
// p50 and p99 show. "2/s" stores them at 2 jobs a second, under the
// limit: the scaler's own latency.
func BenchmarkQueuedToCreate(b *testing.B) {
	for _, mode := range []struct {
		name string
		rate float64 // jobs per second; 0: sequential publishes
	}{{"sequential-publishes", 0}, {"2/s", 2}} {
		b.Run(mode.name, func(b *testing.B) {
			const n = 60
			var all []time.Duration
			for range b.N {
				p := pool("bench", 0, n)
				e := newEnv(b, p)
				store, err := tokens.New(b.Context(), tokens.Config{Bus: e.bus, TTL: time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				sp := &stampProv{Provisioner: &scalertest.Provisioner{}, stored: map[int64]time.Time{}, done: make(chan struct{}), want: n}
				e.start(e.config(func(c *scaler.Config) {
					c.Provisioner = sp
					c.Tokens = store
					c.Interval = time.Hour
					c.ProvisionTimeout = time.Minute
					c.AckWait = 30 * time.Second
				}))
				time.Sleep(200 * time.Millisecond) // consumer up
				b.ResetTimer()
				var gap time.Duration
				if mode.rate > 0 {
					gap = time.Duration(float64(time.Second) / mode.rate)
				}
				next := time.Now()
				for i := range n {
					id := int64(100000 + i)
					ev := jobs.Event{V: jobs.Version, Delivery: fmt.Sprintf("d-%d", id), Action: jobs.Queued, JobID: id,
						Repository: "acme/app", Owner: "acme", InstallationID: 1, Labels: p.Labels, Pool: p.Name, ReceivedAt: time.Now()}
					data, _ := json.Marshal(ev)
					msg := &nats.Msg{Subject: jobs.Subject(p.Name, jobs.Queued), Data: data, Header: nats.Header{}}
					msg.Header.Set(jetstream.MsgIDHeader, ev.Delivery)
					// Stamped just before the publish: the figure includes
					// the PubAck round trip (well under a millisecond here).
					sp.mu.Lock()
					sp.stored[id] = time.Now()
					sp.mu.Unlock()
					if _, err := e.bus.JS.PublishMsg(context.Background(), msg); err != nil {
						b.Fatal(err)
					}
					if gap > 0 {
						next = next.Add(gap)
						time.Sleep(time.Until(next))
					}
				}
				select {
				case <-sp.done:
				case <-time.After(2 * time.Minute):
					b.Fatalf("only %d of %d creates", len(sp.lat), n)
				}
				b.StopTimer()
				sp.mu.Lock()
				all = append(all, sp.lat...)
				sp.mu.Unlock()
			}
			b.ReportMetric(pct(all, 0.50), "p50-ms")
			b.ReportMetric(pct(all, 0.99), "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkGitHubRequestsPerJob runs the steady state of a pool with 50
// idle runners taking 1,000 jobs an hour, reconciles included, with time
// compressed 100×: a 30s reconcile interval becomes 300ms, and a job
// arrives every 36ms instead of every 3.6s. It counts every request the
// GitHub stand-in receives (REST API only) per job.
func BenchmarkGitHubRequestsPerJob(b *testing.B) {
	const (
		compress = 100
		jobsRun  = 300
		idle     = 50
	)
	var perJob []float64
	byKind := map[string]int{}
	for range b.N {
		p := pool("steady", idle, 200)
		e := newEnv(b, p)
		e.start(e.config(func(c *scaler.Config) {
			c.Interval = 30 * time.Second / compress
			c.IdleGrace = 2 * time.Minute / compress
			c.BootstrapTimeout = 10 * time.Minute / compress
		}))
		waitFor(b, time.Minute, "50 idle runners", func() bool { return e.idle() == idle })
		time.Sleep(time.Second)
		e.fake.ResetCalls()
		b.ResetTimer()
		gap := time.Hour / 1000 / compress
		var ids []int64
		for range jobsRun {
			ids = append(ids, e.fake.QueueJob(githubfake.JobSpec{Labels: []string{"self-hosted", p.Name}, Duration: 5 * time.Minute / compress}))
			time.Sleep(gap)
		}
		waitFor(b, time.Minute, "every job to complete", e.allCompleted(ids))
		b.StopTimer()
		api := 0
		for _, c := range e.fake.Calls() {
			if strings.HasPrefix(c.Path, "/_fake/") {
				continue
			}
			api++
			switch {
			case strings.HasSuffix(c.Path, "/generate-jitconfig"):
				byKind["jit"]++
			case strings.HasSuffix(c.Path, "/actions/runners") && c.Method == "GET":
				byKind["list"]++
			case strings.Contains(c.Path, "/actions/runners/") && c.Method == "DELETE":
				byKind["remove"]++
			case strings.HasPrefix(c.Path, "/app/hook/deliveries"):
				byKind["deliveries"]++
			default:
				byKind["other"]++
			}
		}
		perJob = append(perJob, float64(api)/jobsRun)
	}
	b.ReportMetric(slices.Max(perJob), "gh-requests/job")
	for k, n := range byKind {
		b.ReportMetric(float64(n)/float64(b.N*jobsRun), k+"/job")
	}
	b.ReportMetric(0, "ns/op")
}
