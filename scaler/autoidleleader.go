package scaler

import (
	"time"

	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// The leader's side of min_idle: auto (the sizing itself is SizeIdle, in
// autoidle.go): it collects each pool's queued → online times from the
// runner records, observes them as ephemera_runner_online_seconds, and
// sizes each auto pool's buffer before it plans a pass. The samples live
// in the leader's memory; a new leader starts from the records that
// exist (and DefaultReplenish until then).

// onlineSample is the queued → online time a runner record tells, once
// it has been seen online: exact when a waiting job took it, an upper
// bound when a later job did (tookJob), and estimated from when the
// runner list first showed it otherwise (ListedOnline). It also returns
// how it was learnt.
func onlineSample(r runnerRec, interval time.Duration) (OnlineSample, string, bool) {
	if r.OnlineAt.IsZero() {
		return OnlineSample{}, "", false
	}
	queued := r.QueuedAt
	if queued.IsZero() {
		queued = r.CreatedAt
	}
	if queued.IsZero() {
		return OnlineSample{}, "", false
	}
	d := max(0, r.OnlineAt.Sub(queued))
	switch r.OnlineBy {
	case onlineWaitingJob:
		return OnlineSample{At: r.OnlineAt, D: d, Exact: true}, onlineWaitingJob, true
	case onlineLaterJob:
		return OnlineSample{At: r.OnlineAt, D: d}, onlineLaterJob, true
	}
	started := r.StartedAt
	if started.IsZero() {
		started = queued
	}
	return ListedOnline(queued, started, r.OnlineAt, interval), onlineListing, true
}

// autoIdle is the leader's memory for sizing: samples per pool, the
// runners already sampled, and each pool's day's level.
type autoIdle struct {
	samples map[string]*OnlineSamples
	seen    map[string]bool
	levels  map[string]dayLevel
	last    map[string]int // the buffer last chosen, for the log
}

// dayLevel is a pool's day's level and the target it was computed for.
type dayLevel struct {
	Level
	target IdleTarget
}

// ListedBusyGrace is how long the leader waits for the in_progress event
// of a runner first seen busy in the runner list before it samples the
// runner from the list alone: the event, handled, gives the exact time.
const ListedBusyGrace = time.Minute

// collect takes the samples of runners not sampled yet from w and
// observes them; it forgets runners whose records are gone.
func (s *Scaler) collectOnline(w *world) {
	a := &s.auto
	if a.samples == nil {
		a.samples, a.seen, a.levels, a.last = map[string]*OnlineSamples{}, map[string]bool{}, map[string]dayLevel{}, map[string]int{}
	}
	for name := range a.seen {
		if _, ok := w.recs[name]; !ok {
			delete(a.seen, name)
		}
	}
	for _, name := range sortedKeys(w.recs) {
		r := w.recs[name].Val
		if a.seen[name] || r.V > schemaVersion {
			continue
		}
		if _, ok := s.pools[r.Pool]; !ok {
			continue
		}
		if r.OnlineBy == onlineListedBusy && s.now().Sub(r.OnlineAt) < ListedBusyGrace {
			continue
		}
		smp, via, ok := onlineSample(r, s.cfg.Interval)
		if !ok {
			continue
		}
		a.seen[name] = true
		if a.samples[r.Pool] == nil {
			a.samples[r.Pool] = &OnlineSamples{}
		}
		a.samples[r.Pool].Add(smp)
		s.m.online.WithLabelValues(r.Pool, via).Observe(smp.D.Seconds())
	}
}

// sizeBuffers returns the buffer of every pool with min_idle: auto,
// sized from the arrivals in w's job claims (kept IdleHistory, as long as
// a claim is) and the samples collected.
func (s *Scaler) sizeBuffers(w *world) map[string]int {
	s.collectOnline(w)
	now := s.now()
	arrivals := map[string][]time.Time{}
	for _, c := range w.claims {
		cl := c.Val
		if cl.NoRunner || cl.V > schemaVersion {
			continue
		}
		at := cl.ReceivedAt
		if at.IsZero() {
			at = cl.ClaimedAt
		}
		if now.Sub(at) <= IdleHistory {
			arrivals[cl.Pool] = append(arrivals[cl.Pool], at)
		}
	}
	out := map[string]int{}
	for _, p := range s.cfg.Pools {
		if !p.AutoIdle {
			continue
		}
		var online []OnlineSample
		if smp := s.auto.samples[p.Name]; smp != nil {
			online = smp.All()
		}
		target := IdleTarget{Min: p.IdleMin, Max: p.IdleMax, Quantile: p.TargetWait.Quantile, Wait: p.TargetWait.Wait.D()}
		obs := IdleObservation{Now: now, Arrivals: arrivals[p.Name], Online: online}
		lvl, ok := s.auto.levels[p.Name]
		if !ok || lvl.target != target || now.Sub(lvl.At) >= IdleLevelEvery {
			lvl = dayLevel{DayLevel(target, obs), target}
			s.auto.levels[p.Name] = lvl
		}
		obs.Level = lvl.Level
		sz := SizeIdle(target, obs)
		out[p.Name] = sz.N
		if last, ok := s.auto.last[p.Name]; !ok || last != sz.N {
			s.auto.last[p.Name] = sz.N
			s.log.Info().Str(logkey.Pool, p.Name).Int(logkey.MinIdle, sz.N).Dur(logkey.Replenish, sz.Replenish).
				Float64(logkey.Rate, sz.Rate).Int(logkey.Replay, sz.Replay).Int(logkey.Poisson, sz.Poisson).
				Int(logkey.DayLevel, sz.Level).Bool(logkey.Batched, sz.Batched).
				Msg("min_idle: auto sized the idle buffer")
		}
	}
	return out
}
