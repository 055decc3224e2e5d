package scale

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/e2e/scale/standin"
)

// scenario is one run of the harness: jobs queued at rate (per second
// of unscaled time; 0: all within one second of the run's clock), each
// running for duration (unscaled; long enough to outlast the run, so
// that runners accumulate).
type scenario struct {
	opt      Options
	jobs     int
	rate     float64
	duration time.Duration
	// killAt, when above zero, SIGKILLs scaler-0 once that many runners
	// were asked for.
	killAt int
	// quiet is how many reconcile passes to watch once every job runs,
	// for the reconcile figures.
	quiet int
	// waitFor bounds the wait for every job to start; default 3 minutes
	// plus provision_timeout (5 minutes, scaled), after which a job whose
	// claim is stuck is taken over.
	waitFor time.Duration
}

// wait is how long to wait for every job to start under o, the
// options with their defaults filled in (s.opt's TimeScale may be 0).
func (s scenario) wait(o Options) time.Duration {
	if s.waitFor > 0 {
		return s.waitFor
	}
	return 3*time.Minute + o.scaled(5*time.Minute)
}

// run runs s and reports its figures on b.
func (s scenario) run(b *testing.B) {
	if testing.Short() {
		b.Skip("scale harness")
	}
	e2etest.TakeTurn(b)
	for range b.N { // -benchtime 1x: one run
		b.StopTimer()
		h := Start(b, s.opt)
		o := h.opt
		n0 := h.NATSCounts(b)
		b.StartTimer()
		start := time.Now()
		step := time.Second / time.Duration(s.jobs) // a burst: all in one second
		if s.rate > 0 {
			step = time.Duration(float64(time.Second) / (s.rate * o.TimeScale))
		}
		killed := false
		for i := range s.jobs {
			if wait := time.Until(start.Add(time.Duration(i) * step)); wait > 0 {
				time.Sleep(wait) // pacing the arrivals, not synchronizing
			}
			h.Queue(i, s.duration)
			if s.killAt > 0 && !killed && h.Standin.Stats().Creates >= s.killAt {
				b.Logf("SIGKILL %s after %d creates", h.Scalers[0].name, h.Standin.Stats().Creates)
				h.Scalers[0].Kill()
				killed = true
			}
		}
		if s.killAt > 0 && !killed {
			waitUntil(b, 10*time.Minute, "the creates before the kill", func() bool { return h.Standin.Stats().Creates >= s.killAt })
			h.Scalers[0].Kill()
		}
		queuedFor := time.Since(start)
		// A job that never starts is reported (jobs-not-started), with what
		// happened to it, not hidden: the run's other figures still count.
		everyJob := h.WaitStarted(s.jobs, s.wait(o))
		allStarted := time.Since(start)
		b.StopTimer()
		h.logLate(b, 20*o.scaled(time.Minute)/10)
		notStarted := s.jobs - h.Started()
		if !everyJob {
			// Reported (jobs-not-started, aim 0), not failed: a failed
			// benchmark prints none of its figures.
			b.Logf("%d of %d jobs did not start in %s", notStarted, s.jobs, s.wait(o))
		}
		byKind, total, limited := h.GitHubRequests()
		n1 := h.NATSCounts(b)

		// The reconcile figures: passes over every runner of the run, with
		// nothing else going on.
		var recN, recS float64
		var recReqs int
		if s.quiet > 0 {
			c0, s0 := h.Reconciles(b)
			_, t0, _ := h.GitHubRequests()
			waitUntil(b, time.Duration(s.quiet+2)*o.scaled(o.Interval)+time.Minute, "the quiet reconcile passes", func() bool {
				c, _ := h.Reconciles(b)
				return c-c0 >= float64(s.quiet)
			})
			c1, s1 := h.Reconciles(b)
			_, t1, _ := h.GitHubRequests()
			recN, recS, recReqs = c1-c0, s1-s0, t1-t0
		}

		l := h.Latencies()
		jobs := float64(s.jobs)
		b.ReportMetric(percentile(l.Create, 50), "queued-to-create-p50-ms")
		b.ReportMetric(percentile(l.Create, 99), "queued-to-create-p99-ms")
		b.ReportMetric(percentile(l.Online, 50), "queued-to-online-p50-ms")
		b.ReportMetric(percentile(l.Online, 99), "queued-to-online-p99-ms")
		b.ReportMetric(percentile(l.Started, 50), "queued-to-started-p50-ms")
		b.ReportMetric(percentile(l.Started, 99), "queued-to-started-p99-ms")
		// Registrations a minute of GitHub's clock (the run's minutes
		// times TimeScale) from the first job queued to the last started.
		b.ReportMetric(float64(byKind[registrations])/allStarted.Minutes()/o.TimeScale, "registrations/gh-min")
		b.ReportMetric(float64(s.jobs)/queuedFor.Minutes()/o.TimeScale, "arrivals/gh-min")
		b.ReportMetric(float64(total)/jobs, "gh-req/job")
		for kind, n := range byKind {
			b.ReportMetric(float64(n)/jobs, shortKind(kind)+"/job")
		}
		b.ReportMetric(float64(limited), "rate-limit-answers")
		b.ReportMetric(float64(notStarted), "jobs-not-started")
		b.ReportMetric(float64(n1.KVWrites-n0.KVWrites)/jobs, "kv-writes/job")
		b.ReportMetric(float64(n1.API-n0.API)/jobs, "js-api-req/job")
		if recN > 0 {
			b.ReportMetric(recS/recN*1000, "reconcile-ms")
			b.ReportMetric(float64(recReqs)/recN, "gh-req/reconcile")
		}
		var cpu, rss []float64
		for _, p := range h.Scalers {
			if p.Alive() {
				u := p.Usage(b)
				cpu, rss = append(cpu, u.CPU.Seconds()), append(rss, float64(u.PeakRSS)/(1<<20))
			}
		}
		b.ReportMetric(slices.Max(cpu), "replica-cpu-s-max")
		b.ReportMetric(slices.Max(rss), "replica-peak-rss-MB-max")
		w := h.Webhook.Usage(b)
		b.ReportMetric(w.CPU.Seconds(), "webhook-cpu-s")
		st := h.Standin.Stats()
		b.ReportMetric(float64(st.Creates)/jobs, "creates/job")
		b.Logf("%s: %d jobs over %s, all started after %s; %d GitHub requests (%d rate-limited); stand-in %+v; replicas' CPU %v s, peak RSS %v MiB; %.0f quiet reconciles of %.0f ms with %d requests",
			o.Profile.Name, s.jobs, queuedFor.Round(time.Millisecond), allStarted.Round(time.Millisecond), total, limited, st, cpu, rss, recN, recS/max(recN, 1)*1000, recReqs)
	}
}

