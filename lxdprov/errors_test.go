package lxdprov_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/canonical/lxd/shared/api"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ephemera-ci/ephemera/lxdprov/lxdfake"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
	"github.com/ephemera-ci/ephemera/scaler"
)

// failOn returns a Fail/FailOp hook that fails method with err, always.
func failOn(method string, err error) func(lxdfake.Call) error {
	return func(c lxdfake.Call) error {
		if c.Method == method {
			return err
		}
		return nil
	}
}

func TestLXDsOutOfResourceAnswersAreNoCapacity(t *testing.T) {
	for _, code := range []int{http.StatusServiceUnavailable, http.StatusInsufficientStorage, http.StatusTooManyRequests} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			srv := newFake()
			p := onFake(t, srv, fakeConfig())
			srv.Fail = failOn(lxdfake.CreateInstance, lxdfake.Status(code, "no room"))
			if err := p.Create(t.Context(), lxdtest.Spec("small")); !errors.Is(err, scaler.ErrNoCapacity) {
				t.Errorf("Create = %v, want ErrNoCapacity", err)
			}
		})
	}
}

func TestAnInstanceCreatedButNotStartedIsRemoved(t *testing.T) {
	for _, tc := range []struct {
		name        string
		createStart bool
	}{
		{"created and started in one operation", true},
		{"created, then started (LXD without instance_create_start)", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFake()
			if !tc.createStart {
				srv.NoExtensions = []string{"instance_create_start"}
			}
			p := onFake(t, srv, fakeConfig())
			srv.FailOp = failOn(lxdfake.StartInstance, lxdfake.Status(http.StatusInternalServerError, "init died"))
			spec := lxdtest.Spec("small")
			err := p.Create(t.Context(), spec)
			if err == nil || errors.Is(err, scaler.ErrInstanceExists) || !strings.Contains(err.Error(), "start instance") {
				t.Errorf("Create = %v, want a start error that is not ErrInstanceExists", err)
			}
			if srv.Instance(spec.Name) != nil {
				t.Errorf("instance %s is left behind, holding a slot", spec.Name)
			}
			if got := srv.Created()[0].Start; got != tc.createStart {
				t.Errorf("create request Start = %t, want %t", got, tc.createStart)
			}
		})
	}
}

func TestANameTakenBySomeoneElseIsAlreadyExistsAndTheirInstanceStays(t *testing.T) {
	srv := newFake()
	p := onFake(t, srv, fakeConfig())
	spec := lxdtest.Spec("small")
	theirs := lxdtest.Spec("small")
	theirs.Name = spec.Name
	if err := p.Create(t.Context(), theirs); err != nil {
		t.Fatal(err)
	}
	if err := p.Create(t.Context(), spec); !errors.Is(err, scaler.ErrInstanceExists) {
		t.Errorf("Create = %v, want ErrInstanceExists", err)
	}
	if srv.Instance(spec.Name) == nil {
		t.Error("the other runner's instance was removed")
	}
}

// The LXD client pinned here can report an operation failed that LXD
// finished well (its shared events connection closed under the
// operation's listener): the provider asks LXD how each one ended.
func TestAnOperationIsJudgedByHowLXDSaysItEndedNotByTheClientsEvents(t *testing.T) {
	srv := newFake()
	srv.LoseEvents = true
	p := onFake(t, srv, fakeConfig())
	spec := lxdtest.Spec("small")
	if err := p.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create = %v, want nil: LXD created and started it", err)
	}
	if inst := srv.Instance(spec.Name); inst == nil || inst.StatusCode != api.Running {
		t.Fatalf("instance %s = %+v, want it running", spec.Name, inst)
	}
	if err := p.Delete(t.Context(), spec.Name); err != nil {
		t.Errorf("Delete = %v, want nil", err)
	}
	if srv.Instance(spec.Name) != nil {
		t.Errorf("instance %s is left", spec.Name)
	}
}

// A create whose operation failed, or whose end could not be learnt,
// after LXD made the instance: the instance holds this runner's user-data,
// so it is this request's, and it is removed; it is not someone else's
// instance of the same name.
func TestACreateThatFailedAfterMakingItsInstanceRemovesIt(t *testing.T) {
	srv := newFake()
	p := onFake(t, srv, fakeConfig())
	srv.Fail = failOn(lxdfake.GetOperationWait, lxdfake.Status(http.StatusInternalServerError, "database is locked"))
	spec := lxdtest.Spec("small")
	err := p.Create(t.Context(), spec)
	if err == nil || errors.Is(err, scaler.ErrInstanceExists) || !strings.Contains(err.Error(), "database is locked") {
		t.Errorf("Create = %v, want its error, not ErrInstanceExists", err)
	}
	srv.Fail = nil
	if srv.Instance(spec.Name) != nil {
		t.Errorf("instance %s is left behind, holding a slot", spec.Name)
	}
}

