package realimage

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/demo"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
)

// BaseImage is the Debian base `make runner-base` imports.
const BaseImage = "ephemera-base-bookworm"

var ephemeraBin string

func TestMain(m *testing.M) {
	e2etest.MainWithCommand(m, "./cmd/ephemera", &ephemeraBin)
}

var baseOnce sync.Once

// requireBase skips (or, with EPHEMERA_REQUIRE_LXD=1, fails) without LXD
// and otherwise makes sure the Debian base is imported: `make
// runner-base`, a no-op under a second when it is current (CI runs it
// first; on a fresh machine it takes minutes and the Debian archive).
// Test binaries take turns, so two never build it together.
func requireBase(t testing.TB) {
	t.Helper()
	lxdtest.Require(t)
	var err error
	baseOnce.Do(func() {
		var root string
		if root, err = e2etest.RepoRoot(); err != nil {
			return
		}
		lock, lerr := os.OpenFile(filepath.Join(os.TempDir(), "ephemera-runner-base.lock"), os.O_CREATE|os.O_RDWR, 0o666)
		if lerr != nil {
			err = lerr
			return
		}
		defer lock.Close()
		if err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			return
		}
		out, cerr := exec.Command("bash", filepath.Join(root, "deploy/lxd/runner-base.sh"), BaseImage).CombinedOutput()
		if cerr != nil {
			err = cerr
			t.Logf("runner-base.sh:\n%s", out)
		}
	})
	if err != nil {
		t.Fatalf("the Debian base %s: %v", BaseImage, err)
	}
}

// buildRunnerImage builds the stand-in runner tarball and, with
// `ephemera image build`, a runner image from the Debian base under a
// fresh alias, which it deletes when the test ends. It returns the alias.
func buildRunnerImage(t testing.TB) string {
	t.Helper()
	requireBase(t)
	root, err := e2etest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, err := exec.Command("bash", filepath.Join(root, "deploy/lxd/standin-runner.sh"), dir).Output()
	if err != nil {
		t.Fatalf("standin-runner.sh: %v", err)
	}
	tarball := strings.TrimSpace(string(out))
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("lxd:\n  project: default\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	alias := "t-runner-" + demo.RandomHex(3)
	t.Cleanup(func() { deleteImage(t, alias) })
	build := exec.Command(ephemeraBin, "image", "build", "--config", cfg, "--base", BaseImage,
		"--runner-tarball", tarball, "--alias", alias, "--keep", "1", "--compression", "none")
	log, err := build.CombinedOutput()
	t.Logf("ephemera image build:\n%s", log)
	if err != nil {
		t.Fatalf("ephemera image build: %v", err)
	}
	return alias
}

// deleteImage removes the image under alias (lxc, as deploy/lxd does:
// only lxdprov imports the LXD client).
func deleteImage(t testing.TB, alias string) {
	if out, err := exec.Command("lxc", "image", "delete", alias).CombinedOutput(); err != nil {
		t.Logf("delete image %s: %v: %s", alias, err, out)
	}
}
