package lxdprov_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/canonical/lxd/shared/api"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/ephemera-ci/ephemera/lxdprov"
)

// tarEntry is one file of a test tarball; a name ending in / is a
// directory.
type tarEntry struct {
	name, body string
	mode       int64
}

// runnerTarball returns a gzip'd tar laid out like the runner's, whose
// bin/Runner.Listener prints version (or runs listener, when set).
func runnerTarball(t *testing.T, version string, extra ...tarEntry) []byte {
	t.Helper()
	entries := []tarEntry{
		{"./", "", 0o755},
		{"./run.sh", "#!/bin/sh\necho 'stand-in run.sh'\n", 0o755},
		{"./config.sh", "#!/bin/sh\nexit 0\n", 0o755},
		{"./bin/", "", 0o755},
		{"./bin/Runner.Listener", "#!/bin/sh\n[ \"$1\" = --version ] && echo " + version + "\n", 0o755},
	}
	return tarGz(t, append(entries, extra...)...)
}

func tarGz(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil && h.Size > 0 {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "runner.tar.gz")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestImageConfigIsCheckedBeforeLXDIsAsked(t *testing.T) {
	good := func() lxdprov.ImageConfig {
		return lxdprov.ImageConfig{Base: "ephemera-base-bookworm", Tarball: "/tmp/runner.tar.gz", Alias: "ephemera-runner"}
	}
	cases := []struct {
		name string
		edit func(*lxdprov.ImageConfig)
		want error
		msg  string
	}{
		{"a tarball URL without a checksum is refused", func(c *lxdprov.ImageConfig) { c.Tarball = "https://github.com/actions/runner/releases/x.tar.gz" }, lxdprov.ErrChecksumRequired, "--runner-sha256"},
		{"a checksum that is not 64 hex digits is refused", func(c *lxdprov.ImageConfig) { c.TarballSHA256 = "abc" }, lxdprov.ErrBadImageConfig, `runner sha256 "abc"`},
		{"an alias with a slash is refused", func(c *lxdprov.ImageConfig) { c.Alias = "a/b" }, lxdprov.ErrBadImageConfig, `alias "a/b"`},
		{"an empty alias is refused", func(c *lxdprov.ImageConfig) { c.Alias = "" }, lxdprov.ErrBadImageConfig, "alias"},
		{"an unknown type is refused", func(c *lxdprov.ImageConfig) { c.Type = "vm" }, lxdprov.ErrBadImageConfig, `type "vm"`},
		{"an unknown remote is refused", func(c *lxdprov.ImageConfig) { c.Base = "nowhere:noble" }, lxdprov.ErrBadImageConfig, `unknown remote "nowhere"`},
		{"a missing base is refused", func(c *lxdprov.ImageConfig) { c.Base = "" }, lxdprov.ErrBadImageConfig, "base"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.edit(&cfg)
			err := lxdprov.CheckImageConfig(&cfg)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
		})
	}
	t.Run("defaults are filled", func(t *testing.T) {
		cfg := good()
		cfg.Tarball, cfg.TarballSHA256 = "https://example.com/r.tar.gz", strings.Repeat("ab", 32)
		if err := lxdprov.CheckImageConfig(&cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.Type != "container" || cfg.Keep != lxdprov.DefaultKeep || cfg.LXD.Project != "default" {
			t.Errorf("type %q keep %d project %q; want container, %d, default", cfg.Type, cfg.Keep, cfg.LXD.Project, lxdprov.DefaultKeep)
		}
	})
}

func TestARunnerTarballIsCheckedBeforeTheBuilderStarts(t *testing.T) {
	good := runnerTarball(t, "2.321.0")
	cases := []struct {
		name    string
		tarball []byte
		sha     string
		want    error
	}{
		{"a runner tarball passes", good, "", nil},
		{"its checksum, when given, must match", good, sha([]byte("other")), lxdprov.ErrChecksumMismatch},
		{"the right checksum passes", good, strings.ToUpper(sha(good)), nil},
		{"one without bin/Runner.Listener is refused", tarGz(t, tarEntry{"run.sh", "x", 0o755}), "", lxdprov.ErrNotRunnerTarball},
		{"one nested in a directory is refused", tarGz(t, tarEntry{"actions-runner/run.sh", "x", 0o755}, tarEntry{"actions-runner/bin/Runner.Listener", "x", 0o755}), "", lxdprov.ErrNotRunnerTarball},
		{"an entry outside the runner directory is refused", runnerTarball(t, "1", tarEntry{"../../etc/cron.d/x", "x", 0o644}), "", lxdprov.ErrNotRunnerTarball},
		{"a file that is not gzip is refused", []byte("just text"), "", lxdprov.ErrNotRunnerTarball},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := lxdprov.ReadTarball(t, t.Context(), writeFile(t, tc.tarball), tc.sha)
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestARunnerTarballURLIsDownloadedAndChecked(t *testing.T) {
	tarball := runnerTarball(t, "2.321.0")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/runner.tar.gz" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(tarball)
	}))
	defer srv.Close()

	var local string
	t.Run("with its checksum it is downloaded, and removed afterwards", func(t *testing.T) {
		detail, path, err := lxdprov.ReadTarball(t, t.Context(), srv.URL+"/runner.tar.gz", sha(tarball))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(detail, sha(tarball)+" (checked)") {
			t.Errorf("detail %q does not report the checked checksum", detail)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, tarball) {
			t.Fatalf("downloaded copy %s: %v (%d bytes, want %d)", path, err, len(got), len(tarball))
		}
		local = path
	})
	if _, err := os.Stat(local); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the downloaded copy %s is still there after the build: %v", local, err)
	}
	t.Run("a wrong checksum is refused", func(t *testing.T) {
		_, _, err := lxdprov.ReadTarball(t, t.Context(), srv.URL+"/runner.tar.gz", sha([]byte("x")))
		if !errors.Is(err, lxdprov.ErrChecksumMismatch) {
			t.Errorf("got %v, want ErrChecksumMismatch", err)
		}
	})
	t.Run("a failed download names the status", func(t *testing.T) {
		_, _, err := lxdprov.ReadTarball(t, t.Context(), srv.URL+"/missing.tar.gz", sha(tarball))
		if err == nil || !strings.Contains(err.Error(), "404") {
			t.Errorf("got %v, want an error naming 404", err)
		}
	})
}

