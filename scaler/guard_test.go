package scaler_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/scaler"
	"github.com/ephemera-ci/ephemera/scaler/scalertest"
)

// guarded is a provisioner that also offers a network guard, counting the
// calls and failing them when fail is set.
type guarded struct {
	*scalertest.Provisioner
	calls atomic.Int64
	fail  atomic.Bool
}

var _ scaler.NetworkGuard = (*guarded)(nil)

func (g *guarded) EnsureNetworkGuard(context.Context) error {
	g.calls.Add(1)
	if g.fail.Load() {
		return errors.New("LXD said no")
	}
	return nil
}

func TestTheLeaderEnsuresTheNetworkGuardAtStartAndOnEveryReconcile(t *testing.T) {
	p := pool("small", 1, 2)
	e := newEnv(t, p)
	leader := &guarded{Provisioner: e.prov}
	e.start(e.config(func(c *scaler.Config) { c.Provisioner = leader }))
	waitFor(t, 5*time.Second, "the first reconcile to ensure the guard", func() bool { return leader.calls.Load() >= 1 })
	waitFor(t, 5*time.Second, "later reconciles to ensure it again", func() bool { return leader.calls.Load() >= 3 })

	// A replica that does not hold the lease never touches the guard.
	follower := &guarded{Provisioner: e.prov}
	e.start(e.config(func(c *scaler.Config) { c.Provisioner = follower }))
	before := leader.calls.Load()
	waitFor(t, 5*time.Second, "three more reconciles by the leader", func() bool { return leader.calls.Load() >= before+3 })
	if n := follower.calls.Load(); n != 0 {
		t.Errorf("the follower ensured the guard %d times, want 0", n)
	}
}

func TestAFailingNetworkGuardDoesNotStopReconciling(t *testing.T) {
	p := pool("small", 2, 3)
	e := newEnv(t, p)
	g := &guarded{Provisioner: e.prov}
	g.fail.Store(true)
	e.start(e.config(func(c *scaler.Config) { c.Provisioner = g }))
	waitFor(t, 10*time.Second, "the idle buffer to be filled while the guard fails", func() bool {
		return e.idle() == 2 && g.calls.Load() >= 2
	})
}
