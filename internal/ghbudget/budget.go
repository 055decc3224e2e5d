package ghbudget

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Bucket is the KV bucket of the budgets.
const Bucket = "ephemera_github_budget"

// BucketConfig is the bucket's configuration; replicas as the bus's.
func BucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: Bucket, Description: "ephemera: GitHub request budget per installation", History: 1}
}

// Config configures a Budget. Zero optional fields take the defaults named.
type Config struct {
	KV jetstream.KeyValue // required: the Bucket
	// Replica names this process in the records. Default: random.
	Replica string

	// PointsPerMinute per endpoint (default 900) and MaxConcurrent
	// requests in flight (default 100): GitHub's secondary limits.
	PointsPerMinute int
	MaxConcurrent   int
	// Minute is the window PointsPerMinute is counted over, counted in
	// Slices slices. Defaults 1m and 60; a harness with a compressed clock
	// sets a shorter Minute (and labels its figures scaled).
	Minute time.Duration
	Slices int
	// Hour is the primary window assumed once a reset passes, until
	// GitHub reports the next. Default 1h.
	Hour time.Duration
	// Shares: the fraction of PointsPerMinute and MaxConcurrent each
	// priority may fill. Default 1, 0.9, 0.75, 0.6, 0.5.
	Shares [numPriorities]float64
	// PrimaryReserve: the fraction of the primary limit each priority
	// leaves for the ones before it. Default 0, 0.05, 0.1, 0.15, 0.2.
	PrimaryReserve [numPriorities]float64
	// MaxWait: a request whose budget comes back later than this fails at
	// once with a *LimitedError. Default 2 minutes.
	MaxWait time.Duration
	// LeaseTTL: how long a request holds its place in flight unless given
	// back; a dead replica's places come back after it. Default 1m.
	LeaseTTL time.Duration

	Log        zerolog.Logger
	Registerer prometheus.Registerer // nil: a private registry
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// DefaultShares and DefaultPrimaryReserve are the defaults of
// Config.Shares and Config.PrimaryReserve.
var (
	DefaultShares         = [numPriorities]float64{1, 0.9, 0.75, 0.6, 0.5}
	DefaultPrimaryReserve = [numPriorities]float64{0, 0.05, 0.1, 0.15, 0.2}
)

// LimitedError is Acquire's answer when the budget comes back only after
// the caller's deadline or MaxWait, or when GitHub answered a request
// with a rate limit: nothing is asked of GitHub for this request.
type LimitedError struct {
	Endpoint string
	Until    time.Time
	// On says what is exhausted: "endpoint", "in_flight" or "primary".
	On string
}

func (e *LimitedError) Error() string {
	return fmt.Sprintf("github request budget (%s) of %s exhausted until %s", e.On, e.Endpoint, e.Until.UTC().Format(time.RFC3339))
}

// Budget is one process's handle on the shared budgets. Create it with
// New; it is safe for concurrent use.
type Budget struct {
	cfg Config
	m   *metrics

	kvMu    sync.Mutex
	cache   map[string]cached  // installation key → last record seen
	pending map[string]pending // installation key → not written yet

	turn sync.Mutex // one KV round trip of this process at a time

	mu      sync.Mutex
	seq     uint64
	waiters map[*waiter]struct{}
	changed chan struct{} // closed and replaced when a local wait may end
}

type cached struct {
	rec record
	rev uint64
}

type waiter struct {
	prio     Priority
	endpoint string
	seq      uint64
	on       string // what it waits for, once it asked
	waiting  bool   // it had to wait (counted in the gauge)
}

// New checks cfg and fills defaults.
func New(cfg Config) (*Budget, error) {
	if cfg.KV == nil {
		return nil, errors.New("ghbudget: Config.KV is required")
	}
	if cfg.Replica == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		cfg.Replica = "replica-" + hex.EncodeToString(b)
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt(&cfg.PointsPerMinute, 900)
	defInt(&cfg.MaxConcurrent, 100)
	defInt(&cfg.Slices, 60)
	defDur(&cfg.Minute, time.Minute)
	defDur(&cfg.Hour, time.Hour)
	defDur(&cfg.MaxWait, 2*time.Minute)
	defDur(&cfg.LeaseTTL, time.Minute)
	if cfg.Shares == ([numPriorities]float64{}) {
		cfg.Shares = DefaultShares
	}
	if cfg.PrimaryReserve == ([numPriorities]float64{}) {
		cfg.PrimaryReserve = DefaultPrimaryReserve
	}
	for p := range numPriorities {
		if s := cfg.Shares[p]; s <= 0 || s > 1 {
			return nil, fmt.Errorf("ghbudget: share of %s is %v, want within (0, 1]", Priority(p), s)
		}
		if r := cfg.PrimaryReserve[p]; r < 0 || r >= 1 {
			return nil, fmt.Errorf("ghbudget: primary reserve of %s is %v, want within [0, 1)", Priority(p), r)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Budget{cfg: cfg, m: m, cache: map[string]cached{}, pending: map[string]pending{}, waiters: map[*waiter]struct{}{}, changed: make(chan struct{})}, nil
}

// Replica is the name this process's requests are leased under.
func (b *Budget) Replica() string { return b.cfg.Replica }

func (b *Budget) slice(t time.Time) int64 {
	return t.UnixNano() / int64(b.cfg.Minute/time.Duration(b.cfg.Slices))
}

func (b *Budget) sliceStart(s int64) time.Time {
	return time.Unix(0, s*int64(b.cfg.Minute/time.Duration(b.cfg.Slices)))
}

// Request is one request's claim on an installation's budget.
type Request struct {
	// Installation keys the budget: an installation id, "app" for the
	// App's own calls, "token" for a token.
	Installation string
	// Endpoint names the REST endpoint, as precisely as GitHub counts it
	// or coarser, e.g. "POST generate_jitconfig".
	Endpoint string
	Method   string
	Priority Priority
}

// Acquire waits until r fits the budget and spends it; the request must
// then be sent, and Done called with its answer. It fails with ctx's
// error, with a *LimitedError when the wait would outlast ctx's deadline
// or MaxWait, or when the budget cannot be read or written.
//
// Within a process requests queue by priority, then arrival: only the
// first in line for an endpoint (or for a place in flight) asks the
// shared record, so that a crowd of waiters costs one KV round trip per
// admission, not one per waiter.
func (b *Budget) Acquire(ctx context.Context, r Request) (*Ticket, error) {
	w := want{endpoint: r.Endpoint, points: Points(r.Method), prio: r.Priority}
	me := b.join(r)
	start := time.Now()
	defer func() {
		b.leave(me)
		b.m.wait.WithLabelValues(r.Priority.String()).Observe(time.Since(start).Seconds())
	}()
	for {
		changed, first := b.gate(me)
		if !first {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-changed:
			}
			continue
		}
		b.turn.Lock()
		v, err := b.tryTake(ctx, r.Installation, w)
		b.turn.Unlock()
		if err != nil {
			return nil, err
		}
		if v.ok {
			b.m.inFlight.Inc()
			tk := &Ticket{b: b, inst: r.Installation, endpoint: r.Endpoint, points: w.points, slice: v.slice}
			if err := ctx.Err(); err != nil {
				// Admitted by a write answered after the caller gave up:
				// the request is not sent, and its place comes back.
				_ = tk.Done(ctx, nil)
				return nil, err
			}
			return tk, nil
		}
		now := b.cfg.Now()
		if d, ok := ctx.Deadline(); (ok && v.retry.Sub(now) > time.Until(d)) || v.retry.Sub(now) > b.cfg.MaxWait {
			return nil, &LimitedError{Endpoint: r.Endpoint, Until: v.retry, On: v.on}
		}
		changed = b.blockedOn(me, v.on)
		timer := time.NewTimer(max(v.retry.Sub(now), time.Millisecond))
		if v.on != onInFlight {
			changed = nil // only a place given back here ends this wait early
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		case <-changed:
			timer.Stop()
		}
	}
}

// join puts a request in this process's line.
func (b *Budget) join(r Request) *waiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	me := &waiter{prio: r.Priority, endpoint: r.Endpoint, seq: b.seq}
	b.waiters[me] = struct{}{}
	return me
}

// ahead reports whether w goes before me.
func (w *waiter) ahead(me *waiter) bool {
	return w.prio < me.prio || (w.prio == me.prio && w.seq < me.seq)
}

// gate reports whether me is first in line for what it needs: no request
// ahead of it waits for the same endpoint, nor for a place in flight or
// the primary budget. It returns the channel closed when the line moves.
func (b *Budget) gate(me *waiter) (<-chan struct{}, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for w := range b.waiters {
		if w != me && w.ahead(me) && (w.endpoint == me.endpoint || w.on == onInFlight || w.on == onPrimary) {
			b.setWaiting(me, true)
			return b.changed, false
		}
	}
	return b.changed, true
}

// blockedOn records that me, first in line, waits for on.
func (b *Budget) blockedOn(me *waiter, on string) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	me.on = on
	b.setWaiting(me, true)
	return b.changed
}

