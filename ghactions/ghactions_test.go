package ghactions_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/ghactions"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/ghclient"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/scaler"
)

func startFake(t *testing.T) *githubfake.Server {
	t.Helper()
	fake, err := githubfake.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	return fake
}

func appKey(t *testing.T) config.Secret {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return config.NewSecret(string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})))
}

func TestGitHubWithATokenAtRepositoryLevel(t *testing.T) {
	fake := startFake(t)
	clients, err := ghclient.New(ghclient.Config{APIURL: fake.URL, Token: config.NewSecret("ghp_test"), Timeout: time.Second, Registerer: prometheus.NewRegistry(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	gh, err := ghactions.New(ghactions.Config{Clients: clients, Repo: "acme/app"})
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
	if _, _, err := gh.HookDeliveries(ctx, ""); !errors.Is(err, scaler.ErrNotApp) {
		t.Errorf("hook deliveries with a token: %v, want ErrNotApp", err)
	}

	// A rate limit says until when to wait, in the scaler's terms, so that
	// jobs wait that long.
	fake.InjectFault(githubfake.Fault{Method: http.MethodPost, Path: "/repos/acme/app/actions/runners/generate-jitconfig", Status: http.StatusForbidden, RetryAfter: 60, Times: 1})
	_, err = gh.RegisterRunner(ctx, scaler.Registration{Name: "eph-x-00000002", Labels: []string{"x"}})
	if rl, ok := errors.AsType[*scaler.RateLimitedError](err); !ok || !rl.Until.After(time.Now()) {
		t.Errorf("rate-limited registration: %v; want a *scaler.RateLimitedError in the future", err)
	}
}

func TestGitHubAsAnAppUsesTheEventsInstallation(t *testing.T) {
	fake := startFake(t)
	clients, err := ghclient.New(ghclient.Config{APIURL: fake.URL, AppID: 1, PrivateKey: appKey(t), Timeout: time.Second, Registerer: prometheus.NewRegistry(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	gh, err := ghactions.New(ghactions.Config{Clients: clients, Org: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	// No installation configured and none seen yet: the scaler's error.
	if _, err := gh.ListRunners(t.Context(), 0); !errors.Is(err, scaler.ErrNoInstallation) {
		t.Errorf("listing before any installation is known: %v, want scaler.ErrNoInstallation", err)
	}
	if _, err := gh.RegisterRunner(t.Context(), scaler.Registration{Name: "eph-small-inst0042", Labels: []string{"self-hosted", "small"}, InstallationID: 42}); err != nil {
		t.Fatal(err)
	}
	if n := fake.CountCalls(http.MethodPost, "/app/installations/42/access_tokens"); n != 1 {
		t.Errorf("installation 42 token requests: %d, want 1", n)
	}
	// Installation 0 now means the one last seen in an event.
	if rs, err := gh.ListRunners(t.Context(), 0); err != nil || len(rs) != 1 {
		t.Errorf("listing with the installation seen: %+v, %v", rs, err)
	}
	if _, _, err := gh.HookDeliveries(t.Context(), ""); err != nil {
		t.Errorf("hook deliveries as an App: %v", err)
	}

	// GitHub says to wait: the answer is the scaler's RateLimitedError,
	// and so is the answer for another installation, whose request
	// ghclient's guard keeps from GitHub until then.
	fake.InjectFault(githubfake.Fault{Method: http.MethodPost, Path: "/orgs/acme/actions/runners/generate-jitconfig", Status: http.StatusForbidden, RetryAfter: 60, Times: 1})
	_, err = gh.RegisterRunner(t.Context(), scaler.Registration{Name: "eph-small-inst0042b", Labels: []string{"self-hosted", "small"}, InstallationID: 42})
	if rl, ok := errors.AsType[*scaler.RateLimitedError](err); !ok || !rl.Until.After(time.Now()) {
		t.Errorf("rate-limited registration: %v; want a *scaler.RateLimitedError in the future", err)
	}
	calls := len(fake.Calls())
	_, err = gh.RegisterRunner(t.Context(), scaler.Registration{Name: "eph-small-inst0043", Labels: []string{"self-hosted", "small"}, InstallationID: 43})
	if rl, ok := errors.AsType[*scaler.RateLimitedError](err); !ok || !rl.Until.After(time.Now()) {
		t.Errorf("registration for another installation while GitHub said to wait: %v; want a *scaler.RateLimitedError in the future", err)
	}
	if n := len(fake.Calls()); n != calls {
		t.Errorf("%d requests reached GitHub while it said to wait", n-calls)
	}
}

func TestConfigIsChecked(t *testing.T) {
	clients, err := ghclient.New(ghclient.Config{APIURL: "http://127.0.0.1:1/", Token: config.NewSecret("ghp_test"), Registerer: prometheus.NewRegistry(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  ghactions.Config
	}{
		{"without clients", ghactions.Config{Org: "acme"}},
		{"with org and repo both", ghactions.Config{Clients: clients, Org: "a", Repo: "b/c"}},
		{"with neither org nor repo", ghactions.Config{Clients: clients}},
		{"with a repo without owner", ghactions.Config{Clients: clients, Repo: "nope"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ghactions.New(tc.cfg); err == nil {
				t.Error("accepted")
			}
		})
	}
}
