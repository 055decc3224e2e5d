package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// validDoc is a complete configuration for RoleServe; each test case edits
// one key of it.
const validDoc = `
webhook: { listen: ":8080", path: /webhook, max_body: 1MiB }
policy: { listen: ":8081", url: "http://127.0.0.1:8081" }
metrics: { listen: "127.0.0.1:9090" }
nats: { store_dir: /tmp/ephemera-nats }
github:
  api_url: https://api.github.com/
  token_file: TOKEN_FILE
  org: my-org
lxd: { project: default }
reconcile: { interval: 30s, bootstrap_timeout: 10m, idle_grace: 2m }
pools:
  - name: small
    labels: [self-hosted, linux, x64, small]
    image: ephemera-runner-noble
    min_idle: 1
    max: 10
`

// secretsEnv sets the secrets every role needs through the environment.
// Secrets of the tests, of the length Load requires.
const (
	testWebhookSecret = "whsec-0123456789abcdef0123456789abcdef"
	testAdminToken    = "admintok-0123456789abcdef0123456789abcdef"
	newSecret         = "new-secret-0123456789abcdef0123456789"
	oldSecret         = "old-secret-0123456789abcdef0123456789"
)

func secretsEnv(t *testing.T) {
	t.Helper()
	t.Setenv(EnvWebhookSecret, testWebhookSecret)
	t.Setenv(EnvPolicyAdminToken, testAdminToken)
	t.Setenv(EnvGitHubToken, "ghtok")
}

func parseServe(t *testing.T, doc string) (*Config, error) {
	t.Helper()
	return Parse([]byte(strings.ReplaceAll(doc, "  token_file: TOKEN_FILE\n", "")), RoleServe)
}

func TestParseFillsDefaults(t *testing.T) {
	secretsEnv(t)
	c, err := parseServe(t, validDoc)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	p := c.Pools[0]
	got := []any{p.InstanceType, p.CPU, p.Memory, p.Disk, p.Profiles, c.Webhook.PublishTimeout.D(), c.NATS.DuplicateWindow.D(), c.NATS.Replicas, c.GitHub.RunnerGroupID, c.TokenTTL(), c.Reconcile.MaxRunnerAge.D()}
	want := []any{InstanceVM, 2, Size(4 << 30), Size(20 << 30), []string{"default"}, 5 * time.Second, time.Hour, 1, int64(1), 10*time.Minute + time.Hour, 24 * time.Hour}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("defaults (-got +want):\n%s", d)
	}
}

func TestAPoolNamesItsStoragePool(t *testing.T) {
	secretsEnv(t)
	c, err := parseServe(t, strings.Replace(validDoc, "    max: 10", "    max: 10\n    storage_pool: fast_btrfs-1", 1))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := c.Pools[0].StoragePool; got != "fast_btrfs-1" {
		t.Errorf("storage_pool = %q, want fast_btrfs-1", got)
	}
}

