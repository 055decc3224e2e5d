package githubfake

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
)

// Limits are GitHub's documented REST rate limits, which the stand-in
// enforces once SetLimits is called (off by default):
//
//   - primary: PrimaryPerHour requests an hour per installation (per
//     credential for a token or the App's JWT), reported on every answer
//     in X-RateLimit-Limit, -Remaining, -Used, -Reset and -Resource; past
//     it, 403 with X-RateLimit-Remaining: 0. A 304 does not count.
//   - secondary: at most MaxConcurrent requests in flight, and at most
//     PointsPerMinute points a minute per endpoint (method and route, per
//     installation), where GET, HEAD and OPTIONS cost 1 point and other
//     methods 5, over a sliding minute; past either, SecondaryStatus (403
//     or 429) with Retry-After and GitHub's "You have exceeded a
//     secondary rate limit" message.
//
// TimeScale compresses time for harnesses: the hour and the minute last
// an hour/TimeScale and a minute/TimeScale of real time, so that a run of
// one real minute at TimeScale 60 sees an hour's limits. Figures taken
// with TimeScale ≠ 1 are to be labelled scaled.
type Limits struct {
	PrimaryPerHour  int     // 0: not enforced (5,000 reported)
	MaxConcurrent   int     // 0: not enforced
	PointsPerMinute int     // 0: not enforced
	TimeScale       float64 // 0 or 1: real time
	SecondaryStatus int     // 403 (default) or 429
}

// GitHubLimits are the limits GitHub documents for an App installation.
func GitHubLimits() Limits {
	return Limits{PrimaryPerHour: RateLimit, MaxConcurrent: 100, PointsPerMinute: 900, TimeScale: 1, SecondaryStatus: http.StatusForbidden}
}

// Minute and Hour are the lengths of the limits' windows under l's
// time scale.
func (l Limits) Minute() time.Duration { return l.scaled(time.Minute) }
func (l Limits) Hour() time.Duration   { return l.scaled(time.Hour) }

func (l Limits) scaled(d time.Duration) time.Duration {
	if l.TimeScale <= 0 || l.TimeScale == 1 {
		return d
	}
	return time.Duration(float64(d) / l.TimeScale)
}

// Points is what a request costs against the secondary limit.
func Points(method string) int {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return 1
	}
	return 5
}

// Kind is a kind of REST request: its method and its endpoint, the route
// as GitHub documents it (e.g. "/orgs/{org}/actions/runners/{id}").
type Kind struct {
	Method   string
	Endpoint string
}

func (k Kind) String() string { return k.Method + " " + k.Endpoint }

// LimitAnswers counts the rate-limit answers the stand-in gave.
type LimitAnswers struct {
	Primary   int // 403 with X-RateLimit-Remaining: 0
	Secondary int // 403/429 with Retry-After
}

// Total is every rate-limit answer.
func (a LimitAnswers) Total() int { return a.Primary + a.Secondary }

// limiter is the stand-in's accounting: what was asked, by whom, and what
// the limits allow. It has its own lock so that the REST handlers, which
// take Server.mu, are not held up by it.
type limiter struct {
	mu       sync.Mutex
	limits   Limits
	on       bool
	primary  map[string]*primaryWindow // by credential key
	points   map[string][]spent        // by credential key + kind
	inFlight int
	maxSeen  int // most requests in flight at once
	kinds    map[Kind]int
	answers  LimitAnswers
	installs map[string]int64 // installation token → installation id
}

type primaryWindow struct {
	used  int
	reset time.Time
}

type spent struct {
	at     time.Time
	points int
}

func newLimiter() *limiter {
	return &limiter{primary: map[string]*primaryWindow{}, points: map[string][]spent{}, kinds: map[Kind]int{}, installs: map[string]int64{}}
}

// SetLimits starts enforcing l from now on; the zero Limits stops
// enforcing. The windows start afresh.
func (s *Server) SetLimits(l Limits) {
	lm := s.limiter
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if l.SecondaryStatus == 0 {
		l.SecondaryStatus = http.StatusForbidden
	}
	lm.limits, lm.on = l, l != (Limits{SecondaryStatus: l.SecondaryStatus})
	lm.primary = map[string]*primaryWindow{}
	lm.points = map[string][]spent{}
}

// RequestsByKind counts the REST requests received so far by kind (the
// stand-in runner API under /_fake/ is not GitHub's and not counted),
// whatever their answer.
func (s *Server) RequestsByKind() map[Kind]int {
	lm := s.limiter
	lm.mu.Lock()
	defer lm.mu.Unlock()
	out := make(map[Kind]int, len(lm.kinds))
	for k, n := range lm.kinds {
		out[k] = n
	}
	return out
}

// RateLimitAnswers counts the rate-limit answers given so far.
func (s *Server) RateLimitAnswers() LimitAnswers {
	s.limiter.mu.Lock()
	defer s.limiter.mu.Unlock()
	return s.limiter.answers
}

// MaxInFlight is the most REST requests the stand-in served at once.
func (s *Server) MaxInFlight() int {
	s.limiter.mu.Lock()
	defer s.limiter.mu.Unlock()
	return s.limiter.maxSeen
}

// ResetCounts forgets the counts by kind, the rate-limit answers and the
// most requests in flight; the limits' windows go on.
func (s *Server) ResetCounts() {
	lm := s.limiter
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.kinds = map[Kind]int{}
	lm.answers = LimitAnswers{}
	lm.maxSeen = lm.inFlight
}

