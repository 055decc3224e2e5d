package policy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestPanicIsAnswered500NotADroppedConnection: a handler that panics (a
// nil dereference deep in a decoder, say) is answered 500 with a reason
// that blames the service — fail closed, and the hook can tell it from a
// network failure.
func TestPanicIsAnswered500NotADroppedConnection(t *testing.T) {
	var nilMap map[string]*struct{ v int }
	h := recoverPanics(zerolog.Nop())(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		_ = nilMap["x"].v
	}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL+"/pull_request/check-run", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("a panicking handler dropped the connection: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "fault of the service") {
		t.Errorf("got %d %q, want 500 blaming the service", resp.StatusCode, body)
	}
}

// TestServiceRoutesRecoverPanics: the service's own router has the
// recovery in front of every route.
func TestServiceRoutesRecoverPanics(t *testing.T) {
	s := &Service{log: zerolog.Nop()}
	h := s.Handler()
	w := httptest.NewRecorder()
	// /health with no health checker set up dereferences nil.
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/health", nil))
	if w.Code != http.StatusInternalServerError {
		t.Errorf("a panicking route answered %d, want 500", w.Code)
	}
}
