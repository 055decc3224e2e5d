package policy_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/syncbuf"
	"github.com/ephemera-ci/ephemera/policy"
)

var runnerEndpoints = []struct{ method, path, body string }{
	{http.MethodPost, "/pull_request/check-run", prBody("acme/widgets", "acme/widgets", "main", "topic", sha)},
	{http.MethodPost, "/check-run", prBody("acme/widgets", "acme/widgets", "main", "topic", sha)},
	{http.MethodPost, "/workflow_dispatch/check-run", `{"repository_name":"acme/widgets"}`},
	{http.MethodPost, "/push/check-run", `{"repository_name":"acme/widgets"}`},
	{http.MethodPost, "/schedule/check-run", `{"repository_name":"acme/widgets"}`},
	{http.MethodPost, "/default/check-run", `{"repository_name":"acme/widgets"}`},
	{http.MethodGet, "/auth-health", ""},
}

func TestRunnerEndpointsPassACompliantRepositoryOnce(t *testing.T) {
	e := newEnv(t)
	e.gh.SetRepo(compliant())
	for _, ep := range runnerEndpoints {
		t.Run(ep.method+" "+ep.path+" answers 204, then 401 to the same token", func(t *testing.T) {
			tok := e.mint(t)
			if code, body := do(t, e.srv.URL, ep.method, ep.path, tok, "application/json", ep.body); code != http.StatusNoContent {
				t.Fatalf("first use = %d %q, want 204", code, body)
			}
			if code, _ := do(t, e.srv.URL, ep.method, ep.path, tok, "application/json", ep.body); code != http.StatusUnauthorized {
				t.Fatalf("second use = %d, want 401", code)
			}
		})
	}
}

func TestRunnerEndpointsRefuseBadCredentials(t *testing.T) {
	e := newEnv(t)
	e.gh.SetRepo(compliant())
	for _, ep := range runnerEndpoints {
		for _, tc := range []struct {
			name  string
			token string
			want  int
		}{
			{"no token is 401", "", http.StatusUnauthorized},
			{"an unknown token is 401", strings.Repeat("ab", 32), http.StatusUnauthorized},
			{"a token of the wrong shape is 401", "not-a-token", http.StatusUnauthorized},
			{"a prefix of the admin token is 401", adminToken[:len(adminToken)-1], http.StatusUnauthorized},
			{"the admin token is 403", adminToken, http.StatusForbidden},
		} {
			t.Run(ep.path+": "+tc.name, func(t *testing.T) {
				code, _ := do(t, e.srv.URL, ep.method, ep.path, tc.token, "application/json", ep.body)
				if code != tc.want {
					t.Fatalf("got %d, want %d", code, tc.want)
				}
			})
		}
	}
}

func TestCheckRunValidatesTheBodyAndSpendsTheTokenAnyway(t *testing.T) {
	e := newEnv(t)
	e.gh.SetRepo(compliant())
	for _, tc := range []struct {
		name, path, contentType, body string
		wantCode                      int
		wantBody                      string
	}{
		{"a body sent as text/plain is 415", "/push/check-run", "text/plain", `{"repository_name":"acme/widgets"}`, 415, "must be JSON"},
		{"a body without content type is 415", "/push/check-run", "", `{"repository_name":"acme/widgets"}`, 415, "must be JSON"},
		{"malformed JSON is 400", "/push/check-run", "application/json", `{"repository_name":`, 400, "not a JSON object"},
		{"a JSON array is 400", "/push/check-run", "application/json", `[]`, 400, "not a JSON object"},
		{"a missing repository is 400 naming it", "/push/check-run", "application/json", `{}`, 400, "Invalid fields: repository_name (missing)."},
		{"an empty repository is 400 naming it", "/schedule/check-run", "application/json", `{"repository_name":" "}`, 400, "Invalid fields: repository_name (empty)."},
		{"a repository that is a number is 400 naming it", "/workflow_dispatch/check-run", "application/json", `{"repository_name":5}`, 400, "Invalid fields: repository_name (not a string)."},
		{"a repository without owner is 400 naming it", "/default/check-run", "application/json", `{"repository_name":"widgets"}`, 400, "Invalid fields: repository_name (not owner/name)."},
		{
			"a pull request body names every field in fault", "/pull_request/check-run", "application/json",
			`{"repository_name":"acme/widgets","source_repository_name":"","target_branch_name":7,"commit_sha":null}`, 400,
			"Invalid fields: source_repository_name (empty), target_branch_name (not a string), source_branch_name (missing), commit_sha (not a string).",
		},
		{"charset parameter is accepted", "/push/check-run", "application/json; charset=utf-8", `{"repository_name":"acme/widgets"}`, 204, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := e.mint(t)
			code, body := do(t, e.srv.URL, http.MethodPost, tc.path, tok, tc.contentType, tc.body)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", code, body, tc.wantCode, tc.wantBody)
			}
			if code, _ := do(t, e.srv.URL, http.MethodPost, tc.path, tok, "application/json", `{"repository_name":"acme/widgets"}`); code != http.StatusUnauthorized {
				t.Fatalf("the token was not spent: second use = %d, want 401", code)
			}
		})
	}
}

