package scaler_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/scaler"
)

// testClock is a Config.Now a test moves forward.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// Every decision reads the injected clock: a runner that never comes
// online stays for as long as the clock says bootstrap_timeout has not
// passed, reconcile after reconcile, and goes once the clock is moved
// past it — no test waits an hour.
func TestARunnerThatNeverComesOnlineGoesWhenTheInjectedClockPassesBootstrapTimeout(t *testing.T) {
	p := pool("small", 1, 1)
	e := newEnv(t, p)
	e.prov.OnCreated = nil // no runner ever comes online
	clock := &testClock{}
	e.start(e.config(func(c *scaler.Config) { c.BootstrapTimeout, c.Now = time.Hour, clock.Now }))
	waitfor.True(t, 10*time.Second, "the buffer runner's instance", func() bool { return len(e.prov.Instances()) == 1 })
	first := e.prov.Instances()[0].Name

	passes := func(n int) {
		t.Helper()
		at := func() time.Time {
			st, err := scaler.ReadStatus(context.Background(), e.bus.JS, e.pools)
			if err != nil {
				t.Fatal(err)
			}
			return st[0].UpdatedAt
		}
		for range n {
			before := at()
			waitfor.True(t, 5*time.Second, "a reconcile pass", func() bool { return at().After(before) })
		}
	}
	passes(3)
	if ins := e.prov.Instances(); len(ins) != 1 || ins[0].Name != first {
		t.Fatalf("instances %v after three passes within bootstrap_timeout, want %s alone", ins, first)
	}
	clock.advance(2 * time.Hour)
	waitfor.True(t, 10*time.Second, "the runner to be replaced", func() bool {
		ins := e.prov.Instances()
		return len(ins) == 1 && ins[0].Name != first
	})
}
