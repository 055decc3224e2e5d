package idlesim

import (
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/scaler"
)

// seeds are the published seeds of the benchmark's traces.
var seeds = []uint64{1, 2, 3, 4, 5}

// benchTraces are the traces of BenchmarkAutoIdle: 6 hours of a steady
// Poisson stream (2 jobs a minute); 2 working days of monorepo pushes
// (every 5 minutes on average from 08:00 to 18:00, 20-40 jobs each;
// single jobs at 0.5 a minute all day); 2 diurnal days (1 job a minute
// at night, 60 at the 10:00 peak).
var benchTraces = []struct {
	name  string
	trace func(seed uint64) Trace
}{
	{"steady", func(s uint64) Trace { return Steady(s, 2, 6*time.Hour) }},
	{"bursty", func(s uint64) Trace { return Bursty(s, 2, 5*time.Minute, 0) }},
	{"diurnal", func(s uint64) Trace { return Diurnal(s, 2) }},
}

// BenchmarkAutoIdle replays each trace, over 5 seeds, with VM-like boot
// times (10-20 s), min_idle: auto with target_wait {p95: 5s} (idle_min 0,
// idle_max 60), and the smallest fixed min_idle that reaches the same p95
// wait; it reports both p95 waits, both idle runner-minutes per day, and
// their ratio (the aim: at most half on the bursty and diurnal
// traces), and GitHub registrations per job.
func BenchmarkAutoIdle(b *testing.B) {
	target := scaler.IdleTarget{Min: 0, Max: 60, Quantile: 0.95, Wait: 5 * time.Second}
	for _, tc := range benchTraces {
		b.Run(tc.name, func(b *testing.B) {
			var c Comparison
			for range b.N {
				c = Compare(tc.trace, Config{Boot: VM}, target, seeds, 60)
			}
			auto, static := c.MeanP(0.95)
			var days, jobs, autoRegs, staticRegs, staticN, over float64
			for _, s := range c.Seeds {
				days += tc.trace(s.Seed).Length.Hours() / 24
				jobs += float64(s.Auto.Jobs)
				autoRegs += float64(s.Auto.Registrations)
				staticRegs += float64(s.Static.Registrations)
				staticN += float64(s.StaticN)
				over += s.Auto.FractionOver(target.Wait)
				b.Logf("seed %d: auto p95 %.2fs, idle %.0f runner-min; min_idle %d p95 %.2fs, idle %.0f; ratio %.3f",
					s.Seed, s.Auto.P(0.95).Seconds(), s.Auto.IdleMinutes, s.StaticN, s.Static.P(0.95).Seconds(), s.Static.IdleMinutes,
					s.Auto.IdleMinutes/s.Static.IdleMinutes)
			}
			n := float64(len(c.Seeds))
			b.ReportMetric(auto.Seconds(), "auto-p95-s")
			b.ReportMetric(static.Seconds(), "static-p95-s")
			b.ReportMetric(staticN/n, "static-min-idle")
			b.ReportMetric(c.AutoIdleMinutes/days, "auto-idle-min/day")
			b.ReportMetric(c.StaticIdleMinutes/days, "static-idle-min/day")
			b.ReportMetric(c.Ratio(), "auto/static-idle")
			b.ReportMetric(100*over/n, "auto-over-target-%")
			b.ReportMetric(autoRegs/jobs, "auto-regs/job")
			b.ReportMetric(staticRegs/jobs, "static-regs/job")
		})
	}
}
