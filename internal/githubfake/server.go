// Package githubfake is a GitHub stand-in for tests and the demo: the REST
// endpoints ephemera calls, served over HTTP to the real go-github client,
// a runner broker that hands queued jobs to idle runners as GitHub does,
// and signed workflow_job webhooks. Every call is recorded and counted by
// kind (endpoint and method), faults (5xx, slow answers, rate limiting)
// can be injected on demand, and GitHub's documented rate limits —
// primary and secondary, on a clock that can be compressed — are enforced
// when asked (limits.go).
package githubfake

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
)

// Call is one request the stand-in received.
type Call struct {
	Method string
	Path   string
	Status int
	At     time.Time
}

// Fault is an injected misbehaviour, applied to requests whose method and
// path match before they reach the handler.
type Fault struct {
	Method string // "" matches any method
	// Path is a path.Match pattern over the request path, e.g.
	// "/orgs/*/actions/runners/generate-jitconfig".
	Path string
	// Status, when non-zero, is answered instead of the real response.
	Status int
	// RetryAfter, when non-zero, is sent as the Retry-After header (seconds)
	// with X-RateLimit-Remaining: 0, as GitHub does when rate limiting.
	RetryAfter int
	// Delay is waited before answering (a slow GitHub).
	Delay time.Duration
	// Times is how many requests the fault applies to; 0 means until removed.
	Times int
	// LoseResponse runs the real handler (its effect happens) and then
	// answers Status (default 502) instead: an answer lost on the way.
	LoseResponse bool
	// OnMatch, when set, is called (on the request's goroutine) each time
	// the fault applies, before Delay: a test's hook into a request that
	// is in flight.
	OnMatch func()
}

// Server is the stand-in. Create it with Start; the zero value is not usable.
type Server struct {
	// URL is the REST base URL with a trailing slash, for github.api_url.
	URL string

	srv *http.Server
	ln  net.Listener

	router  chi.Router
	limiter *limiter // limits.go

	mu     sync.Mutex
	calls  []Call
	faults []*activeFault

	actions *actionsState // runners, jobs, broker, webhooks: actions.go
	repos   *reposState   // repositories for the policy checks: repos.go
}

type activeFault struct {
	Fault
	left int // remaining uses; -1 unlimited
}

// RateLimit is the hourly request budget the stand-in reports when no
// other primary limit is set (SetLimits).
const RateLimit = 5000

// Start serves a new stand-in on 127.0.0.1 at a random port.
func Start() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("githubfake: listen: %w", err)
	}
	s := &Server{
		URL:     "http://" + ln.Addr().String() + "/",
		ln:      ln,
		limiter: newLimiter(),
		actions: newActionsState(),
		repos:   newReposState(),
	}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln) //nolint:errcheck // ends with Close
	return s, nil
}

// Close stops serving and stops the broker.
func (s *Server) Close() {
	s.closeActions()
	s.srv.Close()
}

// Handler is the stand-in's HTTP handler (Start serves it).
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(s.record, s.limit, s.applyFaults)
	s.actionsRoutes(r)
	s.repoRoutes(r)
	s.router = r
	return r
}

// InjectFault adds f and returns a function that removes it.
func (s *Server) InjectFault(f Fault) (remove func()) {
	af := &activeFault{Fault: f, left: f.Times}
	if f.Times == 0 {
		af.left = -1
	}
	s.mu.Lock()
	s.faults = append(s.faults, af)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, x := range s.faults {
			if x == af {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
				return
			}
		}
	}
}

// Calls returns a copy of every call received so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CountCalls counts the calls whose method and path match (path.Match
// pattern; method "" matches any).
func (s *Server) CountCalls(method, pattern string) int {
	n := 0
	for _, c := range s.Calls() {
		if matches(method, pattern, c.Method, c.Path) {
			n++
		}
	}
	return n
}

// ResetCalls forgets the recorded calls.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	s.calls = nil
	s.mu.Unlock()
}

func matches(method, pattern, gotMethod, gotPath string) bool {
	if method != "" && method != gotMethod {
		return false
	}
	ok, _ := path.Match(pattern, gotPath)
	return ok
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// record logs the call (limit, in limits.go, counts it by kind and sets
// GitHub's rate-limit headers).
func (s *Server) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.calls = append(s.calls, Call{Method: r.Method, Path: r.URL.Path, Status: rec.status, At: time.Now()})
	})
}

func (s *Server) applyFaults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := s.takeFault(r)
		if f == nil {
			next.ServeHTTP(w, r)
			return
		}
		if f.OnMatch != nil {
			f.OnMatch()
		}
		if f.Delay > 0 {
			select {
			case <-time.After(f.Delay):
			case <-r.Context().Done():
				return
			}
		}
		switch {
		case f.LoseResponse:
			next.ServeHTTP(httptest.NewRecorder(), r)
			status := f.Status
			if status == 0 {
				status = http.StatusBadGateway
			}
			writeJSON(w, status, map[string]string{"message": http.StatusText(status)})
		case f.RetryAfter > 0:
			w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
			w.Header().Set("X-RateLimit-Remaining", "0")
			// The budget is back when the wait is over: a client that
			// honours X-RateLimit-Reset (go-github does) waits as long.
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Duration(f.RetryAfter)*time.Second).Unix()+1, 10))
			status := f.Status
			if status == 0 {
				status = http.StatusForbidden
			}
			writeJSON(w, status, map[string]string{"message": "API rate limit exceeded"})
		case f.Status != 0:
			writeJSON(w, f.Status, map[string]string{"message": http.StatusText(f.Status)})
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func (s *Server) takeFault(r *http.Request) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if !matches(f.Method, f.Path, r.Method, r.URL.Path) {
			continue
		}
		if f.left > 0 {
			f.left--
			if f.left == 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
		}
		copy := f.Fault
		return &copy
	}
	return nil
}
