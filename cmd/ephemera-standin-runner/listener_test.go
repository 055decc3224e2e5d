package main

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
)

var listenerBin string

func TestMain(m *testing.M) {
	e2etest.MainWithCommand(m, "./cmd/ephemera-standin-runner", &listenerBin)
}

// installed is the stand-in runner unpacked as the tarball lays it out
// (run.sh, bin/Runner.Listener, .env), with a job-started hook.
type installed struct {
	root string
	gh   *githubfake.Server
}

func install(t *testing.T, hook string) installed {
	t.Helper()
	root := t.TempDir()
	repo, err := e2etest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	bin, err := os.ReadFile(listenerBin)
	must(err)
	must(os.WriteFile(filepath.Join(root, "bin", "Runner.Listener"), bin, 0o755))
	runSh, err := os.ReadFile(filepath.Join(repo, "deploy/lxd/standin-runner/run.sh"))
	must(err)
	must(os.WriteFile(filepath.Join(root, "run.sh"), runSh, 0o755))
	env := "LANG=C.UTF-8\n"
	if hook != "" {
		must(os.WriteFile(filepath.Join(root, "hook.sh"), []byte(hook), 0o755))
		env += "ACTIONS_RUNNER_HOOK_JOB_STARTED=" + filepath.Join(root, "hook.sh") + "\n"
	}
	must(os.WriteFile(filepath.Join(root, ".env"), []byte(env), 0o644))
	gh, err := githubfake.Start()
	must(err)
	t.Cleanup(gh.Close)
	return installed{root: root, gh: gh}
}

// runJob registers a runner just in time, starts run.sh --jitconfig with
// it, queues spec and returns the job once the runner has exited.
func (in installed) runJob(t *testing.T, spec githubfake.JobSpec) (githubfake.Job, string) {
	t.Helper()
	c := github.NewClient(nil).WithAuthToken("test-token")
	c.BaseURL, _ = url.Parse(in.gh.URL)
	cfg, _, err := c.Actions.GenerateOrgJITConfig(t.Context(), "acme", &github.GenerateJITConfigRequest{Name: "eph-t-1", RunnerGroupID: 1, Labels: []string{"self-hosted"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var out e2etest.SyncBuffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(in.root, "run.sh"), "--jitconfig", cfg.GetEncodedJITConfig())
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 30*time.Second, "the runner to come online", func() bool {
		r, ok := in.gh.RunnerByName("eph-t-1")
		return ok && r.Online
	})
	spec.Labels = []string{"self-hosted"}
	id := in.gh.QueueJob(spec)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run.sh: %v\n%s", err, out.String())
	}
	j, _ := in.gh.GetJob(id)
	return j, out.String()
}

