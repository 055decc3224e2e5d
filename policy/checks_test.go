package policy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/policy"
)

// only is a policy document enabling one pull_request rule.
func only(rule string) string {
	var parts []string
	for _, r := range []string{"target_branch_protection", "collaborators", "disallow_fork", "execute_job", "external_contributor"} {
		on := "false"
		if r == rule {
			on = "true"
		}
		parts = append(parts, `"`+r+`":{"enabled":`+on+`}`)
	}
	return `{"pull_request":{` + strings.Join(parts, ",") + `}}`
}

// disabledAll turns every pull_request rule off.
const disabledAll = `{"pull_request":{"target_branch_protection":{"enabled":false},"collaborators":{"enabled":false},"disallow_fork":{"enabled":false},"execute_job":{"enabled":false},"external_contributor":{"enabled":false}}}`

type checkCase struct {
	name   string
	rule   string
	repo   func(*githubfake.RepoSpec) // changes to the compliant repository
	body   string
	want   int
	reason string // a fragment of the 403 reason
}

func runCheckCases(t *testing.T, cases []checkCase) {
	t.Helper()
	e := newEnv(t, func(c *policy.Config) { c.CacheTTL = -1 })
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := compliant()
			if tc.repo != nil {
				tc.repo(&spec)
			}
			e.gh.SetRepo(spec)
			e.setPolicy(t, only(tc.rule))
			code, body := e.checkRun(t, "/pull_request/check-run", tc.body)
			if code != tc.want || (tc.want == http.StatusForbidden && !strings.Contains(body, tc.reason)) {
				t.Fatalf("got %d %q, want %d containing %q", code, body, tc.want, tc.reason)
			}
			if tc.want == http.StatusNoContent {
				return
			}
			// The same repository passes with the rule turned off.
			e.setPolicy(t, disabledAll)
			if code, body := e.checkRun(t, "/pull_request/check-run", tc.body); code != http.StatusNoContent {
				t.Fatalf("with %s off: got %d %q, want 204", tc.rule, code, body)
			}
		})
	}
}

var (
	sameRepoPR   = prBody("acme/widgets", "acme/widgets", "main", "topic", sha)
	forkPR       = prBody("acme/widgets", "mallory/widgets", "main", "feature", sha)
	writerForkPR = prBody("acme/widgets", "dave/widgets", "main", "fix", sha)
)

func TestTargetBranchProtection(t *testing.T) {
	const rule = "target_branch_protection"
	runCheckCases(t, []checkCase{
		{name: "a default branch requiring reviews passes", rule: rule, body: sameRepoPR, want: 204},
		{name: "stale reviews kept and admins not enforced still pass", rule: rule, body: forkPR, want: 204, repo: func(s *githubfake.RepoSpec) {
			s.Branches["main"] = &githubfake.BranchProtection{RequiredReviews: true, DismissStaleReviews: false, EnforceAdmins: false}
		}},
		{name: "a default branch protected without required reviews fails", rule: rule, body: sameRepoPR, want: 403, reason: "must require pull request reviews", repo: func(s *githubfake.RepoSpec) {
			s.Branches["main"] = &githubfake.BranchProtection{EnforceAdmins: true}
		}},
		{name: "a user allowed to bypass reviews fails", rule: rule, body: sameRepoPR, want: 403, reason: "bypass", repo: func(s *githubfake.RepoSpec) {
			s.Branches["main"] = &githubfake.BranchProtection{RequiredReviews: true, BypassUsers: []string{"dave"}}
		}},
		{name: "a team allowed to bypass reviews fails", rule: rule, body: forkPR, want: 403, reason: "bypass", repo: func(s *githubfake.RepoSpec) {
			s.Branches["main"] = &githubfake.BranchProtection{RequiredReviews: true, BypassTeams: []string{"core"}}
		}},
		{name: "an app allowed to bypass reviews fails", rule: rule, body: forkPR, want: 403, reason: "bypass", repo: func(s *githubfake.RepoSpec) {
			s.Branches["main"] = &githubfake.BranchProtection{RequiredReviews: true, BypassApps: []string{"bot"}}
		}},
		{name: "a protected non-default branch without reviews passes a same-repository PR", rule: rule, want: 204,
			body: prBody("acme/widgets", "acme/widgets", "release", "topic", sha)},
		{name: "a protected non-default branch without reviews fails a fork PR", rule: rule, want: 403, reason: "must require pull request reviews",
			body: prBody("acme/widgets", "mallory/widgets", "release", "feature", sha)},
		{name: "an unprotected branch fails", rule: rule, want: 403, reason: "is not protected",
			body: prBody("acme/widgets", "acme/widgets", "dev", "topic", sha)},
		{name: "a branch protected only by rulesets fails saying so", rule: rule, want: 403, reason: "rulesets, which were found instead of branch protection",
			body: prBody("acme/widgets", "acme/widgets", "dev", "topic", sha), repo: func(s *githubfake.RepoSpec) {
				s.Rulesets = map[string][]string{"dev": {"pull_request", "deletion"}}
			}},
		{name: "a missing target branch fails", rule: rule, want: 403, reason: "does not exist",
			body: prBody("acme/widgets", "acme/widgets", "gone", "topic", sha)},
		{name: "a branch name with a slash is looked up", rule: rule, want: 204,
			body: prBody("acme/widgets", "acme/widgets", "release/v1", "topic", sha), repo: func(s *githubfake.RepoSpec) {
				s.Branches["release/v1"] = &githubfake.BranchProtection{}
			}},
	})
}

