package lxdtest

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/canonical/lxd/shared/api"
)

// Project creates a throwaway LXD project for t ("t-" and 6 random
// characters) that shares the default project's images and profiles, and
// deletes it when t ends, with every instance in it.
func Project(t testing.TB) string {
	t.Helper()
	c := Client(t)
	name := "t-" + randomHex(3)
	err := c.CreateProject(api.ProjectsPost{Name: name, ProjectPut: api.ProjectPut{
		Description: "ephemera test " + t.Name(),
		Config:      map[string]string{"features.images": "false", "features.profiles": "false"},
	}})
	if err != nil {
		t.Fatalf("create LXD project %s: %v", name, err)
	}
	t.Cleanup(func() {
		pc := c.UseProject(name)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		insts, err := pc.GetInstances(api.InstanceTypeAny)
		if err != nil {
			t.Errorf("cleanup: list instances of project %s: %v", name, err)
		}
		for _, inst := range insts {
			if op, err := pc.UpdateInstanceState(inst.Name, api.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}, ""); err == nil {
				_ = op.WaitContext(ctx)
			}
			if op, err := pc.DeleteInstance(inst.Name); err == nil {
				_ = op.WaitContext(ctx)
			}
		}
		if err := c.DeleteProject(name); err != nil && !api.StatusErrorCheck(err, http.StatusNotFound) {
			t.Errorf("cleanup: delete LXD project %s: %v", name, err)
		}
	})
	return name
}

// RunnerBase is the alias of the Debian base image runner images are
// built from in tests (make runner-base imports it); EnvRunnerBase
// overrides it.
const RunnerBase = "ephemera-base-bookworm"

// Environment variables for tests that build runner images.
const (
	EnvRunnerBase        = "EPHEMERA_RUNNER_BASE"
	EnvRequireRunnerBase = "EPHEMERA_REQUIRE_RUNNER_BASE"
)

// RequireRunnerBase returns the runner base image's alias, skipping t
// with one line saying why when LXD lacks it, or failing t instead under
// EPHEMERA_REQUIRE_RUNNER_BASE=1 (as CI sets).
func RequireRunnerBase(t testing.TB) string {
	t.Helper()
	c := Client(t)
	alias := os.Getenv(EnvRunnerBase)
	if alias == "" {
		alias = RunnerBase
	}
	if _, _, err := c.GetImageAlias(alias); err != nil {
		if os.Getenv(EnvRequireRunnerBase) == "1" {
			t.Fatalf("runner base image required (%s=1) but LXD has no %s: %v (run make runner-base)", EnvRequireRunnerBase, alias, err)
		}
		t.Skipf("no runner base image %s in LXD: %v (run make runner-base, or set %s)", alias, err, EnvRunnerBase)
	}
	return alias
}
