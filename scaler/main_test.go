package scaler_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every replica stops cleanly: no goroutine outlives the tests. The LXD
// tests' shared raw client (lxdtest) keeps its event listener for the
// whole test binary; that one is not ours.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/canonical/lxd/client.(*ProtocolLXD).getEvents.func1"),
		goleak.IgnoreAnyFunction("github.com/canonical/lxd/client.(*ProtocolLXD).getEvents.func2"))
}