func TestAlwaysFailRefusesEveryJob(t *testing.T) {
	e := newEnv(t)
	code, body := do(t, e.srv.URL, http.MethodPost, "/always-fail/check-run", e.mint(t), "", "")
	if code != http.StatusForbidden || body == "" {
		t.Fatalf("got %d %q, want 403 with a reason", code, body)
	}
	if code, _ := do(t, e.srv.URL, http.MethodPost, "/always-fail/check-run", "", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("without a token: got %d, want 401", code)
	}
}

func TestOneTimeTokenEndpoint(t *testing.T) {
	e := newEnv(t)
	e.gh.SetRepo(compliant())
	t.Run("the admin token gets a fresh 64-hex token that works once", func(t *testing.T) {
		code, tok := do(t, e.srv.URL, http.MethodGet, "/one-time-token", adminToken, "", "")
		if code != http.StatusOK || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(tok) {
			t.Fatalf("got %d %q, want 200 and 64 hex characters", code, tok)
		}
		if code, _ := do(t, e.srv.URL, http.MethodGet, "/auth-health", tok, "", ""); code != http.StatusNoContent {
			t.Fatalf("using the token: %d, want 204", code)
		}
	})
	for _, tc := range []struct {
		name  string
		token string
		want  int
	}{
		{"no token is 401", "", http.StatusUnauthorized},
		{"an unknown token is 401", strings.Repeat("cd", 32), http.StatusUnauthorized},
		{"a one-time token is 403", "mint", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token
			if tok == "mint" {
				tok = e.mint(t)
			}
			if code, _ := do(t, e.srv.URL, http.MethodGet, "/one-time-token", tok, "", ""); code != tc.want {
				t.Fatalf("got %d, want %d", code, tc.want)
			}
			if tc.token == "mint" {
				if code, _ := do(t, e.srv.URL, http.MethodGet, "/auth-health", tok, "", ""); code != http.StatusUnauthorized {
					t.Fatalf("the one-time token was not spent on the operator endpoint: %d", code)
				}
			}
		})
	}
}