// setWaiting counts me in the waiting gauge once it has had to wait.
func (b *Budget) setWaiting(me *waiter, waiting bool) {
	if me.waiting == waiting {
		return
	}
	me.waiting = waiting
	if waiting {
		b.m.waiting.WithLabelValues(me.prio.String()).Inc()
	} else {
		b.m.waiting.WithLabelValues(me.prio.String()).Dec()
	}
}

func (b *Budget) leave(me *waiter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.waiters, me)
	b.setWaiting(me, false)
	b.notifyLocked()
}

func (b *Budget) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Waiting counts the requests of this process waiting for the budget, by
// priority.
func (b *Budget) Waiting() map[Priority]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[Priority]int{}
	for w := range b.waiters {
		if w.waiting {
			out[w.prio]++
		}
	}
	return out
}

// tryTake reads the installation's record, decides, and when w fits,
// writes it back spent, under compare-and-set.
func (b *Budget) tryTake(ctx context.Context, inst string, w want) (verdict, error) {
	var v verdict
	pend := b.takePending(inst)
	err := b.update(ctx, inst, func(r *record, now time.Time) bool {
		flushed := pend.apply(b, r, now)
		v = b.decide(r, w, now)
		if !v.ok {
			if w.prio != Registration || v.on != onEndpoint {
				return flushed
			}
			// A waiting job's registration: keep lower priorities on
			// every process off this endpoint until it has gone.
			until := v.retry.Add(b.cfg.Minute / time.Duration(b.cfg.Slices) * 2)
			if r.Demand[w.endpoint].Before(until) {
				if r.Demand == nil {
					r.Demand = map[string]time.Time{}
				}
				r.Demand[w.endpoint] = until
				return true
			}
			return flushed
		}
		b.take(r, w, now)
		v.slice = b.slice(now)
		b.m.used.WithLabelValues(w.endpoint).Set(float64(r.Endpoints[w.endpoint].sum(b.slice(now), b.cfg.Slices+1)))
		return true
	})
	if err != nil {
		b.restorePending(inst, pend) // not written: the next write takes it
	}
	if !pend.empty() && v.ok {
		b.mu.Lock()
		b.notifyLocked()
		b.mu.Unlock()
	}
	return v, err
}

