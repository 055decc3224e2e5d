package policy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/policy"
)

// faults are the ways GitHub fails: each must turn a check into a 500.
var faults = []struct {
	name  string
	fault githubfake.Fault
}{
	{"a 502", githubfake.Fault{Status: http.StatusBadGateway}},
	{"a timeout", githubfake.Fault{Delay: 2 * time.Second}},
	{"a rate limit", githubfake.Fault{RetryAfter: 60}},
}

// repoPaths matches every repository endpoint the checks call.
var repoPaths = []string{"/repos/*/*", "/repos/*/*/*", "/repos/*/*/*/*", "/repos/*/*/*/*/*", "/repos/*/*/*/*/*/*"}

// failingCase is a request that makes rule ask GitHub.
var failingCases = []struct {
	rule, path, body string
}{
	{"target_branch_protection", "/pull_request/check-run", prBody("acme/widgets", "acme/widgets", "dev", "topic", sha)},
	{"collaborators", "/pull_request/check-run", sameRepoPR},
	{"collaborators", "/push/check-run", `{"repository_name":"acme/widgets"}`},
	{"disallow_fork", "/pull_request/check-run", forkPR},
	{"execute_job", "/pull_request/check-run", forkPR},
	{"external_contributor", "/pull_request/check-run", forkPR},
}

func newFaultEnv(t *testing.T) *env {
	e := newEnv(t, func(c *policy.Config) {
		c.GitHubTimeout = 300 * time.Millisecond
		c.CacheTTL = -1 // every check asks GitHub
	})
	spec := compliant()
	spec.PullRequests[0].Comments = []githubfake.Comment{{User: "dave", Body: "/ephemera run-workflows " + sha}}
	spec.PullRequests[0].AuthorAssociation = "MEMBER"
	e.gh.SetRepo(spec)
	return e
}

func TestEveryCheckFailsClosedWhenGitHubFails(t *testing.T) {
	for _, f := range faults {
		for _, c := range failingCases {
			t.Run(c.rule+" "+c.path+" answers 500 on "+f.name, func(t *testing.T) {
				e := newFaultEnv(t)
				e.setPolicy(t, only(c.rule))
				for _, p := range repoPaths {
					fault := f.fault
					fault.Path = p
					e.gh.InjectFault(fault)
				}
				code, body := e.checkRun(t, c.path, c.body)
				if code != http.StatusInternalServerError || !strings.Contains(body, "not of the repository") {
					t.Fatalf("got %d %q, want 500 blaming the service", code, body)
				}
				if strings.Contains(body, "127.0.0.1") || strings.Contains(body, "ghs_") {
					t.Fatalf("the answer leaks internal details: %q", body)
				}
			})
		}
	}
}

// TestEachGitHubCallFailsClosed fails one endpoint at a time with every
// rule enabled on a repository that passes them all: whichever call fails,
// the answer is 500, never a pass (the seed let three checks' errors pass).
func TestEachGitHubCallFailsClosed(t *testing.T) {
	e := newFaultEnv(t)
	e.setPolicy(t, `{"pull_request":{"external_contributor":{"enabled":true},"disallow_fork":{"enabled":false}}}`)
	if code, body := e.checkRun(t, "/pull_request/check-run", forkPR); code != http.StatusNoContent {
		t.Fatalf("without faults: got %d %q, want 204", code, body)
	}
	called := map[string]bool{}
	for _, c := range e.gh.Calls() {
		called[c.Path] = true
	}
	for _, p := range []string{
		"/repos/acme/widgets", "/repos/acme/widgets/branches/main/protection", "/repos/acme/widgets/collaborators",
		"/repos/acme/widgets/collaborators/mallory/permission", "/repos/acme/widgets/collaborators/dave/permission",
		"/repos/acme/widgets/pulls", "/repos/acme/widgets/issues/7/comments",
	} {
		if !called[p] {
			t.Fatalf("the checks did not call %s; calls: %v", p, called)
		}
		t.Run("a 502 on "+p+" is 500", func(t *testing.T) {
			remove := e.gh.InjectFault(githubfake.Fault{Path: p, Status: http.StatusBadGateway})
			defer remove()
			if code, body := e.checkRun(t, "/pull_request/check-run", forkPR); code != http.StatusInternalServerError {
				t.Fatalf("got %d %q, want 500", code, body)
			}
		})
	}
	for _, p := range []string{"/repos/acme/widgets/branches/dev", "/repos/acme/widgets/rules/branches/dev"} {
		t.Run("a 502 on "+p+" is 500", func(t *testing.T) {
			remove := e.gh.InjectFault(githubfake.Fault{Path: p, Status: http.StatusBadGateway})
			defer remove()
			body := prBody("acme/widgets", "acme/widgets", "dev", "topic", sha)
			if code, body := e.checkRun(t, "/pull_request/check-run", body); code != http.StatusInternalServerError {
				t.Fatalf("got %d %q, want 500", code, body)
			}
		})
	}
}

func TestACheckRunAnswersWithinTheCheckTimeout(t *testing.T) {
	e := newEnv(t, func(c *policy.Config) {
		c.CheckTimeout = 300 * time.Millisecond
		c.GitHubTimeout = 10 * time.Second
	})
	e.gh.SetRepo(compliant())
	e.gh.InjectFault(githubfake.Fault{Path: "/repos/*/*/collaborators", Delay: 5 * time.Second})
	start := time.Now()
	code, _ := e.checkRun(t, "/push/check-run", `{"repository_name":"acme/widgets"}`)
	if code != http.StatusInternalServerError {
		t.Fatalf("got %d, want 500", code)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("answered after %v, want about the 300ms check timeout", d)
	}
}
