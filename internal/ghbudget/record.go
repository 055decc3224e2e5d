package ghbudget

import (
	"time"
)

// record is an installation's budget as kept in KV.
type record struct {
	// Endpoints: points spent per endpoint ("METHOD op"), by slice.
	Endpoints map[string]*window `json:"endpoints,omitempty"`
	Primary   primary            `json:"primary"`
	// InFlight: the requests each replica has in flight.
	InFlight map[string]lease `json:"in_flight,omitempty"`
	// Backoff: endpoint → until when GitHub asked it to wait.
	Backoff map[string]time.Time `json:"backoff,omitempty"`
	// Demand: endpoint → until when a registration for a waiting job
	// waits for it on some process; lower priorities keep off it.
	Demand map[string]time.Time `json:"demand,omitempty"`
}

// primary is the primary budget as GitHub last reported it, less what was
// spent since. Limit 0: not reported yet.
type primary struct {
	Limit     int       `json:"limit,omitempty"`
	Remaining int       `json:"remaining"`
	Reset     time.Time `json:"reset"`
}

// left is the primary budget at now; -1 when unknown.
func (p primary) left(now time.Time) int {
	switch {
	case p.Limit == 0:
		return -1
	case !now.Before(p.Reset):
		return p.Limit // a new hour
	}
	return p.Remaining
}

type lease struct {
	N     int       `json:"n"`
	Until time.Time `json:"until"` // after it, the replica is presumed dead
	// Write marks the replica's last write of the record (settle.go).
	Write uint64 `json:"write,omitempty"`
}

// window holds the points of the last slices: Points[i] were spent in
// slice Last-len(Points)+1+i.
type window struct {
	Last   int64 `json:"last"`
	Points []int `json:"points"`
}

// sum is the points spent in the n slices up to cur (included).
func (w *window) sum(cur int64, n int) int {
	if w == nil {
		return 0
	}
	total := 0
	for i, p := range w.Points {
		s := w.Last - int64(len(w.Points)) + 1 + int64(i)
		if s > cur-int64(n) && s <= cur {
			total += p
		}
	}
	return total
}

// add spends pts in slice cur, keeping n slices.
func (w *window) add(cur int64, pts, n int) {
	if cur > w.Last {
		shift := cur - w.Last
		if shift >= int64(n) || len(w.Points) == 0 {
			w.Points = make([]int, n)
		} else {
			w.Points = append(w.Points[shift:], make([]int, shift)...)
		}
		w.Last = cur
	}
	if len(w.Points) < n {
		w.Points = append(make([]int, n-len(w.Points)), w.Points...)
	}
	if i := len(w.Points) - 1 - int(w.Last-cur); i >= 0 {
		w.Points[i] += pts
	}
}

// move takes pts spent in slice from (if it is still kept) and spends
// them in slice to instead, keeping n slices.
func (w *window) move(from, to int64, pts, n int) {
	if w == nil || to <= from {
		return
	}
	w.add(to, pts, n)
	if i := len(w.Points) - 1 - int(w.Last-from); i >= 0 && i < len(w.Points) {
		w.Points[i] = max(0, w.Points[i]-pts)
	}
}

// inFlight counts the live leases at now.
func (r *record) inFlight(now time.Time) int {
	n := 0
	for _, l := range r.InFlight {
		if now.Before(l.Until) {
			n += l.N
		}
	}
	return n
}

// want is one request's claim on the budget.
type want struct {
	endpoint string
	points   int
	prio     Priority
}

// verdict is decide's answer: go, or wait until retry, blocked by what.
type verdict struct {
	ok    bool
	retry time.Time
	// on: "endpoint" (points or a wait GitHub asked for), "in_flight",
	// "primary".
	on string
	// slice is the slice an admitted request's points were spent in.
	slice int64
}

