package ghclient

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/ghbudget"
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

// transport counts requests, asks the budget, and keeps the rate-limit
// guard.
type transport struct {
	next    http.RoundTripper
	metrics *metrics
	log     zerolog.Logger
	budget  *ghbudget.Budget // nil: none
	timeout time.Duration    // of one request, from when it is sent

	mu      sync.Mutex
	until   time.Time
	rateRem int
	seen    bool
}

// installationTransport is the transport for one installation's budget.
type installationTransport struct {
	t    *transport
	inst string
}

func (t *transport) forInstallation(inst string) http.RoundTripper {
	return installationTransport{t: t, inst: inst}
}

func (it installationTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return it.t.roundTrip(r, it.inst)
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.roundTrip(r, "default")
}

func (t *transport) roundTrip(r *http.Request, inst string) (*http.Response, error) {
	op, _ := r.Context().Value(opKey{}).(string)
	if op == "" {
		op = opFromPath(r.URL.Path)
	}
	if t.budget != nil {
		return t.budgeted(r, inst, op)
	}
	t.mu.Lock()
	until := t.until
	t.mu.Unlock()
	if time.Now().Before(until) {
		t.metrics.requests.WithLabelValues(op, "rate_limited").Inc()
		return nil, &RateLimitedError{Until: until}
	}
	resp, err := t.send(r)
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

// budgeted sends r once the budget admits it, and gives the budget the
// answer. A rate-limit answer becomes a *ghbudget.LimitedError: the
// budget has recorded GitHub's wait for this endpoint (or, for the
// primary budget, for all), and go-github, seeing an error rather than a
// 403, does not stop the client's other endpoints.
func (t *transport) budgeted(r *http.Request, inst, op string) (*http.Response, error) {
	ctx := r.Context()
	tk, err := t.budget.Acquire(ctx, ghbudget.Request{
		Installation: inst, Endpoint: r.Method + " " + op, Method: r.Method, Priority: ghbudget.PriorityOf(ctx, r.Method),
	})
	if err != nil {
		t.metrics.requests.WithLabelValues(op, "budget").Inc()
		return nil, err
	}
	resp, err := t.send(r)
	if err != nil {
		_ = tk.Done(ctx, nil)
		t.metrics.requests.WithLabelValues(op, "error").Inc()
		return nil, err
	}
	t.metrics.requests.WithLabelValues(op, strconv.Itoa(resp.StatusCode)).Inc()
	if rem, err := strconv.Atoi(resp.Header.Get("X-RateLimit-Remaining")); err == nil {
		t.mu.Lock()
		t.rateRem, t.seen = rem, true
		t.mu.Unlock()
		t.metrics.rate.Set(float64(rem))
	}
	if lerr := tk.Done(ctx, resp); lerr != nil {
		resp.Body.Close()
		t.log.Warn().Str(logkey.Op, op).Int(logkey.Status, resp.StatusCode).Err(lerr).Msg("github rate limit: this endpoint waits")
		return nil, lerr
	}
	return resp, nil
}

// send sends r bounded by the request timeout, which runs until its
// answer's body is closed.
func (t *transport) send(r *http.Request) (*http.Response, error) {
	if t.timeout <= 0 {
		return t.next.RoundTrip(r)
	}
	ctx, cancel := context.WithTimeout(r.Context(), t.timeout)
	resp, err := t.next.RoundTrip(r.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
