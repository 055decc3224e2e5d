package lxdprov

import (
	"context"
	"errors"
	"fmt"

	lxd "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
)

// opWaiter is the part of LXD's client that waits for an operation.
type opWaiter interface {
	GetOperationWaitSecret(uuid string, secret string, timeout int) (*api.Operation, string, error)
}

// opWaitSlice is how long, in seconds, one wait request asks LXD to hold
// it; ctx is checked between two.
const opWaitSlice = 2

// waitOp waits until op ends and returns it as LXD reported it then, with
// its error: the operation's own, or why its end could not be learnt.
// The operation's metadata (an exec's return code, a published image's
// fingerprint) is in what it returns, not in op.
//
// It asks LXD (GET /1.0/operations/{id}/wait) instead of calling
// op.WaitContext, which learns the end from the client's events listener:
// the client pinned here shares one events websocket among its listeners
// and closes it a minute after the last one left, and a listener added
// between that close and its reader noticing it is cancelled with the
// closed connection's error — an operation that succeeded is reported
// failed. Seen in CI: of twenty concurrent creates, one failed with
// "instance already exists" (its own instance, created and running).
//
// The request is the client's GetOperationWaitSecret with no secret,
// which a trusted client needs none for: its GetOperationWait sends the
// same request but first rewrites the HTTP transport every request of the
// client shares, without a lock (a data race with any request in flight).
func waitOp(ctx context.Context, srv opWaiter, op lxd.Operation) (api.Operation, error) {
	id := op.Get().ID
	for {
		if err := ctx.Err(); err != nil {
			return api.Operation{}, err
		}
		got, _, err := srv.GetOperationWaitSecret(id, "", opWaitSlice)
		switch {
		case isNotFound(err):
			// LXD forgets a finished operation after a few seconds. Not
			// wrapped: the operation is gone, not what it worked on.
			return api.Operation{}, fmt.Errorf("operation %s: LXD no longer knows it, so its outcome is unknown: %v", id, err)
		case err != nil:
			return api.Operation{}, fmt.Errorf("wait for operation %s: %w", id, err)
		case !got.StatusCode.IsFinal():
			continue
		case got.StatusCode == api.Success:
			return *got, nil
		case got.Err != "":
			return *got, errors.New(got.Err)
		default:
			return *got, fmt.Errorf("operation %s: %s", id, got.Status)
		}
	}
}
