package lxdprov_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	lxd "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
)

// imageConfig is a build of tarball from base in project, under an alias
// of its own whose images are deleted when t ends.
func imageConfig(t *testing.T, project, base, tarball string) lxdprov.ImageConfig {
	t.Helper()
	alias := project + "-runner"
	t.Cleanup(func() { deleteFamily(t, alias) })
	return lxdprov.ImageConfig{
		LXD:         lxdprov.Config{Socket: lxdtest.Socket(t), Project: project},
		Base:        base,
		Tarball:     tarball,
		Alias:       alias,
		Compression: "none",
		Log:         zerolog.New(zerolog.NewTestWriter(t)),
	}
}

// deleteFamily deletes alias and every image built for it.
func deleteFamily(t *testing.T, alias string) {
	c := lxdtest.Client(t)
	_ = c.DeleteImageAlias(alias)
	imgs, err := c.GetImages()
	if err != nil {
		t.Errorf("cleanup: list images: %v", err)
		return
	}
	for _, img := range lxdprov.Family(imgs, alias) {
		if op, err := c.DeleteImage(img.Fingerprint); err == nil {
			_, _ = lxdtest.Wait(c, op)
		}
	}
}

// instancesIn names the instances of project.
func instancesIn(t *testing.T, project string) []string {
	t.Helper()
	insts, err := lxdtest.Client(t).UseProject(project).GetInstances(api.InstanceTypeAny)
	if err != nil {
		t.Fatalf("list instances of %s: %v", project, err)
	}
	var names []string
	for _, i := range insts {
		names = append(names, i.Name)
	}
	return names
}

// recorder collects a build's progress events.
type recorder struct {
	mu     sync.Mutex
	events []lxdprov.StepEvent
}

func (r *recorder) add(ev lxdprov.StepEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

// done returns the steps that ended, in order, with their outcome.
func (r *recorder) done() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		if ev.Done {
			s := ev.Name
			if ev.Err != nil {
				s += ": failed"
			}
			out = append(out, s)
		}
	}
	return out
}

// stepDetail is what the named step reported when it ended.
func stepDetail(r *recorder, name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev.Done && ev.Name == name {
			return ev.Detail
		}
	}
	return ""
}

// The busybox test image lacks bash, curl, jq and cloud-init: the build
// stops at "check tools", after the builder was launched, and deletes it.
func TestAnImageBuildThatFailsAtAStepLeavesNoBuilder(t *testing.T) {
	t.Parallel()
	project := lxdtest.Project(t)
	cfg := imageConfig(t, project, lxdtest.Image, writeFile(t, runnerTarball(t, "2.321.0")))
	var rec recorder
	cfg.Progress = rec.add

	_, err := lxdprov.BuildImage(t.Context(), cfg)
	var se *lxdprov.StepError
	if !errors.As(err, &se) || se.Step != "check tools" || se.Leftover != "" {
		t.Fatalf("BuildImage = %v; want a StepError at check tools with no leftover", err)
	}
	var mt *lxdprov.MissingToolsError
	if !errors.As(err, &mt) {
		t.Fatalf("error %v does not say which tools are missing", err)
	}
	for _, tool := range []string{"bash", "curl", "jq", "cloud-init"} {
		if !slices.Contains(mt.Tools, tool) {
			t.Errorf("missing tools %v do not name %s", mt.Tools, tool)
		}
	}
	if !strings.Contains(err.Error(), `step "check tools"`) || !strings.Contains(err.Error(), "bash") {
		t.Errorf("message %q names neither the step nor the tools", err)
	}
	want := []string{"read runner tarball", "find base image", "launch builder", "wait for boot", "check tools: failed"}
	if got := rec.done(); !slices.Equal(got, want) {
		t.Errorf("steps reported %q, want %q", got, want)
	}
	if left := instancesIn(t, project); len(left) != 0 {
		t.Errorf("instances left behind: %v", left)
	}
	if imgs, _ := lxdtest.Client(t).GetImages(); len(lxdprov.Family(imgs, cfg.Alias)) != 0 {
		t.Error("a failed build left an image of its alias")
	}
}

