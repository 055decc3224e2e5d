package scaler

import (
	"math"
	"slices"
	"time"
)

// Sizing the idle buffer of a pool with min_idle: auto.
//
// Every queued job gets a runner of its own, so an idle runner a job takes
// is replaced as soon as the job arrives, and the replacement is online
// one replenish time R later (R: queued → runner online, measured). With
// a buffer of B idle runners, a job arriving at t finds none idle exactly
// when B or more other jobs arrived in (t-R, t]: their replacements are
// not online yet. It then takes the first runner to come online; for a
// fixed R its wait exceeds the target T only when more than B jobs
// arrived in (t-(R-T), t], itself included: the runners of the jobs
// before that window are online by t+T. So the buffer must cover the
// arrivals of one window of R-T at the target percentile q.
//
// The buffer is read from the pool's jobs on two time scales:
//
//   - recent: the larger of two estimates from the last IdleLookback (30
//     minutes).
//     Replay: the smallest buffer with which those jobs, replayed against
//     it — each taking an idle runner or waiting for the first to come
//     online, each one's own runner online R after it arrived — would
//     have waited longer than T no more often than 1-q. It takes CI
//     arrivals as they are, batches included (a push queues a run's jobs
//     together, which no Poisson rate describes). R here is a quantile of
//     the measured times from the median up, the higher the larger the
//     share of exact ones (replayTime): an exact time comes from a job
//     that waited, and a waiting job takes the first of the runners
//     booting at once, so exact times are the fastest boots of a burst.
//     (In the simulator, package idlesim, a median R under-sized bursts
//     and a 0.75-quantile over-sized steady and diurnal loads.)
//     Poisson, while fewer than 30 jobs arrived in the lookback (too few
//     to replay): 1 + the q-quantile of Poisson(λ̂(R-T)), λ̂ the arrivals
//     of the last IdleRateWindow (10 minutes) over its length and R the
//     median measured time. This is the base stock of an (S-1, S)
//     inventory with lead time R-T; by Palm's theorem the runners in
//     flight are Poisson whatever R's distribution. It keeps one runner
//     (or more) for a quiet pool where a replay of two jobs says nothing.
//     A pool no job came to for the whole lookback needs none.
//   - the day's level (DayLevel): the same replay over the jobs of the
//     last IdleHistory (24 hours), that is the smallest fixed buffer that
//     would have met the target all day. It is known once 30 jobs came
//     in the day, and the leader computes it again every IdleLevelEvery
//     (a minute) and when the target changes.
//
// While the pool is batched — the busiest minute of the lookback holds
// far more jobs than the pool's rate explains (batched) — the buffer is
// the day's level. A push queues its jobs at a moment no one can
// foresee, so the buffer the day's pushes need has to be there the whole
// time pushes come, and the late jobs q allows are best spent across all
// of the day's pushes. The recent estimate alone spends them within each
// half hour: it rises after each large push, holds that push's buffer
// for the lookback, and stays low after a run of small pushes until the
// next large one has waited; in the simulator it used more idle
// runner-minutes and still missed the target. Otherwise the buffer is the
// recent estimate, but never more than the day's level: quiet hours keep
// what their few jobs need, and the busiest hour of a smooth load is not
// sized above what one fixed buffer would have needed all day, since q is
// a share of all the day's jobs. Without a day's level the buffer is the
// recent estimate.
//
// R is measured per runner (ephemera_runner_online_seconds): exactly when
// a job waiting since before the runner's instance started took it (its
// in_progress event's started_at is the moment the runner came online);
// as an upper bound when a job queued later took it before any runner
// list showed it; and otherwise from the runner list that first showed
// it online: the middle of the span since the previous list, an estimate
// within half a reconcile interval. With no measurement yet, R is DefaultReplenish.
// When R ≤ T no buffer is needed beyond idle_min. The result is clamped
// to [idle_min, idle_max].
//
// Everything here is a pure function of its arguments: the leader feeds
// it from KV (job claims for arrivals, runner records for online times)
// and the clock, and package idlesim replays traces through the same
// functions.

// Defaults of the sizing, used by the scaler.
const (
	// IdleLookback is the history the recent estimate reads, and how long
	// a batch keeps the pool batched after it.
	IdleLookback = 30 * time.Minute
	// IdleHistory is the history the day's level reads.
	IdleHistory = 24 * time.Hour
	// IdleLevelEvery is how often the leader computes the day's level
	// again: a replay of a day of jobs, too much for every pass of a busy
	// pool, and a level a minute old is as good.
	IdleLevelEvery = time.Minute
	// IdleRateWindow is the window of the rate estimate.
	IdleRateWindow = 10 * time.Minute
	// DefaultReplenish is R until a runner of the pool was seen online.
	DefaultReplenish = 30 * time.Second
	// maxOnlineSamples bounds the online times the leader keeps per pool
	// (exact ones and listed ones each).
	maxOnlineSamples = 50
	// poissonBelow: with fewer arrivals in the lookback, the Poisson
	// estimate counts too.
	poissonBelow = 30
)

