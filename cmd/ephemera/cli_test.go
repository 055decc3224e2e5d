package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/ghbudget"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
	"github.com/ephemera-ci/ephemera/scaler"
)

const checkConfig = `
webhook: { listen: "127.0.0.1:0", secret_file: SECRET_FILE }
policy: { listen: "127.0.0.1:0", url: "http://127.0.0.1:8081" }
metrics: { listen: "127.0.0.1:0" }
nats: { store_dir: STORE }
github: { api_url: "http://127.0.0.1:1/", org: acme }
lxd: { project: default }
pools:
  - { name: small, labels: [self-hosted, small], instance_type: container, image: ephemera-test, max: 3 }
`

func writeConfig(t *testing.T, doc string) string {
	t.Helper()
	dir := t.TempDir()
	secret := filepath.Join(dir, "webhook-secret")
	if err := os.WriteFile(secret, []byte("s3cr3t-webhook-value-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc = strings.ReplaceAll(doc, "SECRET_FILE", secret)
	doc = strings.ReplaceAll(doc, "STORE", filepath.Join(dir, "nats"))
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCommandLine(t *testing.T) {
	t.Setenv("EPHEMERA_POLICY_ADMIN_TOKEN", "s3cr3t-admin-value-0123456789abcdef")
	t.Setenv("EPHEMERA_GITHUB_TOKEN", "s3cr3t-github-value")
	good := writeConfig(t, checkConfig)
	bad := writeConfig(t, strings.Replace(checkConfig, "max: 3", "max: 0", 1))
	unknown := writeConfig(t, checkConfig+"colour: blue\n")
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
	}{
		{"version prints the version", []string{"version"}, 0, "ephemera dev", ""},
		{"no command is bad usage", nil, 2, "", "a command is required"},
		{"an unknown command is bad usage", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"config check accepts a valid file", []string{"config", "check", "--config", good}, 0, "valid for `ephemera serve`: 1 pool(s), 1 webhook secret(s)", ""},
		{"config check names the offending key", []string{"config", "check", "--config", bad}, 2, "", "config: pools[0].max: must be at least 1"},
		{"config check rejects an unknown key", []string{"config", "check", "--config", unknown}, 2, "", "config: colour: unknown key"},
		{"config check of a missing file is bad usage", []string{"config", "check", "--config", "/nonexistent.yaml"}, 2, "", "config: read config"},
		{"config check refuses an unknown role", []string{"config", "check", "--role", "x", "--config", good}, 2, "", "--role must be"},
		{"config without check is bad usage", []string{"config"}, 2, "", "usage: ephemera config check"},
		{"serve with a bad flag is bad usage", []string{"serve", "--nope"}, 2, "", "flag provided but not defined: -nope"},
		{"serve with a bad log level is bad usage", []string{"serve", "--log-level", "loud", "--config", good}, 2, "", "--log-level"},
		{"webhook without nats.url names the key", []string{"webhook", "--config", good}, 2, "", "config: nats.url: required"},
		{"help exits 0", []string{"serve", "-h"}, 0, "", "Usage: ephemera serve"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(t.Context(), tc.args, &out, &errb)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.wantCode, errb.String())
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("stdout %q does not contain %q", out.String(), tc.wantOut)
			}
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stderr %q does not contain %q", errb.String(), tc.wantErr)
			}
			if tc.wantCode == 2 && tc.wantErr != "" && !strings.Contains(tc.wantErr, "Usage") && strings.Count(strings.TrimSpace(lastLine(errb.String())), "\n") != 0 {
				t.Errorf("error is not one line: %q", errb.String())
			}
			if all := out.String() + errb.String(); strings.Contains(all, "s3cr3t") {
				t.Errorf("a secret was printed: %q", all)
			}
		})
	}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}

