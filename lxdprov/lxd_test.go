package lxdprov_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/canonical/lxd/shared/api"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
	"github.com/ephemera-ci/ephemera/scaler"
)

// userConfig is an instance's own config without the keys LXD adds.
func userConfig(c map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range c {
		if !strings.HasPrefix(k, "volatile.") && !strings.HasPrefix(k, "image.") {
			out[k] = v
		}
	}
	return out
}

func TestCreateStartsAnEphemeralInstanceWithExactlyTheRequestedConfig(t *testing.T) {
	t.Parallel()
	// A hook full of what would break naive quoting: LXD must accept the
	// YAML, and the instance must receive the script byte for byte.
	hook := "#!/bin/sh\necho \"it's $(id -u) `date`\" \\\n  'single' \"double\" # not: a: key\n- [not, a, list]\n\tend\r\n"
	pool := lxdtest.Pool()
	cfg := lxdtest.Config(t, pool)
	cfg.PreJobHook = hook
	p := lxdtest.New(t, cfg)

	spec := lxdtest.Spec(pool.Name)
	spec.JobID = 4242
	before := time.Now().Add(-time.Second)
	if err := p.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	inst := lxdtest.Instance(t, spec.Name)
	if inst == nil {
		t.Fatal("the instance does not exist after Create")
	}
	if inst.StatusCode != api.Running || !inst.Ephemeral || inst.Type != "container" {
		t.Errorf("instance is %s, ephemeral %t, type %s; want Running, ephemeral, container", inst.Status, inst.Ephemeral, inst.Type)
	}
	if diff := cmp.Diff(inst.Profiles, []string{"default"}); diff != "" {
		t.Errorf("profiles (-got +want):\n%s", diff)
	}
	wantDevices := map[string]map[string]string{"root": {"type": "disk", "path": "/", "pool": "default", "size": "1GiB"}}
	if diff := cmp.Diff(inst.Devices, wantDevices, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("devices (-got +want):\n%s", diff)
	}

	got := userConfig(inst.Config)
	created, err := time.Parse(time.RFC3339, got[lxdprov.KeyCreated])
	if err != nil || created.Before(before.Truncate(time.Second)) || created.After(time.Now()) {
		t.Errorf("%s = %q: want the RFC 3339 time of creation", lxdprov.KeyCreated, got[lxdprov.KeyCreated])
	}
	userData := got[lxdprov.KeyUserData]
	want := map[string]string{
		lxdprov.KeyPool:     pool.Name,
		lxdprov.KeyJob:      "4242",
		lxdprov.KeyCreated:  got[lxdprov.KeyCreated],
		lxdprov.KeyUserData: userData,
		"limits.cpu":        "1",
		"limits.memory":     "256MiB",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("config (-got +want):\n%s", diff)
	}

	cc := lxdprov.ParseCloudConfig(t, userData)
	if got := cc.File(t, lxdprov.PreJobHookPath); got != hook {
		t.Errorf("pre-job hook = %q, want %q", got, hook)
	}
	wantEnv := "EPHEMERA_POLICY_URL=" + lxdtest.PolicyURL + "\nEPHEMERA_POLICY_TOKEN=" + spec.PolicyToken + "\n"
	if got := cc.File(t, lxdprov.PreJobEnvPath); got != wantEnv {
		t.Errorf("pre-job env = %q, want %q", got, wantEnv)
	}
	if got, want := cc.File(t, lxdprov.RunnerDir+"/.env"), "ACTIONS_RUNNER_HOOK_JOB_STARTED="+lxdprov.PreJobHookPath+"\n"; got != want {
		t.Errorf("runner .env = %q, want %q", got, want)
	}
	wantRun := lxdprov.RunOncePath + " " + lxdprov.RunnerDir + "/run.sh --jitconfig " + spec.JITConfig
	if len(cc.Runcmd) == 0 || cc.Runcmd[len(cc.Runcmd)-1] != wantRun {
		t.Errorf("runcmd = %q, want it to end with %q", cc.Runcmd, wantRun)
	}
}

