package policy_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/policy"
)

// TestConcurrentHealthChecksShareOneGitHubRequest sends 150 concurrent
// unauthenticated GET /health. GitHub holds its answer until all 150 have
// reached the service, so every one of them finds no fresh answer; still
// GitHub sees exactly one request, and every caller gets its 204. Within
// the cache period, a later /health asks GitHub nothing.
func TestConcurrentHealthChecksShareOneGitHubRequest(t *testing.T) {
	const callers = 150
	e := newEnv(t, func(c *policy.Config) { c.HealthTTL = time.Hour })
	var arrived atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		e.svc.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e.gh.InjectFault(githubfake.Fault{Method: http.MethodGet, Path: "/rate_limit", OnMatch: func() {
		_ = waitfor.Within(30*time.Second, func() bool { return arrived.Load() == callers })
	}})
	e.gh.ResetCalls()

	codes := make([]int, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			resp, err := http.Get(srv.URL + "/health")
			if err != nil {
				t.Errorf("GET /health: %v", err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusNoContent {
			t.Errorf("caller %d: status %d, want 204", i, c)
		}
	}
	if n := e.gh.CountCalls(http.MethodGet, "/rate_limit"); n != 1 {
		t.Errorf("%d concurrent /health sent %d GitHub requests, want 1", callers, n)
	}
	if code, _ := do(t, srv.URL, http.MethodGet, "/health", "", "", ""); code != http.StatusNoContent {
		t.Errorf("later /health: %d, want 204", code)
	}
	if n := e.gh.CountCalls("", "/*"); n != 1 {
		t.Errorf("after one more /health inside the cache period GitHub saw %d requests, want still 1", n)
	}
}

// TestHealthCachesAFailureToo: while GitHub fails, /health answers 500
// from the cached failure without asking again within the period.
func TestHealthCachesAFailureToo(t *testing.T) {
	e := newEnv(t, func(c *policy.Config) { c.HealthTTL = time.Hour })
	e.gh.InjectFault(githubfake.Fault{Path: "/rate_limit", Status: http.StatusBadGateway})
	e.gh.ResetCalls()
	for range 3 {
		if code, _ := do(t, e.srv.URL, http.MethodGet, "/health", "", "", ""); code != http.StatusInternalServerError {
			t.Fatalf("GitHub failing: /health %d, want 500", code)
		}
	}
	if n := e.gh.CountCalls("", "/*"); n != 1 {
		t.Errorf("three /health with GitHub failing sent %d GitHub requests, want 1", n)
	}
}
