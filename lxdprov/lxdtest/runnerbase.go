package lxdtest

import (
	"os"
	"testing"
)

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
	c := shared(t)
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
