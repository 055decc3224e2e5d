package lxdprov

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/canonical/lxd/shared/api"

	"github.com/ephemera-ci/ephemera/scaler"
)

// isNotFound reports whether LXD answered 404.
func isNotFound(err error) bool { return api.StatusErrorCheck(err, http.StatusNotFound) }

// nameTaken reports whether LXD refused a create for its name: LXD 5.0
// says so in the operation ("This "instances" entry already exists"),
// others answer 409.
func nameTaken(err error) bool {
	return api.StatusErrorCheck(err, http.StatusConflict) || strings.Contains(err.Error(), "already exists")
}

// capacityError reports whether LXD's answer means it is out of resources
// for now: no cluster member can take the instance (503), storage is full
// (507) or LXD asks to slow down (429).
func capacityError(err error) bool {
	return api.StatusErrorCheck(err, http.StatusServiceUnavailable, http.StatusInsufficientStorage, http.StatusTooManyRequests)
}

// outcome names err for the metrics' outcome label.
func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, scaler.ErrInstanceExists):
		return "exists"
	case errors.Is(err, scaler.ErrInstanceNotFound):
		return "not_found"
	case errors.Is(err, scaler.ErrNoCapacity):
		return "no_capacity"
	case errors.Is(err, scaler.ErrMisconfigured):
		return "misconfigured"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	default:
		return "error"
	}
}
