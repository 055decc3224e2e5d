package packaging

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ephemera-ci/ephemera/internal/tooltest"
)

const testVersion = "0.1.0"

// buildDeb builds the binary and the package as `make deb` does.
func buildDeb(t *testing.T) string {
	t.Helper()
	tooltest.Path(t, "dpkg", "dpkg-deb")
	dir := t.TempDir()
	bin := filepath.Join(dir, "ephemera")
	build := exec.Command("go", "build", "-trimpath", "-buildmode=pie", "-ldflags", "-s -w -X main.version="+testVersion, "-o", bin, "../cmd/ephemera")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command("bash", "build-deb.sh", bin, testVersion, dir).Output()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, stderrOf(err))
	}
	deb := strings.TrimSpace(string(out))
	if filepath.Base(deb) != "ephemera_"+testVersion+"_amd64.deb" && !strings.HasPrefix(filepath.Base(deb), "ephemera_"+testVersion+"_") {
		t.Fatalf("package named %s", deb)
	}
	return deb
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// packageFiles lists the regular files the package installs.
func packageFiles(t *testing.T, deb string) []string {
	t.Helper()
	var files []string
	for _, line := range strings.Split(run(t, "dpkg-deb", "--contents", deb), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && strings.HasPrefix(f[0], "-") {
			files = append(files, strings.TrimPrefix(f[5], "."))
		}
	}
	return files
}

