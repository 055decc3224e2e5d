// Package tooltest finds the outside programs some tests drive — promtool,
// chromium, dpkg — and decides what a test does when one is missing: it
// skips with a one-line reason, or fails when EPHEMERA_REQUIRE_TOOLS=1, as
// .ci/run sets after installing them. It is for tests only.
package tooltest

import (
	"os"
	"os/exec"
	"testing"
)

// EnvRequire makes tests fail instead of skipping when a tool is missing.
const EnvRequire = "EPHEMERA_REQUIRE_TOOLS"

// Required reports whether missing tools fail tests (EPHEMERA_REQUIRE_TOOLS=1).
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// Missing ends t because something it needs is absent: a skip naming
// reason, or a failure when tools are required.
func Missing(t testing.TB, reason string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s (%s=1)", reason, EnvRequire)
	}
	t.Skip(reason)
}

// Path returns the path of the first of names found on PATH; when none
// is, it calls Missing, naming the Debian package that provides it.
func Path(t testing.TB, debianPackage string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	Missing(t, names[0]+" not found on PATH: apt-get install "+debianPackage)
	return ""
}
