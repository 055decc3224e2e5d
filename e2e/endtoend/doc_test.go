// Package endtoend tests and measures ephemera as a whole on this machine:
// the demo's system (internal/demo) with real LXD containers running the
// stand-in runner, in a test binary of its own so that its minutes count
// against no other package's go test timeout.
package endtoend
