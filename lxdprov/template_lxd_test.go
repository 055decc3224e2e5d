package lxdprov_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	lxd "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
	"github.com/ephemera-ci/ephemera/scaler"
)

// templateEnv is a provider for one container pool with template: true,
// on a btrfs storage pool and in a project of its own, both made for the
// test and removed after it.
type templateEnv struct {
	p       *lxdprov.Provider
	pool    config.Pool
	project string
	c       lxd.InstanceServer // the raw client, in the project
	reg     *prometheus.Registry
}

func newTemplateEnv(t *testing.T, image string) *templateEnv {
	t.Helper()
	lxdtest.Require(t)
	sp := lxdtest.BtrfsPool(t)
	project := lxdtest.Project(t)
	pool := lxdtest.Pool()
	pool.Template = true
	pool.StoragePool = sp
	if image != "" {
		pool.Image = image
	}
	cfg := lxdtest.Config(t, pool)
	cfg.Project = project
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	return &templateEnv{p: lxdtest.New(t, cfg), pool: pool, project: project, c: lxdtest.Client(t).UseProject(project), reg: reg}
}

// instance returns the instance as LXD sees it, nil when it does not exist.
func (e *templateEnv) instance(t *testing.T, name string) *api.Instance {
	t.Helper()
	inst, _, err := e.c.GetInstance(name)
	if api.StatusErrorCheck(err, http.StatusNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("get instance %s: %v", name, err)
	}
	return inst
}

// create creates a runner instance and returns its name.
func (e *templateEnv) create(t *testing.T) string {
	t.Helper()
	spec := lxdtest.Spec(e.pool.Name)
	if err := e.p.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return spec.Name
}

