package scaler_test

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canonical/lxd/shared/api"
	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
	"github.com/ephemera-ci/ephemera/scaler"
)

// These tests run the scaler against this machine's real LXD (containers
// from the ephemera-test image): they skip without it, and fail under
// EPHEMERA_REQUIRE_LXD=1.

// runnerSim plays the runner inside each instance: it comes online on
// the stand-in once the instance runs, and when its job is over it powers
// the instance off, which makes LXD delete the ephemeral instance.
type runnerSim struct {
	scaler.Provisioner
	fake  *githubfake.Server
	specs *sync.Map // name → scaler.InstanceSpec
}

func (p runnerSim) Create(ctx context.Context, spec scaler.InstanceSpec) error {
	err := p.Provisioner.Create(ctx, spec)
	if err == nil {
		p.specs.Store(spec.Name, spec)
		go func() { _ = p.fake.RunnerOnline(spec.Name) }()
	}
	return err
}

// Delete kills the instance, and with it its runner.
func (p runnerSim) Delete(ctx context.Context, name string) error {
	_ = p.fake.KillRunner(name)
	return p.Provisioner.Delete(ctx, name)
}

// lxdEnv is an env whose instances are real LXD containers.
func lxdEnv(t *testing.T, minIdle, maxN int) (*env, config.Pool, runnerSim) {
	t.Helper()
	lxdtest.Require(t)
	p := lxdtest.Pool()
	p.Labels = append(p.Labels, p.Name)
	p.MinIdle, p.Max = minIdle, maxN
	e := newEnv(t, p)
	prov := runnerSim{Provisioner: lxdtest.Provider(t, p), fake: e.fake, specs: &sync.Map{}}
	c := lxdtest.Client(t)
	e.fake.OnRunnerExit(func(name string) {
		if op, err := c.UpdateInstanceState(name, api.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}, ""); err == nil {
			_, _ = lxdtest.Wait(c, op)
		}
	})
	return e, p, prov
}

func lxdInstances(t *testing.T, prov runnerSim) []scaler.Instance {
	t.Helper()
	ins, err := prov.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ins
}

func lxdConfig(e *env, prov runnerSim) scaler.Config {
	return e.config(func(c *scaler.Config) {
		c.Provisioner = prov
		c.BootstrapTimeout = 30 * time.Second
		c.ProvisionTimeout = 30 * time.Second
		c.AckWait = 10 * time.Second
	})
}

func TestLXDAQueuedJobYieldsOneInstanceWithItsNameKeysAndUserData(t *testing.T) {
	e, p, prov := lxdEnv(t, 0, 3)
	e.start(lxdConfig(e, prov))
	id := e.fake.QueueJob(githubfake.JobSpec{Labels: []string{"self-hosted", p.Name}})
	waitFor(t, 30*time.Second, "the job to start on a runner", func() bool {
		j, _ := e.fake.GetJob(id)
		return j.Status == githubfake.JobInProgress
	})
	ins := lxdInstances(t, prov)
	if len(ins) != 1 {
		t.Fatalf("instances: %d, want 1", len(ins))
	}
	name := ins[0].Name
	if !regexp.MustCompile(`^eph-` + regexp.QuoteMeta(p.Name) + `-[a-z0-9]{8}$`).MatchString(name) {
		t.Errorf("instance name %q, want eph-%s-<8 of [a-z0-9]>", name, p.Name)
	}
	inst := lxdtest.Instance(t, name)
	if inst.Config["user.ephemera.pool"] != p.Name || inst.Config["user.ephemera.job"] != strconv.FormatInt(id, 10) || inst.Config["user.ephemera.created"] == "" {
		t.Errorf("keys: pool %q job %q created %q; want %s, %d, a time", inst.Config["user.ephemera.pool"], inst.Config["user.ephemera.job"], inst.Config["user.ephemera.created"], p.Name, id)
	}
	if !inst.Ephemeral {
		t.Error("instance is not ephemeral")
	}
	ud := inst.Config["cloud-init.user-data"]
	r, _ := e.fake.RunnerByName(name)
	if j, _ := e.fake.GetJob(id); j.RunnerName != name || r.ID == 0 {
		t.Errorf("job ran on %q; want the job's runner %s, registered", j.RunnerName, name)
	}
	v, _ := prov.specs.Load(name)
	spec := v.(scaler.InstanceSpec)
	if !strings.Contains(ud, spec.JITConfig) || !strings.Contains(ud, spec.PolicyToken) || spec.PolicyToken != e.tokens.Token(name) {
		t.Error("user-data lacks the runner's JIT config verbatim or its minted one-time policy token")
	}

	// The job ends, the runner powers the instance off, LXD deletes it and
	// its slot is free again.
	if err := e.fake.CompleteJob(id, githubfake.ConclusionSuccess); err != nil {
		t.Fatal(err)
	}
	lxdtest.WaitGone(t, name, 30*time.Second)
	waitFor(t, 10*time.Second, "the slot released", func() bool { return e.countKeys(scaler.BucketSlots) == 0 })
}

func TestLXDMinIdleTwoKeepsTwoAndTheSurplusIsTrimmed(t *testing.T) {
	e, p, prov := lxdEnv(t, 2, 4)
	r := e.start(lxdConfig(e, prov))
	waitFor(t, 30*time.Second, "two idle runners in two instances", func() bool {
		return e.idle() == 2 && len(lxdInstances(t, prov)) == 2
	})
	first := lxdInstances(t, prov)
	time.Sleep(1500 * time.Millisecond) // several reconciles
	names := func(ins []scaler.Instance) []string {
		var out []string
		for _, in := range ins {
			out = append(out, in.Name)
		}
		slices.Sort(out)
		return out
	}
	if d := cmp.Diff(names(lxdInstances(t, prov)), names(first)); d != "" {
		t.Errorf("instances changed while idle at min_idle (-now +before):\n%s", d)
	}
	r.stop()

	// min_idle drops to 0: both are surplus and go, GitHub first.
	p.MinIdle = 0
	e.start(e.config(func(c *scaler.Config) {
		*c = lxdConfig(e, prov)
		c.Pools = []config.Pool{p}
	}))
	waitFor(t, 30*time.Second, "the surplus trimmed", func() bool {
		return len(lxdInstances(t, prov)) == 0 && len(e.fake.Runners()) == 0 && e.countKeys(scaler.BucketSlots) == 0
	})
}

func TestLXDStoppingAnInstanceFreesItsSlot(t *testing.T) {
	e, _, prov := lxdEnv(t, 1, 1)
	e.start(lxdConfig(e, prov))
	waitFor(t, 30*time.Second, "one instance", func() bool { return len(lxdInstances(t, prov)) == 1 && e.idle() == 1 })
	first := lxdInstances(t, prov)[0].Name
	c := lxdtest.Client(t)
	op, err := c.UpdateInstanceState(first, api.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}, "")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = lxdtest.Wait(c, op)
	lxdtest.WaitGone(t, first, 30*time.Second)
	waitFor(t, 30*time.Second, "a new instance in the freed slot", func() bool {
		ins := lxdInstances(t, prov)
		return len(ins) == 1 && ins[0].Name != first
	})
	if _, ok := e.fake.RunnerByName(first); ok {
		t.Error("the stopped instance's registration is still on GitHub")
	}
}