// shortKind names a request kind in a metric unit: the last words of its
// endpoint, e.g. "POST-generate-jitconfig", "GET-runners".
func shortKind(kind string) string {
	method, path, _ := strings.Cut(kind, " ")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var keep []string
	for i := len(parts) - 1; i >= 0 && len(keep) < 2; i-- {
		if parts[i] == "{id}" && len(keep) == 0 {
			keep = append(keep, "id")
			continue
		}
		if !strings.HasPrefix(parts[i], "{") {
			keep = append([]string{parts[i]}, keep...)
			if len(keep) == 1 && keep[0] != "id" {
				break
			}
		}
	}
	return method + "-" + strings.Join(keep, "-")
}

// jobHour is long enough for a job to outlast any run.
const jobHour = time.Hour

// BenchmarkScaleGrowth fills 20 pools with 100, 1,000 and 3,000 runners
// as fast as the machine lets it (the request budget and the stand-in's
// limits off), then watches five reconcile passes over them (interval 5 s):
// how reconcile time, its GitHub requests, NATS operations and each
// replica's CPU and memory grow with the number of runners.
func BenchmarkScaleGrowth(b *testing.B) {
	for _, n := range []int{100, 1000, 3000} {
		b.Run(fmt.Sprintf("runners=%d", n), func(b *testing.B) {
			scenario{
				opt:  Options{Max: n / 10, PointsPerMinute: -1, Interval: 5 * time.Second, Seed: 1},
				jobs: n, rate: 40, duration: jobHour, quiet: 5,
			}.run(b)
		})
	}
}

// BenchmarkScaleCeiling queues jobs at GitHub's ceiling — 5,000
// requests an hour at 1.2 requests a job is 69 jobs a minute — across 20
// pools until 1,000 long jobs run at once, the GitHub stand-in enforcing
// GitHub's limits. Real time would take 15 minutes, so the clock
// (provider latencies, reconcile timings, the request budget's windows
// and the stand-in's limits) runs ten times faster: its figures are
// labelled scaled-x10.
func BenchmarkScaleCeiling(b *testing.B) {
	b.Run("scaled-x10", func(b *testing.B) {
		scenario{
			opt:  Options{TimeScale: 10, GitHubLimits: true, Seed: 2},
			jobs: 1000, rate: 5000.0 / 3600 / 1.2, duration: 10 * jobHour, quiet: 3,
		}.run(b)
	})
}

// BenchmarkScaleUnlimited is the ceiling scenario with every limit off
// (no request budget to speak of, no stand-in limits) at the highest arrival rate this
// machine sustained, in real time: 1,000 jobs at 20 a second.
func BenchmarkScaleUnlimited(b *testing.B) {
	scenario{
		opt:  Options{PointsPerMinute: -1, Seed: 3},
		jobs: 1000, rate: 20, duration: jobHour,
	}.run(b)
}

// BenchmarkScaleBurst queues 1,000 jobs within one second, with LXD's
// latencies and with a VM's 10–20 s boot, the GitHub stand-in enforcing
// GitHub's limits; the clock runs ten times faster (scaled-x10), so
// GitHub's minute is six seconds here. The budget lets about 177
// registrations through a minute (900 points at 5 each, less a slice).
func BenchmarkScaleBurst(b *testing.B) {
	for _, p := range []standin.Profile{standin.LXDContainer(), standin.VM()} {
		b.Run(p.Name+"/scaled-x10", func(b *testing.B) {
			scenario{
				opt:  Options{TimeScale: 10, Profile: p, GitHubLimits: true, Seed: 4},
				jobs: 1000, duration: 10 * jobHour,
			}.run(b)
		})
	}
}

// BenchmarkScaleReplicaKilled is the burst with scaler-0 SIGKILLed once
// 300 runners were asked for: every job must still get a runner, and
// creates/job shows what the takeover cost.
func BenchmarkScaleReplicaKilled(b *testing.B) {
	b.Run("scaled-x10", func(b *testing.B) {
		scenario{
			opt:  Options{TimeScale: 10, GitHubLimits: true, Seed: 5},
			jobs: 1000, duration: 10 * jobHour, killAt: 300,
		}.run(b)
	})
}
