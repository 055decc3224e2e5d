package ghbudget

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// Ticket is an admitted request's place in the budget.
type Ticket struct {
	b        *Budget
	inst     string
	endpoint string
	points   int
	slice    int64 // the slice its points were spent in
	done     bool
}

// Done gives the request's place in flight back and hands the budget
// what GitHub's answer says (resp may be nil when none came): the primary
// budget left, and any wait it asked for. It returns a *LimitedError when
// the answer was a rate limit. Calling it again does nothing.
func (t *Ticket) Done(ctx context.Context, resp *http.Response) error {
	if t == nil || t.done {
		return nil
	}
	t.done = true
	b := t.b
	b.m.inFlight.Dec()
	now := b.cfg.Now()
	obs := observe(resp, t.endpoint, now)
	// GitHub counted the request when it arrived, at some moment between
	// its admission and now; a sliding minute the budget counts from the
	// admission would forget it before GitHub does when the request took
	// longer than the time left in its slice. Counted from now instead,
	// it is forgotten no sooner than GitHub forgets it.
	mv := move{endpoint: t.endpoint, from: t.slice, to: b.slice(now), points: t.points}
	if obs.limited != nil {
		b.m.limited.WithLabelValues(t.endpoint).Inc()
	}
	// A rate limit is written at once; otherwise, while another request
	// of this process talks to KV, the place and the answer ride on its
	// write.
	if obs.limited == nil && !b.turn.TryLock() {
		b.addPending(t.inst, obs, mv)
	} else {
		if obs.limited != nil {
			b.turn.Lock()
		}
		// Written even when ctx ended: the place must come back.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		pend := b.takePending(t.inst)
		err := b.update(wctx, t.inst, func(r *record, now time.Time) bool {
			pend.apply(b, r, now)
			b.lease(r, now, -1)
			obs.apply(r)
			mv.apply(b, r)
			return true
		})
		cancel()
		b.turn.Unlock()
		if err != nil {
			b.restorePending(t.inst, pend)
			b.cfg.Log.Warn().Err(err).Str("installation", t.inst).Msg("give back a github budget place; it comes back when its lease ends")
		}
	}
	b.mu.Lock()
	b.notifyLocked()
	b.mu.Unlock()
	if obs.limited != nil {
		return obs.limited
	}
	return nil
}

// observation is what an answer tells about the budget.
type observation struct {
	limit, remaining int
	reset            time.Time
	limited          *LimitedError // GitHub answered with a rate limit
}

func observe(resp *http.Response, endpoint string, now time.Time) observation {
	o := observation{limit: -1}
	if resp == nil {
		return o
	}
	h := resp.Header
	lim, err1 := strconv.Atoi(h.Get("X-RateLimit-Limit"))
	rem, err2 := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
	reset, err3 := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64)
	if err1 == nil && err2 == nil && err3 == nil && lim > 0 {
		o.limit, o.remaining, o.reset = lim, rem, time.Unix(reset, 0)
	}
	if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusTooManyRequests {
		return o
	}
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s >= 0 {
		o.limited = &LimitedError{Endpoint: endpoint, Until: now.Add(time.Duration(s) * time.Second), On: onEndpoint}
	} else if o.limit > 0 && o.remaining == 0 {
		o.limited = &LimitedError{Endpoint: endpoint, Until: o.reset, On: onPrimary}
	}
	return o
}

// apply writes the observation into r.
func (o observation) apply(r *record) {
	if o.limit > 0 {
		p := &r.Primary
		switch {
		case p.Limit == 0 || o.reset.Sub(p.Reset).Abs() > time.Second:
			// The first report, or another window (a new hour, or one
			// GitHub says ends sooner): the answer's window is the truth.
			p.Limit, p.Remaining, p.Reset = o.limit, o.remaining, o.reset
		default:
			// Requests in flight are counted here already and maybe not
			// yet by GitHub: keep the lower.
			p.Limit = o.limit
			p.Remaining = min(p.Remaining, o.remaining)
		}
	}
	if o.limited != nil {
		if r.Backoff == nil {
			r.Backoff = map[string]time.Time{}
		}
		key := o.limited.Endpoint
		if o.limited.On == onPrimary {
			key = allEndpoints
		}
		if o.limited.Until.After(r.Backoff[key]) {
			r.Backoff[key] = o.limited.Until
		}
	}
}