func TestCollaborators(t *testing.T) {
	const rule = "collaborators"
	runCheckCases(t, []checkCase{
		{name: "an outside collaborator with read passes", rule: rule, body: sameRepoPR, want: 204},
		{name: "no outside collaborator passes", rule: rule, body: sameRepoPR, want: 204, repo: func(s *githubfake.RepoSpec) {
			s.OutsideCollaborators = nil
		}},
		{name: "an outside collaborator with admin fails", rule: rule, body: sameRepoPR, want: 403, reason: "zed (admin)", repo: func(s *githubfake.RepoSpec) {
			s.OutsideCollaborators["zed"] = "admin"
		}},
		{name: "an outside collaborator with triage fails", rule: rule, body: sameRepoPR, want: 403, reason: "zed (triage)", repo: func(s *githubfake.RepoSpec) {
			s.OutsideCollaborators["zed"] = "triage"
		}},
		{name: "an outside collaborator with a custom role fails", rule: rule, body: sameRepoPR, want: 403, reason: "zed (auditor)", repo: func(s *githubfake.RepoSpec) {
			s.OutsideCollaborators["zed"] = "auditor"
		}},
		{name: "a writer among many readers is found on a later page", rule: rule, body: sameRepoPR, want: 403, reason: "zzz (write)", repo: func(s *githubfake.RepoSpec) {
			for i := range 150 {
				s.OutsideCollaborators["reader"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "read"
			}
			s.OutsideCollaborators["zzz"] = "write"
		}},
	})
}

func TestDisallowFork(t *testing.T) {
	const rule = "disallow_fork"
	runCheckCases(t, []checkCase{
		{name: "a same-repository PR passes", rule: rule, body: sameRepoPR, want: 204},
		{name: "a fork from a writer passes", rule: rule, body: writerForkPR, want: 204},
		{name: "a fork from a user without write fails", rule: rule, body: forkPR, want: 403, reason: "mallory/widgets"},
	})
}

func TestDisallowForkDefaultFollowsConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		on   bool
		want int
	}{
		{"off by default, an authorized fork PR passes", false, 204},
		{"on with default_disallow_fork, the same PR fails", true, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *policy.Config) { c.DefaultDisallowFork = tc.on })
			spec := compliant()
			spec.PullRequests[0].Comments = []githubfake.Comment{{User: "dave", Body: "/ephemera run-workflows " + sha}}
			e.gh.SetRepo(spec)
			if code, body := e.checkRun(t, "/pull_request/check-run", forkPR); code != tc.want {
				t.Fatalf("got %d %q, want %d", code, body, tc.want)
			}
		})
	}
}

func TestExecuteJob(t *testing.T) {
	const rule = "execute_job"
	comment := func(user, body string) func(*githubfake.RepoSpec) {
		return func(s *githubfake.RepoSpec) {
			s.PullRequests[0].Comments = []githubfake.Comment{{User: "erin", Body: "looks good"}, {User: user, Body: body}}
		}
	}
	runCheckCases(t, []checkCase{
		{name: "a same-repository PR passes", rule: rule, body: sameRepoPR, want: 204},
		{name: "a fork from a writer passes", rule: rule, body: writerForkPR, want: 204},
		{name: "a fork with an authorization from a writer passes", rule: rule, body: forkPR, want: 204,
			repo: comment("dave", "Thanks!\n/ephemera run-workflows "+sha+"\n")},
		{name: "an authorization from a maintainer passes", rule: rule, body: forkPR, want: 204,
			repo: comment("mia", "  /ephemera run-workflows "+sha+"  ")},
		{name: "an authorization with CRLF line endings passes", rule: rule, body: forkPR, want: 204,
			repo: comment("acme", "ok\r\n/ephemera run-workflows "+sha+"\r\nbye")},
		{name: "a quoted authorization fails", rule: rule, body: forkPR, want: 403, reason: "must comment",
			repo: comment("dave", "  > /ephemera run-workflows "+sha)},
		{name: "an authorization for another commit fails", rule: rule, body: forkPR, want: 403, reason: "must comment",
			repo: comment("dave", "/ephemera run-workflows ffffffffffffffffffffffffffffffffffffffff")},
		{name: "an authorization inside a longer line fails", rule: rule, body: forkPR, want: 403, reason: "must comment",
			repo: comment("dave", "please /ephemera run-workflows "+sha)},
		{name: "an authorization from a reader fails", rule: rule, body: forkPR, want: 403, reason: "must comment",
			repo: comment("erin", "/ephemera run-workflows "+sha)},
		{name: "an authorization from the fork's owner fails", rule: rule, body: forkPR, want: 403, reason: "must comment",
			repo: comment("mallory", "/ephemera run-workflows "+sha)},
		{name: "a fork PR without comment fails", rule: rule, body: forkPR, want: 403, reason: `"/ephemera run-workflows ` + sha + `"`},
		{name: "a fork branch without an open PR fails", rule: rule, body: prBody("acme/widgets", "mallory/widgets", "main", "other", sha), want: 403, reason: "No open pull request"},
	})
}