func TestValidationErrorsNameTheKey(t *testing.T) {
	secretsEnv(t)
	cases := []struct {
		name    string
		edit    func(string) string
		wantKey string
	}{
		{"an unknown top-level key is rejected", add("colour: blue\n"), "colour"},
		{"an unknown nested key is rejected", repl(`max_body: 1MiB`, `max_body: 1MiB, maxbody: 2`), "webhook.maxbody"},
		{"an unknown pool key is rejected", repl(`    max: 10`, "    max: 10\n    maximum: 3"), "pools[0].maximum"},
		{"a size without a number", repl(`max_body: 1MiB`, `max_body: lots`), "webhook.max_body"},
		{"a zero body limit", repl(`max_body: 1MiB`, `max_body: 0`), "webhook.max_body"},
		{"a duration without a unit", repl(`interval: 30s`, `interval: 30`), "reconcile.interval"},
		{"a zero interval", repl(`interval: 30s`, `interval: 0s`), "reconcile.interval"},
		{"a zero bootstrap timeout", repl(`bootstrap_timeout: 10m`, `bootstrap_timeout: 0s`), "reconcile.bootstrap_timeout"},
		{"a zero idle grace", repl(`idle_grace: 2m`, `idle_grace: 0s`), "reconcile.idle_grace"},
		{"a max runner age within the bootstrap timeout", repl(`idle_grace: 2m`, `idle_grace: 2m, max_runner_age: 5m`), "reconcile.max_runner_age"},
		{"a token TTL too short to be extended between reconcile passes", repl(`url: "http://127.0.0.1:8081" }`, `url: "http://127.0.0.1:8081", token_ttl: 1m }`), "policy.token_ttl"},
		{"a provision timeout too short", repl(`idle_grace: 2m`, `idle_grace: 2m, provision_timeout: 1s`), "reconcile.provision_timeout"},
		{"a listen address without a port", repl(`listen: ":8080"`, `listen: "localhost"`), "webhook.listen"},
		{"a path without a slash", repl(`path: /webhook`, `path: webhook`), "webhook.path"},
		{"a publish timeout past GitHub's deadline", repl(`max_body: 1MiB`, `max_body: 1MiB, publish_timeout: 10s`), "webhook.publish_timeout"},
		{"a bad policy listen address", repl(`listen: ":8081"`, `listen: "8081"`), "policy.listen"},
		{"a policy url that is not a URL", repl(`url: "http://127.0.0.1:8081"`, `url: "127.0.0.1:8081"`), "policy.url"},
		{"a bad metrics listen address", repl(`listen: "127.0.0.1:9090"`, `listen: "x"`), "metrics.listen"},
		{"an even replica count", repl(`store_dir: /tmp/ephemera-nats`, `store_dir: /tmp/ephemera-nats, replicas: 2`), "nats.replicas"},
		{"a zero duplicate window", repl(`store_dir: /tmp/ephemera-nats`, `store_dir: /tmp/ephemera-nats, duplicate_window: 0s`), "nats.duplicate_window"},
		{"no store dir for the embedded server", repl(`store_dir: /tmp/ephemera-nats`, `store_dir: ""`), "nats.store_dir"},
		{"a bad api url", repl(`api_url: https://api.github.com/`, `api_url: "api.github.com"`), "github.api_url"},
		{"both org and repo", repl(`org: my-org`, "org: my-org\n  repo: a/b"), "github.repo"},
		{"neither org nor repo", repl(`  org: my-org`, ``), "github.org"},
		{"a budget under one write a minute", repl(`  org: my-org`, "  org: my-org\n  budget: {points_per_minute: 4}"), "github.budget.points_per_minute"},
		{"a negative budget concurrency", repl(`  org: my-org`, "  org: my-org\n  budget: {max_concurrent: -1}"), "github.budget.max_concurrent"},
		{"a negative budget wait", repl(`  org: my-org`, "  org: my-org\n  budget: {max_wait: -1s}"), "github.budget.max_wait"},
		{"an unknown budget key", repl(`  org: my-org`, "  org: my-org\n  budget: {points: 5}"), "github.budget.points"},
		{"a repo without an owner", repl(`org: my-org`, `repo: justname`), "github.repo"},
		{"both an app and a token", repl(`org: my-org`, "org: my-org\n  app_id: 5"), "github.token_file"},
		{"a negative runner group", repl(`org: my-org`, "org: my-org\n  runner_group_id: -1"), "github.runner_group_id"},
		{"an app id that is not a number", repl(`org: my-org`, "org: my-org\n  app_id: abc"), "github.app_id"},
		{"an lxd url that is not https", repl(`lxd: { project: default }`, `lxd: { url: "http://x:8443", client_cert: a, client_key: b }`), "lxd.url"},
		{"an lxd url without a client cert", repl(`lxd: { project: default }`, `lxd: { url: "https://x:8443" }`), "lxd.client_cert"},
		{"an lxd url and a socket", repl(`lxd: { project: default }`, `lxd: { url: "https://x:8443", socket: /s }`), "lxd.url"},
		{"an empty lxd project", repl(`lxd: { project: default }`, `lxd: { project: "" }`), "lxd.project"},
		{"no pools", func(d string) string { return d[:strings.Index(d, "pools:")] }, "pools"},
		{"a pool name with capitals", repl(`name: small`, `name: Small`), "pools[0].name"},
		{"a pool name too long", repl(`name: small`, `name: `+strings.Repeat("a", MaxPoolName+1)), "pools[0].name"},
		{"a pool name with a dot", repl(`name: small`, `name: a.b`), "pools[0].name"},
		{"a pool without labels", repl(`labels: [self-hosted, linux, x64, small]`, `labels: []`), "pools[0].labels"},
		{"an empty label", repl(`labels: [self-hosted, linux, x64, small]`, `labels: [self-hosted, ""]`), "pools[0].labels[1]"},
		{"labels that are not a list", repl(`labels: [self-hosted, linux, x64, small]`, `labels: self-hosted`), "pools[0].labels"},
		{"an unknown instance type", repl(`image: ephemera-runner-noble`, "image: ephemera-runner-noble\n    instance_type: vm"), "pools[0].instance_type"},
		{"a pool without an image", repl(`    image: ephemera-runner-noble`, ``), "pools[0].image"},
		{"zero cpus", repl(`    max: 10`, "    max: 10\n    cpu: 0\n    memory: 1GiB\n    cpu_: 1"), "pools[0].cpu_"},
		{"negative cpus", repl(`    max: 10`, "    max: 10\n    cpu: -1"), "pools[0].cpu"},
		{"too little memory", repl(`    max: 10`, "    max: 10\n    memory: 1MiB"), "pools[0].memory"},
		{"too little disk", repl(`    max: 10`, "    max: 10\n    disk: 100MB"), "pools[0].disk"},
		{"negative min_idle", repl(`min_idle: 1`, `min_idle: -1`), "pools[0].min_idle"},
		{"zero max", repl(`max: 10`, `max: 0`), "pools[0].max"},
		{"min_idle above max", repl(`min_idle: 1`, `min_idle: 11`), "pools[0].min_idle"},
		{"a duplicate pool", add("  - { name: small, labels: [x], image: i, max: 1 }\n"), "pools[1].name"},
		{"user data that is not YAML", repl(`    max: 10`, "    max: 10\n    user_data: \"a: [\""), "pools[0].user_data"},
		{"a storage pool name with a slash", repl(`    max: 10`, "    max: 10\n    storage_pool: a/b"), "pools[0].storage_pool"},
		{"a storage pool name starting with a dot", repl(`    max: 10`, "    max: 10\n    storage_pool: .hidden"), "pools[0].storage_pool"},
		{"a template for a virtual machine", repl(`    max: 10`, "    max: 10\n    template: true"), "pools[0].template"},
		{"an empty profile", repl(`    max: 10`, "    max: 10\n    profiles: [\"\"]"), "pools[0].profiles[0]"},
		{"a key set twice", repl(`    max: 10`, "    max: 10\n    max: 11"), "pools[0].max"},
		{"a section that is a list", repl(`metrics: { listen: "127.0.0.1:9090" }`, `metrics: [a]`), "metrics"},
		{"an unknown section", add("policy2: 1\n"), "policy2"},
		{"default_disallow_fork quoted", repl(`listen: ":8081",`, `listen: ":8081", default_disallow_fork: "yes",`), "policy.default_disallow_fork"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseServe(t, tc.edit(validDoc))
			var ke *KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("error %v is not a *KeyError", err)
			}
			if ke.Key != tc.wantKey {
				t.Errorf("error %q names key %q, want %q", err, ke.Key, tc.wantKey)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
		})
	}
}