func TestJITConfigAppearsInTheUserDataAndNowhereElse(t *testing.T) {
	t.Parallel()
	pool := lxdtest.Pool()
	p := lxdtest.Provider(t, pool)
	spec := lxdtest.Spec(pool.Name)
	if err := p.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	inst := lxdtest.Instance(t, spec.Name)
	if !strings.Contains(inst.Config[lxdprov.KeyUserData], "run.sh --jitconfig "+spec.JITConfig+"\"") {
		t.Errorf("user-data does not hold the JIT config verbatim as run.sh's argument:\n%s", inst.Config[lxdprov.KeyUserData])
	}
	for _, cfg := range []map[string]string{inst.Config, inst.ExpandedConfig} {
		for k, v := range cfg {
			if k != lxdprov.KeyUserData && strings.Contains(v, spec.JITConfig) {
				t.Errorf("config key %s holds the JIT config", k)
			}
		}
	}
	for name, dev := range inst.ExpandedDevices {
		for k, v := range dev {
			if strings.Contains(v, spec.JITConfig) {
				t.Errorf("device %s key %s holds the JIT config", name, k)
			}
		}
	}
}

func TestStoppedInstanceIsGone(t *testing.T) {
	t.Parallel()
	pool := lxdtest.Pool()
	p := lxdtest.Provider(t, pool)
	spec := lxdtest.Spec(pool.Name)
	if err := p.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	// The test image's init is a shell script that traps the stop signal;
	// PID 1 drops a signal it has no handler for yet, so a stop sent
	// before the trap (Create returns once init was started, not once it
	// ran) waits out its whole timeout and fails. lo comes up after the
	// trap: wait for that.
	waitfor.True(t, 30*time.Second, "the instance's init to be up (lo up)", func() bool {
		st, _, err := lxdtest.Client(t).GetInstanceState(spec.Name)
		return err == nil && st.Network["lo"].State == "up"
	})
	// A clean stop, as when the runner exits and the machine powers off.
	c := lxdtest.Client(t)
	op, err := c.UpdateInstanceState(spec.Name, api.InstanceStatePut{Action: "stop", Timeout: 30}, "")
	if err == nil {
		_, err = lxdtest.Wait(c, op)
	}
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	lxdtest.WaitGone(t, spec.Name, 30*time.Second)
}

