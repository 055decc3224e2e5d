package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnitsAreHardened reads every unit in deploy/systemd: each one
// hides other processes and everything but process directories in /proc,
// and the single-process unit says plainly that it does not keep LXD away
// from the internet-facing webhook, and when to prefer the split units.
func TestSystemdUnitsAreHardened(t *testing.T) {
	units, err := filepath.Glob("../../deploy/systemd/*.service")
	if err != nil || len(units) < 4 {
		t.Fatalf("units: %v %v, want the four of deploy/systemd", units, err)
	}
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		settings := map[string]string{}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(line, "#") {
				settings[k] = v
			}
		}
		for k, want := range map[string]string{"ProtectProc": "invisible", "ProcSubset": "pid", "NoNewPrivileges": "true", "UMask": "0077"} {
			if settings[k] != want {
				t.Errorf("%s: %s=%q, want %q", filepath.Base(u), k, settings[k], want)
			}
		}
		if filepath.Base(u) == "ephemera-webhook.service" && settings["SupplementaryGroups"] != "" {
			t.Errorf("ephemera-webhook.service joins %q: the internet-facing webhook must not reach LXD", settings["SupplementaryGroups"])
		}
		if filepath.Base(u) == "ephemera.service" {
			text := string(b)
			if !strings.Contains(text, "does NOT keep LXD away from the internet-facing webhook") || !strings.Contains(text, "Prefer the split units") {
				t.Errorf("ephemera.service does not say that it keeps LXD within reach of the webhook, and when to prefer the split units")
			}
		}
	}
}

// The nightly image build reads the runner version from one file,
// runner-image.env, and from nowhere else.
func TestTheRunnerVersionIsPinnedInOnePlace(t *testing.T) {
	env, err := os.ReadFile("../../deploy/systemd/runner-image.env")
	if err != nil {
		t.Fatal(err)
	}
	version := ""
	for _, line := range strings.Split(string(env), "\n") {
		if v, ok := strings.CutPrefix(line, "RUNNER_VERSION="); ok {
			version = v
		}
	}
	if version == "" {
		t.Fatal("runner-image.env sets no RUNNER_VERSION")
	}
	svc, err := os.ReadFile("../../deploy/systemd/ephemera-image-build.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"EnvironmentFile=/etc/ephemera/runner-image.env", "v${RUNNER_VERSION}/actions-runner-linux-x64-${RUNNER_VERSION}.tar.gz", `--runner-sha256 "${RUNNER_SHA256}"`} {
		if !strings.Contains(string(svc), want) {
			t.Errorf("ephemera-image-build.service does not contain %q", want)
		}
	}
	files, _ := filepath.Glob("../../deploy/*/*")
	for _, f := range files {
		if filepath.Base(f) == "runner-image.env" {
			continue
		}
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), version) {
			t.Errorf("%s mentions the runner version %s too: pin it in runner-image.env only", f, version)
		}
	}
	if _, err := os.Stat("../../deploy/systemd/ephemera-image-build.timer"); err != nil {
		t.Error(err)
	}
}