func TestPackageContents(t *testing.T) {
	deb := buildDeb(t)
	files := packageFiles(t, deb)
	for _, want := range []string{
		"/usr/bin/ephemera",
		"/lib/systemd/system/ephemera.service",
		"/lib/systemd/system/ephemera-webhook.service",
		"/lib/systemd/system/ephemera-scaler.service",
		"/lib/systemd/system/ephemera-policy.service",
		"/lib/systemd/system/ephemera-image-build.service",
		"/lib/systemd/system/ephemera-image-build.timer",
		"/usr/share/ephemera/runner-image.env",
		"/etc/ephemera/config.yaml",
		"/usr/share/ephemera/pre-job.sh",
		"/usr/share/ephemera/grafana-dashboard.json",
		"/usr/share/ephemera/prometheus-alerts.yml",
		"/usr/share/doc/ephemera/copyright",
		"/usr/share/doc/ephemera/README.md.gz",
		"/usr/share/man/man1/ephemera.1.gz",
	} {
		if !contains(files, want) {
			t.Errorf("the package has no %s", want)
		}
	}
	if got := run(t, "dpkg-deb", "--field", deb, "Version"); strings.TrimSpace(got) != testVersion {
		t.Errorf("Version %q, want %s", got, testVersion)
	}
	dir := t.TempDir()
	run(t, "dpkg-deb", "--control", deb, dir)
	conffiles, err := os.ReadFile(filepath.Join(dir, "conffiles"))
	if err != nil || strings.TrimSpace(string(conffiles)) != "/etc/ephemera/config.yaml" {
		t.Errorf("conffiles %q (%v), want /etc/ephemera/config.yaml", conffiles, err)
	}
	root := t.TempDir()
	run(t, "dpkg-deb", "--extract", deb, root)
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/ephemera.service"))
	if err != nil || !bytes.Contains(unit, []byte("ExecStart=/usr/bin/ephemera serve")) {
		t.Errorf("ephemera.service does not start /usr/bin/ephemera (%v)", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Lintian finds nothing: every finding is fixed, or overridden with its
// reason in packaging/debian/lintian-overrides.
func TestLintianFindsNothing(t *testing.T) {
	lintian := tooltest.Path(t, "lintian", "lintian")
	deb := buildDeb(t)
	out, err := exec.Command(lintian, "--fail-on", "error,warning", deb).CombinedOutput()
	var findings []string
	for _, line := range strings.Split(string(out), "\n") {
		if len(line) > 2 && line[1] == ':' && strings.ContainsRune("EWIP", rune(line[0])) {
			findings = append(findings, line)
		}
	}
	if err != nil || len(findings) > 0 {
		t.Fatalf("lintian: %v\n%s", err, strings.Join(findings, "\n"))
	}
}

// TestInstallRemovePurge installs the package on this machine with dpkg,
// so it runs only where that is wanted: as root, in CI (CI=true) or with
// EPHEMERA_REQUIRE_TOOLS=1, and never over an ephemera already installed.
// systemctl is a stand-in on PATH that records its calls (this machine's
// PID 1 need not be systemd).
func TestInstallRemovePurge(t *testing.T) {
	if os.Getenv("CI") != "true" && !tooltest.Required() {
		t.Skip("installs a package to /: runs in CI (CI=true) or with " + tooltest.EnvRequire + "=1")
	}
	if os.Geteuid() != 0 {
		tooltest.Missing(t, "installing a package needs root")
	}
	tooltest.Path(t, "dpkg", "dpkg")
	if exec.Command("dpkg-query", "-W", "-f", "${db:Status-Status}", "ephemera").Run() == nil {
		t.Fatal("an ephemera package is already installed (or half-removed) here; not touching it")
	}
	for _, p := range []string{"/etc/ephemera", "/var/lib/ephemera"} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s exists; not touching this machine's ephemera", p)
		}
	}
	deb := buildDeb(t)
	files := packageFiles(t, deb)

	// The stand-in systemctl, and systemd's "booted" marker the scripts test.
	standin := t.TempDir()
	calls := filepath.Join(standin, "calls")
	script := "#!/bin/sh\necho \"$*\" >>" + calls + "\ncase \"$*\" in *is-active*) exit 3;; esac\nexit 0\n"
	if err := os.WriteFile(filepath.Join(standin, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/systemd/system"); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll("/run/systemd/system", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove("/run/systemd/system") })
	}
	env := append(os.Environ(), "PATH="+standin+":"+os.Getenv("PATH"), "DEBIAN_FRONTEND=noninteractive")
	dpkg := func(args ...string) string {
		t.Helper()
		os.Remove(calls)
		cmd := exec.Command("dpkg", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		b, _ := os.ReadFile(calls)
		return string(b)
	}
	t.Cleanup(func() {
		if exec.Command("dpkg-query", "-W", "ephemera").Run() == nil {
			cmd := exec.Command("dpkg", "--purge", "ephemera")
			cmd.Env = env
			_ = cmd.Run()
		}
	})

	got := dpkg("--install", deb)
	if got != "--system daemon-reload\n" {
		t.Errorf("install called systemctl with:\n%s\nwant only daemon-reload: nothing is enabled or started unconfigured", got)
	}
	u, err := user.Lookup("ephemera")
	if err != nil {
		t.Fatalf("no ephemera user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	ownedBy(t, "/var/lib/ephemera", uid, 0o750)
	fi, err := os.Stat("/etc/ephemera/config.yaml")
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("/etc/ephemera/config.yaml: %v, mode %v; want 0640", err, fi.Mode())
	}

	if out := run(t, "ephemera", "version"); !strings.Contains(out, testVersion) {
		t.Errorf("ephemera version printed %q", out)
	}
	check := exec.Command("ephemera", "config", "check", "--config", "/etc/ephemera/config.yaml")
	out, err := check.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "/etc/ephemera/webhook-secret") {
		t.Errorf("config check before the secrets: %v\n%s\nwant exit 2 naming /etc/ephemera/webhook-secret", err, out)
	}
	writeSecrets(t, uid)
	if out := run(t, "ephemera", "config", "check", "--config", "/etc/ephemera/config.yaml"); !strings.Contains(out, "valid") {
		t.Errorf("config check with the secrets: %s", out)
	}

	got = dpkg("--remove", "ephemera")
	if !strings.Contains(got, "stop ephemera.service") || strings.Contains(got, "start ") {
		t.Errorf("remove called systemctl with:\n%s\nwant the units stopped", got)
	}
	if _, err := os.Stat("/usr/bin/ephemera"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/usr/bin/ephemera after remove: %v", err)
	}
	for _, kept := range []string{"/etc/ephemera/config.yaml", "/etc/ephemera/webhook-secret", "/var/lib/ephemera"} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("remove did not keep %s: %v", kept, err)
		}
	}

	dpkg("--purge", "ephemera")
	for _, f := range append(files, "/etc/ephemera", "/var/lib/ephemera", "/usr/share/doc/ephemera", "/usr/share/ephemera") {
		if _, err := os.Lstat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left after purge (%v)", f, err)
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Status}", "ephemera").CombinedOutput(); err == nil {
		t.Errorf("dpkg still knows ephemera after purge: %s", out)
	}
}

func ownedBy(t *testing.T, path string, uid int, perm os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != uid || fi.Mode().Perm() != perm {
		t.Errorf("%s: mode %v owner %v; want %v owned by ephemera", path, fi.Mode().Perm(), fi.Sys(), perm)
	}
}

// writeSecrets writes what the example configuration names: 0600, owned
// by the service's user, each well over 32 bytes.
func writeSecrets(t *testing.T, uid int) {
	t.Helper()
	random := func() []byte {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return []byte(hex.EncodeToString(b) + "\n")
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	for name, v := range map[string][]byte{"webhook-secret": random(), "policy-admin-token": random(), "app.pem": pemKey} {
		p := filepath.Join("/etc/ephemera", name)
		if err := os.WriteFile(p, v, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, -1); err != nil {
			t.Fatal(err)
		}
	}
}
