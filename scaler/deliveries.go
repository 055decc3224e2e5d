package scaler

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/ghbudget"
	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// GitHub never retries a failed webhook delivery. The leader reads the
// App's delivery log (newest first) down to a cursor kept in KV, groups it
// by delivery GUID, and asks GitHub to redeliver a workflow_job delivery
// whose GUID never succeeded — once per pass at most, and at most
// maxRedeliveries times in all, spaced by a doubling wait (one interval,
// two, four): one redelivery is enough when ephemera was down, and the
// few more cover a receiver that was still failing when the first went
// out. The cursor stays below the oldest GUID still unresolved, so
// nothing is skipped, and moves past every GUID that succeeded or was
// given up.
//
// The log costs a page per read whether anything failed or not, so the
// leader reads it every deliveryEvery-th reconcile pass (the first after
// taking the lease included), and at every pass while the last read left
// a failed delivery unresolved. The bound: a webhook lost while every
// read came back clean is found within deliveryEvery intervals (2 min at
// the default 30 s), then redelivered on the schedule above; the
// reconciler's own job checks (stuck claims) do not wait for it.

// HookDeliveries is the App webhook delivery log. A GitHub that also
// implements it gets failed deliveries redelivered.
type HookDeliveries interface {
	// HookDeliveries returns one page of deliveries, newest first, and the
	// cursor of the next (older) page, "" at the end.
	HookDeliveries(ctx context.Context, cursor string) ([]HookDelivery, string, error)
	// RedeliverHook asks GitHub to send delivery id again.
	RedeliverHook(ctx context.Context, id int64) error
}

// HookDelivery is one delivery attempt in the log.
type HookDelivery struct {
	ID          int64
	GUID        string
	Event       string
	Action      string
	OK          bool // answered 2xx
	Pending     bool
	Redelivery  bool
	DeliveredAt time.Time
}

// ErrNotApp: the delivery log needs GitHub App authentication.
var ErrNotApp = errors.New("hook deliveries need a GitHub App")

type deliveryCursor struct {
	LastID int64 `json:"last_id"`
}

// maxDeliveryPages bounds one pass over the delivery log.
const maxDeliveryPages = 20

// deliveryEvery: the delivery log is read every this many passes while
// nothing is unresolved.
const deliveryEvery = 4

// maxRedeliveries bounds the redeliveries of one delivery GUID.
const maxRedeliveries = 3

// guidLog is one delivery GUID's attempts in the window read.
type guidLog struct {
	ok, pending   bool
	attempts      int // the original included
	firstID       int64
	lastFailedID  int64
	lastAttemptAt time.Time
	action        string
}

func (s *Scaler) redeliverFailed(ctx context.Context) {
	hd, ok := s.cfg.GitHub.(HookDeliveries)
	if !ok {
		return
	}
	pass := s.deliveryPass
	s.deliveryPass++
	if pass%deliveryEvery != 0 && !s.deliveryUnresolved {
		return
	}
	cur, err := get[deliveryCursor](ctx, s.kv.meta, cursorKey)
	if err != nil {
		s.log.Warn().Err(err).Msg("read delivery cursor")
		return
	}
	horizon := s.now().Add(-s.cfg.RedeliverLookback)
	guids := map[string]*guidLog{}
	var order []string // as read: newest first
	maxID := cur.Val.LastID
	page := ""
	for range maxDeliveryPages {
		ds, next, err := hd.HookDeliveries(ctx, page)
		if errors.Is(err, ErrNotApp) {
			return
		}
		if err != nil {
			s.log.Warn().Err(err).Msg("read hook deliveries")
			return
		}
		done := false
		for _, d := range ds {
			if d.ID <= cur.Val.LastID || (!cur.Found && d.DeliveredAt.Before(horizon)) {
				done = true
				break
			}
			maxID = max(maxID, d.ID)
			if d.Event != "workflow_job" {
				continue
			}
			g := guids[d.GUID]
			if g == nil {
				g = &guidLog{firstID: d.ID, action: d.Action}
				guids[d.GUID] = g
				order = append(order, d.GUID)
			}
			g.attempts++
			g.firstID = min(g.firstID, d.ID)
			g.ok = g.ok || d.OK
			g.pending = g.pending || d.Pending
			if !d.OK && !d.Pending {
				g.lastFailedID = max(g.lastFailedID, d.ID)
			}
			if d.DeliveredAt.After(g.lastAttemptAt) {
				g.lastAttemptAt = d.DeliveredAt
			}
		}
		if done || next == "" {
			break
		}
		page = next
	}
	newLast := maxID
	s.deliveryUnresolved = false
	now := s.now()
	// Oldest first: a job's queued event before its in_progress, and an
	// earlier job's before a later one's, as GitHub hands queued jobs to
	// runners (a later job's runner made first takes the earlier job, and
	// the earlier job's own redelivery may then come after it completed).
	slices.Reverse(order)
	for _, guid := range order {
		g := guids[guid]
		redeliveries := g.attempts - 1
		switch {
		case g.ok:
			continue
		case !g.pending && redeliveries >= maxRedeliveries:
			s.m.reconcile.WithLabelValues("", "redeliver_gave_up").Inc()
			s.log.Error().Str(logkey.Delivery, guid).Str(logkey.Action, g.action).Int(logkey.Redeliveries, redeliveries).
				Msg("webhook delivery still failing after redeliveries; given up (the reconciler still covers queued jobs)")
			continue
		}
		newLast = min(newLast, g.firstID-1) // unresolved: read it again next time
		s.deliveryUnresolved = true
		if g.pending || now.Sub(g.lastAttemptAt) < s.cfg.Interval<<redeliveries {
			continue
		}
		if err := hd.RedeliverHook(ghbudget.WithPriority(ctx, ghbudget.Cleanup), g.lastFailedID); err != nil {
			s.log.Warn().Err(err).Str(logkey.Delivery, guid).Msg("redeliver failed webhook")
			continue
		}
		s.m.reconcile.WithLabelValues("", "redeliver").Inc()
		s.log.Info().Str(logkey.Delivery, guid).Str(logkey.Action, g.action).Int(logkey.Redeliveries, redeliveries+1).
			Str(logkey.Reason, "GitHub does not retry failed deliveries").Msg("webhook redelivered")
	}
	if newLast <= cur.Val.LastID {
		return
	}
	val := encode(deliveryCursor{LastID: newLast})
	if cur.Found {
		_, err = s.kv.meta.Update(ctx, cursorKey, val, cur.Rev)
	} else {
		_, err = s.kv.meta.Create(ctx, cursorKey, val)
	}
	if err != nil && !bus.IsConflict(err) {
		s.log.Warn().Err(err).Msg("store delivery cursor")
	}
}
