// Package waitfor is the one polling helper the project's tests share:
// wait, with a deadline, for a condition that another goroutine, process
// or machine brings about. Polling a condition is synchronization; sleeping
// a fixed time and hoping is not, so tests use this instead of time.Sleep.
package waitfor

import (
	"testing"
	"time"
)

// Interval is how often a condition is polled.
const Interval = 20 * time.Millisecond

// True polls cond every Interval until it holds, and fails the test
// (naming what it waited for and for how long) when d passes first.
func True(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := Within(d, cond); err != nil {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// Within polls cond every Interval until it holds and returns nil, or
// returns ErrTimeout when d passes first. For waits that are not a test's
// failure (a benchmark, a helper that reports instead of failing).
func Within(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return ErrTimeout
		}
		time.Sleep(Interval)
	}
	return nil
}

// ErrTimeout is returned by Within when the condition did not hold in time.
var ErrTimeout = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string { return "waitfor: condition did not hold in time" }