func TestExecuteJobPhraseIsConfigurable(t *testing.T) {
	e := newEnv(t, func(c *policy.Config) { c.AuthorizationPhrase = "/ok-to-test" })
	spec := compliant()
	spec.PullRequests[0].Comments = []githubfake.Comment{{User: "dave", Body: "/ok-to-test " + sha}}
	e.gh.SetRepo(spec)
	if code, body := e.checkRun(t, "/pull_request/check-run", forkPR); code != http.StatusNoContent {
		t.Fatalf("got %d %q, want 204", code, body)
	}
}

func TestExternalContributor(t *testing.T) {
	const rule = "external_contributor"
	assoc := func(a string, private bool) func(*githubfake.RepoSpec) {
		return func(s *githubfake.RepoSpec) { s.PullRequests[0].AuthorAssociation, s.Private = a, private }
	}
	runCheckCases(t, []checkCase{
		{name: "a member passes", rule: rule, body: sameRepoPR, want: 204},
		{name: "a collaborator passes", rule: rule, body: writerForkPR, want: 204},
		{name: "an owner passes", rule: rule, body: forkPR, want: 204, repo: assoc("OWNER", false)},
		{name: "a contributor to a private repository passes", rule: rule, body: forkPR, want: 204, repo: assoc("CONTRIBUTOR", true)},
		{name: "a contributor to a public repository fails", rule: rule, body: forkPR, want: 403, reason: "external contributor (CONTRIBUTOR)", repo: assoc("CONTRIBUTOR", false)},
		{name: "a first-time contributor fails", rule: rule, body: forkPR, want: 403, reason: "FIRST_TIME_CONTRIBUTOR", repo: assoc("FIRST_TIME_CONTRIBUTOR", true)},
	})
}

func TestExternalContributorIsOffByDefault(t *testing.T) {
	e := newEnv(t)
	spec := compliant()
	spec.PullRequests[2].AuthorAssociation = "NONE"
	e.gh.SetRepo(spec)
	if code, body := e.checkRun(t, "/pull_request/check-run", sameRepoPR); code != http.StatusNoContent {
		t.Fatalf("got %d %q, want 204", code, body)
	}
}

func TestOtherEventsRunCollaboratorsOfTheirSection(t *testing.T) {
	e := newEnv(t, func(c *policy.Config) { c.CacheTTL = -1 })
	spec := compliant()
	spec.OutsideCollaborators["zed"] = "write"
	spec.Branches["main"] = nil // the branch rule does not apply to these events
	e.gh.SetRepo(spec)
	body := `{"repository_name":"acme/widgets"}`
	for _, path := range []string{"/push/check-run", "/default/check-run", "/schedule/check-run", "/workflow_dispatch/check-run"} {
		if code, _ := e.checkRun(t, path, body); code != http.StatusForbidden {
			t.Errorf("%s: got %d, want 403", path, code)
		}
	}
	e.setPolicy(t, `{"push":{"collaborators":{"enabled":false}}}`)
	for path, want := range map[string]int{"/push/check-run": 204, "/default/check-run": 204, "/schedule/check-run": 403, "/workflow_dispatch/check-run": 403} {
		if code, _ := e.checkRun(t, path, body); code != want {
			t.Errorf("push section off, %s: got %d, want %d", path, code, want)
		}
	}
	e.setPolicy(t, `{"schedule":{"collaborators":{"enabled":false}},"workflow_dispatch":{"collaborators":{"enabled":false}}}`)
	for path, want := range map[string]int{"/push/check-run": 403, "/schedule/check-run": 204, "/workflow_dispatch/check-run": 204} {
		if code, _ := e.checkRun(t, path, body); code != want {
			t.Errorf("schedule and dispatch off, %s: got %d, want %d", path, code, want)
		}
	}
}