// IdleTarget is a pool's min_idle: auto settings.
type IdleTarget struct {
	Min, Max int           // idle_min, idle_max
	Quantile float64       // target_wait's percentile: p95 is 0.95
	Wait     time.Duration // target_wait's wait
}

// OnlineSample is one runner's queued → online time, measured at At.
type OnlineSample struct {
	At time.Time
	D  time.Duration
	// Exact: measured from a waiting job's start on the runner; otherwise
	// from the runner list, an upper bound.
	Exact bool
}

// IdleObservation is what SizeIdle and DayLevel read of one pool.
type IdleObservation struct {
	Now time.Time
	// Arrivals are the times queued jobs arrived, in any order; SizeIdle
	// ignores those before Now-IdleLookback, DayLevel those before
	// Now-IdleHistory.
	Arrivals []time.Time
	// Online are recent queued → online times, in any order.
	Online []OnlineSample
	// Level is the day's level, from DayLevel; the zero value is none.
	Level Level
}

// Level is the day's level of a pool: the smallest fixed buffer that
// would have met the target over the last IdleHistory.
type Level struct {
	N     int
	Known bool      // false: fewer than poissonBelow jobs in the history
	At    time.Time // when it was computed
}

// IdleSize is SizeIdle's decision and what it was made from.
type IdleSize struct {
	N         int           // the buffer: idle runners to keep
	Replenish time.Duration // R: the median queued → online time
	Rate      float64       // λ̂, jobs per second
	Replay    int           // the buffer the replay of the lookback needed
	Poisson   int           // the Poisson quantile
	Level     int           // the day's level; -1: none yet
	Batched   bool          // the lookback holds a batch (batched)
}

// SizeIdle returns the idle buffer for target given what was observed
// (see the comment at the top of this file).
func SizeIdle(target IdleTarget, obs IdleObservation) IdleSize {
	rs := onlineTimes(obs.Online)
	out := IdleSize{Replenish: median(rs), Level: -1}
	arr := within(obs.Arrivals, obs.Now, IdleLookback)
	recent := len(within(arr, obs.Now, IdleRateWindow))
	out.Rate = float64(recent) / IdleRateWindow.Seconds()
	if l := out.Replenish - target.Wait; l > 0 && len(arr) > 0 && len(arr) < poissonBelow {
		out.Poisson = 1 + poissonQuantile(out.Rate*l.Seconds(), target.Quantile)
	}
	out.Replay = replayBuffer(arr, replayTime(obs.Online, rs), target)
	out.N = max(out.Replay, out.Poisson)
	if obs.Level.Known {
		out.Level = obs.Level.N
		out.Batched = batched(arr, obs.Now)
		if out.Batched {
			out.N = out.Level
		} else {
			out.N = min(out.N, out.Level)
		}
	}
	out.N = min(max(out.N, target.Min), target.Max)
	return out
}

// DayLevel is the pool's day's level at obs.Now: the replay of the jobs
// of the last IdleHistory (see the comment at the top of this file).
// obs.Level is not read.
func DayLevel(target IdleTarget, obs IdleObservation) Level {
	arr := within(obs.Arrivals, obs.Now, IdleHistory)
	if len(arr) < poissonBelow {
		return Level{At: obs.Now}
	}
	rs := onlineTimes(obs.Online)
	return Level{N: replayBuffer(arr, replayTime(obs.Online, rs), target), Known: true, At: obs.Now}
}

