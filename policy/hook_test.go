package policy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/policy"
)

// requireTools skips without bash, curl or jq, unless in CI.
func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required in CI: %v", tool, err)
			}
			t.Skipf("%s not installed: the hook script cannot run", tool)
		}
	}
}

// seen records what the policy service received.
type seen struct {
	mu   sync.Mutex
	path string
	body map[string]string
}

func (s *seen) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		s.mu.Lock()
		s.path = r.URL.Path
		s.body = nil
		_ = json.Unmarshal(b, &s.body)
		s.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

type hookRun struct {
	exit    int
	output  string
	actions []string // pkill, sleep and poweroff calls, in order
}

// runHook runs HookScript with bash against url, with recorders for
// pkill, sleep and poweroff on PATH.
func runHook(t *testing.T, url, token string, env map[string]string, wantPowerOff bool) hookRun {
	t.Helper()
	return runHookWith(t, "EPHEMERA_POLICY_URL="+url+"\nEPHEMERA_POLICY_TOKEN="+token+"\nEPHEMERA_POLICY_TIMEOUT=10\n", token, env, wantPowerOff)
}

// The settings the hook fixes in its text; a test points them at its own
// directory, as an instance's image would hold the real ones.
const (
	hookSettingsLine = "env_file=/etc/ephemera/pre-job.env\n"
	hookPathLine     = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
)

// runHookWith runs HookScript with settings as its pre-job.env and env as
// the environment the runner gives it.
func runHookWith(t *testing.T, settings, token string, env map[string]string, wantPowerOff bool) hookRun {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	envFile := filepath.Join(dir, "pre-job.env")
	if !strings.Contains(policy.HookScript, hookSettingsLine) || !strings.Contains(policy.HookScript, hookPathLine) {
		t.Fatal("the hook no longer fixes its settings file and PATH in the lines this test replaces")
	}
	text := strings.Replace(policy.HookScript, hookSettingsLine, "env_file="+envFile+"\n", 1)
	text = strings.Replace(text, hookPathLine, "PATH="+bin+":"+strings.TrimPrefix(hookPathLine, "PATH="), 1)
	script := filepath.Join(dir, "pre-job.sh")
	if err := os.WriteFile(script, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(envFile, []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(dir, "actions")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"pkill", "sleep", "poweroff"} {
		rec := "#!/bin/sh\necho \"" + name + " $*\" >> " + record + "\n"
		if err := os.WriteFile(filepath.Join(bin, name), []byte(rec), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), "bash", script)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	run := hookRun{output: string(out)}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		run.exit = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("run hook: %v", err)
	}
	if token != "" && strings.Contains(run.output, token) {
		t.Fatalf("the hook printed the token: %s", run.output)
	}
	// The power-off runs in the background: wait for it (a missing one is
	// reported by the caller, which compares the actions).
	if wantPowerOff {
		_ = waitfor.Within(5*time.Second, func() bool {
			b, _ := os.ReadFile(record)
			return strings.Contains(string(b), "poweroff")
		})
	}
	b, _ := os.ReadFile(record)
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			run.actions = append(run.actions, strings.TrimSpace(l))
		}
	}
	return run
}