func add(s string) func(string) string { return func(d string) string { return d + s } }

func repl(old, new string) func(string) string {
	return func(d string) string {
		if !strings.Contains(d, old) {
			panic(fmt.Sprintf("test document has no %q", old))
		}
		return strings.Replace(d, old, new, 1)
	}
}

func TestRolesRequireTheirSecrets(t *testing.T) {
	cases := []struct {
		role    Role
		unset   string
		wantKey string
	}{
		{RoleWebhook, EnvWebhookSecret, "webhook.secret_file"},
		{RolePolicy, EnvPolicyAdminToken, "policy.admin_token_file"},
		{RoleScaler, EnvGitHubToken, "github.app_id"},
	}
	for _, tc := range cases {
		t.Run(string(tc.role)+" without "+tc.unset, func(t *testing.T) {
			secretsEnv(t)
			os.Unsetenv(tc.unset)
			doc := strings.Replace(validDoc, "store_dir: /tmp/ephemera-nats", `url: "nats://127.0.0.1:4222"`, 1)
			doc = strings.ReplaceAll(doc, "  token_file: TOKEN_FILE\n", "")
			_, err := Parse([]byte(doc), tc.role)
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != tc.wantKey {
				t.Fatalf("err = %v, want a KeyError for %s", err, tc.wantKey)
			}
		})
	}
}

