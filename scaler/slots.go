package scaler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

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

// slotView is this replica's view of taken slots, fed by a KV watch.
type slotView struct {
	mu     sync.Mutex
	taken  map[string]map[int]bool // pool → slot numbers
	synced bool
}

func newSlotView() *slotView { return &slotView{taken: map[string]map[int]bool{}} }

func parseSlotKey(key string) (pool string, n int, ok bool) {
	i := strings.LastIndexByte(key, '.')
	if i < 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(key[i+1:])
	return key[:i], n, err == nil
}

func (v *slotView) set(key string, taken bool) {
	pool, n, ok := parseSlotKey(key)
	if !ok {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	m := v.taken[pool]
	if m == nil {
		m = map[int]bool{}
		v.taken[pool] = m
	}
	if taken {
		m[n] = true
	} else {
		delete(m, n)
	}
}

func (v *slotView) isTaken(pool string, n int) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.taken[pool][n]
}

// used is how many slots of pool look taken.
func (v *slotView) used(pool string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.taken[pool])
}

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
// errPoolFull.
func (s *Scaler) claimSlot(ctx context.Context, pool config.Pool, runner string) (string, error) {
	start := rand.IntN(pool.Max)
	for i := range pool.Max {
		n := (start + i) % pool.Max
		if s.slots.isTaken(pool.Name, n) {
			continue
		}
		key := slotKey(pool.Name, n)
		_, err := s.kv.slots.Create(ctx, key, encode(runner))
		if err == nil {
			return key, nil
		}
		if !isConflict(err) {
			return "", fmt.Errorf("claim slot %s: %w", key, err)
		}
	}
	return "", errPoolFull
}

// fenceSlot confirms that slot key still names runner, rewriting it at
// its revision so that a release of it as abandoned, at the revision it
// saw, fails.
func (s *Scaler) fenceSlot(ctx context.Context, key, runner string) (bool, error) {
	e, err := s.kv.slots.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("fence slot %s: %w", key, err)
	}
	if string(e.Value()) != string(encode(runner)) {
		return false, nil
	}
	_, err = s.kv.slots.Update(ctx, key, e.Value(), e.Revision())
	if isConflict(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("fence slot %s: %w", key, err)
	}
	return true, nil
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
	if isConflict(err) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("release slot %s: %w", key, err)
	}
	return true, s.kv.runners.forget(ctx, sl.Val)
}