func writeEvent(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func prEvent(t *testing.T, headRepo, headRef, baseRef string) string {
	return writeEvent(t, map[string]any{"pull_request": map[string]any{
		"head": map[string]any{"ref": headRef, "sha": sha, "repo": map[string]any{"full_name": headRepo}},
		"base": map[string]any{"ref": baseRef, "repo": map[string]any{"full_name": "acme/widgets"}},
	}})
}

var stopped = []string{"pkill -INT -f Runner.Listener", "sleep 10", "poweroff"}

func TestHookScript(t *testing.T) {
	requireTools(t)
	e := newEnv(t)
	spec := compliant()
	spec.PullRequests[0].Comments = nil
	e.gh.SetRepo(spec)
	rec := &seen{}
	srv := httptest.NewServer(rec.wrap(e.svc.Handler()))
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		name       string
		env        map[string]string
		setup      func()
		wantPath   string
		wantBody   map[string]string
		wantExit   int
		wantOutput string
	}{
		{
			name: "a pull request from a writer's fork passes",
			env: map[string]string{
				"GITHUB_EVENT_NAME": "pull_request", "GITHUB_REPOSITORY": "acme/widgets",
				"GITHUB_EVENT_PATH": prEvent(t, "dave/widgets", "fix", "main"), "GITHUB_REF_NAME": "8/merge", "GITHUB_SHA": "ffff",
			},
			wantPath: "/pull_request/check-run",
			wantBody: map[string]string{
				"repository_name": "acme/widgets", "source_repository_name": "dave/widgets",
				"target_branch_name": "main", "source_branch_name": "fix", "commit_sha": sha,
			},
			wantOutput: "complies",
		},
		{
			name: "a pull_request_target uses the pull request endpoint; an unauthorized fork is stopped",
			env: map[string]string{
				"GITHUB_EVENT_NAME": "pull_request_target", "GITHUB_REPOSITORY": "acme/widgets",
				"GITHUB_EVENT_PATH": prEvent(t, "mallory/widgets", "feature", "main"),
			},
			wantPath: "/pull_request/check-run",
			wantBody: map[string]string{
				"repository_name": "acme/widgets", "source_repository_name": "mallory/widgets",
				"target_branch_name": "main", "source_branch_name": "feature", "commit_sha": sha,
			},
			wantExit:   1,
			wantOutput: "not compliant with the runner policy: Pull request #7 comes from a fork",
		},
		{
			name:       "a push passes",
			env:        map[string]string{"GITHUB_EVENT_NAME": "push", "GITHUB_REPOSITORY": "acme/widgets", "GITHUB_REF_NAME": "main"},
			wantPath:   "/push/check-run",
			wantBody:   map[string]string{"repository_name": "acme/widgets"},
			wantOutput: "complies",
		},
		{
			name:     "another event uses the default endpoint",
			env:      map[string]string{"GITHUB_EVENT_NAME": "workflow_run", "GITHUB_REPOSITORY": "acme/widgets"},
			wantPath: "/default/check-run",
			wantBody: map[string]string{"repository_name": "acme/widgets"},
		},
		{
			name:       "a failing repository stops the runner",
			env:        map[string]string{"GITHUB_EVENT_NAME": "schedule", "GITHUB_REPOSITORY": "acme/gadgets"},
			setup:      func() { e.gh.SetRepo(withAdminCollaborator("acme/gadgets")) },
			wantPath:   "/schedule/check-run",
			wantBody:   map[string]string{"repository_name": "acme/gadgets"},
			wantExit:   1,
			wantOutput: "not compliant with the runner policy: Outside collaborators of acme/gadgets have more than read access: zed (admin)",
		},
		{
			name:       "GitHub not answering about the repository is blamed on the service",
			env:        map[string]string{"GITHUB_EVENT_NAME": "workflow_dispatch", "GITHUB_REPOSITORY": "acme/missing"},
			wantPath:   "/workflow_dispatch/check-run",
			wantBody:   map[string]string{"repository_name": "acme/missing"},
			wantExit:   1,
			wantOutput: "the policy service is at fault, not the repository (HTTP 500)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			run := runHook(t, srv.URL, e.mint(t), tc.env, tc.wantExit != 0)
			if run.exit != tc.wantExit || !strings.Contains(run.output, tc.wantOutput) {
				t.Fatalf("exit %d, output %q; want exit %d and %q", run.exit, run.output, tc.wantExit, tc.wantOutput)
			}
			rec.mu.Lock()
			path, body := rec.path, rec.body
			rec.mu.Unlock()
			if path != tc.wantPath {
				t.Errorf("endpoint %s, want %s", path, tc.wantPath)
			}
			if diff := cmp.Diff(body, tc.wantBody); diff != "" {
				t.Errorf("body (-got +want):\n%s", diff)
			}
			var want []string
			if tc.wantExit != 0 {
				want = stopped
			}
			if diff := cmp.Diff(run.actions, want); diff != "" {
				t.Errorf("actions (-got +want):\n%s", diff)
			}
		})
	}
}

func TestHookScriptBlamesTheServiceWhenNobodyAnswers(t *testing.T) {
	requireTools(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	run := runHook(t, url, strings.Repeat("ab", 32), map[string]string{"GITHUB_EVENT_NAME": "push", "GITHUB_REPOSITORY": "acme/widgets"}, true)
	if run.exit != 1 || !strings.Contains(run.output, "the policy service is at fault, not the repository (HTTP 000)") {
		t.Fatalf("exit %d, output %q", run.exit, run.output)
	}
	if diff := cmp.Diff(run.actions, stopped); diff != "" {
		t.Errorf("actions (-got +want):\n%s", diff)
	}
}

func TestHookScriptStopsWithoutConfiguration(t *testing.T) {
	requireTools(t)
	run := runHook(t, "", "", map[string]string{"GITHUB_EVENT_NAME": "push", "GITHUB_REPOSITORY": "acme/widgets"}, true)
	if run.exit != 1 || !strings.Contains(run.output, "not configured") {
		t.Fatalf("exit %d, output %q", run.exit, run.output)
	}
	if diff := cmp.Diff(run.actions, stopped); diff != "" {
		t.Errorf("actions (-got +want):\n%s", diff)
	}
}

func withAdminCollaborator(name string) githubfake.RepoSpec {
	spec := compliant()
	spec.FullName = name
	spec.OutsideCollaborators = map[string]string{"zed": "admin"}
	return spec
}
