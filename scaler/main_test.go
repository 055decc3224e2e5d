package scaler_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every replica stops cleanly: no goroutine outlives the tests. Not ours:
// the LXD tests' shared raw client (lxdtest) keeps its event listener for
// the whole test binary, and net/http's client-timeout goroutine of a
// go-github error response (404, 422) lives until the timeout.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/canonical/lxd/client.(*ProtocolLXD).getEvents.func1"),
		goleak.IgnoreAnyFunction("github.com/canonical/lxd/client.(*ProtocolLXD).getEvents.func2"),
		goleak.IgnoreTopFunction("net/http.setRequestCancel.func4"))
}
