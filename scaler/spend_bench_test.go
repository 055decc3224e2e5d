package scaler_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/tokens"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/policy"
	"github.com/ephemera-ci/ephemera/scaler"
)

// BenchmarkGitHubSpendPerJob is the fixed scenario GitHub spending is
// measured in: one pool with min_idle 2, a job arriving every 6 s for 10
// minutes (100 jobs of one minute each), reconciles every 30 s — on a
// clock compressed 60× (SCALED: the 10 minutes take 10 s, the interval
// 500 ms). Every REST request the GitHub stand-in receives is counted,
// by kind (method and route), from the first arrival until every job has
// completed and the pool is back at min_idle. gh-requests/job is the
// scaler's (everything it sends: registrations, listings, deliveries,
// removals, job reads, installation tokens). Each job's runner also runs
// its pre-job check against a policy service sharing the scaler's GitHub
// clients and budget (a push to one repository, its answers cached for
// 30 s, scaled like the rest): its GitHub requests are
// policy-gh-requests/job, apart.
func BenchmarkGitHubSpendPerJob(b *testing.B) {
	const (
		compress = 60
		jobsRun  = 100
		repo     = "acme/app"
	)
	var total, policyTotal float64
	byKind := map[string]int{}
	checks := 0
	for range b.N {
		p := pool("spend", 2, 40)
		e := newEnv(b, p)
		e.fake.SetRepo(githubfake.RepoSpec{FullName: repo, Branches: map[string]*githubfake.BranchProtection{"main": {RequiredReviews: true}}})
		ts, err := tokens.New(b.Context(), tokens.Config{Bus: e.bus, TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		hook := startPolicy(b, e, ts, 30*time.Second/compress)
		// The runner's one-time token, as its user-data carries it.
		var mu sync.Mutex
		tokenOf := map[string]string{}
		online := e.prov.OnCreated
		e.prov.OnCreated = func(spec scaler.InstanceSpec) {
			mu.Lock()
			tokenOf[spec.Name] = spec.PolicyToken
			mu.Unlock()
			online(spec)
		}
		e.start(e.config(func(c *scaler.Config) {
			c.Tokens = ts
			c.Interval = 30 * time.Second / compress
			c.IdleGrace = 2 * time.Minute / compress
			c.BootstrapTimeout = 10 * time.Minute / compress
			c.ProvisionTimeout = 5 * time.Minute / compress
		}))
		waitFor(b, time.Minute, "2 idle runners", func() bool { return e.idle() == 2 })
		e.fake.ResetCounts()
		b.ResetTimer()
		gap := 10 * time.Minute / jobsRun / compress
		next := time.Now()
		var ids []int64
		var hooks sync.WaitGroup
		hookErrs := make(chan error, jobsRun)
		for range jobsRun {
			id := e.fake.QueueJob(githubfake.JobSpec{Repo: repo, Labels: []string{"self-hosted", p.Name}, Duration: time.Minute / compress})
			ids = append(ids, id)
			hooks.Go(func() {
				runner := e.startedOn(id, time.Minute)
				mu.Lock()
				tok := tokenOf[runner]
				mu.Unlock()
				hookErrs <- hook(repo, tok)
			})
			next = next.Add(gap)
			time.Sleep(time.Until(next)) // the arrival rate, not synchronisation
		}
		waitFor(b, time.Minute, "every job to complete", e.allCompleted(ids))
		waitFor(b, time.Minute, "the pool back at min_idle", func() bool { return e.idle() == 2 })
		hooks.Wait()
		b.StopTimer()
		close(hookErrs)
		for err := range hookErrs {
			if err != nil {
				b.Error(err)
				continue
			}
			checks++
		}
		for k, n := range e.fake.RequestsByKind() {
			if policyKind(k) {
				policyTotal += float64(n)
				continue
			}
			total += float64(n)
			byKind[kindName(k)] += n
		}
		if a := e.fake.RateLimitAnswers(); a.Total() > 0 {
			b.Errorf("rate-limit answers: %+v", a)
		}
	}
	jobs := float64(b.N * jobsRun)
	b.ReportMetric(total/jobs, "gh-requests/job")
	for k, n := range byKind {
		b.ReportMetric(float64(n)/jobs, k+"/job")
	}
	b.ReportMetric(float64(checks)/jobs, "policy-checks/job")
	b.ReportMetric(policyTotal/jobs, "policy-gh-requests/job")
	b.ReportMetric(0, "ns/op")
}

// startPolicy starts a policy service on e's bus and GitHub clients,
// answers cached for cacheTTL, and returns the pre-job check a runner of
// a push to repo makes with its one-time token.
func startPolicy(b *testing.B, e *env, ts policy.TokenStore, cacheTTL time.Duration) func(repo, token string) error {
	svc, err := policy.New(b.Context(), policy.Config{
		AdminToken: config.NewSecret(strings.Repeat("a", 32)), Tokens: ts, Bus: e.bus, GitHub: e.clients,
		CacheTTL: cacheTTL, Registerer: prometheus.NewRegistry(), Log: zerolog.Nop(),
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	b.Cleanup(srv.Close)
	return func(repo, token string) error {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/push/check-run", strings.NewReader(`{"repository_name":"`+repo+`"}`))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("pre-job check of %s: %d %s", repo, resp.StatusCode, body)
		}
		return nil
	}
}

// policyKind reports whether k is a request only the policy service
// sends: the repository's settings, not its Actions API.
func policyKind(k githubfake.Kind) bool {
	return strings.HasPrefix(k.Endpoint, "/repos/") && !strings.Contains(k.Endpoint, "/actions/")
}

// kindName is a short, unit-safe name of a request kind.
func kindName(k githubfake.Kind) string {
	ep := k.Endpoint
	switch {
	case strings.HasSuffix(ep, "/generate-jitconfig"):
		ep = "jit"
	case strings.HasSuffix(ep, "/actions/runners"):
		ep = "runners"
	case strings.HasSuffix(ep, "/actions/runners/{id}"):
		ep = "runner"
	case strings.HasPrefix(ep, "/app/hook/deliveries"):
		ep = "deliveries"
	case strings.HasSuffix(ep, "/access_tokens"):
		ep = "token"
	case strings.Contains(ep, "/actions/jobs/"):
		ep = "job"
	default:
		ep = "other"
	}
	return strings.ToLower(k.Method) + "-" + ep
}

// startedOn waits up to d for job id to be taken by a runner and returns
// the runner's name ("" if none took it).
func (e *env) startedOn(id int64, d time.Duration) string {
	var name string
	_ = waitfor.Within(d, func() bool {
		j, _ := e.fake.GetJob(id)
		name = j.RunnerName
		return !j.StartedAt.IsZero()
	})
	return name
}
