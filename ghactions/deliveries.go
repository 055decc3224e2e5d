package ghactions

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-github/v60/github"

	"github.com/ephemera-ci/ephemera/internal/ghclient"
	"github.com/ephemera-ci/ephemera/scaler"
)

// HookDeliveries returns one page of the App's webhook delivery log,
// newest first, and the cursor of the next page; scaler.ErrNotApp when
// authenticated with a token.
func (g *Client) HookDeliveries(ctx context.Context, cursor string) ([]scaler.HookDelivery, string, error) {
	if !g.cfg.Clients.IsApp() {
		return nil, "", scaler.ErrNotApp
	}
	c, err := g.cfg.Clients.App()
	if err != nil {
		return nil, "", err
	}
	ds, resp, err := c.Apps.ListHookDeliveries(ghclient.WithOp(ctx, "list_hook_deliveries"), &github.ListCursorOptions{PerPage: 100, Cursor: cursor})
	if err != nil {
		return nil, "", fmt.Errorf("list hook deliveries: %w", rateLimited(err))
	}
	out := make([]scaler.HookDelivery, 0, len(ds))
	for _, d := range ds {
		out = append(out, scaler.HookDelivery{
			ID: d.GetID(), GUID: d.GetGUID(), Event: d.GetEvent(), Action: d.GetAction(),
			OK: d.GetStatusCode() >= 200 && d.GetStatusCode() < 300, Pending: d.GetStatus() == "pending",
			Redelivery: d.GetRedelivery(), DeliveredAt: d.GetDeliveredAt().Time,
		})
	}
	return out, resp.Cursor, nil
}

// RedeliverHook asks GitHub to send delivery id again.
func (g *Client) RedeliverHook(ctx context.Context, id int64) error {
	c, err := g.cfg.Clients.App()
	if err != nil {
		return err
	}
	if _, _, err := c.Apps.RedeliverHookDelivery(ghclient.WithOp(ctx, "redeliver_hook"), id); err != nil {
		// go-github reports GitHub's 202 as *AcceptedError: that is success.
		if _, ok := errors.AsType[*github.AcceptedError](err); ok {
			return nil
		}
		return fmt.Errorf("redeliver hook delivery %d: %w", id, rateLimited(err))
	}
	return nil
}
