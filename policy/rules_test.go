package policy_test

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/ephemera-ci/ephemera/policy"
)

// branchRulesFixture is testdata/branch_rules.json: one rule per
// branch-rule type of GitHub's REST description (@octokit/openapi), with
// and without parameters; gen_branch_rules.py makes it.
type branchRulesFixture struct {
	Source string `json:"source"`
	Rules  []struct {
		Type              string          `json:"type"`
		WithParameters    json.RawMessage `json:"with_parameters"`
		WithoutParameters json.RawMessage `json:"without_parameters"`
	} `json:"rules"`
}

func loadBranchRules(t *testing.T) branchRulesFixture {
	t.Helper()
	b, err := os.ReadFile("testdata/branch_rules.json")
	if err != nil {
		t.Fatal(err)
	}
	var f branchRulesFixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Rules) < 23 {
		t.Fatalf("fixture holds %d rule types, want every one of GitHub's (23 in %s)", len(f.Rules), f.Source)
	}
	return f
}

// TestBranchProtectedOnlyByRulesetsGets403ForEveryRuleType: a pull request
// into release/1.0 (one path segment, escaped), protected only by a
// ruleset with a rule of each type GitHub's REST description lists, with
// and without parameters, gets the 403 that tells the repository what to
// change and names the rule — never a 500 that blames the service, never
// a dropped connection.
func TestBranchProtectedOnlyByRulesetsGets403ForEveryRuleType(t *testing.T) {
	f := loadBranchRules(t)
	e := newEnv(t, func(c *policy.Config) { c.CacheTTL = -1 }) // each case its own answer
	e.setPolicy(t, `{"pull_request":{"target_branch_protection":{"enabled":true},"collaborators":{"enabled":false},"execute_job":{"enabled":false},"disallow_fork":{"enabled":false}}}`)
	const branch = "release/1.0"
	for _, r := range f.Rules {
		for variant, rule := range map[string]json.RawMessage{"with parameters": r.WithParameters, "without parameters": r.WithoutParameters} {
			t.Run(r.Type+" "+variant, func(t *testing.T) {
				spec := compliant()
				spec.Branches[branch] = nil
				spec.RuleAnswers = map[string]json.RawMessage{branch: json.RawMessage("[" + string(rule) + "]")}
				e.gh.SetRepo(spec)
				code, body := e.checkRun(t, "/pull_request/check-run", prBody("acme/widgets", "mallory/widgets", branch, "feature", sha))
				if code != http.StatusForbidden || !strings.Contains(body, "rulesets, which were found instead of branch protection") || !strings.Contains(body, r.Type) {
					t.Errorf("got %d %q, want 403 saying rulesets (%s) were found instead of branch protection", code, body, r.Type)
				}
			})
		}
	}
}

// TestEveryRuleTypeAtOnce: one answer holding every rule type, none with
// parameters, and one rule of a type GitHub may add later.
func TestEveryRuleTypeAtOnce(t *testing.T) {
	f := loadBranchRules(t)
	var rules []string
	for _, r := range f.Rules {
		rules = append(rules, string(r.WithoutParameters))
	}
	rules = append(rules, `{"type":"a_rule_from_the_future","parameters":{"anything":[1,2]}}`, `{"type":{"not":"a string"}}`)
	e := newEnv(t)
	spec := compliant()
	spec.RuleAnswers = map[string]json.RawMessage{"dev": json.RawMessage("[" + strings.Join(rules, ",") + "]")}
	e.gh.SetRepo(spec)
	code, body := e.checkRun(t, "/pull_request/check-run", prBody("acme/widgets", "acme/widgets", "dev", "topic", sha))
	if code != http.StatusForbidden || !strings.Contains(body, "a_rule_from_the_future") || !strings.Contains(body, "unknown") {
		t.Errorf("got %d %q, want 403 naming every rule, unknown ones too", code, body)
	}
}

// TestNamesThatCannotBeGitHubsAre400: a repository or branch name that
// GitHub cannot have is a bad request naming the field, and GitHub is not
// asked (the names would otherwise become GitHub paths).
func TestNamesThatCannotBeGitHubsAre400(t *testing.T) {
	e := newEnv(t, func(c *policy.Config) { c.CacheTTL = -1 })
	for _, tc := range []struct{ name, path, body, field string }{
		{"a repository name with a query", "/push/check-run", `{"repository_name":"acme/wid?gets#x"}`, "repository_name (not owner/name)"},
		{"a repository name with a dot-dot", "/push/check-run", `{"repository_name":"acme/.."}`, "repository_name (not owner/name)"},
		{"an owner with a slash-dot", "/push/check-run", `{"repository_name":"acme%2F../widgets"}`, "repository_name (not owner/name)"},
		{"a target branch climbing up", "/pull_request/check-run", prBody("acme/widgets", "acme/widgets", "../../orgs/acme", "topic", sha), "target_branch_name (not a branch name)"},
		{"a source branch with a control character", "/pull_request/check-run", prBody("acme/widgets", "acme/widgets", "main", `to\u0000pic`, sha), "source_branch_name (not a branch name)"},
		{"a target branch with a space", "/pull_request/check-run", prBody("acme/widgets", "acme/widgets", "ma in", "topic", sha), "target_branch_name (not a branch name)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.gh.ResetCalls()
			code, body := e.checkRun(t, tc.path, tc.body)
			if code != http.StatusBadRequest || !strings.Contains(body, tc.field) {
				t.Errorf("got %d %q, want 400 naming %s", code, body, tc.field)
			}
			if calls := e.gh.Calls(); len(calls) != 0 {
				t.Errorf("GitHub was asked %d times, first %s", len(calls), calls[0].Path)
			}
		})
	}
}