// pending is what finished requests of this process have not written
// yet: places to give back and what their answers said. It rides on the
// next write, so that a request costs one KV write, not two, while the
// process is busy.
type pending struct {
	released int
	obs      []observation
	moves    []move
}

// move is a finished request's points, to be moved from the slice it
// was admitted in to the one it finished in (Ticket.Done).
type move struct {
	endpoint string
	from, to int64
	points   int
}

func (m move) apply(b *Budget, r *record) {
	if win := r.Endpoints[m.endpoint]; win != nil {
		win.move(m.from, m.to, m.points, b.cfg.Slices+1)
	}
}

func (p pending) empty() bool { return p.released == 0 && len(p.obs) == 0 && len(p.moves) == 0 }

// apply writes p into r and reports whether it changed anything.
func (p pending) apply(b *Budget, r *record, now time.Time) bool {
	if p.empty() {
		return false
	}
	b.lease(r, now, -p.released)
	for _, o := range p.obs {
		o.apply(r)
	}
	for _, m := range p.moves {
		m.apply(b, r)
	}
	return true
}

func (b *Budget) addPending(inst string, o observation, m move) {
	b.kvMu.Lock()
	defer b.kvMu.Unlock()
	p := b.pending[inst]
	p.released++
	if o.limit > 0 || o.limited != nil {
		p.obs = append(p.obs, o)
	}
	if m.to > m.from {
		p.moves = append(p.moves, m)
	}
	b.pending[inst] = p
}

