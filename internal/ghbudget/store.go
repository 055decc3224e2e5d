package ghbudget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

func encode(r record) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode github budget: %w", err)
	}
	return b, nil
}

func decode(b []byte, r *record) error {
	if err := json.Unmarshal(b, r); err != nil {
		return fmt.Errorf("decode github budget: %w", err)
	}
	return nil
}

func (r record) clone() record {
	out := r
	out.Endpoints = make(map[string]*window, len(r.Endpoints))
	for k, w := range r.Endpoints {
		c := *w
		c.Points = slices.Clone(w.Points)
		out.Endpoints[k] = &c
	}
	out.InFlight = maps.Clone(r.InFlight)
	out.Backoff = maps.Clone(r.Backoff)
	out.Demand = maps.Clone(r.Demand)
	return out
}

// keySafe makes an installation key a valid KV key token.
func keySafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// Snapshot is one installation's budget as the bucket holds it.
type Snapshot struct {
	Installation string
	// Points spent per endpoint in the last minute, and the limit.
	Points          map[string]int
	PointsPerMinute int
	InFlight        int
	MaxConcurrent   int
	// PrimaryLimit 0: GitHub has not reported it yet.
	PrimaryLimit, PrimaryRemaining int
	PrimaryReset                   time.Time
	// Backoff: endpoint ("*": all) → until when GitHub asked to wait.
	Backoff map[string]time.Time
}

// Snapshots reads every installation's budget from kv as cfg counts it
// (only its Minute, Slices, PointsPerMinute and MaxConcurrent matter;
// zero values take the defaults), for `ephemera status`.
func Snapshots(ctx context.Context, kv jetstream.KeyValue, cfg Config) ([]Snapshot, error) {
	cfg.KV = kv
	cfg.Registerer = prometheus.NewRegistry()
	b, err := New(cfg)
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list github budgets: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	now := b.cfg.Now()
	var out []Snapshot
	for _, k := range keys {
		inst, ok := strings.CutPrefix(k, "inst.")
		if !ok {
			continue
		}
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read github budget %s: %w", inst, err)
		}
		var r record
		if err := decode(e.Value(), &r); err != nil {
			return nil, err
		}
		s := Snapshot{
			Installation: inst, Points: map[string]int{}, PointsPerMinute: b.cfg.PointsPerMinute,
			InFlight: r.inFlight(now), MaxConcurrent: b.cfg.MaxConcurrent, Backoff: map[string]time.Time{},
		}
		for ep, w := range r.Endpoints {
			if n := w.sum(b.slice(now), b.cfg.Slices); n > 0 {
				s.Points[ep] = n
			}
		}
		if left := r.Primary.left(now); left >= 0 {
			s.PrimaryLimit, s.PrimaryRemaining, s.PrimaryReset = r.Primary.Limit, left, r.Primary.Reset
		}
		for ep, until := range r.Backoff {
			if now.Before(until) {
				s.Backoff[ep] = until
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// waitingRec is a process's queue, published for `ephemera status`.
type waitingRec struct {
	ByPriority map[string]int `json:"by_priority"`
	At         time.Time      `json:"at"`
}

// waitingFresh is how old a published queue may be and still count.
const waitingFresh = 10 * time.Second

// Run publishes this process's queue (Waiting) to the bucket every
// second while it changes or is not empty, for `ephemera status`, until
// ctx ends; then it removes it.
func (b *Budget) Run(ctx context.Context) error {
	key := "waiting." + keySafe(b.cfg.Replica)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last map[string]int
	for {
		cur := map[string]int{}
		for p, n := range b.Waiting() {
			cur[p.String()] = n
		}
		if len(cur) > 0 || !maps.Equal(cur, last) {
			val, _ := json.Marshal(waitingRec{ByPriority: cur, At: time.Now().UTC()})
			if _, err := b.cfg.KV.Put(ctx, key, val); err != nil && ctx.Err() == nil {
				b.cfg.Log.Debug().Err(err).Msg("publish github budget queue")
			}
			last = cur
		}
		b.flush(ctx)
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = b.cfg.KV.Delete(dctx, key)
			return nil
		case <-t.C:
		}
	}
}

// flush writes what finished requests left pending (their places, the
// answers' news, their points' moves) when no later request of this
// process has written it: a process that went quiet right after a busy
// moment must not leave the record out of date for longer than Run's
// tick.
func (b *Budget) flush(ctx context.Context) {
	b.kvMu.Lock()
	insts := slices.Collect(maps.Keys(b.pending))
	b.kvMu.Unlock()
	for _, inst := range insts {
		if !b.turn.TryLock() {
			return // a write under way takes what is pending
		}
		pend := b.takePending(inst)
		if err := b.update(ctx, inst, func(r *record, now time.Time) bool { return pend.apply(b, r, now) }); err != nil {
			b.restorePending(inst, pend)
			b.cfg.Log.Debug().Err(err).Str("installation", inst).Msg("write the github budget's pending answers")
		}
		b.turn.Unlock()
	}
}

// WaitingSnapshot sums the queues every process published lately, by
// priority.
func WaitingSnapshot(ctx context.Context, kv jetstream.KeyValue) (map[string]int, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list github budget queues: %w", err)
	}
	out := map[string]int{}
	for k := range lister.Keys() {
		if !strings.HasPrefix(k, "waiting.") {
			continue
		}
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue // gone meanwhile
		}
		var w waitingRec
		if json.Unmarshal(e.Value(), &w) != nil || time.Since(w.At) > waitingFresh {
			continue
		}
		for p, n := range w.ByPriority {
			out[p] += n
		}
	}
	return out, nil
}
