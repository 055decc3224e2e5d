package idlesim

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// A Trace is the times jobs were queued, from the start of the trace,
// sorted, and how long it lasts.
type Trace struct {
	Name     string
	Arrivals []time.Duration
	Length   time.Duration
}

func rng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x1d1e)) }

func expo(r *rand.Rand, mean time.Duration) time.Duration {
	return time.Duration(r.ExpFloat64() * float64(mean))
}

// Steady is a Poisson stream of perMinute jobs a minute for length.
func Steady(seed uint64, perMinute float64, length time.Duration) Trace {
	r := rng(seed)
	var out []time.Duration
	for t := expo(r, time.Duration(float64(time.Minute)/perMinute)); t < length; t += expo(r, time.Duration(float64(time.Minute)/perMinute)) {
		out = append(out, t)
	}
	return Trace{Name: "steady", Arrivals: out, Length: length}
}

// Bursty is days of a monorepo's working days: from 08:00 to 18:00 a
// push every gap on average (Poisson), each queueing 20 to 40 jobs over
// its first 20 seconds (the workflows of one push); outside those hours
// a push every nightGap on average (0: none; automation, a late
// merge); all day, single jobs at 0.5 a minute (pull requests,
// schedules).
func Bursty(seed uint64, days int, gap, nightGap time.Duration) Trace {
	r := rng(seed)
	length := time.Duration(days) * 24 * time.Hour
	var out []time.Duration
	push := func(at time.Duration) {
		for range 20 + r.IntN(21) {
			out = append(out, at+time.Duration(r.Float64()*float64(20*time.Second)))
		}
	}
	for t := expo(r, gap); t < length; t += expo(r, gap) {
		if h := (t % (24 * time.Hour)).Hours(); h >= 8 && h < 18 {
			push(t)
		} else if nightGap > 0 && r.Float64() < float64(gap)/float64(nightGap) {
			push(t)
		}
	}
	for t := expo(r, 2*time.Minute); t < length; t += expo(r, 2*time.Minute) {
		out = append(out, t)
	}
	slices.Sort(out)
	for len(out) > 0 && out[len(out)-1] >= length {
		out = out[:len(out)-1]
	}
	return Trace{Name: "bursty", Arrivals: out, Length: length}
}

// DiurnalRate is the diurnal trace's jobs a minute at hour h of a day:
// quiet nights (1 a minute), a busy morning peaking at 60 a minute
// around 10:00, a second, smaller peak of 30 around 15:00: a platform
// team's pool with hundreds of runners busy at the peak.
func DiurnalRate(h float64) float64 {
	g := func(mu, sigma float64) float64 { return math.Exp(-((h - mu) / sigma) * ((h - mu) / sigma)) }
	return 1 + 59*g(10, 1.5) + 29*g(15, 2)
}

// Diurnal is days of jobs whose rate follows DiurnalRate (a
// non-homogeneous Poisson process, drawn by thinning).
func Diurnal(seed uint64, days int) Trace {
	r := rng(seed)
	length := time.Duration(days) * 24 * time.Hour
	peak := 61.0 // ≥ DiurnalRate everywhere, a minute
	var out []time.Duration
	for t := expo(r, time.Duration(float64(time.Minute)/peak)); t < length; t += expo(r, time.Duration(float64(time.Minute)/peak)) {
		if r.Float64()*peak < DiurnalRate((t % (24 * time.Hour)).Hours()) {
			out = append(out, t)
		}
	}
	return Trace{Name: "diurnal", Arrivals: out, Length: length}
}
