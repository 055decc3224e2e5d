package githubfake_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
)

// TestARunnerReachingTheStandInElsewhereGetsThePullRequestItRuns covers
// what the stand-in runner in an LXD instance relies on: the JIT config
// names the address it reaches the stand-in at, and the job it takes says
// which event and pull request it runs, for the pre-job check.
func TestARunnerReachingTheStandInElsewhereGetsThePullRequestItRuns(t *testing.T) {
	s, c := start(t)
	s.SetRunnerURL("http://127.0.0.1:1/")
	cfg, _, err := jit(t, c, "eph-pr-1", "self-hosted", "linux")
	if err != nil {
		t.Fatal(err)
	}
	dec, err := githubfake.DecodeJITConfig(cfg.GetEncodedJITConfig())
	if err != nil {
		t.Fatal(err)
	}
	if dec.URL != "http://127.0.0.1:1/" {
		t.Errorf("JIT config URL = %q, want the runner URL", dec.URL)
	}
	pr := githubfake.Trigger{Event: "pull_request", HeadRepository: "fork/app", HeadBranch: "feature", BaseBranch: "main", SHA: "abc123"}
	id := s.QueueJob(githubfake.JobSpec{Repo: "acme/app", Labels: []string{"linux"}, Duration: time.Second,
		Trigger: pr})

	call := func(method, path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, s.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+dec.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := call(http.MethodPost, fmt.Sprintf("_fake/runners/%d/online", dec.RunnerID)); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("online: %s", resp.Status)
	}
	resp := call(http.MethodGet, fmt.Sprintf("_fake/runners/%d/job?wait=5s", dec.RunnerID))
	defer resp.Body.Close()
	var got githubfake.RunnerJob
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("job: %s, %v", resp.Status, err)
	}
	queued, _ := s.GetJob(id)
	want := githubfake.RunnerJob{ID: id, RunID: queued.RunID, RunAttempt: 1, Repository: "acme/app", Labels: []string{"linux"}, DurationMS: 1000,
		Trigger: pr}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("runner job (-got +want):\n%s", d)
	}
	if queued.RunID == 0 {
		t.Error("the job has no run id")
	}
	if taken, _ := s.GetJob(id); taken.RunnerOnlineAt.IsZero() || taken.RunnerOnlineAt.After(taken.StartedAt) {
		t.Errorf("the job says its runner came online at %v, started %v; want a time before the start", taken.RunnerOnlineAt, taken.StartedAt)
	}

	// The runner reports the outcome with its log, which GitHub keeps as
	// the job's log.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, fmt.Sprintf("%s_fake/runners/%d/jobs/%d/complete", s.URL, dec.RunnerID, id),
		strings.NewReader(`{"conclusion":"failure","log":"hook said no\n"}`))
	req.Header.Set("Authorization", "Bearer "+dec.Token)
	req.Header.Set("Content-Type", "application/json")
	done, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	done.Body.Close()
	if done.StatusCode != http.StatusNoContent {
		t.Fatalf("complete: %s", done.Status)
	}
	if j, _ := s.GetJob(id); j.Conclusion != "failure" || j.Log != "hook said no\n" {
		t.Errorf("completed job: conclusion %q, log %q; want failure with the runner's log", j.Conclusion, j.Log)
	}
	if j, _ := s.GetJob(s.QueueJob(githubfake.JobSpec{Labels: []string{"x"}})); j.Event != "push" {
		t.Errorf("a job with no event has event %q, want push", j.Event)
	}
}
