package scaler_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/ghclient"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/scaler"
)

func TestGitHubWithATokenAtRepositoryLevel(t *testing.T) {
	fake, err := githubfake.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	clients, err := ghclient.New(ghclient.Config{APIURL: fake.URL, Token: config.NewSecret("ghp_test"), Timeout: time.Second, Registerer: prometheus.NewRegistry(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	gh, err := scaler.NewGitHub(scaler.GitHubConfig{Clients: clients, Repo: "acme/app"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	reg, err := gh.RegisterRunner(ctx, scaler.Registration{Name: "eph-x-00000001", Labels: []string{"self-hosted", "x"}})
	if err != nil || reg.ID == 0 || reg.JITConfig == "" {
		t.Fatalf("register: %+v, %v", reg, err)
	}
	if n := fake.CountCalls(http.MethodPost, "/repos/acme/app/actions/runners/generate-jitconfig"); n != 1 {
		t.Errorf("repository-level JIT calls: %d, want 1", n)
	}
	_ = fake.RunnerOnline("eph-x-00000001")
	job := fake.QueueJob(githubfake.JobSpec{Repo: "acme/app", Labels: []string{"x"}})
	rs, err := gh.ListRunners(ctx, 0)
	if err != nil || len(rs) != 1 || !rs[0].Online || !rs[0].Busy || rs[0].Name != "eph-x-00000001" {
		t.Fatalf("list: %+v, %v", rs, err)
	}
	if err := gh.RemoveRunner(ctx, 0, reg.ID); !errors.Is(err, scaler.ErrRunnerBusy) {
		t.Errorf("removing a busy runner: %v, want ErrRunnerBusy", err)
	}
	st, err := gh.JobStatus(ctx, 0, "acme/app", job)
	if err != nil || st.Status != "in_progress" || st.RunnerName != "eph-x-00000001" {
		t.Errorf("job status: %+v, %v", st, err)
	}
	if _, err := gh.JobStatus(ctx, 0, "acme/app", 999999); !errors.Is(err, scaler.ErrJobNotFound) {
		t.Errorf("unknown job: %v, want ErrJobNotFound", err)
	}
	_ = fake.CompleteJob(job, githubfake.ConclusionSuccess)
	if err := gh.RemoveRunner(ctx, 0, reg.ID); err != nil {
		t.Errorf("removing a runner already gone: %v, want success", err)
	}
	if _, _, err := gh.(scaler.HookDeliveries).HookDeliveries(ctx, ""); !errors.Is(err, scaler.ErrNotApp) {
		t.Errorf("hook deliveries with a token: %v, want ErrNotApp", err)
	}

	// A rate limit says until when to wait, so that jobs wait that long.
	fake.InjectFault(githubfake.Fault{Method: http.MethodPost, Path: "/repos/acme/app/actions/runners/generate-jitconfig", Status: http.StatusForbidden, RetryAfter: 2, Times: 1})
	_, err = gh.RegisterRunner(ctx, scaler.Registration{Name: "eph-x-00000002", Labels: []string{"x"}})
	rl, ok := errors.AsType[*ghclient.RateLimitedError](err)
	if !ok || !rl.Until.After(time.Now()) {
		t.Errorf("rate-limited registration: %v; want a *ghclient.RateLimitedError in the future", err)
	}
}

func TestGitHubAsAnAppUsesTheEventsInstallation(t *testing.T) {
	p := pool("small", 0, 2)
	e := newEnv(t, p)
	if _, err := e.gh.RegisterRunner(t.Context(), scaler.Registration{Name: "eph-small-inst0042", Labels: p.Labels, InstallationID: 42}); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.CountCalls(http.MethodPost, "/app/installations/42/access_tokens"); n != 1 {
		t.Errorf("installation 42 token requests: %d, want 1", n)
	}
	if _, err := scaler.NewGitHub(scaler.GitHubConfig{Clients: e.clients, Org: "a", Repo: "b/c"}); err == nil {
		t.Error("org and repo both set: accepted")
	}
	if _, err := scaler.NewGitHub(scaler.GitHubConfig{Clients: e.clients, Repo: "nope"}); err == nil {
		t.Error("repo without owner: accepted")
	}
}