func TestDeleteRemovesARunningInstance(t *testing.T) {
	t.Parallel()
	pool := lxdtest.Pool()
	p := lxdtest.Provider(t, pool)
	spec := lxdtest.Spec(pool.Name)
	if err := p.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := p.Delete(t.Context(), spec.Name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if lxdtest.Instance(t, spec.Name) != nil {
		t.Errorf("instance %s exists after Delete returned", spec.Name)
	}
}

func TestDeleteRemovesANonEphemeralInstance(t *testing.T) {
	t.Parallel()
	pool := lxdtest.Pool()
	p := lxdtest.Provider(t, pool)
	name := lxdtest.Name(pool.Name)
	t.Cleanup(func() { lxdtest.ForceDelete(t, name) })
	// Made by hand: LXD will not delete it when it stops.
	c := lxdtest.Client(t)
	op, err := c.CreateInstance(api.InstancesPost{
		Name:        name,
		Source:      api.InstanceSource{Type: "image", Alias: lxdtest.Image},
		InstancePut: api.InstancePut{Config: map[string]string{lxdprov.KeyPool: pool.Name}},
	})
	if err == nil {
		_, err = lxdtest.Wait(c, op)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(t.Context(), name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if lxdtest.Instance(t, name) != nil {
		t.Errorf("instance %s exists after Delete returned", name)
	}
}

func TestDeleteOfAMissingInstanceSucceeds(t *testing.T) {
	t.Parallel()
	pool := lxdtest.Pool()
	p := lxdtest.Provider(t, pool)
	if err := p.Delete(t.Context(), lxdtest.Name(pool.Name)); err != nil {
		t.Errorf("Delete of a missing instance: %v, want nil", err)
	}
}

func TestListReturnsOnlyThisDeploymentsInstances(t *testing.T) {
	t.Parallel()
	small, big, other := lxdtest.Pool(), lxdtest.Pool(), lxdtest.Pool()
	mine := lxdtest.Provider(t, small, big)
	theirs := lxdtest.Provider(t, other) // another deployment on the same LXD

	specs := []scaler.InstanceSpec{lxdtest.Spec(small.Name), lxdtest.Spec(big.Name), lxdtest.Spec(big.Name)}
	specs[0].JobID = 7
	before := time.Now().Add(-time.Second).Truncate(time.Second)
	for _, s := range specs {
		if err := mine.Create(t.Context(), s); err != nil {
			t.Fatalf("Create %s: %v", s.Name, err)
		}
	}
	if err := theirs.Create(t.Context(), lxdtest.Spec(other.Name)); err != nil {
		t.Fatalf("Create in the other deployment: %v", err)
	}

	got, err := mine.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var want []scaler.Instance
	for _, s := range specs {
		want = append(want, scaler.Instance{Name: s.Name, Pool: s.Pool, JobID: s.JobID, State: scaler.StateRunning})
	}
	for _, inst := range got {
		if inst.CreatedAt.Before(before) || inst.CreatedAt.After(time.Now()) {
			t.Errorf("%s created at %s, want between %s and now", inst.Name, inst.CreatedAt, before)
		}
	}
	sortByName := cmpopts.SortSlices(func(a, b scaler.Instance) bool { return a.Name < b.Name })
	ignore := cmpopts.IgnoreFields(scaler.Instance{}, "CreatedAt", "Location")
	if diff := cmp.Diff(got, want, sortByName, ignore); diff != "" {
		t.Errorf("List (-got +want):\n%s", diff)
	}
}

func TestCreateWithATakenNameIsAlreadyExists(t *testing.T) {
	t.Parallel()
	pool := lxdtest.Pool()
	p := lxdtest.Provider(t, pool)
	spec := lxdtest.Spec(pool.Name)
	if err := p.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	for _, tc := range []struct {
		name string
		spec scaler.InstanceSpec
	}{
		{"the same spec again", spec},
		{"another runner under the same name", func() scaler.InstanceSpec { s := lxdtest.Spec(pool.Name); s.Name = spec.Name; return s }()},
	} {
		err := p.Create(t.Context(), tc.spec)
		if !errors.Is(err, scaler.ErrInstanceExists) {
			t.Errorf("%s: Create = %v, want ErrInstanceExists", tc.name, err)
		}
	}
	if inst := lxdtest.Instance(t, spec.Name); inst == nil || inst.StatusCode != api.Running {
		t.Errorf("the first instance is gone or stopped after the duplicate creates: %+v", inst)
	}
}

func TestMissingImageIsMisconfiguration(t *testing.T) {
	t.Parallel()
	t.Run("at start", func(t *testing.T) {
		pool := lxdtest.Pool()
		pool.Image = "ephemera-missing-" + pool.Name
		_, err := lxdprov.New(t.Context(), lxdtest.Config(t, pool))
		if !errors.Is(err, scaler.ErrMisconfigured) || !strings.Contains(err.Error(), pool.Image) {
			t.Errorf("New = %v, want ErrMisconfigured naming image %s", err, pool.Image)
		}
	})
	t.Run("when it disappears after start", func(t *testing.T) {
		client := lxdtest.Client(t)
		target, _, err := client.GetImageAlias(lxdtest.Image)
		if err != nil {
			t.Fatal(err)
		}
		pool := lxdtest.Pool()
		pool.Image = "ephemera-vanishing-" + pool.Name
		if err := client.CreateImageAlias(api.ImageAliasesPost{ImageAliasesEntry: api.ImageAliasesEntry{Name: pool.Image, Target: target.Target}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.DeleteImageAlias(pool.Image) })
		p := lxdtest.Provider(t, pool)
		if err := client.DeleteImageAlias(pool.Image); err != nil {
			t.Fatal(err)
		}
		err = p.Create(t.Context(), lxdtest.Spec(pool.Name))
		if !errors.Is(err, scaler.ErrMisconfigured) || !strings.Contains(err.Error(), pool.Image) {
			t.Errorf("Create = %v, want ErrMisconfigured naming image %s", err, pool.Image)
		}
	})
}

func TestMissingProfileIsMisconfiguration(t *testing.T) {
	t.Parallel()
	pool := lxdtest.Pool()
	pool.Profiles = []string{"default", "ephemera-missing-" + pool.Name}
	_, err := lxdprov.New(t.Context(), lxdtest.Config(t, pool))
	if !errors.Is(err, scaler.ErrMisconfigured) || !strings.Contains(err.Error(), pool.Profiles[1]) {
		t.Errorf("New = %v, want ErrMisconfigured naming profile %s", err, pool.Profiles[1])
	}
}

func TestNewFailsClearlyWhenLXDCannotBeReached(t *testing.T) {
	t.Parallel()
	socket := t.TempDir() + "/no-lxd.socket"
	_, err := lxdprov.New(t.Context(), lxdprov.Config{
		Socket:     socket,
		Pools:      []config.Pool{lxdtest.Pool()},
		PolicyURL:  lxdtest.PolicyURL,
		PreJobHook: lxdtest.PreJobHook,
		Log:        zerolog.Nop(),
	})
	if err == nil || !strings.Contains(err.Error(), socket) {
		t.Errorf("New = %v, want an error naming %s", err, socket)
	}
}

func TestCancelledContextStopsWaiting(t *testing.T) {
	t.Parallel()
	pool := lxdtest.Pool()
	p := lxdtest.Provider(t, pool)
	spec := lxdtest.Spec(pool.Name)

	// Cancel once LXD has the instance, while Create still waits for it
	// to run (creating and starting take about half a second here).
	client := lxdtest.Client(t)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		defer cancel()
		_ = waitfor.Within(30*time.Second, func() bool {
			_, _, err := client.GetInstance(spec.Name)
			return err == nil
		})
	}()
	err := p.Create(ctx, spec)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Create = %v, want context.Canceled", err)
	}
	// LXD carries on creating it; List shows it, and Delete removes it.
	waitfor.True(t, 30*time.Second, "the instance to be listed after the cancelled create", func() bool {
		insts, err := p.List(t.Context())
		return err == nil && slices.ContainsFunc(insts, func(i scaler.Instance) bool { return i.Name == spec.Name })
	})
	if err := p.Delete(t.Context(), spec.Name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

func TestTwentyConcurrentCreatesAllSucceedAndAllAreDeleted(t *testing.T) {
	t.Parallel()
	pool := lxdtest.Pool()
	p := lxdtest.Provider(t, pool)
	const n = 20
	specs := make([]scaler.InstanceSpec, n)
	for i := range specs {
		specs[i] = lxdtest.Spec(pool.Name)
	}
	var g errgroup.Group
	for _, s := range specs {
		g.Go(func() error { return p.Create(t.Context(), s) })
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("concurrent Create: %v", err)
	}
	insts, err := p.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, inst := range insts {
		if inst.State == scaler.StateRunning {
			running++
		}
	}
	if running != n {
		t.Errorf("List shows %d running instances, want %d", running, n)
	}
	for _, s := range specs {
		g.Go(func() error { return p.Delete(t.Context(), s.Name) })
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("concurrent Delete: %v", err)
	}
	if insts, err := p.List(t.Context()); err != nil || len(insts) != 0 {
		t.Errorf("List after deleting all = %d instances, %v; want none", len(insts), err)
	}
}

func TestProjectAtItsInstanceLimitIsOutOfCapacity(t *testing.T) {
	t.Parallel()
	client := lxdtest.Client(t)
	pool := lxdtest.Pool()
	project := pool.Name // a fresh name
	// The project shares the default project's images and profiles.
	err := client.CreateProject(api.ProjectsPost{Name: project, ProjectPut: api.ProjectPut{Config: map[string]string{
		"features.images": "false", "features.profiles": "false", "limits.instances": "1",
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.DeleteProject(project) }) // after the provider's cleanup
	cfg := lxdtest.Config(t, pool)
	cfg.Project = project
	p := lxdtest.New(t, cfg)

	if err := p.Create(t.Context(), lxdtest.Spec(pool.Name)); err != nil {
		t.Fatalf("first Create: %v", err)
	}
	if err := p.Create(t.Context(), lxdtest.Spec(pool.Name)); !errors.Is(err, scaler.ErrNoCapacity) {
		t.Errorf("Create past limits.instances = %v, want ErrNoCapacity", err)
	}
}

// Not parallel: goleak must see only this test's goroutines.
func TestCloseLeavesNoGoroutinesBehind(t *testing.T) {
	lxdtest.Require(t)
	before := goleak.IgnoreCurrent()
	pool := lxdtest.Pool()
	p, err := lxdprov.New(t.Context(), lxdtest.Config(t, pool))
	if err != nil {
		t.Fatal(err)
	}
	spec := lxdtest.Spec(pool.Name)
	t.Cleanup(func() { lxdtest.ForceDelete(t, spec.Name) })
	// Waiting on operations opens LXD's event websocket, which the LXD
	// client would keep for up to a minute.
	if err := p.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(t.Context(), spec.Name); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, before)
}