func (b *Budget) takePending(inst string) pending {
	b.kvMu.Lock()
	defer b.kvMu.Unlock()
	p := b.pending[inst]
	delete(b.pending, inst)
	return p
}

func (b *Budget) restorePending(inst string, p pending) {
	b.kvMu.Lock()
	defer b.kvMu.Unlock()
	q := b.pending[inst]
	q.released += p.released
	q.obs = append(p.obs, q.obs...)
	q.moves = append(p.moves, q.moves...)
	b.pending[inst] = q
}

// updateAttempts bounds the compare-and-set retries of one update.
const updateAttempts = 50

// kvOpTimeout bounds each read of an update: a reply lost while a NATS
// node restarts would otherwise hold the caller until its own deadline (a
// policy check's 30 s) and fail it; a read that times out is sent again.
// Writes keep the caller's deadline: one that is only slow (a loaded
// machine) must not fail the request. A write left without an answer is
// never sent again blindly: whether it was applied is settled first
// (settle.go), or it could count the same request twice.
const kvOpTimeout = 3 * time.Second

// update applies f to the installation's record under compare-and-set
// (the caller holds b.turn),
// starting from the revision this process last saw; f reports whether it
// changed the record (nothing is written otherwise).
func (b *Budget) update(ctx context.Context, inst string, f func(*record, time.Time) bool) error {
	key := "inst." + keySafe(inst)
	b.kvMu.Lock()
	c, known := b.cache[key]
	b.kvMu.Unlock()
	fresh := !known
	for attempt := range updateAttempts {
		if !known {
			e, err := bus.GetAskingAgain(ctx, b.cfg.KV, key, kvOpTimeout)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				c = cached{}
			case err != nil:
				return fmt.Errorf("read github budget %s: %w", inst, err)
			default:
				c = cached{rev: e.Revision()}
				if err := decode(e.Value(), &c.rec); err != nil {
					return fmt.Errorf("read github budget %s: %w", inst, err)
				}
			}
			known, fresh = true, true
		}
		rec := c.rec.clone()
		now := b.cfg.Now()
		if !f(&rec, now) {
			if !fresh {
				// Said no on what this process last wrote: others may
				// have given back since. Read again.
				known = false
				continue
			}
			b.remember(key, c)
			return nil
		}
		mark := b.mark(&rec, now)
		val, err := encode(rec)
		if err != nil {
			return err
		}
		rev, err := b.write(ctx, key, val, c.rev)
		if err == nil {
			b.remember(key, cached{rec: rec, rev: rev})
			return nil
		}
		if !bus.IsConflict(err) {
			// No answer, or none that says the write was refused: it
			// may have been applied, or be yet.
			b.forget(key)
			applied, serr := b.settle(ctx, key, mark, c.rev)
			switch {
			case serr != nil:
				return fmt.Errorf("write github budget %s: %w; whether it was applied is unknown: %w", inst, err, serr)
			case applied:
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		known, fresh = false, false // someone else wrote: read again
		// Let the writer that won finish its round before trying again,
		// backing off further after each lost round (up to 64 ms, with
		// jitter) so that writers on many processes spread out instead of
		// colliding again: a fixed 2 ms let 50 rounds in a row be lost
		// when KV writes took longer than that (a loaded machine).
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(mrand.Int64N(int64(min(time.Millisecond<<min(attempt, 6), 64*time.Millisecond)) + 1))):
		}
	}
	return fmt.Errorf("write github budget %s: %d conflicting writes in a row", inst, updateAttempts)
}

func (b *Budget) remember(key string, c cached) {
	b.kvMu.Lock()
	if old, ok := b.cache[key]; !ok || c.rev >= old.rev {
		b.cache[key] = c
	}
	b.kvMu.Unlock()
}
