package standin

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Dist is a distribution of latencies.
type Dist interface {
	// Sample draws one latency with r.
	Sample(r *rand.Rand) time.Duration
	// Scaled is the same distribution with every latency divided by f.
	Scaled(f float64) Dist
	fmt.Stringer
}

// LogNormal is the log-normal distribution with median P50 whose 99th
// percentile is P99: the shape of a service time with a long right tail,
// fitted from the two figures a benchmark reports. P99 ≤ P50 gives the
// constant P50.
type LogNormal struct{ P50, P99 time.Duration }

// z99 is the standard normal's 99th percentile.
const z99 = 2.3263478740408408

// Sample implements Dist.
func (d LogNormal) Sample(r *rand.Rand) time.Duration {
	if d.P50 <= 0 {
		return 0
	}
	if d.P99 <= d.P50 {
		return d.P50
	}
	sigma := math.Log(float64(d.P99)/float64(d.P50)) / z99
	return time.Duration(float64(d.P50) * math.Exp(sigma*r.NormFloat64()))
}

// Scaled implements Dist.
func (d LogNormal) Scaled(f float64) Dist {
	return LogNormal{P50: div(d.P50, f), P99: div(d.P99, f)}
}

func (d LogNormal) String() string { return fmt.Sprintf("lognormal(p50 %s, p99 %s)", d.P50, d.P99) }

// Uniform is the uniform distribution on [Min, Max].
type Uniform struct{ Min, Max time.Duration }

// Sample implements Dist.
func (d Uniform) Sample(r *rand.Rand) time.Duration {
	if d.Max <= d.Min {
		return d.Min
	}
	return d.Min + time.Duration(r.Int64N(int64(d.Max-d.Min)+1))
}

// Scaled implements Dist.
func (d Uniform) Scaled(f float64) Dist { return Uniform{Min: div(d.Min, f), Max: div(d.Max, f)} }

func (d Uniform) String() string { return fmt.Sprintf("uniform(%s, %s)", d.Min, d.Max) }

func div(d time.Duration, f float64) time.Duration {
	if f <= 0 || f == 1 {
		return d
	}
	return time.Duration(float64(d) / f)
}
