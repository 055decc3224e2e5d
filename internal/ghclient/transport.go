package ghclient

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/logkey"
)

type opKey struct{}

// WithOp names the GitHub operation a request belongs to; it is the op
// label of ephemera_github_requests_total. Requests without one are
// labelled by a coarse reading of their path.
func WithOp(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, opKey{}, op)
}

// RateLimitedError is returned, without asking GitHub, while GitHub has
// told us to wait.
type RateLimitedError struct{ Until time.Time }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("github rate limit: waiting until %s", e.Until.UTC().Format(time.RFC3339))
}

// MaxBackoff caps how long a Retry-After makes the guard wait.
const MaxBackoff = 10 * time.Minute

type metrics struct {
	requests *prometheus.CounterVec
	rate     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ephemera_github_requests_total",
			Help: "GitHub API requests by operation and HTTP status code (\"error\" when no answer came).",
		}, []string{"op", "code"}),
		rate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ephemera_github_rate_remaining",
			Help: "The X-RateLimit-Remaining GitHub sent last.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.rate} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register github metrics: %w", err)
		}
	}
	m.rate.Set(-1)
	return m, nil
}

// transport counts requests and keeps the rate-limit guard.
type transport struct {
	next    http.RoundTripper
	metrics *metrics
	log     zerolog.Logger

	mu      sync.Mutex
	until   time.Time
	rateRem int
	seen    bool
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	op, _ := r.Context().Value(opKey{}).(string)
	if op == "" {
		op = opFromPath(r.URL.Path)
	}
	t.mu.Lock()
	until := t.until
	t.mu.Unlock()
	if time.Now().Before(until) {
		t.metrics.requests.WithLabelValues(op, "rate_limited").Inc()
		return nil, &RateLimitedError{Until: until}
	}
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		t.metrics.requests.WithLabelValues(op, "error").Inc()
		return nil, err
	}
	t.metrics.requests.WithLabelValues(op, strconv.Itoa(resp.StatusCode)).Inc()
	t.observe(op, resp)
	return resp, nil
}

func (t *transport) observe(op string, resp *http.Response) {
	h := resp.Header
	rem, remErr := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
	var wait time.Duration
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusForbidden {
		if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s >= 0 {
			wait = time.Duration(s) * time.Second
		} else if remErr == nil && rem == 0 {
			if reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
				wait = time.Until(time.Unix(reset, 0))
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if remErr == nil {
		t.rateRem, t.seen = rem, true
		t.metrics.rate.Set(float64(rem))
	}
	if wait > 0 {
		wait = min(wait, MaxBackoff)
		t.until = time.Now().Add(wait)
		t.log.Warn().Str(logkey.Op, op).Int(logkey.Status, resp.StatusCode).Dur("wait", wait).Msg("github rate limit: backing off")
	}
}

func (t *transport) remaining() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.seen {
		return -1
	}
	return t.rateRem
}

// opFromPath labels a request that named no op: the last path segment
// that is not a number, which is coarse but bounded.
func opFromPath(p string) string {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	for i := len(segs) - 1; i >= 0; i-- {
		s := segs[i]
		if s == "" {
			continue
		}
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			continue
		}
		switch s {
		case "access_tokens", "generate-jitconfig", "runners", "jobs", "deliveries", "attempts",
			"protection", "collaborators", "pulls", "comments", "permission", "branches":
			return strings.ReplaceAll(s, "-", "_")
		}
		return "other"
	}
	return "other"
}
