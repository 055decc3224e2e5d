package serve

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"
)

// TestHealthAnd404RevealNothing: a listener that is not ready, and a path
// no route serves, answer without naming streams, buckets, paths or
// versions (the reason goes to the log).
func TestHealthAnd404RevealNothing(t *testing.T) {
	var logged strings.Builder
	r := chi.NewRouter()
	withHealth(r, func(context.Context) error {
		return errors.New("stream EPHEMERA_JOBS: nats: bucket KV_ephemera-tokens under /var/lib/ephemera/nats (nats-server v2.15.2)")
	}, zerolog.New(&logged))
	r.Handle("/hooks/github-7f3k", http.NotFoundHandler())
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	for path, want := range map[string]struct {
		code int
		body string
	}{
		"/readyz":  {http.StatusServiceUnavailable, `{"status":"not ready"}`},
		"/webhook": {http.StatusNotFound, `{"error":"not found"}`},
		"/":        {http.StatusNotFound, `{"error":"not found"}`},
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want.code || strings.TrimSpace(string(b)) != want.body {
			t.Errorf("GET %s = %d %s, want %d %s", path, resp.StatusCode, b, want.code, want.body)
		}
		if h := resp.Header.Get("Server"); h != "" {
			t.Errorf("GET %s: Server header %q", path, h)
		}
	}
	if !strings.Contains(logged.String(), "EPHEMERA_JOBS") {
		t.Errorf("the reason for not being ready was not logged: %q", logged.String())
	}
}