// decide says whether w fits the budget r at now.
func (b *Budget) decide(r *record, w want, now time.Time) verdict {
	c := &b.cfg
	if until, ok := r.Backoff[w.endpoint]; ok && now.Before(until) {
		return verdict{retry: until, on: onEndpoint}
	}
	if until, ok := r.Backoff[allEndpoints]; ok && now.Before(until) {
		return verdict{retry: until, on: onPrimary}
	}
	if left := r.Primary.left(now); left >= 0 {
		reserve := int(c.PrimaryReserve[w.prio] * float64(r.Primary.Limit))
		if left-1 < reserve {
			return verdict{retry: r.Primary.Reset, on: onPrimary}
		}
	}
	cur := b.slice(now)
	if until, ok := r.Demand[w.endpoint]; ok && w.prio > Registration && now.Before(until) {
		return verdict{retry: until, on: onEndpoint}
	}
	if r.inFlight(now)+1 > share(c.MaxConcurrent, c.Shares[w.prio]) {
		return verdict{retry: b.sliceStart(cur + 1), on: onInFlight}
	}
	if r.Endpoints[w.endpoint].sum(cur, c.Slices+1)+w.points > share(c.PointsPerMinute, c.Shares[w.prio]) {
		return verdict{retry: b.sliceStart(cur + 1), on: onEndpoint}
	}
	return verdict{ok: true}
}

// take spends w's points, its primary request and a place in flight.
func (b *Budget) take(r *record, w want, now time.Time) {
	if r.Endpoints == nil {
		r.Endpoints = map[string]*window{}
	}
	win := r.Endpoints[w.endpoint]
	if win == nil {
		win = &window{}
		r.Endpoints[w.endpoint] = win
	}
	win.add(b.slice(now), w.points, b.cfg.Slices+1)
	if left := r.Primary.left(now); left >= 0 {
		if !now.Before(r.Primary.Reset) {
			// A new hour whose reset GitHub has not told yet: an hour on.
			r.Primary.Reset = now.Add(b.cfg.Hour)
		}
		r.Primary.Remaining = left - 1
	}
	b.lease(r, now, +1)
	r.prune(now, b.slice(now), b.cfg.Slices+1)
}

// lease moves this process's count of requests in flight in r by d and
// renews its lease; a lease with nothing in flight is dropped.
func (b *Budget) lease(r *record, now time.Time, d int) {
	l := b.ownLease(r, now)
	l.N = max(0, l.N+d)
	if l.N == 0 {
		delete(r.InFlight, b.cfg.Replica)
		return
	}
	r.InFlight[b.cfg.Replica] = l
}

// ownLease is this process's lease in r, renewed until now+LeaseTTL; a
// lease of ours that had run out (our restart) starts again with nothing
// in flight. The caller stores it back.
func (b *Budget) ownLease(r *record, now time.Time) lease {
	if r.InFlight == nil {
		r.InFlight = map[string]lease{}
	}
	l := r.InFlight[b.cfg.Replica]
	if !now.Before(l.Until) {
		l.N = 0
	}
	l.Until = now.Add(b.cfg.LeaseTTL)
	return l
}

// prune drops what no longer counts: dead leases, waits over, windows
// with nothing in them.
func (r *record) prune(now time.Time, cur int64, n int) {
	for k, l := range r.InFlight {
		if !now.Before(l.Until) {
			delete(r.InFlight, k)
		}
	}
	for k, until := range r.Backoff {
		if !now.Before(until) {
			delete(r.Backoff, k)
		}
	}
	for k, until := range r.Demand {
		if !now.Before(until) {
			delete(r.Demand, k)
		}
	}
	for k, w := range r.Endpoints {
		if w.sum(cur, n) == 0 {
			delete(r.Endpoints, k)
		}
	}
}

func share(limit int, frac float64) int {
	return max(1, int(float64(limit)*frac))
}

const (
	onEndpoint = "endpoint"
	onInFlight = "in_flight"
	onPrimary  = "primary"
	// allEndpoints is the Backoff key of an exhausted primary budget.
	allEndpoints = "*"
)
