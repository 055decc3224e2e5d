package idlesim

import (
	"container/heap"
	"math"
	"slices"
	"time"

	"github.com/ephemera-ci/ephemera/scaler"
)

// Config is one simulated run.
type Config struct {
	Trace Trace
	Boot  BootProfile
	Seed  uint64 // boot times
	// Static is the fixed min_idle; ignored when Auto is set.
	Static int
	// Auto sizes the buffer with scaler.SizeIdle for this target.
	Auto *scaler.IdleTarget
	// Interval and IdleGrace are reconcile.interval and
	// reconcile.idle_grace (defaults 30s and 2m, the scaler's).
	Interval, IdleGrace time.Duration
	// Latency is queued on GitHub → the scaler starts the job's runner
	// (webhook, NATS, consumer). Default 500ms.
	Latency time.Duration
}

// Result is what a run measured.
type Result struct {
	Jobs int
	// Waits are every job's wait for a runner, sorted.
	Waits []time.Duration
	// IdleMinutes is the integral of online idle runners over the trace.
	IdleMinutes float64
	// Registrations is how many runners were created (one per job, plus
	// top-ups): GitHub JIT registrations.
	Registrations int
	// Trimmed is how many idle runners the leader removed.
	Trimmed int
	// MeanBuffer is the buffer the leader asked for, averaged over passes.
	MeanBuffer float64
}

// P is the q-quantile of the waits.
func (r Result) P(q float64) time.Duration {
	if len(r.Waits) == 0 {
		return 0
	}
	return r.Waits[min(len(r.Waits)-1, max(0, int(math.Ceil(q*float64(len(r.Waits))))-1))]
}

// FractionOver is the share of jobs that waited longer than d.
func (r Result) FractionOver(d time.Duration) float64 {
	if len(r.Waits) == 0 {
		return 0
	}
	i, _ := slices.BinarySearch(r.Waits, d+1)
	return float64(len(r.Waits)-i) / float64(len(r.Waits))
}

type runner struct {
	queued, started, online time.Duration // decided, instance running, online
	job                     int           // the job it was created for; -1: a top-up
	idleSince               time.Duration
	sampled                 bool
}

type job struct {
	created time.Duration
	started bool
}

const (
	evArrive = iota
	evCreate // a job's runner is started, Latency after its arrival
	evOnline
	evPass
)

type event struct {
	at   time.Duration
	seq  int
	kind int
	i    int     // job index
	r    *runner // online
}

type queue []event

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// Run simulates cfg.Trace against one pool.
func Run(cfg Config) Result {
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.IdleGrace <= 0 {
		cfg.IdleGrace = 2 * time.Minute
	}
	if cfg.Latency <= 0 {
		cfg.Latency = 500 * time.Millisecond
	}
	s := sim{cfg: cfg, r: rng(cfg.Seed), jobs: make([]job, len(cfg.Trace.Arrivals))}
	for i, t := range cfg.Trace.Arrivals {
		s.jobs[i].created = t
		s.push(event{at: t, kind: evArrive, i: i})
	}
	s.push(event{at: 0, kind: evPass})
	passes, bufSum := 0, 0
	for s.q.Len() > 0 {
		e := heap.Pop(&s.q).(event)
		if e.at > cfg.Trace.Length+time.Hour {
			break
		}
		s.idleSecs += float64(len(s.idle)) * (e.at - s.now).Seconds()
		s.now = e.at
		switch e.kind {
		case evArrive:
			s.arrivals = append(s.arrivals, e.at)
			if len(s.idle) > 0 {
				r := s.idle[0] // GitHub picks any idle runner
				s.idle = s.idle[1:]
				s.take(r, e.i)
			} else {
				s.waiting = append(s.waiting, e.i)
			}
			s.push(event{at: e.at + cfg.Latency, kind: evCreate, i: e.i})
		case evCreate:
			s.create(e.i)
		case evOnline:
			r := e.r
			if len(s.waiting) > 0 {
				j := s.waiting[0]
				s.waiting = s.waiting[1:]
				s.take(r, j)
			} else {
				r.idleSince = e.at
				s.idle = append(s.idle, r)
			}
			s.booting = slices.DeleteFunc(s.booting, func(b *runner) bool { return b == r })
		case evPass:
			b := s.pass()
			passes++
			bufSum += b
			if e.at < cfg.Trace.Length {
				s.push(event{at: e.at + cfg.Interval, kind: evPass})
			}
		}
	}
	res := Result{Jobs: len(s.jobs), IdleMinutes: s.idleSecs / 60, Registrations: s.regs, Trimmed: s.trimmed}
	res.Waits = s.waits
	slices.Sort(res.Waits)
	if passes > 0 {
		res.MeanBuffer = float64(bufSum) / float64(passes)
	}
	return res
}

