package policy_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/policy"
)

func cacheCount(t *testing.T, e *env, result string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ephemera_policy_cache_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestFreshAnswersCostNoGitHubRequest(t *testing.T) {
	e := newEnv(t, func(c *policy.Config) { c.CacheTTL = time.Hour })
	e.gh.SetRepo(compliant())
	if code, _ := e.checkRun(t, "/pull_request/check-run", sameRepoPR); code != http.StatusNoContent {
		t.Fatalf("first check: %d", code)
	}
	first := len(e.gh.Calls())
	misses := cacheCount(t, e, "miss")
	for range 5 {
		if code, _ := e.checkRun(t, "/pull_request/check-run", sameRepoPR); code != http.StatusNoContent {
			t.Fatalf("cached check: %d", code)
		}
	}
	if n := len(e.gh.Calls()); n != first {
		t.Fatalf("GitHub got %d more requests for cached checks, want 0", n-first)
	}
	if hits := cacheCount(t, e, "hit"); hits != 5*misses {
		t.Fatalf("cache hits = %v, want %v", hits, 5*misses)
	}
}

func TestStaleAnswersAreRevalidatedWith304s(t *testing.T) {
	e := newEnv(t, func(c *policy.Config) { c.CacheTTL = time.Nanosecond })
	e.gh.SetRepo(compliant())
	e.checkRun(t, "/pull_request/check-run", writerForkPR)
	first := len(e.gh.Calls())
	e.gh.ResetCalls()
	if code, body := e.checkRun(t, "/pull_request/check-run", writerForkPR); code != http.StatusNoContent {
		t.Fatalf("revalidated check: %d %q", code, body)
	}
	calls := e.gh.Calls()
	if len(calls) != first {
		t.Fatalf("second check made %d requests, want %d (one revalidation each)", len(calls), first)
	}
	for _, c := range calls {
		if c.Status != http.StatusNotModified && c.Status != http.StatusNotFound {
			t.Errorf("%s answered %d, want 304 (or an uncacheable 404)", c.Path, c.Status)
		}
	}
	if cacheCount(t, e, "revalidated") == 0 {
		t.Fatal("no revalidation counted")
	}
}

func TestAChangedRepositoryIsSeenAfterRevalidation(t *testing.T) {
	e := newEnv(t, func(c *policy.Config) { c.CacheTTL = time.Nanosecond })
	e.gh.SetRepo(compliant())
	if code, _ := e.checkRun(t, "/push/check-run", `{"repository_name":"acme/widgets"}`); code != http.StatusNoContent {
		t.Fatalf("first check: %d", code)
	}
	e.gh.UpdateRepo("acme/widgets", func(s *githubfake.RepoSpec) { s.OutsideCollaborators["zed"] = "admin" })
	if code, _ := e.checkRun(t, "/push/check-run", `{"repository_name":"acme/widgets"}`); code != http.StatusForbidden {
		t.Fatalf("after the change: %d, want 403", code)
	}
}

func TestStaleAnswerAndGitHubErrorIs500(t *testing.T) {
	e := newEnv(t, func(c *policy.Config) { c.CacheTTL = time.Nanosecond })
	e.gh.SetRepo(compliant())
	if code, _ := e.checkRun(t, "/push/check-run", `{"repository_name":"acme/widgets"}`); code != http.StatusNoContent {
		t.Fatalf("first check: %d", code)
	}
	e.gh.InjectFault(githubfake.Fault{Path: "/repos/*/*/collaborators", Status: http.StatusServiceUnavailable})
	if code, _ := e.checkRun(t, "/push/check-run", `{"repository_name":"acme/widgets"}`); code != http.StatusInternalServerError {
		t.Fatalf("stale cache and GitHub failing: %d, want 500", code)
	}
}

func TestChecksAreCounted(t *testing.T) {
	e := newEnv(t)
	e.gh.SetRepo(compliant())
	e.checkRun(t, "/push/check-run", `{"repository_name":"acme/widgets"}`)
	e.checkRun(t, "/pull_request/check-run", prBody("acme/widgets", "acme/widgets", "gone", "x", sha))
	want := `
# HELP ephemera_policy_checks_total Check-runs answered, by event and outcome (pass, fail, error).
# TYPE ephemera_policy_checks_total counter
ephemera_policy_checks_total{event="pull_request",outcome="fail"} 1
ephemera_policy_checks_total{event="push",outcome="pass"} 1
`
	if err := testutil.GatherAndCompare(e.reg, stringsReader(want), "ephemera_policy_checks_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(e.reg, "ephemera_policy_check_duration_seconds"); n != 2 {
		t.Fatalf("duration series = %d, want 2", n)
	}
}
