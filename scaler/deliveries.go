package scaler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/ephemera-ci/ephemera/internal/ghclient"
	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// GitHub never retries a failed webhook delivery. The leader reads the
// App's delivery log (newest first) down to a cursor kept in KV, and asks
// GitHub to redeliver each failed workflow_job delivery whose GUID never
// succeeded — once: a redelivery is never redelivered again, and the
// cursor moves past what was seen (but never past a delivery still
// pending).

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

func (g *gh) HookDeliveries(ctx context.Context, cursor string) ([]HookDelivery, string, error) {
	if !g.cfg.Clients.IsApp() {
		return nil, "", ErrNotApp
	}
	c, err := g.cfg.Clients.App()
	if err != nil {
		return nil, "", err
	}
	ds, resp, err := c.Apps.ListHookDeliveries(ghclient.WithOp(ctx, "list_hook_deliveries"), &github.ListCursorOptions{PerPage: 100, Cursor: cursor})
	if err != nil {
		return nil, "", fmt.Errorf("list hook deliveries: %w", err)
	}
	out := make([]HookDelivery, 0, len(ds))
	for _, d := range ds {
		out = append(out, HookDelivery{
			ID: d.GetID(), GUID: d.GetGUID(), Event: d.GetEvent(), Action: d.GetAction(),
			OK: d.GetStatusCode() >= 200 && d.GetStatusCode() < 300, Pending: d.GetStatus() == "pending",
			Redelivery: d.GetRedelivery(), DeliveredAt: d.GetDeliveredAt().Time,
		})
	}
	return out, resp.Cursor, nil
}

func (g *gh) RedeliverHook(ctx context.Context, id int64) error {
	c, err := g.cfg.Clients.App()
	if err != nil {
		return err
	}
	if _, _, err := c.Apps.RedeliverHookDelivery(ghclient.WithOp(ctx, "redeliver_hook"), id); err != nil {
		// go-github reports GitHub's 202 as *AcceptedError: that is success.
		if _, ok := errors.AsType[*github.AcceptedError](err); ok {
			return nil
		}
		return fmt.Errorf("redeliver hook delivery %d: %w", id, err)
	}
	return nil
}

type deliveryCursor struct {
	LastID int64 `json:"last_id"`
}

// maxDeliveryPages bounds one pass over the delivery log.
const maxDeliveryPages = 20

func (s *Scaler) redeliverFailed(ctx context.Context) {
	hd, ok := s.cfg.GitHub.(HookDeliveries)
	if !ok {
		return
	}
	cur, err := get[deliveryCursor](ctx, s.kv.meta, cursorKey)
	if err != nil {
		s.log.Warn().Err(err).Msg("read delivery cursor")
		return
	}
	horizon := s.now().Add(-s.cfg.RedeliverLookback)
	var seen []HookDelivery
	okGUID := map[string]bool{}
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
			seen = append(seen, d)
			if d.OK {
				okGUID[d.GUID] = true
			}
		}
		if done || next == "" {
			break
		}
		page = next
	}
	if len(seen) == 0 {
		return
	}
	newLast := seen[0].ID
	for _, d := range seen {
		if d.Pending {
			newLast = min(newLast, d.ID-1)
		}
	}
	for _, d := range seen {
		if d.ID > newLast || d.OK || d.Pending || d.Redelivery || d.Event != "workflow_job" || okGUID[d.GUID] {
			continue
		}
		if err := hd.RedeliverHook(ctx, d.ID); err != nil {
			s.log.Warn().Err(err).Int64("hook_delivery", d.ID).Msg("redeliver failed webhook")
			newLast = min(newLast, d.ID-1) // try again next time
			continue
		}
		okGUID[d.GUID] = true // once per GUID
		s.m.reconcile.WithLabelValues("", "redeliver").Inc()
		s.log.Info().Str(logkey.Delivery, d.GUID).Str(logkey.Action, d.Action).Str(logkey.Reason, "GitHub does not retry failed deliveries").Msg("webhook redelivered")
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
	if err != nil && !isConflict(err) {
		s.log.Warn().Err(err).Msg("store delivery cursor")
	}
}
