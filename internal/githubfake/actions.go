package githubfake

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
)

// actionsState is GitHub Actions' side: installation tokens, runners, jobs,
// the broker and webhook deliveries. Everything is guarded by mu; webhook
// sending happens outside it (see webhooks.go).
type actionsState struct {
	mu sync.Mutex

	nextRunnerID int64
	runners      map[int64]*runner // by id
	// runnerOrder is the order runners came online in: the broker offers
	// a job to the runner that has waited longest.
	nextJobID int64
	jobs      map[int64]*job
	queue     []int64 // queued job ids, oldest first

	onExit []func(name string)

	hooks *hookState

	timers []*time.Timer
	closed bool

	// runnerVersion is what the runner downloads list offers; empty:
	// DefaultRunnerVersion.
	runnerVersion string

	// runnerURL is the base URL written into JIT configs; empty: Server.URL.
	runnerURL string
}

func newActionsState() *actionsState {
	return &actionsState{
		nextRunnerID: 100,
		nextJobID:    5000,
		runners:      map[int64]*runner{},
		jobs:         map[int64]*job{},
		hooks:        newHookState(),
	}
}

func (s *Server) actionsRoutes(r chi.Router) {
	r.With(requireAuth).Post("/app/installations/{id}/access_tokens", s.handleAccessToken)
	r.Group(func(r chi.Router) {
		r.Use(requireAuth)
		r.Get("/app/hook/deliveries", s.handleListDeliveries)
		r.Get("/app/hook/deliveries/{id}", s.handleGetDelivery)
		r.Post("/app/hook/deliveries/{id}/attempts", s.handleRedeliver)

		for _, prefix := range []string{"/orgs/{org}", "/repos/{owner}/{repo}"} {
			r.Post(prefix+"/actions/runners/generate-jitconfig", s.handleGenerateJIT)
			r.Get(prefix+"/actions/runners", s.handleListRunners)
			r.Get(prefix+"/actions/runners/downloads", s.handleRunnerDownloads)
			r.Get(prefix+"/actions/runners/{id}", s.handleGetRunner)
			r.Delete(prefix+"/actions/runners/{id}", s.handleDeleteRunner)
		}
		r.Get("/repos/{owner}/{repo}/actions/jobs/{id}", s.handleGetJob)
	})
	s.runnerAPIRoutes(r)
}

func (s *Server) closeActions() {
	a := s.actions
	a.mu.Lock()
	a.closed = true
	for _, t := range a.timers {
		t.Stop()
	}
	a.timers = nil
	a.mu.Unlock()
	a.hooks.close()
}

// requireAuth answers 401 to a request without a bearer (or token) credential,
// as GitHub does; any credential is accepted.
func requireAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		scheme, cred, _ := strings.Cut(h, " ")
		scheme = strings.ToLower(scheme)
		if (scheme != "bearer" && scheme != "token") || strings.TrimSpace(cred) == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Requires authentication"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) handleAccessToken(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
		return
	}
	token := "ghs_" + randomHex(18)
	s.noteInstallationToken(token, id)
	writeJSON(w, http.StatusCreated, map[string]any{
		"token":      token,
		"expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
	})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func pathID(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	return id, err == nil
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
}
