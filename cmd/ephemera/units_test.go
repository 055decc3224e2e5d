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