// TestTheHookRunsWithTheRunnersJobEnvironment: the hook named in .env
// runs with bash in the job's workspace, with the runner's .env and the
// job's GITHUB_* and RUNNER_* variables, and an event file the real
// pre-job hook can read the pull request from; a hook that passes lets
// the job run.
func TestTheHookRunsWithTheRunnersJobEnvironment(t *testing.T) {
	dump := t.TempDir()
	in := install(t, "#!/usr/bin/env bash\nenv >"+dump+"/env\ncp \"$GITHUB_EVENT_PATH\" "+dump+"/event.json\npwd >"+dump+"/pwd\necho hook passed\n")
	pr := githubfake.Trigger{Event: "pull_request", HeadRepository: "stranger/app", HeadBranch: "patch-1", BaseBranch: "main", SHA: "0123456789abcdef0123456789abcdef01234567"}
	j, out := in.runJob(t, githubfake.JobSpec{Repo: "acme/app", Trigger: pr})
	if j.Conclusion != githubfake.ConclusionSuccess {
		t.Fatalf("conclusion %q, want success; runner said:\n%s", j.Conclusion, out)
	}
	if !strings.Contains(j.Log, "hook passed") || !strings.Contains(j.Log, "A job started hook has been configured") {
		t.Errorf("job log lacks the hook's run and output:\n%s", j.Log)
	}

	raw, err := os.ReadFile(filepath.Join(dump, "env"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	workspace := filepath.Join(in.root, "_work", "app", "app")
	for k, want := range map[string]string{
		"LANG":                            "C.UTF-8",
		"ACTIONS_RUNNER_HOOK_JOB_STARTED": filepath.Join(in.root, "hook.sh"),
		"CI":                              "true",
		"GITHUB_ACTIONS":                  "true",
		"GITHUB_EVENT_NAME":               "pull_request",
		"GITHUB_REPOSITORY":               "acme/app",
		"GITHUB_REPOSITORY_OWNER":         "acme",
		"GITHUB_SHA":                      pr.SHA,
		"GITHUB_HEAD_REF":                 "patch-1",
		"GITHUB_BASE_REF":                 "main",
		"GITHUB_ACTOR":                    "stranger",
		"GITHUB_RUN_ID":                   itoa(j.RunID),
		"GITHUB_RUN_ATTEMPT":              "1",
		"GITHUB_REF":                      "refs/pull/" + itoa(j.RunID) + "/merge",
		"GITHUB_WORKSPACE":                workspace,
		"GITHUB_EVENT_PATH":               filepath.Join(in.root, "_work", "_temp", "_github_workflow", "event.json"),
		"RUNNER_NAME":                     "eph-t-1",
		"RUNNER_OS":                       "Linux",
		"RUNNER_TEMP":                     filepath.Join(in.root, "_work", "_temp"),
	} {
		if env[k] != want {
			t.Errorf("%s=%q, want %q", k, env[k], want)
		}
	}
	for _, k := range []string{"GITHUB_WORKFLOW", "GITHUB_JOB", "GITHUB_SERVER_URL", "GITHUB_API_URL", "GITHUB_ENV", "GITHUB_OUTPUT", "RUNNER_ARCH"} {
		if env[k] == "" {
			t.Errorf("%s is not set", k)
		}
	}
	if pwd, _ := os.ReadFile(filepath.Join(dump, "pwd")); strings.TrimSpace(string(pwd)) != workspace {
		t.Errorf("the hook ran in %q, want the workspace %s", pwd, workspace)
	}

	// The fields policy/hook/pre-job.sh reads with jq.
	var event struct {
		PullRequest struct {
			Head struct {
				Ref, SHA string
				Repo     struct {
					FullName string `json:"full_name"`
				}
			}
			Base struct{ Ref string }
		} `json:"pull_request"`
	}
	raw, _ = os.ReadFile(filepath.Join(dump, "event.json"))
	if err := json.Unmarshal(raw, &event); err != nil {
		t.Fatalf("event file: %v\n%s", err, raw)
	}
	pe := event.PullRequest
	if pe.Head.Repo.FullName != "stranger/app" || pe.Head.Ref != "patch-1" || pe.Base.Ref != "main" || pe.Head.SHA != pr.SHA {
		t.Errorf("event file's pull request = %+v, want stranger/app:patch-1 → main at %s", pe, pr.SHA)
	}
}

// TestAFailingHookFailsTheJobWithItsOutputInTheLog: a hook that exits
// non-zero fails the job, with the hook's output in the job's log — also
// when, like ephemera's pre-job hook, it stops Runner.Listener with SIGINT
// before exiting: the runner still reports the job before it exits.
func TestAFailingHookFailsTheJobWithItsOutputInTheLog(t *testing.T) {
	in := install(t, "#!/usr/bin/env bash\necho 'ephemera pre-job: the repository is not compliant: outside collaborators'\nkill -INT $PPID\nexit 1\n")
	j, out := in.runJob(t, githubfake.JobSpec{Repo: "acme/legacy", Duration: time.Hour})
	if j.Conclusion != githubfake.ConclusionFailure {
		t.Fatalf("conclusion %q, want failure; runner said:\n%s", j.Conclusion, out)
	}
	for _, want := range []string{"the repository is not compliant: outside collaborators", "Process completed with exit code 1"} {
		if !strings.Contains(j.Log, want) {
			t.Errorf("job log lacks %q:\n%s", want, j.Log)
		}
	}
	if strings.Contains(j.Log, "steps ran") {
		t.Errorf("the job's steps ran after the hook failed:\n%s", j.Log)
	}
}

// TestWithoutAHookTheJobRuns: no ACTIONS_RUNNER_HOOK_JOB_STARTED, no hook.
func TestWithoutAHookTheJobRuns(t *testing.T) {
	in := install(t, "")
	j, out := in.runJob(t, githubfake.JobSpec{Repo: "acme/app"})
	if j.Conclusion != githubfake.ConclusionSuccess {
		t.Fatalf("conclusion %q, want success; runner said:\n%s", j.Conclusion, out)
	}
	if strings.Contains(j.Log, "job started hook") {
		t.Errorf("a hook ran although none is configured:\n%s", j.Log)
	}
}
