package policy_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/tokens"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
)

// replica is one more policy service on the given bus, with its own
// connection, token store and GitHub cache.
func replica(t *testing.T, gh *githubfake.Server, b *bus.Bus, now func() time.Time) *httptest.Server {
	t.Helper()
	ts, err := tokens.New(t.Context(), tokens.Config{Bus: b, TTL: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	svc, _ := newService(t, gh, b, ts)
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func TestTwoReplicasAcceptATokenExactlyOnce(t *testing.T) {
	e := newEnv(t)
	e.gh.SetRepo(compliant())
	other := replica(t, e.gh, bustest.Connect(t, e.bus.Conn.ConnectedUrl()), nil)
	for round := range 10 {
		tok := e.mint(t)
		var passed, refused atomic.Int32
		var wg sync.WaitGroup
		for i := range 6 {
			base := e.srv.URL
			if i%2 == 1 {
				base = other.URL
			}
			wg.Go(func() {
				switch code, _ := do(t, base, http.MethodPost, "/push/check-run", tok, "application/json", `{"repository_name":"acme/widgets"}`); code {
				case http.StatusNoContent:
					passed.Add(1)
				case http.StatusUnauthorized:
					refused.Add(1)
				default:
					t.Errorf("unexpected status %d", code)
				}
			})
		}
		wg.Wait()
		if passed.Load() != 1 || refused.Load() != 5 {
			t.Fatalf("round %d: %d accepted, %d refused; want 1 and 5", round, passed.Load(), refused.Load())
		}
	}
}

func TestATokenMintedBeforeARestartWorksAfterIt(t *testing.T) {
	gh, err := githubfake.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gh.Close)
	gh.SetRepo(compliant())
	dir := t.TempDir()
	srv := bustest.RunServer(t, dir)
	b, err := bus.Open(t.Context(), bus.Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	before := replica(t, gh, b, nil)
	code, tok := do(t, before.URL, http.MethodGet, "/one-time-token?runner=eph-small-1", adminToken, "", "")
	if code != http.StatusOK {
		t.Fatalf("mint: %d", code)
	}
	before.Close()
	b.Close()
	srv.Shutdown()
	srv.WaitForShutdown()

	srv2 := bustest.RunServer(t, dir)
	after := replica(t, gh, bustest.Connect(t, srv2.ClientURL()), nil)
	if code, body := do(t, after.URL, http.MethodPost, "/push/check-run", tok, "application/json", `{"repository_name":"acme/widgets"}`); code != http.StatusNoContent {
		t.Fatalf("after the restart: %d %q, want 204", code, body)
	}
}

func TestAnExpiredTokenIsRefused(t *testing.T) {
	e := newEnv(t)
	e.gh.SetRepo(compliant())
	later := replica(t, e.gh, e.bus, func() time.Time { return time.Now().Add(time.Hour + time.Minute) })
	tok := e.mint(t)
	if code, _ := do(t, later.URL, http.MethodGet, "/auth-health", tok, "", ""); code != http.StatusUnauthorized {
		t.Fatalf("expired token: %d, want 401", code)
	}
}

func TestReplicasShareThePolicyDocument(t *testing.T) {
	e := newEnv(t)
	e.gh.SetRepo(compliant())
	other := replica(t, e.gh, bustest.Connect(t, e.bus.Conn.ConnectedUrl()), nil)
	e.setPolicy(t, `{"push":{"collaborators":{"enabled":false}}}`)
	var body string
	if err := waitfor.Within(5*time.Second, func() bool {
		_, body = do(t, other.URL, http.MethodGet, "/policy", adminToken, "", "")
		return strings.Contains(body, `"push":{"collaborators":{"enabled":false}}`)
	}); err != nil {
		t.Fatalf("the other replica still answers %s", body)
	}
}
