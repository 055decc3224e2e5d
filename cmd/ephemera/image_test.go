package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
)

// standinTarball writes a tarball laid out like the runner's.
func standinTarball(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range map[string]string{"run.sh": "#!/bin/sh\n", "bin/Runner.Listener": "#!/bin/sh\necho 2.321.0\n"} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "runner.tar.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImageBuildCommandLine(t *testing.T) {
	cfg := writeConfig(t, "lxd: { project: default }\n")
	tarball := standinTarball(t)
	build := func(extra ...string) []string {
		return append([]string{"image", "build", "--config", cfg}, extra...)
	}
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"image without a command is bad usage", []string{"image"}, 2, "usage: ephemera image build|list|rollback"},
		{"an unknown image command is bad usage", []string{"image", "frob"}, 2, `unknown image command "frob"`},
		{"build without --base is bad usage", build("--runner-tarball", tarball, "--alias", "r"), 2, "--base is required"},
		{"build without --alias is bad usage", build("--base", "b", "--runner-tarball", tarball), 2, "--alias is required"},
		{"build without a tarball is bad usage", build("--base", "b", "--alias", "r"), 2, "--runner-tarball is required"},
		{"a tarball URL without a checksum is refused", build("--base", "b", "--alias", "r", "--runner-tarball", "https://github.com/actions/runner/releases/download/v2.321.0/actions-runner-linux-x64-2.321.0.tar.gz"), 2, "--runner-sha256"},
		{"an unknown type is bad usage", build("--base", "b", "--alias", "r", "--runner-tarball", tarball, "--type", "vm"), 2, "--type must be container or virtual-machine"},
		{"keep 0 is bad usage", build("--base", "b", "--alias", "r", "--runner-tarball", tarball, "--keep", "0"), 2, "--keep must be at least 1"},
		{"an unknown remote is bad usage", build("--base", "nowhere:noble", "--alias", "r", "--runner-tarball", tarball), 2, `unknown remote "nowhere"`},
		{"rollback without --alias is bad usage", []string{"image", "rollback", "--config", cfg}, 2, "--alias is required"},
		{"help exits 0", []string{"image", "build", "-h"}, 0, "-runner-sha256 hex"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(t.Context(), tc.args, &out, &errb)
			if code != tc.wantCode || !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errb.String(), tc.wantCode, tc.wantErr)
			}
		})
	}
}

// A build that fails at a step exits 1 with one line naming the step,
// after printing the steps it went through.
func TestImageBuildThatFailsNamesTheStep(t *testing.T) {
	lxdtest.Require(t)
	project := lxdtest.Project(t)
	cfg := writeConfig(t, "lxd: { project: "+project+" }\n")
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"image", "build", "--config", cfg, "--base", lxdtest.Image, "--runner-tarball", standinTarball(t), "--alias", project + "-runner"}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", code, errb.String())
	}
	if want := `ephemera: image build: step "check tools": the base image lacks bash, curl, jq, cloud-init, sudo`; !strings.HasPrefix(lastLine(errb.String()), want) {
		t.Errorf("stderr %q, want it to start with %q", errb.String(), want)
	}
	for _, want := range []string{"[ 3/16] launch builder: done in", "[ 5/16] check tools: FAILED after"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress does not show %q:\n%s", want, out.String())
		}
	}
}