func TestWhatVanishedAfterStartIsMisconfiguration(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remove func(*lxdfake.Server)
		naming string
	}{
		{"the image alias", func(s *lxdfake.Server) { s.RemoveAlias(fakeImage) }, fakeImage},
		{"a profile", func(s *lxdfake.Server) { s.RemoveProfile("extra") }, "extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFake()
			srv.SetProfile(profile("extra", nil))
			pool := fakePool()
			pool.Profiles = []string{"default", "extra"}
			p := onFake(t, srv, fakeConfig(pool))
			tc.remove(srv)
			err := p.Create(t.Context(), lxdtest.Spec("small"))
			if !errors.Is(err, scaler.ErrMisconfigured) || !strings.Contains(err.Error(), tc.naming) {
				t.Errorf("Create = %v, want ErrMisconfigured naming %s", err, tc.naming)
			}
		})
	}
}

func TestAnImageNamedByFingerprintPrefixIsCreatedFromThatImage(t *testing.T) {
	srv := &lxdfake.Server{}
	fp := srv.AddImage("unused-alias")
	srv.SetProfile(profile("default", map[string]map[string]string{"root": rootDisk}))
	pool := fakePool()
	pool.Image = fp[:12]
	p := onFake(t, srv, fakeConfig(pool))
	if err := p.Create(t.Context(), lxdtest.Spec("small")); err != nil {
		t.Fatal(err)
	}
	if src := srv.Created()[0].Source; src.Fingerprint != fp || src.Alias != "" {
		t.Errorf("source = %+v, want fingerprint %s", src, fp)
	}
}

// Delete's backoff runs on synctest's clock: no real waiting.
func TestDeleteRetriesWhileLXDIsBusyThenGivesUp(t *testing.T) {
	busy := lxdfake.Status(http.StatusBadRequest, "Instance is busy running a stop operation")
	for _, tc := range []struct {
		name      string
		failures  int
		wantErr   bool
		wantTries int
	}{
		{"busy twice, then deleted", 2, false, 3},
		{"busy every time: an error after five tries", 100, true, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newFake()
				p := onFake(t, srv, fakeConfig())
				spec := lxdtest.Spec("small")
				if err := p.Create(t.Context(), spec); err != nil {
					t.Fatal(err)
				}
				n := 0
				srv.Fail = func(c lxdfake.Call) error {
					if c.Method == lxdfake.UpdateInstanceState {
						if n++; n <= tc.failures {
							return busy
						}
					}
					return nil
				}
				err := p.Delete(t.Context(), spec.Name)
				if (err != nil) != tc.wantErr {
					t.Errorf("Delete = %v, want error %t", err, tc.wantErr)
				}
				if got := srv.Count(lxdfake.UpdateInstanceState); got != tc.wantTries {
					t.Errorf("%d stop requests, want %d", got, tc.wantTries)
				}
				if gone := srv.Instance(spec.Name) == nil; gone == tc.wantErr {
					t.Errorf("instance gone = %t after Delete = %v", gone, err)
				}
			})
		})
	}
}

func TestAnInstanceThatVanishesWhileBeingDeletedIsDeleted(t *testing.T) {
	srv := newFake()
	p := onFake(t, srv, fakeConfig())
	spec := lxdtest.Spec("small")
	if err := p.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	// The stop is refused: the instance stopped on its own meanwhile, and
	// LXD deleted it (it is ephemeral).
	srv.Fail = func(c lxdfake.Call) error {
		if c.Method == lxdfake.UpdateInstanceState {
			srv.RemoveInstance(spec.Name)
			return lxdfake.Status(http.StatusBadRequest, "The instance is already stopped")
		}
		return nil
	}
	if err := p.Delete(t.Context(), spec.Name); err != nil {
		t.Errorf("Delete = %v, want nil", err)
	}
	if n := srv.Count(lxdfake.UpdateInstanceState); n != 1 {
		t.Errorf("%d stop requests, want 1 (no retry once it is gone)", n)
	}
}

func TestMetricsCountOperationsByOutcome(t *testing.T) {
	srv := newFake()
	reg := prometheus.NewRegistry()
	cfg := fakeConfig()
	cfg.Registerer = reg
	p := onFake(t, srv, cfg)
	spec := lxdtest.Spec("small")
	if err := p.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	_ = p.Create(t.Context(), spec) // exists
	if err := p.Delete(t.Context(), spec.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := p.List(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	series := map[string]int{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		series[mf.GetName()] = len(mf.GetMetric())
		if mf.GetName() != "ephemera_lxd_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["op"]+"/"+labels["outcome"]] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"create/ok": 1, "create/exists": 1, "delete/ok": 1, "list/ok": 1}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("ephemera_lxd_requests_total by op/outcome (-got +want):\n%s", diff)
	}
	if n := series["ephemera_lxd_operation_seconds"]; n != 3 {
		t.Errorf("ephemera_lxd_operation_seconds has %d series, want 3 (create, delete, list)", n)
	}
}
