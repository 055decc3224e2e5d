package scaler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/config"
)

// Slots enforce a pool's max across every replica: the pool has max slot
// keys, "<pool>.0" … "<pool>.<max-1>", and an instance may exist only while
// a slot key names it. A slot is taken with kv.Create, which only one
// writer can win, before the runner is registered, and it is released only
// once the instance is gone from the provisioner (a powering-off instance
// still holds it). Each replica watches the bucket to know which slots
// look free, so it rarely tries a taken one.

// errPoolFull: every slot of the pool is taken.
var errPoolFull = errors.New("pool at max")

// slotView is this replica's view of taken slots, fed by a KV watch, and
// of the slots its own goroutines are trying to take (pending), so that
// when a few slots free up, only as many of its waiting jobs as there are
// free slots go after them, each after a different one: the others wait
// without a write (a burst at max otherwise sends every waiting job of
// every replica after the same slot, and the losers' conflicts, at a
// round trip each, crowd out the winners').
type slotView struct {
	mu      sync.Mutex
	taken   map[string]map[int]bool // pool → slot numbers
	pending map[string]map[int]bool // pool → slot numbers being tried here
	synced  bool
}

func newSlotView() *slotView {
	return &slotView{taken: map[string]map[int]bool{}, pending: map[string]map[int]bool{}}
}

func parseSlotKey(key string) (pool string, n int, ok bool) {
	i := strings.LastIndexByte(key, '.')
	if i < 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(key[i+1:])
	return key[:i], n, err == nil
}

func mark(m map[string]map[int]bool, pool string, n int, on bool) {
	if !on {
		delete(m[pool], n)
		return
	}
	if m[pool] == nil {
		m[pool] = map[int]bool{}
	}
	m[pool][n] = true
}

// set records what the watch saw. A slot seen taken is no longer pending:
// whoever here was trying it has won or lost it by then.
func (v *slotView) set(key string, taken bool) {
	pool, n, ok := parseSlotKey(key)
	if !ok {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	mark(v.taken, pool, n, taken)
	if taken {
		mark(v.pending, pool, n, false)
	}
}

// reserve picks a slot of pool below max that looks free, that no
// goroutine here is trying and that is not in skip, from a random start,
// and marks it pending.
func (v *slotView) reserve(pool string, max int, skip map[int]bool) (*slotTicket, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	start := rand.IntN(max)
	for i := range max {
		n := (start + i) % max
		if v.taken[pool][n] || v.pending[pool][n] || skip[n] {
			continue
		}
		mark(v.pending, pool, n, true)
		return &slotTicket{v: v, pool: pool, n: n}, true
	}
	return nil, false
}

// slotTicket is a slot this replica is about to try to take.
type slotTicket struct {
	v    *slotView
	pool string
	n    int
	done bool
}

// release gives the ticket back unused, or after losing the slot.
func (t *slotTicket) release() {
	if t == nil || t.done {
		return
	}
	t.done = true
	t.v.mu.Lock()
	defer t.v.mu.Unlock()
	mark(t.v.pending, t.pool, t.n, false)
}

// won ends the ticket of a slot taken: it stays pending until the watch
// sees it taken, so that nobody here tries it meanwhile.
func (t *slotTicket) won() { t.done = true }

// watchSlots keeps the view current until ctx ends.
func (s *Scaler) watchSlots(ctx context.Context) error {
	w, err := s.kv.slots.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch slots: %w", err)
	}
	defer w.Stop() //nolint:errcheck
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil {
				s.slots.mu.Lock()
				s.slots.synced = true
				s.slots.mu.Unlock()
				continue
			}
			op := e.Operation()
			s.slots.set(e.Key(), op == jetstream.KeyValuePut)
		}
	}
}

// claimSlot takes a free slot of pool for runner and returns its key, or
// errPoolFull. It tries first the slot of ticket (when the caller
// reserved one: claimSlot then owns it), then each other slot that looks
// free and that no goroutine here is trying.
func (s *Scaler) claimSlot(ctx context.Context, pool config.Pool, runner string, ticket *slotTicket) (string, error) {
	t0 := s.now()
	lost := map[int]bool{} // taken by another replica, unseen by the watch yet
	for tries := 1; ; tries++ {
		if ticket == nil {
			var ok bool
			if ticket, ok = s.slots.reserve(pool.Name, pool.Max, lost); !ok {
				return "", errPoolFull
			}
		}
		key := slotKey(pool.Name, ticket.n)
		_, err := s.kv.slots.Create(ctx, key, encode(runner))
		if err == nil {
			ticket.won()
			return key, nil
		}
		ticket.release()
		lost[ticket.n] = true
		ticket = nil
		if !bus.IsConflict(err) {
			return "", fmt.Errorf("claim slot %s (try %d, %s): %w", key, tries, s.now().Sub(t0).Round(time.Millisecond), err)
		}
	}
}

// fenceSlot confirms that slot key still names runner, rewriting it at
// its revision so that a release of it as abandoned, at the revision it
// saw, fails.
func (s *Scaler) fenceSlot(ctx context.Context, key, runner string) (bool, error) {
	// A direct read first; "gone" or "not ours" is confirmed by the stream
	// leader, since a lagging follower may not have the slot yet.
	for _, kv := range []jetstream.KeyValue{s.kv.slots, s.kv.leaderSlots} {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("fence slot %s: %w", key, err)
		}
		if string(e.Value()) != string(encode(runner)) {
			continue
		}
		_, err = s.kv.slots.Update(ctx, key, e.Value(), e.Revision())
		if bus.IsConflict(err) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("fence slot %s: %w", key, err)
		}
		return true, nil
	}
	return false, nil
}

// releaseSlot frees key if it still names runner.
func (s *Scaler) releaseSlot(ctx context.Context, key, runner string) error {
	if key == "" {
		return nil
	}
	e, err := s.kv.slots.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release slot %s: %w", key, err)
	}
	if string(e.Value()) != string(encode(runner)) {
		return nil
	}
	return deleteRev(ctx, s.kv.slots, key, e.Revision())
}

// releaseGoneSlot releases a slot whose instance is gone, at the revision
// it was seen at, and forgets its runner. It reports whether this call
// released it (another replica's sweep may have been first).
func (s *Scaler) releaseGoneSlot(ctx context.Context, key string, sl entry[string]) (bool, error) {
	err := s.kv.slots.Delete(ctx, key, jetstream.LastRevision(sl.Rev))
	if bus.IsConflict(err) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("release slot %s: %w", key, err)
	}
	return true, s.kv.runners.forget(ctx, sl.Val)
}
