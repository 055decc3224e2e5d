package policy_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/ghclient"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/tokens"
	"github.com/ephemera-ci/ephemera/policy"
)

// TestAppWithoutInstallationFindsTheRepositoryInstallationOnce runs the
// checks as a GitHub App with no configured installation: the service
// looks the repository's installation up, once, and reads as it.
func TestAppWithoutInstallationFindsTheRepositoryInstallationOnce(t *testing.T) {
	gh, err := githubfake.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gh.Close)
	spec := compliant()
	spec.InstallationID = 42
	gh.SetRepo(spec)

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	reg := prometheus.NewRegistry()
	clients, err := ghclient.New(ghclient.Config{
		APIURL: gh.URL, AppID: 1, PrivateKey: config.NewSecret(string(pemKey)), Registerer: reg, Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := bustest.Open(t)
	ts, err := tokens.New(t.Context(), tokens.Config{Bus: b, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := policy.New(t.Context(), policy.Config{
		AdminToken: config.NewSecret(adminToken), Tokens: ts, Bus: b, GitHub: clients,
		CacheTTL: -1, Registerer: reg, Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)

	for range 2 {
		tok, err := ts.Mint(t.Context(), "eph-test")
		if err != nil {
			t.Fatal(err)
		}
		if code, body := do(t, srv.URL, http.MethodPost, "/pull_request/check-run", tok, "application/json", writerForkPR); code != http.StatusNoContent {
			t.Fatalf("check-run: %d %q", code, body)
		}
	}
	if n := gh.CountCalls(http.MethodGet, "/repos/acme/widgets/installation"); n != 1 {
		t.Errorf("installation looked up %d times, want 1", n)
	}
	if n := gh.CountCalls(http.MethodPost, "/app/installations/42/access_tokens"); n < 1 {
		t.Errorf("no installation token for installation 42 was requested")
	}
	if code, _ := do(t, srv.URL, http.MethodGet, "/health", "", "", ""); code != http.StatusNoContent {
		t.Errorf("health as an App: %d, want 204", code)
	}
}