func TestAnImageBuildFromAMissingBaseLaunchesNothing(t *testing.T) {
	t.Parallel()
	project := lxdtest.Project(t)
	cfg := imageConfig(t, project, "no-such-base-image", writeFile(t, runnerTarball(t, "2.321.0")))
	_, err := lxdprov.BuildImage(t.Context(), cfg)
	var se *lxdprov.StepError
	if !errors.As(err, &se) || se.Step != "find base image" || !errors.Is(err, lxdprov.ErrBaseNotFound) {
		t.Fatalf("BuildImage = %v; want ErrBaseNotFound at find base image", err)
	}
	if left := instancesIn(t, project); len(left) != 0 {
		t.Errorf("instances left behind: %v", left)
	}
}

// publishTestImage publishes a small image of alias's family (from the
// busybox test image, with n written into it so each differs) and returns
// its fingerprint.
func publishTestImage(t *testing.T, c lxd.InstanceServer, alias string, n int, built time.Time) string {
	t.Helper()
	name := fmt.Sprintf("img-src-%d-%d", n, time.Now().UnixNano()%1e6)
	op, err := c.CreateInstance(api.InstancesPost{Name: name, Type: api.InstanceTypeContainer, Source: api.InstanceSource{Type: "image", Alias: lxdtest.Image}})
	if err == nil {
		_, err = lxdtest.Wait(c, op)
	}
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	defer func() {
		if op, err := c.DeleteInstance(name); err == nil {
			_, _ = lxdtest.Wait(c, op)
		}
	}()
	if err := c.CreateInstanceFile(name, "/etc/ephemera-test-image", lxd.InstanceFileArgs{Content: strings.NewReader(fmt.Sprint(n, built)), Mode: 0o644, Type: "file", WriteMode: "overwrite"}); err != nil {
		t.Fatal(err)
	}
	op, err = c.CreateImage(api.ImagesPost{
		ImagePut: api.ImagePut{Properties: map[string]string{
			lxdprov.PropAlias: alias, lxdprov.PropBuiltAt: built.UTC().Format(time.RFC3339), lxdprov.PropRunnerVersion: fmt.Sprintf("2.%d.0", n),
		}},
		Source:               &api.ImagesPostSource{Type: "instance", Name: name},
		CompressionAlgorithm: "none",
	}, nil)
	var published api.Operation
	if err == nil {
		published, err = lxdtest.Wait(c, op)
	}
	if err != nil {
		t.Fatalf("publish %s: %v", name, err)
	}
	return published.Metadata["fingerprint"].(string)
}

func imageExists(t *testing.T, c lxd.InstanceServer, fp string) bool {
	t.Helper()
	_, _, err := c.GetImage(fp)
	return err == nil
}

// Pruning and rollback on LXD, with small images: the alias family keeps
// its newest images and any an instance was created from; rollback moves
// the alias to an older kept image.
func TestAliasFamiliesArePrunedAndRolledBack(t *testing.T) {
	t.Parallel()
	project := lxdtest.Project(t)
	alias := project + "-runner"
	t.Cleanup(func() { deleteFamily(t, alias) })
	raw := lxdtest.Client(t)
	c := raw.UseProject(project)
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a1 := publishTestImage(t, c, alias, 1, day)
	a2 := publishTestImage(t, c, alias, 2, day.Add(24*time.Hour))
	a3 := publishTestImage(t, c, alias, 3, day.Add(48*time.Hour))
	if err := c.CreateImageAlias(api.ImageAliasesPost{ImageAliasesEntry: api.ImageAliasesEntry{Name: alias, Target: a3}}); err != nil {
		t.Fatal(err)
	}
	// A runner created from a1 (LXD records volatile.base_image).
	op, err := c.CreateInstance(api.InstancesPost{Name: "uses-a1", Type: api.InstanceTypeContainer, Source: api.InstanceSource{Type: "image", Fingerprint: a1}})
	if err == nil {
		_, err = lxdtest.Wait(c, op)
	}
	if err != nil {
		t.Fatal(err)
	}

	detail, pruned, err := lxdprov.Prune(t.Context(), c, raw, alias, 1, a3)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prune: %s", detail)
	if !slices.Equal(pruned, []string{a2}) {
		t.Errorf("pruned %v, want only a2 %s", pruned, a2)
	}
	for fp, want := range map[string]bool{a1: true, a2: false, a3: true} {
		if got := imageExists(t, c, fp); got != want {
			t.Errorf("image %s exists = %t, want %t", fp[:12], got, want)
		}
	}

	conn := lxdprov.Config{Socket: lxdtest.Socket(t), Project: project}
	from, to, err := lxdprov.RollbackImage(t.Context(), conn, alias, "")
	if err != nil || from != a3 || to != a1 {
		t.Fatalf("rollback = %s → %s, %v; want a3 → a1 (the older kept image)", from, to, err)
	}
	list, err := lxdprov.ListImages(t.Context(), conn, alias)
	if err != nil || len(list) != 2 || list[0].Fingerprint != a3 || list[0].Current || !list[1].Current || list[1].RunnerVersion != "2.1.0" {
		t.Errorf("ListImages after rollback = %+v, %v; want a3, then a1 current", list, err)
	}
	if _, _, err := lxdprov.RollbackImage(t.Context(), conn, alias, ""); !errors.Is(err, lxdprov.ErrNoOlderImage) {
		t.Errorf("rollback past the oldest = %v, want ErrNoOlderImage", err)
	}
	if _, _, err := lxdprov.RollbackImage(t.Context(), conn, alias, "ffff"); !errors.Is(err, lxdprov.ErrNotInFamily) {
		t.Errorf("rollback to a stranger = %v, want ErrNotInFamily", err)
	}
	if _, to, err := lxdprov.RollbackImage(t.Context(), conn, alias, a3[:12]); err != nil || to != a3 {
		t.Errorf("roll forward to a3 by prefix = %s, %v", to, err)
	}
}