// noteInstallationToken remembers which installation a token was issued
// for, so that its requests count against that installation.
func (s *Server) noteInstallationToken(token string, id int64) {
	s.limiter.mu.Lock()
	s.limiter.installs[token] = id
	s.limiter.mu.Unlock()
}

// credentialKey names whose budget a request spends: the installation of
// an installation token, else the credential itself (a token, the App's
// JWT), hashed.
func (lm *limiter) credentialKey(r *http.Request) string {
	_, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	cred = strings.TrimSpace(cred)
	if id, ok := lm.installs[cred]; ok {
		return "installation " + strconv.FormatInt(id, 10)
	}
	sum := sha256.Sum256([]byte(cred))
	return "credential " + hex.EncodeToString(sum[:6])
}

// limit counts each REST request by kind, sets the primary limit's
// headers and refuses what the limits do not allow, as GitHub answers.
func (s *Server) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/_fake/") {
			next.ServeHTTP(w, r)
			return
		}
		rctx := chi.NewRouteContext()
		endpoint := "unrouted"
		if s.router.Match(rctx, r.Method, r.URL.Path) {
			endpoint = rctx.RoutePattern()
		}
		kind := Kind{Method: r.Method, Endpoint: endpoint}
		lm := s.limiter
		now := time.Now()

		lm.mu.Lock()
		lm.kinds[kind]++
		key := lm.credentialKey(r)
		pw := lm.window(key, now)
		limit := lm.limits.PrimaryPerHour
		if !lm.on || limit <= 0 {
			limit = RateLimit
		}
		setPrimaryHeaders(w.Header(), limit, pw)
		refusal := lm.admit(key, kind, pw, now)
		if refusal == nil {
			lm.inFlight++
			lm.maxSeen = max(lm.maxSeen, lm.inFlight)
		}
		lm.mu.Unlock()

		if refusal != nil {
			refusal(w)
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			lm.mu.Lock()
			defer lm.mu.Unlock()
			lm.inFlight--
			if rec.status != http.StatusNotModified {
				pw.used++
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// window returns the credential's primary window, starting a new one
// when the last is over.
func (lm *limiter) window(key string, now time.Time) *primaryWindow {
	pw := lm.primary[key]
	if pw == nil || !now.Before(pw.reset) {
		pw = &primaryWindow{reset: now.Add(lm.limits.Hour())}
		lm.primary[key] = pw
	}
	return pw
}

func setPrimaryHeaders(h http.Header, limit int, pw *primaryWindow) {
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(0, limit-pw.used)))
	h.Set("X-RateLimit-Used", strconv.Itoa(pw.used))
	// Rounded up, so that a client waiting for it never comes back early.
	h.Set("X-RateLimit-Reset", strconv.FormatInt(ceilUnix(pw.reset), 10))
	h.Set("X-RateLimit-Resource", "core")
}

func ceilUnix(t time.Time) int64 {
	u := t.Unix()
	if t.Nanosecond() > 0 {
		u++
	}
	return u
}

// admit decides under lm.mu whether a request may go on; it returns how
// to refuse it otherwise. An admitted request's points are spent.
func (lm *limiter) admit(key string, kind Kind, pw *primaryWindow, now time.Time) func(http.ResponseWriter) {
	if !lm.on {
		return nil
	}
	l := lm.limits
	if l.PrimaryPerHour > 0 && pw.used >= l.PrimaryPerHour {
		lm.answers.Primary++
		return func(w http.ResponseWriter) {
			writeJSON(w, http.StatusForbidden, map[string]string{
				"message":           fmt.Sprintf("API rate limit exceeded for %s.", key),
				"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit",
			})
		}
	}
	if l.MaxConcurrent > 0 && lm.inFlight >= l.MaxConcurrent {
		lm.answers.Secondary++
		return secondary(l.SecondaryStatus, time.Second)
	}
	if l.PointsPerMinute > 0 {
		pk := key + " " + kind.String()
		cost := Points(kind.Method)
		horizon := now.Add(-l.Minute())
		log := lm.points[pk]
		for len(log) > 0 && !log[0].at.After(horizon) {
			log = log[1:]
		}
		sum := 0
		for _, sp := range log {
			sum += sp.points
		}
		if sum+cost > l.PointsPerMinute {
			lm.points[pk] = log
			// Wait until enough of the window's points have expired.
			need, wait := sum+cost-l.PointsPerMinute, time.Duration(0)
			for _, sp := range log {
				need -= sp.points
				if need <= 0 {
					wait = sp.at.Add(l.Minute()).Sub(now)
					break
				}
			}
			lm.answers.Secondary++
			return secondary(l.SecondaryStatus, wait)
		}
		lm.points[pk] = append(log, spent{at: now, points: cost})
	}
	return nil
}

// secondary answers as GitHub does past a secondary limit: Retry-After in
// whole seconds (at least 1), the primary budget left as it is.
func secondary(status int, wait time.Duration) func(http.ResponseWriter) {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	return func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeJSON(w, status, map[string]string{
			"message":           "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
			"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
		})
	}
}

// primaryFor reports the primary window of r's credential, for
// GET /rate_limit.
func (s *Server) primaryFor(r *http.Request) (limit, remaining int, reset time.Time) {
	lm := s.limiter
	lm.mu.Lock()
	defer lm.mu.Unlock()
	pw := lm.window(lm.credentialKey(r), time.Now())
	limit = lm.limits.PrimaryPerHour
	if !lm.on || limit <= 0 {
		limit = RateLimit
	}
	return limit, max(0, limit-pw.used), pw.reset
}