func TestPolicyEndpoint(t *testing.T) {
	e := newEnv(t)
	t.Run("GET answers the default document, every rule written out", func(t *testing.T) {
		code, body := do(t, e.srv.URL, http.MethodGet, "/policy", adminToken, "", "")
		if code != http.StatusOK {
			t.Fatalf("got %d", code)
		}
		want := map[string]map[string]map[string]bool{
			"pull_request": {
				"target_branch_protection": {"enabled": true}, "collaborators": {"enabled": true},
				"disallow_fork": {"enabled": false}, "execute_job": {"enabled": true},
				"external_contributor": {"enabled": false},
			},
			"workflow_dispatch": {"collaborators": {"enabled": true}},
			"push":              {"collaborators": {"enabled": true}},
			"schedule":          {"collaborators": {"enabled": true}},
		}
		var got map[string]map[string]map[string]bool
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Fatalf("document (-got +want):\n%s", diff)
		}
	})
	t.Run("POST replaces the document whole", func(t *testing.T) {
		e.setPolicy(t, `{"push":{"collaborators":{"enabled":false}}}`)
		_, body := do(t, e.srv.URL, http.MethodGet, "/policy", adminToken, "", "")
		var got map[string]map[string]map[string]bool
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if got["push"]["collaborators"]["enabled"] || !got["pull_request"]["disallow_fork"]["enabled"] {
			t.Fatalf("got %s; want push.collaborators off and the unmentioned disallow_fork on", body)
		}
	})
	for _, tc := range []struct {
		name, token, contentType, body string
		wantCode                       int
		wantBody                       string
	}{
		{"an unknown section is 400 naming it", adminToken, "application/json", `{"pull":{}}`, 400, `unknown key "pull"`},
		{"an unknown rule is 400 naming it", adminToken, "application/json", `{"push":{"execute_job":{"enabled":true}}}`, 400, `unknown key "push.execute_job"`},
		{"an unknown rule key is 400 naming it", adminToken, "application/json", `{"push":{"collaborators":{"enabled":true,"x":1}}}`, 400, `unknown key "push.collaborators.x"`},
		{"a rule without enabled is 400", adminToken, "application/json", `{"schedule":{"collaborators":{}}}`, 400, "schedule.collaborators.enabled is required"},
		{"a non-boolean enabled is 400", adminToken, "application/json", `{"schedule":{"collaborators":{"enabled":"yes"}}}`, 400, "schedule.collaborators.enabled must be true or false"},
		{"a document that is not an object is 400", adminToken, "application/json", `[1]`, 400, "not a JSON object"},
		{"a document sent as text is 415", adminToken, "text/plain", `{}`, 415, "must be JSON"},
		{"no token is 401", "", "application/json", `{}`, 401, ""},
		{"a one-time token is 403", "mint", "application/json", `{}`, 403, "operator endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token
			if tok == "mint" {
				tok = e.mint(t)
			}
			code, body := do(t, e.srv.URL, http.MethodPost, "/policy", tok, tc.contentType, tc.body)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

func TestHealthFollowsGitHub(t *testing.T) {
	e := newEnv(t)
	if code, _ := do(t, e.srv.URL, http.MethodGet, "/health", "", "", ""); code != http.StatusNoContent {
		t.Fatalf("healthy: got %d, want 204", code)
	}
	e2 := newEnv(t)
	e2.gh.InjectFault(githubfake.Fault{Path: "/rate_limit", Status: http.StatusBadGateway})
	if code, _ := do(t, e2.srv.URL, http.MethodGet, "/health", "", "", ""); code != http.StatusInternalServerError {
		t.Fatalf("GitHub failing: got %d, want 500", code)
	}
}

func TestWrongMethodIs405(t *testing.T) {
	e := newEnv(t)
	if code, _ := do(t, e.srv.URL, http.MethodGet, "/push/check-run", e.mint(t), "", ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("got %d, want 405", code)
	}
}

func TestReadyWhileTheBusIsUp(t *testing.T) {
	e := newEnv(t)
	if err := e.svc.Ready(t.Context()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	e.bus.Conn.Close()
	if err := e.svc.Ready(t.Context()); err == nil {
		t.Fatal("Ready with the bus closed: nil, want an error")
	}
}

// A runner refused for its token fails its job with no other trace in
// ephemera: the refusal is logged, with the path and never the token.
func TestARefusedTokenIsLoggedWithoutTheToken(t *testing.T) {
	var buf syncbuf.Buffer
	e := newEnv(t, func(c *policy.Config) { c.Log = zerolog.New(&buf) })
	tok := strings.Repeat("cd", 32)
	code, _ := do(t, e.srv.URL, http.MethodPost, "/check-run", tok, "application/json", `{}`)
	if code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", code)
	}
	out := buf.String()
	if !strings.Contains(out, "one-time token refused") || !strings.Contains(out, `"path":"/check-run"`) {
		t.Errorf("log %q: want a line saying the token was refused, with its path", out)
	}
	if strings.Contains(out, tok) {
		t.Errorf("the log holds the refused token: %q", out)
	}
}
