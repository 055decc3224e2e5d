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

// TestOwnerAndNameAreOneSegmentEach: a repository name with characters
// that mean something in a URL reaches GitHub as one path segment, not as
// a query or another path.
func TestOwnerAndNameAreOneSegmentEach(t *testing.T) {
	e := newEnv(t, func(c *policy.Config) { c.CacheTTL = -1 })
	e.gh.ResetCalls()
	code, _ := e.checkRun(t, "/push/check-run", `{"repository_name":"acme/wid?gets#x"}`)
	if code != http.StatusInternalServerError {
		t.Errorf("check-run on a repository GitHub does not know: %d, want 500", code)
	}
	var paths []string
	for _, c := range e.gh.Calls() {
		paths = append(paths, c.Path)
	}
	want := "/repos/acme/wid?gets#x/collaborators"
	found := false
	for _, p := range paths {
		found = found || p == want
	}
	if !found {
		t.Errorf("GitHub saw paths %q, want %q among them", paths, want)
	}
}
