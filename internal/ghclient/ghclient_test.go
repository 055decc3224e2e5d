package ghclient

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ephemera-ci/ephemera/internal/config"
)

// recorder is a GitHub stand-in that records the paths and Authorization
// headers it saw and answers what the test tells it to.
type recorder struct {
	mu     sync.Mutex
	paths  []string
	auths  []string
	answer func(w http.ResponseWriter, r *http.Request)
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.paths = append(rc.paths, r.Method+" "+r.URL.Path)
	rc.auths = append(rc.auths, r.Header.Get("Authorization"))
	answer := rc.answer
	rc.mu.Unlock()
	if strings.HasSuffix(r.URL.Path, "/access_tokens") {
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"token":"ghs_installation","expires_at":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`))
		return
	}
	if answer != nil {
		answer(w, r)
		return
	}
	w.Header().Set("X-RateLimit-Remaining", "4999")
	w.Write([]byte(`{"id":1,"name":"r"}`))
}

func serve(t *testing.T, prefix string) (*recorder, string) {
	t.Helper()
	rc := &recorder{}
	mux := http.NewServeMux()
	mux.Handle(prefix, http.StripPrefix(strings.TrimSuffix(prefix, "/"), rc))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return rc, srv.URL + prefix
}

func pemKey(t *testing.T) config.Secret {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return config.NewSecret(string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})))
}

func TestTokenClientUsesTheAPIURLAsItIs(t *testing.T) {
	rc, url := serve(t, "/api/v3/")
	c, err := New(Config{APIURL: url, Token: config.NewSecret("ghp_test")})
	if err != nil {
		t.Fatal(err)
	}
	gc, _ := c.ForInstallation(42) // ignored with a token
	if _, _, err := gc.Actions.GetRunner(context.Background(), "acme", "app", 1); err != nil {
		t.Fatal(err)
	}
	if got, want := rc.paths[0], "GET /repos/acme/app/actions/runners/1"; got != want {
		t.Errorf("path = %q, want %q (under /api/v3/)", got, want)
	}
	if rc.auths[0] != "Bearer ghp_test" {
		t.Errorf("Authorization = %q", rc.auths[0])
	}
	if c.RateRemaining() != 4999 {
		t.Errorf("RateRemaining() = %d, want 4999", c.RateRemaining())
	}
}

func TestAppClientGetsAnInstallationToken(t *testing.T) {
	rc, url := serve(t, "/")
	c, err := New(Config{APIURL: url, AppID: 7, PrivateKey: pemKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ForInstallation(0); !errors.Is(err, ErrNoInstallation) {
		t.Errorf("ForInstallation(0) without a configured id: %v, want ErrNoInstallation", err)
	}
	gc, err := c.ForInstallation(99)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := gc.Actions.GetRunner(context.Background(), "acme", "app", 1); err != nil {
		t.Fatal(err)
	}
	if rc.paths[0] != "POST /app/installations/99/access_tokens" || !strings.HasPrefix(rc.auths[0], "Bearer ey") {
		t.Errorf("first call %q with %q, want the installation token exchange with a JWT", rc.paths[0], rc.auths[0])
	}
	if rc.auths[1] != "token ghs_installation" {
		t.Errorf("API call Authorization = %q, want the installation token", rc.auths[1])
	}
	app, _ := c.App()
	app.Apps.Get(context.Background(), "")
	if got := rc.auths[len(rc.auths)-1]; !strings.HasPrefix(got, "Bearer ey") {
		t.Errorf("App() call Authorization = %q, want a JWT", got)
	}
}

func TestNewRejectsBadCredentials(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no credentials":       {APIURL: "http://127.0.0.1/"},
		"both app and token":   {APIURL: "http://127.0.0.1/", AppID: 1, PrivateKey: config.NewSecret("x"), Token: config.NewSecret("t")},
		"a key that is no PEM": {APIURL: "http://127.0.0.1/", AppID: 1, PrivateKey: config.NewSecret("not a key")},
		"no url":               {Token: config.NewSecret("t")},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		} else if strings.Contains(err.Error(), "not a key") {
			t.Errorf("%s: the error repeats the key: %v", name, err)
		}
	}
}

func TestRequestsAreCountedByOp(t *testing.T) {
	rc, url := serve(t, "/")
	rc.answer = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{}`))
	}
	reg := prometheus.NewRegistry()
	c, _ := New(Config{APIURL: url, Token: config.NewSecret("t"), Registerer: reg})
	gc, _ := c.ForInstallation(0)
	gc.Actions.GetRunner(WithOp(context.Background(), "get_runner"), "acme", "app", 1)
	gc.Actions.RemoveOrganizationRunner(context.Background(), "acme", 5)
	want := `
# HELP ephemera_github_requests_total GitHub API requests by operation and HTTP status code ("error" when no answer came).
# TYPE ephemera_github_requests_total counter
ephemera_github_requests_total{code="404",op="get_runner"} 1
ephemera_github_requests_total{code="404",op="runners"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ephemera_github_requests_total"); err != nil {
		t.Error(err)
	}
}

func TestRateLimitGuardFailsFastUntilRetryAfter(t *testing.T) {
	rc, url := serve(t, "/")
	rc.answer = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"message":"slow down"}`))
	}
	c, _ := New(Config{APIURL: url, Token: config.NewSecret("t")})
	gc, _ := c.ForInstallation(0)
	if _, _, err := gc.Actions.GetRunner(context.Background(), "a", "b", 1); err == nil {
		t.Fatal("a 429 was not an error")
	}
	for range 3 {
		_, _, err := gc.Actions.GetRunner(context.Background(), "a", "b", 1)
		var rl *RateLimitedError
		if !errors.As(err, &rl) || time.Until(rl.Until) < 50*time.Second {
			t.Fatalf("err = %v, want a RateLimitedError about a minute out", err)
		}
	}
	if len(rc.paths) != 1 {
		t.Errorf("GitHub saw %d requests, want 1: the guard must not ask again while told to wait", len(rc.paths))
	}
	if got := testutil.ToFloat64(c.tr.metrics.requests.WithLabelValues("runners", "rate_limited")); got != 3 {
		t.Errorf("rate_limited count = %v, want 3", got)
	}
}
