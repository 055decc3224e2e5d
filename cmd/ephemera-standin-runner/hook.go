package main

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// The job-started hook, run as actions/runner runs it (src/Runner.Worker/
// JobExtension.cs and the script handler): the path comes from
// ACTIONS_RUNNER_HOOK_JOB_STARTED, which the runner's .env sets; the
// script runs with `bash --noprofile --norc -e -o pipefail PATH` in the
// job's workspace, with the runner's environment plus the job's GITHUB_*
// and RUNNER_* variables (jobEnv); its output goes to the job's log, and a
// non-zero exit fails the job before any step runs.

// hookEnvVar names the job-started hook, as for the real runner.
const hookEnvVar = "ACTIONS_RUNNER_HOOK_JOB_STARTED"

// errHookFailed: the job-started hook exited non-zero.
var errHookFailed = errors.New("the job-started hook failed")

// loadDotEnv sets each KEY=VALUE line of the runner's .env in the
// environment, as Runner.Listener does at start (a line without '=' after
// a non-empty key is skipped; a missing file is no error).
func loadDotEnv(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("runner .env: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSuffix(sc.Text(), "\r"), "=")
		if !ok || k == "" {
			continue
		}
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("runner .env: %s: %w", k, err)
		}
	}
	return sc.Err()
}

// hookRun is one job for which the hook runs.
type hookRun struct {
	root   string // the runner's directory (run.sh, bin/, .env, _work/)
	runner string // RUNNER_NAME
	apiURL string // the GitHub the runner talks to
	job    job
}

// runJobStartedHook runs the hook ACTIONS_RUNNER_HOOK_JOB_STARTED names,
// when one is set, writing what the runner logs and the hook's output to
// jobLog; it fails when the hook cannot run or exits non-zero.
func runJobStartedHook(ctx context.Context, h hookRun, jobLog io.Writer) error {
	path := os.Getenv(hookEnvVar)
	if path == "" {
		return nil
	}
	fmt.Fprintf(jobLog, "A job started hook has been configured by the self-hosted runner administrator\n##[group]Run '%s'\n", path)
	defer fmt.Fprintf(jobLog, "##[endgroup]\n")
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%s=%s: the hook's path must be absolute", hookEnvVar, path)
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s: %w", hookEnvVar, err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		return fmt.Errorf("run the job-started hook: %w", err)
	}
	env, event, workspace := jobEnv(h, time.Now())
	for _, dir := range []string{workspace, filepath.Dir(event.path), filepath.Join(h.root, "_work", "_temp", "_runner_file_commands"), filepath.Join(h.root, "_work", "_tool")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("prepare the job: %w", err)
		}
	}
	for _, v := range env {
		k, p, _ := strings.Cut(v, "=")
		switch k {
		case "GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY": // file commands start empty
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				return fmt.Errorf("prepare the job: %w", err)
			}
		}
	}
	if err := os.WriteFile(event.path, event.body, 0o644); err != nil {
		return fmt.Errorf("prepare the job: %w", err)
	}
	fmt.Fprintf(jobLog, "shell: %s --noprofile --norc -e -o pipefail {0}\n", bash)
	out := io.MultiWriter(jobLog, os.Stderr)
	cmd := exec.CommandContext(ctx, bash, "--noprofile", "--norc", "-e", "-o", "pipefail", path)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = workspace, append(os.Environ(), env...), out, out
	cmd.WaitDelay = 10 * time.Second // a child that keeps the output open past the hook's exit
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		fmt.Fprintf(jobLog, "##[error]Process completed with exit code %d.\n", exit.ExitCode())
		return fmt.Errorf("%w: exit code %d", errHookFailed, exit.ExitCode())
	case err != nil:
		return fmt.Errorf("run the job-started hook: %w", err)
	}
	return nil
}

// eventFile is the workflow's event payload (GITHUB_EVENT_PATH).
type eventFile struct {
	path string
	body []byte
}

