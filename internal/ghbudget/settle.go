package ghbudget

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/bus"
)

// A write of the record may get no answer in time — the caller's
// deadline comes while it waits on a loaded machine, or the reply is lost
// while a NATS node restarts — and still be applied, then or later. Taken
// as not applied, an admission held its place in flight for as long as
// its process kept writing (each write renews the process's lease), and
// what was given back with it was given back twice; sent again, it was
// counted twice. So each write marks the process's lease with a number
// of its own, and a write left without an answer is settled: the record
// read again shows its mark (applied), or a later write without it
// (refused, then or when it comes: its expected revision has passed), or
// neither, and then the record is written as it is, at that revision, so
// that the write in doubt is refused if it still comes.

// settleTimeout bounds settling one write, whatever the caller's deadline.
const settleTimeout = 2 * kvOpTimeout

// mark stamps r with a new mark of this process's write, on its lease
// (one with no place in flight is kept until it runs out), and returns it.
func (b *Budget) mark(r *record, now time.Time) uint64 {
	l := b.ownLease(r, now)
	l.Write = mrand.Uint64() | 1
	r.InFlight[b.cfg.Replica] = l
	return l.Write
}

// write writes val under key at revision rev (0: creates it).
func (b *Budget) write(ctx context.Context, key string, val []byte, rev uint64) (uint64, error) {
	if rev == 0 {
		return b.cfg.KV.Create(ctx, key, val)
	}
	return b.cfg.KV.Update(ctx, key, val, rev)
}

// forget drops what this process last saw of key: the next update reads
// it again.
func (b *Budget) forget(key string) {
	b.kvMu.Lock()
	delete(b.cache, key)
	b.kvMu.Unlock()
}

// settle reports whether this process's write marked mark, sent at
// revision rev without an answer, was applied; once it returns, the
// write can no longer be. It fails when the bucket does not answer
// within settleTimeout.
func (b *Budget) settle(ctx context.Context, key string, mark, rev uint64) (bool, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	for {
		var cur record
		var curRev uint64
		e, err := bus.GetAskingAgain(ctx, b.cfg.KV, key, kvOpTimeout)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return false, fmt.Errorf("settle a github budget write: %w", err)
		default:
			curRev = e.Revision()
			if err := decode(e.Value(), &cur); err != nil {
				return false, err
			}
		}
		switch {
		case cur.InFlight[b.cfg.Replica].Write == mark:
			return true, nil
		case curRev > rev:
			// Written since, without it: refused, now and later.
			return false, nil
		case curRev == rev:
			// Nothing written since: the write may be on its way yet.
			val, err := encode(cur)
			if err != nil {
				return false, err
			}
			_, err = b.write(ctx, key, val, rev)
			if err == nil {
				return false, nil
			}
			// Refused (the write in doubt, or another, came first), or no
			// answer again: read again.
		}
		// Read again (curRev < rev: a replica of the bucket that lags).
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("settle a github budget write: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
