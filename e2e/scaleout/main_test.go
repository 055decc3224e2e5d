// Package scaleout runs ephemera as separate processes (webhook
// receivers, scalers and policy services built from cmd/ephemera) against
// a NATS cluster and the real LXD, and breaks parts of it on purpose; a
// test binary of its own, so that its minutes count against no other
// package's go test timeout.
package scaleout

import (
	"fmt"
	"os"
	"testing"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
)

// binary is the ephemera command, built once for the processes the tests
// start.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ephemera-bin")
	if err != nil {
		panic(err)
	}
	if binary, err = e2etest.BuildCommand("./cmd/ephemera", dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