func TestSingleComponentsNeedAnExternalNATS(t *testing.T) {
	secretsEnv(t)
	for _, role := range []Role{RoleWebhook, RoleScaler, RolePolicy} {
		_, err := Parse([]byte(strings.ReplaceAll(validDoc, "  token_file: TOKEN_FILE\n", "")), role)
		var ke *KeyError
		if !errors.As(err, &ke) || ke.Key != "nats.url" {
			t.Errorf("%s: err = %v, want a KeyError for nats.url", role, err)
		}
	}
}

func TestSecretsComeFromFilesTrimmed(t *testing.T) {
	t.Setenv(EnvPolicyAdminToken, testAdminToken)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wh := write("webhook", newSecret+"\n"+oldSecret+"\n\n")
	tok := write("token", "  ghp_abc \n")
	doc := strings.Replace(validDoc, "max_body: 1MiB", "max_body: 1MiB, secret_file: "+wh, 1)
	doc = strings.Replace(doc, "TOKEN_FILE", tok, 1)
	c, err := Parse([]byte(doc), RoleServe)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var got []string
	for _, s := range c.Secrets.WebhookSecrets {
		got = append(got, s.Reveal())
	}
	if d := cmp.Diff(got, []string{newSecret, oldSecret}); d != "" {
		t.Errorf("webhook secrets (-got +want):\n%s", d)
	}
	if c.Secrets.GitHubToken.Reveal() != "ghp_abc" {
		t.Errorf("github token = %q, want it trimmed", c.Secrets.GitHubToken.Reveal())
	}
}

func TestEnvironmentOverridesSecretFile(t *testing.T) {
	secretsEnv(t)
	doc := strings.Replace(validDoc, "TOKEN_FILE", "/nonexistent/token", 1)
	c, err := Parse([]byte(doc), RoleServe)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Secrets.GitHubToken.Reveal() != "ghtok" {
		t.Errorf("token = %q, want the environment's", c.Secrets.GitHubToken.Reveal())
	}
}

func TestUnreadableOrEmptySecretFileNamesTheKey(t *testing.T) {
	t.Setenv(EnvWebhookSecret, testWebhookSecret)
	t.Setenv(EnvPolicyAdminToken, testAdminToken)
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte(" \n"), 0o600)
	for _, file := range []string{"/nonexistent/token", empty} {
		_, err := Parse([]byte(strings.Replace(validDoc, "TOKEN_FILE", file, 1)), RoleServe)
		var ke *KeyError
		if !errors.As(err, &ke) || ke.Key != "github.token_file" {
			t.Errorf("%s: err = %v, want a KeyError for github.token_file", file, err)
		}
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	s := NewSecret("hunter2")
	j, _ := json.Marshal(struct{ S Secret }{s})
	txt, _ := s.MarshalText()
	for _, out := range []string{s.String(), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), string(j), string(txt)} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret printed: %s", out)
		}
	}
	if s.Reveal() != "hunter2" {
		t.Errorf("Reveal() = %q", s.Reveal())
	}
}

func TestSizes(t *testing.T) {
	cases := []struct {
		in   string
		want Size
		str  string
	}{
		{"1MiB", 1 << 20, "1MiB"}, {"4GiB", 4 << 30, "4GiB"}, {"20GB", 20e9, "19531250KiB"},
		{"4096", 4096, "4KiB"}, {"1500", 1500, "1500B"}, {"2 KiB", 2048, "2KiB"}, {"1TiB", 1 << 40, "1TiB"},
	}
	for _, tc := range cases {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want || got.String() != tc.str {
			t.Errorf("ParseSize(%q) = %d (%s), %v; want %d (%s)", tc.in, got, got, err, tc.want, tc.str)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1.5GiB", "1PiB", "99999999999TiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded, want an error", bad)
		}
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	// The example names secret files that do not exist here; the
	// environment supplies the secrets instead.
	t.Setenv(EnvWebhookSecret, testWebhookSecret)
	t.Setenv(EnvPolicyAdminToken, testAdminToken)
	t.Setenv(EnvGitHubPrivateKey, "pem")
	b, err := os.ReadFile("../../deploy/config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(b, RoleServe)
	if err != nil {
		t.Fatalf("deploy/config.example.yaml: %v", err)
	}
	if len(c.Pools) != 2 || c.GitHub.AppID != 12345 || c.Pools[0].MinIdle != 1 || !c.Pools[1].AutoIdle || c.Pools[1].TargetWait.String() != "p95: 5s" {
		t.Errorf("example parsed as %+v", c)
	}
}
