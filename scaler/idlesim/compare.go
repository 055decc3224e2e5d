package idlesim

import (
	"time"

	"github.com/ephemera-ci/ephemera/scaler"
)

// Comparison is min_idle: auto against the smallest fixed min_idle that
// reaches the same p95 wait on the same trace and boot times, over
// several seeds.
type Comparison struct {
	Seeds []Seed
	// AutoIdleMinutes and StaticIdleMinutes are summed over the seeds.
	AutoIdleMinutes, StaticIdleMinutes float64
}

// Seed is one seed's pair of runs.
type Seed struct {
	Seed         uint64
	Auto, Static Result
	StaticN      int // the smallest fixed min_idle with Static.P(q) ≤ Auto.P(q)
}

// Ratio is auto's idle runner-minutes over the fixed buffer's.
func (c Comparison) Ratio() float64 {
	if c.StaticIdleMinutes == 0 {
		return 0
	}
	return c.AutoIdleMinutes / c.StaticIdleMinutes
}

// Compare runs trace(seed) for each seed with auto (target) and with the
// smallest fixed min_idle up to maxStatic whose q-quantile wait is no
// longer than auto's. base is the rest of each run's Config.
func Compare(trace func(seed uint64) Trace, base Config, target scaler.IdleTarget, seeds []uint64, maxStatic int) Comparison {
	var c Comparison
	for _, seed := range seeds {
		cfg := base
		cfg.Trace, cfg.Seed = trace(seed), seed
		auto := cfg
		auto.Auto = &target
		s := Seed{Seed: seed, Auto: Run(auto)}
		want := s.Auto.P(target.Quantile)
		// The p95 wait does not grow with the buffer: search by halves.
		run := func(n int) Result {
			st := cfg
			st.Static = n
			return Run(st)
		}
		lo, hi := 0, maxStatic
		best := run(hi)
		for lo < hi {
			mid := (lo + hi) / 2
			if r := run(mid); r.P(target.Quantile) <= want {
				hi, best = mid, r
			} else {
				lo = mid + 1
			}
		}
		s.Static, s.StaticN = best, hi
		c.Seeds = append(c.Seeds, s)
		c.AutoIdleMinutes += s.Auto.IdleMinutes
		c.StaticIdleMinutes += s.Static.IdleMinutes
	}
	return c
}

// MeanP is the mean over seeds of the q-quantile wait of auto and of the
// fixed buffer.
func (c Comparison) MeanP(q float64) (auto, static time.Duration) {
	if len(c.Seeds) == 0 {
		return 0, 0
	}
	for _, s := range c.Seeds {
		auto += s.Auto.P(q)
		static += s.Static.P(q)
	}
	n := time.Duration(len(c.Seeds))
	return auto / n, static / n
}