func TestPruningKeepsTheNewestAndThoseInUse(t *testing.T) {
	img := func(fp, built string) api.Image {
		return api.Image{Fingerprint: fp, Properties: map[string]string{lxdprov.PropAlias: "r", lxdprov.PropBuiltAt: built}}
	}
	imgs := []api.Image{
		img("c", "2026-01-03T00:00:00Z"), img("a", "2026-01-01T00:00:00Z"), img("e", "2026-01-05T00:00:00Z"),
		img("b", "2026-01-02T00:00:00Z"), img("d", "2026-01-04T00:00:00Z"),
		{Fingerprint: "x", Properties: map[string]string{lxdprov.PropAlias: "other"}},
		{Fingerprint: "y"},
	}
	fam := lxdprov.Family(imgs, "r")
	var order []string
	for _, i := range fam {
		order = append(order, i.Fingerprint)
	}
	if diff := cmp.Diff(order, []string{"e", "d", "c", "b", "a"}); diff != "" {
		t.Fatalf("family, newest first (-got +want):\n%s", diff)
	}
	del, kept := lxdprov.PruneSet(fam, 2, "e", map[string]bool{"b": true, "x": true})
	if diff := cmp.Diff(del, []string{"c", "a"}); diff != "" {
		t.Errorf("deleted (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(kept, []string{"b"}); diff != "" {
		t.Errorf("kept for being in use (-got +want):\n%s", diff)
	}
	// The alias's image survives even past keep (after a rollback it may
	// not be the newest).
	if del, _ := lxdprov.PruneSet(fam, 1, "c", nil); slices.Contains(del, "c") || len(del) != 3 {
		t.Errorf("keep 1 with the alias on c deleted %v; want d, b, a", del)
	}
}

func TestARemoteBaseIsPulledByLXDFromItsImageServer(t *testing.T) {
	src, err := lxdprov.RemoteSource("ubuntu:noble")
	if err != nil {
		t.Fatal(err)
	}
	want := api.InstanceSource{Type: "image", Mode: "pull", Server: "https://cloud-images.ubuntu.com/releases", Protocol: "simplestreams", Alias: "noble"}
	if diff := cmp.Diff(src, want); diff != "" {
		t.Errorf("source (-got +want):\n%s", diff)
	}
	if _, err := lxdprov.RemoteSource("ubuntu:"); err == nil {
		t.Error("ubuntu: (no alias) accepted")
	}
}

// The cloud-init configuration baked into runner images keeps the modules
// ephemera's user-data uses and turns off the ones that cost a boot time.
func TestTheRunnerImagesCloudInitConfigIsLean(t *testing.T) {
	var cfg struct {
		DatasourceList []string `yaml:"datasource_list"`
		Users          []any    `yaml:"users"`
		SSHGenKeyTypes []string `yaml:"ssh_genkeytypes"`
		SSHDeleteKeys  bool     `yaml:"ssh_deletekeys"`
		ManageHosts    bool     `yaml:"manage_etc_hosts"`
		Init           []string `yaml:"cloud_init_modules"`
		Config         []string `yaml:"cloud_config_modules"`
		Final          []string `yaml:"cloud_final_modules"`
	}
	dec := yaml.NewDecoder(strings.NewReader(lxdprov.LeanCloudConfig))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("99-ephemera.cfg: %v", err)
	}
	if diff := cmp.Diff(cfg.DatasourceList, []string{"LXD"}); diff != "" {
		t.Errorf("datasource_list (-got +want):\n%s", diff)
	}
	if cfg.Users == nil || len(cfg.Users) != 0 || cfg.SSHGenKeyTypes == nil || len(cfg.SSHGenKeyTypes) != 0 {
		t.Errorf("users %v, ssh_genkeytypes %v: want both set and empty", cfg.Users, cfg.SSHGenKeyTypes)
	}
	if !cfg.ManageHosts {
		t.Error("manage_etc_hosts is off: sudo cannot resolve the instance's name")
	}
	all := slices.Concat(cfg.Init, cfg.Config, cfg.Final)
	// What ephemera's user-data (userdata.yaml.tmpl) needs: write_files,
	// runcmd (written in the config stage, run by scripts-user), and a
	// pool's packages; growpart and resizefs size a VM's root disk.
	for _, need := range []string{"write-files", "runcmd", "scripts-user", "package-update-upgrade-install", "growpart", "resizefs", "users-groups"} {
		if !slices.Contains(all, need) {
			t.Errorf("module %s is off; ephemera's boot needs it", need)
		}
	}
	for _, off := range []string{"locale", "ssh", "apt-configure", "ntp", "timezone", "snap", "ubuntu-advantage", "landscape", "lxd", "keys-to-console", "ssh-import-id", "set-passwords"} {
		if slices.Contains(all, off) || slices.Contains(all, strings.ReplaceAll(off, "-", "_")) {
			t.Errorf("module %s runs; the image turns it off", off)
		}
	}
	if !slices.Contains(cfg.Config, "runcmd") || !slices.Contains(cfg.Final, "scripts-user") {
		t.Error("runcmd must be in the config stage and scripts-user in the final stage")
	}
}