// creates is ephemera_lxd_creates_total{pool, source} for the test's pool.
func (e *templateEnv) creates(t *testing.T, source string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ephemera_lxd_creates_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["pool"] == e.pool.Name && labels["source"] == source {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// fingerprint is what the pool's image alias points to now.
func (e *templateEnv) fingerprint(t *testing.T) string {
	t.Helper()
	a, _, err := e.c.GetImageAlias(e.pool.Image)
	if err != nil {
		t.Fatal(err)
	}
	return a.Target
}

// templates returns the names of the instances that are templates of the
// test's pool.
func (e *templateEnv) templates(t *testing.T) []string {
	t.Helper()
	all, err := e.c.GetInstances(api.InstanceTypeAny)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, inst := range all {
		if inst.Config[lxdprov.KeyTemplate] == e.pool.Name {
			out = append(out, inst.Name)
		}
	}
	return out
}

func TestTemplateIsBuiltShiftedAndStoppedAndCopiesStartFromIt(t *testing.T) {
	t.Parallel()
	e := newTemplateEnv(t, "")
	e.p.SyncTemplates(t.Context())

	name := lxdprov.TemplateName(e.pool.Name, e.fingerprint(t))
	tpl := e.instance(t, name)
	if tpl == nil {
		t.Fatalf("no template %s after SyncTemplates (instances: %v)", name, e.templates(t))
	}
	if tpl.StatusCode != api.Stopped || tpl.Ephemeral || tpl.Config[lxdprov.KeyTemplateReady] != "true" {
		t.Errorf("template is %s, ephemeral %t, ready %q; want Stopped, not ephemeral, ready", tpl.Status, tpl.Ephemeral, tpl.Config[lxdprov.KeyTemplateReady])
	}
	// Started once: LXD recorded the id map its rootfs is shifted to.
	if m := tpl.Config["volatile.last_state.idmap"]; m == "" || m == "[]" {
		t.Errorf("template's volatile.last_state.idmap = %q: it was never shifted", m)
	}
	if pool := tpl.ExpandedDevices["root"]["pool"]; pool != e.pool.StoragePool {
		t.Errorf("template's root disk is on storage pool %q, want %q", pool, e.pool.StoragePool)
	}

	runner := e.create(t)
	inst := e.instance(t, runner)
	if inst == nil || inst.StatusCode != api.Running || !inst.Ephemeral {
		t.Fatalf("runner %s: %+v; want a running ephemeral instance", runner, inst)
	}
	if got := e.creates(t, lxdprov.SourceTemplate); got != 1 {
		t.Errorf("creates from the template = %v, want 1", got)
	}
	if inst.ExpandedDevices["root"]["pool"] != e.pool.StoragePool {
		t.Errorf("runner's root disk is on %q, want %q", inst.ExpandedDevices["root"]["pool"], e.pool.StoragePool)
	}
	for _, k := range []string{lxdprov.KeyTemplate, lxdprov.KeyTemplateImage, lxdprov.KeyTemplateReady} {
		if v := inst.Config[k]; v != "" {
			t.Errorf("runner carries the template's %s=%q", k, v)
		}
	}
	if inst.Config[lxdprov.KeyPool] != e.pool.Name {
		t.Errorf("runner's %s = %q, want %q", lxdprov.KeyPool, inst.Config[lxdprov.KeyPool], e.pool.Name)
	}
	// The scaler sees the runner, never the template.
	insts, err := e.p.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 1 || insts[0].Name != runner {
		t.Errorf("List = %+v, want only %s", insts, runner)
	}
}

func TestTemplateCopiesBootAsNewMachines(t *testing.T) {
	t.Parallel()
	// An image that carries a machine identity, as a booted image would.
	image, _ := lxdtest.PublishImage(t, map[string]string{"/etc/machine-id": "0123456789abcdef0123456789abcdef\n"})
	e := newTemplateEnv(t, image)
	e.p.SyncTemplates(t.Context())
	tpl := e.instance(t, lxdprov.TemplateName(e.pool.Name, e.fingerprint(t)))
	if tpl == nil || tpl.Config[lxdprov.KeyTemplateReady] != "true" {
		t.Fatalf("template not ready: %+v", tpl)
	}

	a, b := e.create(t), e.create(t)
	if got := e.creates(t, lxdprov.SourceTemplate); got != 2 {
		t.Fatalf("creates from the template = %v, want 2", got)
	}
	ids := map[string]string{tpl.Name: tpl.Config["volatile.cloud-init.instance-id"]}
	for _, name := range []string{a, b} {
		if id, _ := lxdtest.ReadFile(t, e.project, name, "/etc/machine-id"); id != "" {
			t.Errorf("%s: /etc/machine-id = %q, want it emptied in the template", name, id)
		}
		ids[name] = e.instance(t, name).Config["volatile.cloud-init.instance-id"]
	}
	if ids[a] == "" || ids[a] == ids[b] || ids[a] == ids[tpl.Name] || ids[b] == ids[tpl.Name] {
		t.Errorf("cloud-init instance ids %v: want each copy its own", ids)
	}
}

// The Debian base image (make runner-base), when this machine has it: a
// real systemd and cloud-init in each copy.
func TestTemplateCopiesOfTheDebianBaseBootAsNewMachines(t *testing.T) {
	t.Parallel()
	const base = "ephemera-base-bookworm"
	lxdtest.Require(t)
	if _, _, err := lxdtest.Client(t).GetImageAlias(base); err != nil {
		t.Skipf("image %s not in LXD (make runner-base): %v", base, err)
	}
	e := newTemplateEnv(t, base)
	e.p.SyncTemplates(t.Context())
	if len(e.templates(t)) != 1 {
		t.Fatalf("templates = %v after SyncTemplates, want one", e.templates(t))
	}
	tpl := e.instance(t, e.templates(t)[0])
	if id, _ := lxdtest.ReadFile(t, e.project, tpl.Name, "/etc/machine-id"); id != "" {
		t.Errorf("template's /etc/machine-id = %q, want empty", id)
	}
	if _, ok := lxdtest.ReadFile(t, e.project, tpl.Name, "/var/lib/cloud/data/instance-id"); ok {
		t.Error("template keeps cloud-init's instance state (/var/lib/cloud/data/instance-id)")
	}
	machineIDs := map[string]string{}
	for range 2 {
		name := e.create(t)
		want := e.instance(t, name).Config["volatile.cloud-init.instance-id"]
		var ci string
		waitfor.True(t, 2*time.Minute, name+"'s cloud-init to record its instance", func() bool {
			ci, _ = lxdtest.ReadFile(t, e.project, name, "/var/lib/cloud/data/instance-id")
			return strings.TrimSpace(ci) != ""
		})
		if strings.TrimSpace(ci) != want {
			t.Errorf("%s: cloud-init ran for instance %q, want its own %q", name, strings.TrimSpace(ci), want)
		}
		id, _ := lxdtest.ReadFile(t, e.project, name, "/etc/machine-id")
		machineIDs[strings.TrimSpace(id)] = name
	}
	if _, empty := machineIDs[""]; empty || len(machineIDs) != 2 {
		t.Errorf("machine ids %v: want two different, non-empty ones", machineIDs)
	}
}

func TestCreateFallsBackToTheImageWhenThereIsNoTemplate(t *testing.T) {
	t.Parallel()
	e := newTemplateEnv(t, "")

	// No template yet: the image, at once.
	e.create(t)
	if img, tpl := e.creates(t, lxdprov.SourceImage), e.creates(t, lxdprov.SourceTemplate); img != 1 || tpl != 0 {
		t.Errorf("before any template: %v from the image, %v from a template; want 1, 0", img, tpl)
	}

	// The provider thinks a template is ready, but it went.
	e.p.SyncTemplates(t.Context())
	name := lxdprov.TemplateName(e.pool.Name, e.fingerprint(t))
	op, err := e.c.DeleteInstance(name)
	if err == nil {
		_, err = lxdtest.Wait(e.c, op)
	}
	if err != nil {
		t.Fatalf("delete template %s: %v", name, err)
	}
	runner := e.create(t)
	if inst := e.instance(t, runner); inst == nil || inst.StatusCode != api.Running {
		t.Fatalf("runner %s after the template went: %+v, want running", runner, inst)
	}
	if img := e.creates(t, lxdprov.SourceImage); img != 2 {
		t.Errorf("%v creates from the image, want 2 (the template was gone)", img)
	}

	// The next sync builds it again, and copies resume.
	e.p.SyncTemplates(t.Context())
	if tpl := e.instance(t, name); tpl == nil || tpl.Config[lxdprov.KeyTemplateReady] != "true" {
		t.Fatalf("template %s not rebuilt: %+v", name, tpl)
	}
	e.create(t)
	if got := e.creates(t, lxdprov.SourceTemplate); got != 1 {
		t.Errorf("creates from the template after the rebuild = %v, want 1", got)
	}
}

func TestRunBuildsTheTemplateWithoutDelayingCreates(t *testing.T) {
	t.Parallel()
	e := newTemplateEnv(t, "")
	done := make(chan error, 1)
	go func() { done <- e.p.Run(t.Context()) }()
	// Run's first sync is under way or done; Create does not wait for it.
	e.create(t)
	waitfor.True(t, 2*time.Minute, "Run to build the template", func() bool {
		tpl := e.instance(t, lxdprov.TemplateName(e.pool.Name, e.fingerprint(t)))
		return tpl != nil && tpl.Config[lxdprov.KeyTemplateReady] == "true"
	})
	waitfor.True(t, time.Minute, "a create from the template", func() bool {
		e.create(t)
		return e.creates(t, lxdprov.SourceTemplate) > 0
	})
}

func TestTemplateIsRebuiltWhenTheImageChanges(t *testing.T) {
	t.Parallel()
	alias, first := lxdtest.PublishImage(t, map[string]string{"/etc/ephemera-image": "first\n"})
	_, second := lxdtest.PublishImage(t, map[string]string{"/etc/ephemera-image": "second\n"})
	e := newTemplateEnv(t, alias)
	marker := func(name string) string {
		s, _ := lxdtest.ReadFile(t, e.project, name, "/etc/ephemera-image")
		return strings.TrimSpace(s)
	}

	e.p.SyncTemplates(t.Context())
	if got := e.templates(t); len(got) != 1 || got[0] != lxdprov.TemplateName(e.pool.Name, first) {
		t.Fatalf("templates %v, want only the first image's", got)
	}
	if got := marker(e.create(t)); got != "first" {
		t.Errorf("copy of the first template has image %q, want first", got)
	}

	// The alias moves on: the next instance is the new image's at once,
	// from the image, before any sync.
	lxdtest.PointAlias(t, alias, second)
	if got := marker(e.create(t)); got != "second" {
		t.Errorf("instance after the alias moved has image %q, want second", got)
	}
	if img := e.creates(t, lxdprov.SourceImage); img != 1 {
		t.Errorf("%v creates from the image after the alias moved, want 1", img)
	}

	e.p.SyncTemplates(t.Context())
	if got := e.templates(t); len(got) != 1 || got[0] != lxdprov.TemplateName(e.pool.Name, second) {
		t.Errorf("templates after the sync %v, want only the second image's", got)
	}
	if got := marker(e.create(t)); got != "second" {
		t.Errorf("copy of the rebuilt template has image %q, want second", got)
	}
	if tpl := e.creates(t, lxdprov.SourceTemplate); tpl != 2 {
		t.Errorf("%v creates from a template, want 2", tpl)
	}
}

func TestAMissingStoragePoolIsMisconfiguration(t *testing.T) {
	t.Parallel()
	pool := lxdtest.Pool()
	pool.StoragePool = "t-nowhere"
	_, err := lxdprov.New(t.Context(), lxdtest.Config(t, pool))
	if !errors.Is(err, scaler.ErrMisconfigured) || !strings.Contains(err.Error(), `storage pool "t-nowhere" not found`) {
		t.Errorf("New with a missing storage pool = %v, want ErrMisconfigured naming it", err)
	}
}

func TestStorageReportsEachPoolsStorageDriver(t *testing.T) {
	t.Parallel()
	lxdtest.Require(t)
	sp := lxdtest.BtrfsPool(t)
	onDir, onBtrfs := lxdtest.Pool(), lxdtest.Pool()
	onBtrfs.StoragePool = sp
	p := lxdtest.Provider(t, onDir, onBtrfs)
	got, err := p.Storage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{onDir.Name: "default/dir", onBtrfs.Name: sp + "/btrfs"}
	for _, s := range got {
		if want[s.Pool] != s.StoragePool+"/"+s.Driver {
			t.Errorf("pool %s on %s/%s, want %s", s.Pool, s.StoragePool, s.Driver, want[s.Pool])
		}
		delete(want, s.Pool)
	}
	if len(want) != 0 {
		t.Errorf("Storage left out %v", want)
	}
}