// execIn runs script with sh in the instance and returns its output and
// exit status. Stdout and stderr are copied by goroutines of their own:
// each gets its own buffer, and the output is stdout then stderr.
func execIn(t *testing.T, c lxd.InstanceServer, name, script string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	done := make(chan bool)
	op, err := c.ExecInstance(name, api.InstanceExecPost{Command: []string{"/bin/sh", "-c", script}, WaitForWS: true}, &lxd.InstanceExecArgs{Stdout: &out, Stderr: &errOut, DataDone: done})
	var ended api.Operation
	if err == nil {
		ended, err = lxdtest.Wait(c, op)
	}
	if err != nil {
		t.Fatalf("exec in %s: %v", name, err)
	}
	<-done
	return out.String() + errOut.String(), int(ended.Metadata["return"].(float64))
}

// imageChecks runs in an instance of a built image once its cloud-init is
// done; it prints what is wrong, one line each.
const imageChecks = `
[ "$(id -u runner)" = 1000 ] || echo "runner's uid is $(id -u runner)"
[ "$(stat -c %U /opt/actions-runner/run.sh)" = runner ] || echo "run.sh is not runner's"
su -s /bin/sh -c 'sudo -n true' runner 2>&1 | sed 's/^/sudo as runner: /'
su -s /bin/sh -c 'sudo -n true' runner >/dev/null 2>&1 || echo "runner has no passwordless sudo"
ls /etc/ssh/ssh_host_* >/dev/null 2>&1 && echo "ssh host keys are baked in"
locale -a | grep -qi '^en_US.utf8$' || echo "en_US.UTF-8 is not generated"
cloud-init status --long | grep -q '^status: done' || echo "cloud-init: $(cloud-init status --long | tr '\n' ' ')"
grep -q 'Could not find module' /var/log/cloud-init.log && echo "cloud-init names an unknown module"
cloud-init analyze blame | grep -E 'config-(locale|ssh)$' | sed 's/^/cloud-init ran /'
f=$(systemctl --failed --no-legend --plain | cut -d' ' -f1 | tr '\n' ' '); [ -z "$f" ] || echo "failed units: $f"
[ -s /etc/machine-id ] && [ "$(cat /etc/machine-id)" != uninitialized ] || echo "no machine id"
true`

