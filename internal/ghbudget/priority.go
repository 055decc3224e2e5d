package ghbudget

import (
	"context"
	"net/http"
)

// Priority orders GitHub requests; a lower value goes first.
type Priority int

// The priorities, first to last.
const (
	// Registration: a JIT registration for a job that waits.
	Registration Priority = iota
	// Policy: a pre-job policy check (a runner waits for its answer).
	Policy
	// TopUp: a registration for the idle buffer.
	TopUp
	// Listing: reading runners, job states and the delivery log.
	Listing
	// Cleanup: removing registrations, asking for redeliveries.
	Cleanup

	numPriorities = int(Cleanup) + 1
)

var priorityNames = [numPriorities]string{"registration", "policy", "top_up", "listing", "cleanup"}

func (p Priority) String() string {
	if p < 0 || int(p) >= numPriorities {
		return "unknown"
	}
	return priorityNames[p]
}

// Priorities lists every priority, first to last.
func Priorities() []Priority {
	out := make([]Priority, numPriorities)
	for i := range out {
		out[i] = Priority(i)
	}
	return out
}

type priorityKey struct{}

// WithPriority marks the GitHub requests made with ctx as of priority p.
func WithPriority(ctx context.Context, p Priority) context.Context {
	return context.WithValue(ctx, priorityKey{}, p)
}

// PriorityOf is the priority WithPriority put on ctx; without one, a GET
// (or HEAD, OPTIONS) is Listing and anything else Cleanup.
func PriorityOf(ctx context.Context, method string) Priority {
	if p, ok := ctx.Value(priorityKey{}).(Priority); ok && p >= 0 && int(p) < numPriorities {
		return p
	}
	if Points(method) == 1 {
		return Listing
	}
	return Cleanup
}

// Points is what a request costs against GitHub's per-endpoint limit.
func Points(method string) int {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return 1
	}
	return 5
}
