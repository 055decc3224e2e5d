package policy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/ghclient"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/tokens"
	"github.com/ephemera-ci/ephemera/policy"
)

const adminToken = "admin-secret-token-0123456789abcdef"

// sha is the head commit of the pull requests of the fixtures.
const sha = "0123456789abcdef0123456789abcdef01234567"

// env is a policy service on a real bus, reading a GitHub stand-in over
// HTTP with the real go-github client.
type env struct {
	gh     *githubfake.Server
	bus    *bus.Bus
	tokens *tokens.Store
	svc    *policy.Service
	srv    *httptest.Server
	reg    *prometheus.Registry
}

// newEnv starts everything; change adjusts the service's Config.
func newEnv(t testing.TB, change ...func(*policy.Config)) *env {
	t.Helper()
	gh, err := githubfake.Start()
	if err != nil {
		t.Fatalf("githubfake: %v", err)
	}
	t.Cleanup(gh.Close)
	b, _ := bustest.Open(t)
	e := &env{gh: gh, bus: b}
	e.start(t, b, change...)
	return e
}

// start (re)creates the service on bus b.
func (e *env) start(t testing.TB, b *bus.Bus, change ...func(*policy.Config)) {
	t.Helper()
	ts, err := tokens.New(t.Context(), tokens.Config{Bus: b, TTL: time.Hour})
	if err != nil {
		t.Fatalf("tokens: %v", err)
	}
	e.tokens = ts
	e.svc, e.reg = newService(t, e.gh, b, ts, change...)
	e.srv = httptest.NewServer(e.svc.Handler())
	t.Cleanup(e.srv.Close)
}

func newService(t testing.TB, gh *githubfake.Server, b *bus.Bus, ts policy.TokenStore, change ...func(*policy.Config)) (*policy.Service, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	clients, err := ghclient.New(ghclient.Config{
		APIURL: gh.URL, Token: config.NewSecret("ghs_test"), Registerer: reg, Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatalf("ghclient: %v", err)
	}
	cfg := policy.Config{
		AdminToken: config.NewSecret(adminToken),
		Tokens:     ts,
		Bus:        b,
		GitHub:     clients,
		Registerer: reg,
		Log:        zerolog.Nop(),
	}
	for _, c := range change {
		c(&cfg)
	}
	svc, err := policy.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("policy.New: %v", err)
	}
	return svc, reg
}

// mint returns a fresh one-time token.
func (e *env) mint(t testing.TB) string {
	t.Helper()
	tok, err := e.tokens.Mint(t.Context(), "eph-test-runner")
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	return tok
}

// do sends a request and returns the status and body.
func do(t testing.TB, base, method, path, token, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// checkRun posts a check-run with a fresh token.
func (e *env) checkRun(t testing.TB, path, body string) (int, string) {
	t.Helper()
	return do(t, e.srv.URL, http.MethodPost, path, e.mint(t), "application/json", body)
}

// setPolicy posts a policy document with the admin token.
func (e *env) setPolicy(t testing.TB, doc string) {
	t.Helper()
	if code, body := do(t, e.srv.URL, http.MethodPost, "/policy", adminToken, "application/json", doc); code != http.StatusNoContent {
		t.Fatalf("POST /policy = %d %q, want 204", code, body)
	}
}

// prBody is a pull_request check-run body.
func prBody(repo, source, target, branch, commit string) string {
	return `{"repository_name":"` + repo + `","source_repository_name":"` + source +
		`","target_branch_name":"` + target + `","source_branch_name":"` + branch + `","commit_sha":"` + commit + `"}`
}

// compliant is a repository every default check passes: main protected
// with required reviews, an outside collaborator with read access, a
// writer (dave) and a reader (erin), and open pull requests from forks.
func compliant() githubfake.RepoSpec {
	return githubfake.RepoSpec{
		FullName: "acme/widgets",
		Branches: map[string]*githubfake.BranchProtection{
			"main":    {RequiredReviews: true},
			"release": {},
			"dev":     nil,
		},
		OutsideCollaborators: map[string]string{"carol": "read"},
		Permissions:          map[string]string{"dave": "write", "erin": "read", "mia": "maintain"},
		PullRequests: []githubfake.PullRequest{
			{Number: 7, HeadRepo: "mallory/widgets", HeadRef: "feature", HeadSHA: sha, AuthorAssociation: "CONTRIBUTOR"},
			{Number: 8, HeadRepo: "dave/widgets", HeadRef: "fix", HeadSHA: sha, AuthorAssociation: "COLLABORATOR"},
			{Number: 9, HeadRepo: "acme/widgets", HeadRef: "topic", HeadSHA: sha, Author: "dave", AuthorAssociation: "MEMBER"},
		},
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