type sim struct {
	cfg      Config
	r        interface{ Float64() float64 }
	q        queue
	seq      int
	now      time.Duration
	jobs     []job
	waiting  []int // jobs waiting for a runner, oldest first
	idle     []*runner
	booting  []*runner
	arrivals []time.Duration
	samples  scaler.OnlineSamples
	level    scaler.Level // the day's level, recomputed every IdleLevelEvery
	waits    []time.Duration
	idleSecs float64
	regs     int
	trimmed  int
}

func (s *sim) push(e event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.q, e)
}

// create starts a runner for job (-1: a top-up) now.
func (s *sim) create(job int) {
	u := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(s.r.Float64()*float64(hi-lo)) }
	b := s.cfg.Boot
	create, boot := u(b.CreateLo, b.CreateHi), u(b.BootLo, b.BootHi)
	r := &runner{queued: s.now, started: s.now + create, online: s.now + create + boot, job: job}
	s.regs++
	s.booting = append(s.booting, r)
	s.push(event{at: r.online, kind: evOnline, r: r})
}

// take gives job j to runner r now; its in_progress event measures r's
// online time when r was not listed yet: exactly when j waited since
// before r's instance started.
func (s *sim) take(r *runner, j int) {
	s.jobs[j].started = true
	s.waits = append(s.waits, s.now-s.jobs[j].created)
	if !r.sampled {
		r.sampled = true
		if s.jobs[j].created <= r.started {
			s.samples.Add(scaler.OnlineSample{At: s.at(s.now), D: s.now - r.queued, Exact: true})
		} else { // a later job: an upper bound
			s.samples.Add(scaler.OnlineSample{At: s.at(s.now), D: s.now - r.queued})
		}
	}
}

func (s *sim) at(d time.Duration) time.Time { return time.Unix(0, 0).UTC().Add(d) }

func (s *sim) times(ds []time.Duration) []time.Time {
	out := make([]time.Time, len(ds))
	for i, d := range ds {
		out[i] = s.at(d)
	}
	return out
}

// pass is one reconcile: listing samples, the buffer, trim, top-up. It
// returns the buffer.
func (s *sim) pass() int {
	for _, r := range s.idle {
		if !r.sampled {
			r.sampled = true
			s.samples.Add(scaler.ListedOnline(s.at(r.queued), s.at(r.started), s.at(s.now), s.cfg.Interval))
		}
	}
	b := s.cfg.Static
	if s.cfg.Auto != nil {
		i, _ := slices.BinarySearch(s.arrivals, s.now-scaler.IdleHistory)
		s.arrivals = s.arrivals[i:]
		obs := scaler.IdleObservation{Now: s.at(s.now), Online: s.samples.All(), Level: s.level}
		if s.level.At.IsZero() || obs.Now.Sub(s.level.At) >= scaler.IdleLevelEvery {
			obs.Arrivals = s.times(s.arrivals)
			s.level = scaler.DayLevel(*s.cfg.Auto, obs)
			obs.Level = s.level
		} else {
			j, _ := slices.BinarySearch(s.arrivals, s.now-scaler.IdleLookback)
			obs.Arrivals = s.times(s.arrivals[j:])
		}
		b = scaler.SizeIdle(*s.cfg.Auto, obs).N
	}
	// Trim: idle past idle_grace above the buffer, longest idle first
	// (s.idle is in idle order).
	surplus := len(s.idle) - b
	s.idle = slices.DeleteFunc(s.idle, func(r *runner) bool {
		if surplus > 0 && s.now-r.idleSince >= s.cfg.IdleGrace {
			surplus--
			s.trimmed++
			return true
		}
		return false
	})
	buffer := 0 // booting runners that will be idle
	for _, r := range s.booting {
		if r.job < 0 || s.jobs[r.job].started {
			buffer++
		}
	}
	for range b - len(s.idle) - buffer {
		s.create(-1)
	}
	return b
}
