// Package scaleout runs ephemera as separate processes (webhook
// receivers, scalers and policy services built from cmd/ephemera) against
// a NATS cluster and the real LXD, and breaks parts of it on purpose; a
// test binary of its own, so that its minutes count against no other
// package's go test timeout.
package scaleout

import (
	"testing"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
)

// binary is the ephemera command, built once for the processes the tests
// start.
var binary string

func TestMain(m *testing.M) { e2etest.MainWithCommand(m, "./cmd/ephemera", &binary) }
