// Package e2etest holds what the process-level and end-to-end tests
// share: the LXD image with the stand-in runner, building the repository's
// commands, a free loopback port and a buffer a child process writes to.
package e2etest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"

	"github.com/ephemera-ci/ephemera/internal/syncbuf"
)

// StandinImage is the LXD image with the stand-in runner
// (deploy/lxd/standin-image.sh, `make standin-image`).
const StandinImage = "ephemera-standin"

var (
	standinOnce sync.Once
	standinErr  error
)

// RequireStandinImage skips (or, with EPHEMERA_REQUIRE_LXD=1, fails) the
// test when LXD is absent, and otherwise builds the stand-in runner into
// StandinImage, as `make standin-image` does: a no-op when the image is
// current. Test binaries running at once take turns (a file lock), so two
// never import the same image together.
func RequireStandinImage(t testing.TB) {
	t.Helper()
	lxdtest.Require(t)
	standinOnce.Do(func() { standinErr = buildStandinImage() })
	if standinErr != nil {
		t.Fatal(standinErr)
	}
}

func buildStandinImage() error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "ephemera-standin-image.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return fmt.Errorf("standin image lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("standin image lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // released on close anyway
	out, err := exec.Command("bash", filepath.Join(root, "deploy/lxd/standin-image.sh"), StandinImage).CombinedOutput()
	if err != nil {
		return fmt.Errorf("standin-image.sh: %w\n%s", err, out)
	}
	return nil
}

// TakeTurn makes whole-system tests — each runs every component, NATS
// and LXD instances, and needs most of a 2-core machine — run one at a
// time across test binaries (go test runs packages in parallel): it holds
// a file lock from now until the test ends. Their timing (provisioning
// deadlines, bootstrap timeouts) is the one they were written for, not
// what is left beside another one.
func TakeTurn(t testing.TB) {
	t.Helper()
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "ephemera-e2e-turn.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("e2e turn lock: %v", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		t.Fatalf("e2e turn lock: %v", err)
	}
	t.Cleanup(func() { lock.Close() }) // closing releases the lock
}

// RepoRoot is the directory of the repository's go.mod, found from the
// working directory up (go test runs a test in its package's directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// MainWithCommand is a TestMain for tests that start the command in pkg
// (a path from the repository's root, e.g. "./cmd/ephemera") as
// processes: it builds it once into a temporary directory, sets *bin to
// its path, runs the tests and exits with their status.
func MainWithCommand(m *testing.M, pkg string, bin *string) {
	MainWithCommands(m, map[string]*string{pkg: bin})
}

// MainWithCommands is MainWithCommand for several commands: each key of
// bins is a package path from the repository's root, built once, with
// its binary's path stored in the value.
func MainWithCommands(m *testing.M, bins map[string]*string) {
	dir, err := os.MkdirTemp("", "ephemera-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for pkg, bin := range bins {
		if *bin, err = buildCommand(pkg, dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildCommand(pkg, dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// FreePort is a loopback address nothing listens on right now, for a
// process under test to bind.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// SyncBuffer is a bytes.Buffer a process writes while the test reads it.
type SyncBuffer = syncbuf.Buffer
