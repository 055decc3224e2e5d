package scaler_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
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

// Idle runners and their one-time tokens, end to end with short TTLs: the
// scaler mints each runner's token in the real token store (JetStream
// KV), the policy service consumes it at the pre-job check, over HTTP, as
// the runner's hook does, against the GitHub stand-in.

// tokenTTL is the tokens' TTL in these tests: a dozen reconcile passes.
const tokenTTL = 3 * time.Second

// tokenEnv is an env whose scaler mints in a real token store, with a
// policy service that consumes them.
type tokenEnv struct {
	*env
	store  *tokens.Store
	policy string // the policy service's URL
}

func newTokenEnv(t *testing.T, p config.Pool) *tokenEnv {
	t.Helper()
	e := newEnv(t, p)
	store, err := tokens.New(t.Context(), tokens.Config{Bus: e.bus, TTL: tokenTTL})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := policy.New(t.Context(), policy.Config{
		AdminToken: config.NewSecret("admin-secret-token-0123456789abcdef"), Tokens: store, Bus: e.bus,
		GitHub: e.clients, Registerer: prometheus.NewRegistry(), Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	e.fake.SetRepo(githubfake.RepoSpec{FullName: "acme/widgets", Branches: map[string]*githubfake.BranchProtection{"main": {RequiredReviews: true}}})
	e.tokens = nil
	return &tokenEnv{env: e, store: store, policy: srv.URL}
}

func (e *tokenEnv) config(mods ...func(*scaler.Config)) scaler.Config {
	return e.env.config(append([]func(*scaler.Config){func(c *scaler.Config) {
		c.Tokens, c.TokenTTL, c.MaxRunnerAge = e.store, tokenTTL, time.Hour
	}}, mods...)...)
}

// preJob runs the pre-job check of a push to acme/widgets with token, as
// the runner's hook does, and returns the policy service's status.
func (e *tokenEnv) preJob(t *testing.T, token string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.policy+"/push/check-run", strings.NewReader(`{"repository_name":"acme/widgets"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// tokenExpiry reads when the token store says token expires; zero when
// it holds no such token (consumed, or forgotten after its TTL).
func (e *tokenEnv) tokenExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	kv, err := e.bus.JS.KeyValue(context.Background(), tokens.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	en, err := kv.Get(context.Background(), tokens.ID(token))
	if err != nil {
		return time.Time{}
	}
	var r struct {
		Expires time.Time `json:"expires"`
	}
	if err := json.Unmarshal(en.Value(), &r); err != nil {
		t.Fatal(err)
	}
	return r.Expires
}

// idleRunner waits for an idle runner of the stand-in other than those
// named in not, and returns its instance spec (its token included).
func (e *tokenEnv) idleRunner(t *testing.T, not ...string) scaler.InstanceSpec {
	t.Helper()
	var spec scaler.InstanceSpec
	waitfor.True(t, 20*time.Second, "an idle runner", func() bool {
		for _, r := range e.fake.Runners() {
			if r.Online && !r.Busy && !slices.Contains(not, r.Name) {
				for _, s := range e.prov.Specs() {
					if s.Name == r.Name {
						spec = s
						return true
					}
				}
			}
		}
		return false
	})
	return spec
}

func TestIdleRunnerPassesItsPreJobCheckLongAfterItsTokensFirstTTL(t *testing.T) {
	e := newTokenEnv(t, pool("small", 1, 2))
	r := e.start(e.config())
	spec := e.idleRunner(t)
	minted := time.Now()
	// The scaler slides the expiry while the runner waits: wait until it
	// did so past twice the TTL (so the original TTL has long passed).
	waitfor.True(t, 30*time.Second, "the idle runner's token extended past twice its TTL", func() bool {
		return e.tokenExpiry(t, spec.PolicyToken).After(minted.Add(2 * tokenTTL))
	})
	if time.Since(minted) < tokenTTL {
		t.Fatalf("only %s since the token was minted; want more than its TTL %s", time.Since(minted), tokenTTL)
	}
	if n := e.prov.Creates(); n != 1 {
		t.Fatalf("%d runners created; want the first one kept, not replaced", n)
	}
	if code := e.preJob(t, spec.PolicyToken); code != http.StatusNoContent {
		t.Fatalf("pre-job check with the token of a runner idle for %s (TTL %s) = %d, want 204", time.Since(minted), tokenTTL, code)
	}
	if code := e.preJob(t, spec.PolicyToken); code == http.StatusNoContent {
		t.Fatal("a second pre-job check with the same token passed; want it refused: the token is one-time")
	}
	if n := metricSum(t, r.reg, "ephemera_reconcile_actions_total", map[string]string{"action": "extend_token"}); n < 2 {
		t.Errorf("ephemera_reconcile_actions_total{action=extend_token} = %v, want at least 2", n)
	}
}

func TestIdleRunnerOlderThanMaxAgeIsReplacedDeregisteredFirst(t *testing.T) {
	e := newTokenEnv(t, pool("small", 1, 2))
	var mu sync.Mutex
	registeredAtDelete := map[string]bool{}
	e.prov.OnDeleted = func(name string) {
		_, onGH := e.fake.RunnerByName(name)
		mu.Lock()
		registeredAtDelete[name] = onGH
		mu.Unlock()
		_ = e.fake.KillRunner(name)
	}
	r := e.start(e.config(func(c *scaler.Config) { c.MaxRunnerAge = 2 * time.Second }))
	first := e.idleRunner(t)
	next := e.idleRunner(t, first.Name)
	mu.Lock()
	onGH, deleted := registeredAtDelete[first.Name]
	mu.Unlock()
	if !deleted {
		t.Fatalf("%s was replaced by %s but its instance was not deleted", first.Name, next.Name)
	}
	if onGH {
		t.Errorf("%s's instance was deleted while it was still registered on GitHub; want it deregistered first", first.Name)
	}
	if n := metricSum(t, r.reg, "ephemera_reconcile_actions_total", map[string]string{"action": "max_age"}); n < 1 {
		t.Errorf("ephemera_reconcile_actions_total{action=max_age} = %v, want at least 1", n)
	}
	if code := e.preJob(t, next.PolicyToken); code != http.StatusNoContent {
		t.Errorf("pre-job check with the replacement runner's token = %d, want 204", code)
	}
}

func TestTokenOfARunnerThatTookAJobIsNotExtended(t *testing.T) {
	p := pool("small", 1, 3)
	e := newTokenEnv(t, p)
	e.start(e.config())
	busy := e.idleRunner(t)
	e.queue(1, p, time.Minute)
	waitfor.True(t, 20*time.Second, "the idle runner to take the job", func() bool {
		rn, ok := e.fake.RunnerByName(busy.Name)
		return ok && rn.Busy
	})
	tookJob := time.Now()
	// Other runners wait idle meanwhile (surplus ones are trimmed); once
	// one's token was extended past the busy runner's possible last
	// extension plus a TTL, the busy runner's token has expired, unless
	// it was extended.
	var other scaler.InstanceSpec
	waitfor.True(t, 30*time.Second, "an idle runner's token extended well past the busy one's", func() bool {
		for _, r := range e.fake.Runners() {
			if !r.Online || r.Busy || r.Name == busy.Name {
				continue
			}
			for _, s := range e.prov.Specs() {
				if s.Name == r.Name && e.tokenExpiry(t, s.PolicyToken).After(tookJob.Add(2*tokenTTL+time.Second)) {
					other = s
					return true
				}
			}
		}
		return false
	})
	if rn, ok := e.fake.RunnerByName(busy.Name); !ok || !rn.Busy {
		t.Fatalf("%s is no longer busy (%+v); the job was to last a minute", busy.Name, rn)
	}
	if code := e.preJob(t, busy.PolicyToken); code == http.StatusNoContent {
		t.Errorf("pre-job check with the token of %s, busy for %s (TTL %s), passed; want it refused: a busy runner's token is not extended", busy.Name, time.Since(tookJob), tokenTTL)
	}
	if code := e.preJob(t, other.PolicyToken); code != http.StatusNoContent {
		t.Errorf("pre-job check with the idle runner's token = %d, want 204", code)
	}
}