// The whole build on the Debian base (make runner-base): the builder is
// deleted when a late step fails; a good build is aliased, carries its
// properties and boots through real cloud-init with the runner in place.
func TestAnImageBuiltFromTheDebianBaseBootsARunner(t *testing.T) {
	lxdtest.Require(t)
	base := lxdtest.RequireRunnerBase(t)
	e2etest.TakeTurn(t)
	project := lxdtest.Project(t)
	c := lxdtest.Client(t).UseProject(project)

	t.Run("offline, missing runner libraries fail the build and leave no builder", func(t *testing.T) {
		deps := tarEntry{"./bin/installdependencies.sh", "#!/bin/bash\necho 'apt-get: cannot reach the archive' >&2; exit 1\n", 0o755}
		cfg := imageConfig(t, project, base, writeFile(t, runnerTarball(t, "2.321.0", deps)))
		_, err := lxdprov.BuildImage(t.Context(), cfg)
		var se *lxdprov.StepError
		if !errors.As(err, &se) || se.Step != "install runner dependencies" || !strings.Contains(err.Error(), "libicuuc") || !strings.Contains(err.Error(), "cannot reach the archive") {
			t.Fatalf("BuildImage = %v; want a failure at install runner dependencies naming libicuuc", err)
		}
		if left := instancesIn(t, project); len(left) != 0 {
			t.Errorf("instances left behind: %v", left)
		}
	})

	// A stand-in's bin/installdependencies.sh needs nothing, offline too.
	noDeps := tarEntry{"./bin/installdependencies.sh", "#!/bin/bash\necho 'nothing to install'\n", 0o755}
	cfg := imageConfig(t, project, base, writeFile(t, runnerTarball(t, "2.321.0-test", noDeps)))
	var rec recorder
	cfg.Progress = rec.add
	start := time.Now()
	img, err := lxdprov.BuildImage(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	for _, ev := range rec.events {
		if ev.Done {
			t.Logf("[%2d/%d] %-28s %5.1fs  %s", ev.N, ev.Total, ev.Name, ev.Elapsed.Seconds(), ev.Detail)
		}
	}
	rec.mu.Unlock()
	t.Logf("built %s in %s", img.Fingerprint[:12], time.Since(start).Round(time.Second))
	if d := stepDetail(&rec, "install runner dependencies"); !strings.HasPrefix(d, "ran bin/installdependencies.sh offline") {
		t.Errorf("install runner dependencies: %q; want it to have run the script offline", d)
	}
	if left := instancesIn(t, project); len(left) != 0 {
		t.Errorf("instances left behind: %v", left)
	}
	alias, _, err := c.GetImageAlias(cfg.Alias)
	if err != nil || alias.Target != img.Fingerprint {
		t.Fatalf("alias %s → %v, %v; want %s", cfg.Alias, alias, err, img.Fingerprint)
	}
	got, _, err := c.GetImage(img.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if p := got.Properties; p[lxdprov.PropRunnerVersion] != "2.321.0-test" || p[lxdprov.PropBase] != base || p[lxdprov.PropAlias] != cfg.Alias {
		t.Errorf("properties %v", p)
	}
	if _, err := time.Parse(time.RFC3339, got.Properties[lxdprov.PropBuiltAt]); err != nil {
		t.Errorf("%s: %v", lxdprov.PropBuiltAt, err)
	}

	// Boot it as ephemera would: user-data through LXD's datasource, no NIC.
	const userData = "#cloud-config\nwrite_files:\n  - path: /etc/ephemera/hello\n    content: hello\nruncmd:\n  - [su, -s, /bin/sh, -c, 'touch /tmp/ran-as-runner', runner]\n"
	launched := time.Now()
	op, err := c.CreateInstance(api.InstancesPost{Name: "boot-check", Type: api.InstanceTypeContainer,
		Source:      api.InstanceSource{Type: "image", Alias: cfg.Alias},
		InstancePut: api.InstancePut{Config: map[string]string{lxdprov.KeyUserData: userData}}})
	if err == nil {
		_, err = lxdtest.Wait(c, op)
	}
	if err != nil {
		t.Fatal(err)
	}
	// LXD 5.0 cannot create and start in one request.
	if op, err = c.UpdateInstanceState("boot-check", api.InstanceStatePut{Action: "start", Timeout: -1}, ""); err == nil {
		_, err = lxdtest.Wait(c, op)
	}
	if err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 3*time.Minute, "runcmd to run as runner", func() bool {
		_, code := execIn(t, c, "boot-check", "test -O /tmp/ran-as-runner -o \"$(stat -c %U /tmp/ran-as-runner 2>/dev/null)\" = runner")
		return code == 0
	})
	t.Logf("launch → runcmd done as runner: %s (this machine, loaded; not asserted)", time.Since(launched).Round(100*time.Millisecond))
	out, _ := execIn(t, c, "boot-check", "systemctl is-system-running --wait >/dev/null; cloud-init status --wait >/dev/null; "+imageChecks)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line != "" {
			t.Errorf("booted image: %s", line)
		}
	}
	blame, _ := execIn(t, c, "boot-check", "cloud-init analyze blame 2>&1 | head -8; systemd-analyze 2>&1 | head -1")
	t.Logf("boot breakdown:\n%s", blame)
}
