package lxdprov

import (
	"context"
	"fmt"
	"time"

	"github.com/canonical/lxd/shared/api"
)

// Delete force-stops the instance and deletes it. An instance that is
// already gone, or goes while Delete works (an ephemeral instance deletes
// itself once stopped), is success. Delete is bounded by ctx.
func (p *Provider) Delete(ctx context.Context, name string) (err error) {
	start := time.Now()
	defer func() { p.metrics.observe(opDelete, start, err) }()

	// An ephemeral instance can vanish between any two requests (LXD
	// deletes it once stopped), and LXD refuses to delete one it is busy
	// stopping; so each failure is followed by a look: gone is done, still
	// there is tried again, a few times.
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("delete instance %s: %w", name, err)
		}
		gone, err := p.deleteOnce(ctx, name)
		if gone {
			return nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("delete instance %s: %w", name, ctxErr)
		}
		if _, _, gerr := p.srv.GetInstance(name); isNotFound(gerr) {
			return nil
		}
		if attempt == deleteAttempts {
			return fmt.Errorf("delete instance %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// deleteAttempts bounds Delete's tries (1.5 s of backing off in all).
const deleteAttempts = 5

// deleteOnce force-stops (when running) and deletes name once; gone
// reports that the instance no longer exists.
func (p *Provider) deleteOnce(ctx context.Context, name string) (gone bool, err error) {
	inst, _, err := p.srv.GetInstance(name)
	if isNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if inst.StatusCode != api.Stopped {
		op, err := p.srv.UpdateInstanceState(name, api.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}, "")
		if err == nil {
			_, err = waitOp(ctx, p.srv, op)
		}
		if isNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("force-stop: %w", err)
		}
	}
	op, err := p.srv.DeleteInstance(name)
	if err == nil {
		_, err = waitOp(ctx, p.srv, op)
	}
	if isNotFound(err) || err == nil {
		return true, nil
	}
	return false, err
}