func TestStatusReadsPoolsFromNATS(t *testing.T) {
	_, srv := bustest.Open(t)
	cfg := writeConfig(t, checkConfig)
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"status", "--config", cfg, "--nats", srv.ClientURL(), "-o", "json"}, &out, &errb); code != 0 {
		t.Fatalf("status -o json: exit %d: %s", code, errb.String())
	}
	var st []scaler.PoolStatus
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("status -o json printed %q: %v", out.String(), err)
	}
	if len(st) != 1 || st[0].Pool != "small" || st[0].Max != 3 {
		t.Errorf("status = %+v, want the one pool small with max 3", st)
	}
	out.Reset()
	if code := run(t.Context(), []string{"status", "--config", cfg, "--nats", srv.ClientURL()}, &out, &errb); code != 0 {
		t.Fatalf("status: exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "POOL ") || !strings.Contains(out.String(), "\nsmall ") {
		t.Errorf("status table:\n%s", out.String())
	}
	if code := run(t.Context(), []string{"status", "--config", cfg}, &out, &errb); code != 2 {
		t.Errorf("status without a way to reach NATS: exit %d, want 2", code)
	}
}

func TestConfigCheckWarnsOfAFullCopyPerInstanceOnDirStorage(t *testing.T) {
	lxdtest.Require(t)
	t.Setenv("EPHEMERA_POLICY_ADMIN_TOKEN", "s3cr3t-admin-value-0123456789abcdef")
	t.Setenv("EPHEMERA_GITHUB_TOKEN", "s3cr3t-github-value")
	// This machine's default profile keeps root disks on the dir pool
	// "default" (make lxd-dev).
	vm := writeConfig(t, strings.Replace(checkConfig, "instance_type: container", "instance_type: virtual-machine", 1))
	tpl := writeConfig(t, strings.Replace(checkConfig, "max: 3 }", "max: 3, template: true }", 1))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a virtual-machine pool on dir is warned of", []string{"config", "check", "--config", vm}, `warning: pool small: virtual machines on storage pool "default" (driver dir)`},
		{"a container pool copied from a template on dir is warned of", []string{"config", "check", "--config", tpl}, `warning: pool small: template: true on storage pool "default" (driver dir)`},
		{"a container pool on dir is not", []string{"config", "check", "--config", writeConfig(t, checkConfig)}, ""},
		{"--offline does not ask LXD", []string{"config", "check", "--offline", "--config", vm}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(t.Context(), tc.args, &out, &errb); code != 0 {
				t.Fatalf("exit %d, want 0 (stderr %q)", code, errb.String())
			}
			if tc.want == "" && errb.Len() != 0 {
				t.Errorf("stderr %q, want nothing", errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr %q does not contain %q", errb.String(), tc.want)
			}
		})
	}
}

func TestStatusShowsTheGitHubBudgetInUse(t *testing.T) {
	b, srv := bustest.Open(t)
	kv, err := b.KeyValue(t.Context(), ghbudget.BucketConfig())
	if err != nil {
		t.Fatal(err)
	}
	budget, err := ghbudget.New(ghbudget.Config{KV: kv})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := budget.Acquire(t.Context(), ghbudget.Request{Installation: "678", Endpoint: "POST generate_jitconfig", Method: http.MethodPost, Priority: ghbudget.Registration})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("X-RateLimit-Limit", "5000")
	h.Set("X-RateLimit-Remaining", "4321")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
	if err := tk.Done(t.Context(), &http.Response{StatusCode: http.StatusCreated, Header: h}); err != nil {
		t.Fatal(err)
	}
	if _, err := budget.Acquire(t.Context(), ghbudget.Request{Installation: "678", Endpoint: "GET list_runners", Method: http.MethodGet, Priority: ghbudget.Listing}); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"status", "--config", writeConfig(t, checkConfig), "--nats", srv.ClientURL()}, &out, &errb); code != 0 {
		t.Fatalf("status: exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"GITHUB BUDGET", "installation 678", "1/100", "4320/5000", "POST generate_jitconfig", "5/900", "GET list_runners", "1/900", "queued behind the budget: registration 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
}