// jobEnv is the environment actions/runner gives a job's steps and hooks
// beyond its own (src/Runner.Worker/GitHubContext.cs and the execution
// context): the github context as GITHUB_* variables, the runner context
// as RUNNER_*, CI and GITHUB_ACTIONS, and the file-command files. It also
// returns the event payload the job's workflow was triggered with and the
// workspace, the hook's working directory.
func jobEnv(h hookRun, now time.Time) (env []string, event eventFile, workspace string) {
	j := h.job
	owner, name, _ := strings.Cut(j.Repository, "/")
	work := filepath.Join(h.root, "_work")
	temp := filepath.Join(work, "_temp")
	workspace = filepath.Join(work, name, name)
	event.path = filepath.Join(temp, "_github_workflow", "event.json")
	sha := j.SHA
	if sha == "" {
		sum := sha1.Sum([]byte(fmt.Sprintf("%s@%d", j.Repository, j.RunID)))
		sha = hex.EncodeToString(sum[:])
	}
	actor := owner
	server := strings.TrimSuffix(h.apiURL, "/")
	repo := map[string]any{"full_name": j.Repository, "name": name, "owner": map[string]any{"login": owner}}
	var ref, refName, refType, headRef, baseRef string
	var payload map[string]any
	switch j.Event {
	case "pull_request", "pull_request_target":
		headOwner, _, _ := strings.Cut(j.HeadRepository, "/")
		actor = headOwner
		number := j.RunID // the stand-in has no pull request numbers; one per run
		ref, refName, refType = fmt.Sprintf("refs/pull/%d/merge", number), fmt.Sprintf("%d/merge", number), "branch"
		headRef, baseRef = j.HeadBranch, j.BaseBranch
		if j.Event == "pull_request_target" {
			ref, refName = "refs/heads/"+j.BaseBranch, j.BaseBranch
		}
		payload = map[string]any{
			"action": "synchronize", "number": number,
			"pull_request": map[string]any{
				"number": number,
				"head": map[string]any{"ref": j.HeadBranch, "sha": sha, "label": headOwner + ":" + j.HeadBranch,
					"repo": map[string]any{"full_name": j.HeadRepository, "fork": j.HeadRepository != j.Repository}},
				"base": map[string]any{"ref": j.BaseBranch, "repo": repo},
			},
		}
	case "schedule":
		ref, refName, refType = "refs/heads/main", "main", "branch"
		payload = map[string]any{"schedule": "0 0 * * *"}
	default: // push, workflow_dispatch and the rest: the default branch
		ref, refName, refType = "refs/heads/main", "main", "branch"
		payload = map[string]any{"ref": ref, "after": sha}
		if j.Event == "workflow_dispatch" {
			payload = map[string]any{"ref": ref, "inputs": map[string]any{}}
		}
	}
	payload["repository"] = repo
	payload["sender"] = map[string]any{"login": actor}
	event.body, _ = json.MarshalIndent(payload, "", "  ")

	fileCommand := func(kind string) string {
		return filepath.Join(temp, "_runner_file_commands", fmt.Sprintf("%s_%d", kind, now.UnixNano()))
	}
	arch := map[string]string{"amd64": "X64", "arm64": "ARM64", "arm": "ARM", "386": "X86"}[runtime.GOARCH]
	return []string{
		"CI=true",
		"GITHUB_ACTIONS=true",
		"GITHUB_ACTOR=" + actor,
		"GITHUB_TRIGGERING_ACTOR=" + actor,
		"GITHUB_API_URL=" + server,
		"GITHUB_GRAPHQL_URL=" + server + "/graphql",
		"GITHUB_SERVER_URL=" + server,
		"GITHUB_BASE_REF=" + baseRef,
		"GITHUB_HEAD_REF=" + headRef,
		"GITHUB_EVENT_NAME=" + j.Event,
		"GITHUB_EVENT_PATH=" + event.path,
		"GITHUB_JOB=build",
		"GITHUB_REF=" + ref,
		"GITHUB_REF_NAME=" + refName,
		"GITHUB_REF_TYPE=" + refType,
		"GITHUB_REF_PROTECTED=false",
		"GITHUB_REPOSITORY=" + j.Repository,
		"GITHUB_REPOSITORY_OWNER=" + owner,
		"GITHUB_RETENTION_DAYS=90",
		"GITHUB_RUN_ATTEMPT=" + itoa(max(j.RunAttempt, 1)),
		"GITHUB_RUN_ID=" + itoa(j.RunID),
		"GITHUB_RUN_NUMBER=" + itoa(j.RunID),
		"GITHUB_SHA=" + sha,
		"GITHUB_WORKFLOW=CI",
		"GITHUB_WORKFLOW_REF=" + j.Repository + "/.github/workflows/ci.yml@" + ref,
		"GITHUB_WORKFLOW_SHA=" + sha,
		"GITHUB_WORKSPACE=" + workspace,
		"GITHUB_ENV=" + fileCommand("set_env"),
		"GITHUB_PATH=" + fileCommand("add_path"),
		"GITHUB_OUTPUT=" + fileCommand("set_output"),
		"GITHUB_STATE=" + fileCommand("save_state"),
		"GITHUB_STEP_SUMMARY=" + fileCommand("step_summary"),
		"RUNNER_NAME=" + h.runner,
		"RUNNER_OS=Linux",
		"RUNNER_ARCH=" + arch,
		"RUNNER_ENVIRONMENT=self-hosted",
		"RUNNER_TEMP=" + temp,
		"RUNNER_TOOL_CACHE=" + filepath.Join(work, "_tool"),
		"RUNNER_WORKSPACE=" + filepath.Join(work, name),
	}, event, workspace
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