// within returns the times of arr in (now-d, now], sorted.
func within(arr []time.Time, now time.Time, d time.Duration) []time.Time {
	var out []time.Time
	for _, t := range arr {
		if t.After(now.Add(-d)) && !t.After(now) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

// batchMinute is the span batched counts arrivals in.
const batchMinute = time.Minute

// batched reports whether the arrivals of the lookback before now
// (sorted) hold a batch: a minute with at least m + 4√m + 4 of them, m
// being the mean per minute of the lookback or of its last
// IdleRateWindow, whichever is more (a load rising within the lookback is
// judged at its recent rate). Under Poisson arrivals at that rate the
// busiest minute of the lookback (sliding) reaches that very rarely —
// four standard deviations of the normal approximation, and four jobs
// more so that a quiet pool's chance few are no batch — while a push of
// 20 jobs in a pool of a few a minute is far above it.
func batched(arr []time.Time, now time.Time) bool {
	perMinute := func(n int, d time.Duration) float64 { return float64(n) * batchMinute.Seconds() / d.Seconds() }
	m := max(perMinute(len(arr), IdleLookback), perMinute(len(within(arr, now, IdleRateWindow)), IdleRateWindow))
	peak, j := 0, 0
	for i := range arr {
		for arr[i].Sub(arr[j]) >= batchMinute {
			j++
		}
		peak = max(peak, i-j+1)
	}
	return float64(peak) >= m+4*math.Sqrt(m)+4
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// replayTime is the R the replay gives every runner: the quantile
// 0.5 + 0.5 × (the share of exact times) of the measured times. Exact times come from jobs that waited, and
// a waiting job takes the first of the runners booting at once, so when
// jobs wait in numbers (bursts) the exact times are the fastest boots;
// the others (runner list, later jobs) are upper bounds or centred
// estimates.
func replayTime(samples []OnlineSample, rs []time.Duration) time.Duration {
	exact := 0
	for _, s := range samples {
		if s.Exact {
			exact++
		}
	}
	q := 0.5
	if len(samples) > 0 {
		q += 0.5 * float64(exact) / float64(len(samples))
	}
	sorted := slices.Clone(rs)
	slices.Sort(sorted)
	return sorted[quantileIndex(len(sorted), q)]
}

// onlineTimes are the samples' queued → online times in the order they
// were given, or DefaultReplenish alone when there are none.
func onlineTimes(samples []OnlineSample) []time.Duration {
	if len(samples) == 0 {
		return []time.Duration{DefaultReplenish}
	}
	out := make([]time.Duration, len(samples))
	for i, s := range samples {
		out[i] = s.D
	}
	return out
}

// replayBuffer is the smallest buffer in [target.Min, target.Max] with
// which, replaying the arrivals (sorted) with replenish time r, at most a
// fraction 1-q of the jobs wait longer than target.Wait; target.Max when
// none does.
func replayBuffer(arr []time.Time, r time.Duration, target IdleTarget) int {
	allowed := int(math.Floor((1 - target.Quantile) * float64(len(arr))))
	lo, hi := target.Min, target.Max
	for lo < hi {
		mid := (lo + hi) / 2
		if replayLate(arr, r, mid, target.Wait) <= allowed {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// replayLate replays arr against a buffer of b idle runners: each job
// takes an idle runner or waits for the first to come online, and its
// own runner comes online r after it arrives (so runners come online in
// the order their jobs arrived). It returns how many jobs waited longer
// than wait.
func replayLate(arr []time.Time, r time.Duration, b int, wait time.Duration) int {
	idle, late, next := b, 0, 0
	var waiting []time.Time // oldest first
	online := func(at time.Time) {
		if len(waiting) == 0 {
			idle++
			return
		}
		if at.Sub(waiting[0]) > wait {
			late++
		}
		waiting = waiting[1:]
	}
	for i, t := range arr {
		for ; next < i && !arr[next].Add(r).After(t); next++ {
			online(arr[next].Add(r))
		}
		if idle > 0 {
			idle--
		} else {
			waiting = append(waiting, t)
		}
	}
	for ; next < len(arr); next++ {
		online(arr[next].Add(r))
	}
	return late
}

// quantileIndex is the index of the q-quantile in n sorted values: the
// smallest value with at least a fraction q of the values at or below it.
func quantileIndex(n int, q float64) int {
	return min(n-1, max(0, int(math.Ceil(q*float64(n)))-1))
}

// poissonQuantile is the smallest k with P(Poisson(mean) ≤ k) ≥ q.
func poissonQuantile(mean, q float64) int {
	if mean <= 0 {
		return 0
	}
	p := math.Exp(-mean) // P(N = 0)
	cdf := p
	k := 0
	for cdf < q && k < 100000 {
		k++
		p *= mean / float64(k)
		cdf += p
		if p == 0 && cdf < q { // underflow of e^-mean for a large mean
			return int(math.Ceil(mean + 4*math.Sqrt(mean)))
		}
	}
	return k
}

// ListedOnline is the queued → online time of a runner first seen
// online in the runner list read at seen, the lists being read every
// interval: it came online after the previous list (and after its
// instance started at started), so the middle of that span is taken.
func ListedOnline(queued, started, seen time.Time, interval time.Duration) OnlineSample {
	from := seen.Add(-interval)
	if started.After(from) {
		from = started
	}
	at := from.Add(seen.Sub(from) / 2)
	return OnlineSample{At: seen, D: max(0, at.Sub(queued))}
}

// OnlineSamples keeps a pool's most recent queued → online times for
// SizeIdle: the last maxOnlineSamples exact ones and as many listed ones,
// whatever their age (boot times change with images, not with the hour).
// The zero value is empty and ready.
type OnlineSamples struct {
	exact, listed []OnlineSample
}

// Add records s.
func (o *OnlineSamples) Add(s OnlineSample) {
	p := &o.listed
	if s.Exact {
		p = &o.exact
	}
	*p = append(*p, s)
	if len(*p) > maxOnlineSamples {
		*p = slices.Delete(*p, 0, len(*p)-maxOnlineSamples)
	}
}

// All returns the samples kept, exact ones first.
func (o *OnlineSamples) All() []OnlineSample {
	return slices.Concat(o.exact, o.listed)
}
