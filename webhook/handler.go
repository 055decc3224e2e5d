package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/jobs"
)

// Publisher is what the handler needs from JetStream; jetstream.JetStream
// satisfies it.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

var _ Publisher = jetstream.JetStream(nil)

// Defaults of the optional Config fields.
const (
	DefaultMaxBody        = 1 << 20
	DefaultPublishTimeout = 5 * time.Second
	DefaultBodyTimeout    = 10 * time.Second
	DefaultMaxBodies      = 64
)

// Config configures a Handler.
type Config struct {
	// Secrets are the webhook secrets; a delivery signed with any of them
	// is accepted. Required: at least one, none empty.
	Secrets []config.Secret
	// Pools, in config order: a job goes to the first pool whose labels
	// include all of the job's labels. Only Name and Labels are used.
	Pools []config.Pool
	// MaxBody is the largest body read; a larger one is answered 413.
	// Zero: DefaultMaxBody.
	MaxBody int64
	// BodyTimeout bounds the time from the handler's start to the body's
	// last byte; a slower body is answered 408. GitHub sends a delivery in
	// one go. Zero: DefaultBodyTimeout.
	BodyTimeout time.Duration
	// MaxBodies bounds how many bodies larger than 32 KiB (more than any
	// workflow_job delivery) are read at once; each may take MaxBody bytes.
	// Smaller bodies need no slot. Zero: DefaultMaxBodies.
	MaxBodies int
	// PublishTimeout bounds the wait for JetStream's PubAck; past it the
	// delivery is answered 503. Zero: DefaultPublishTimeout.
	PublishTimeout time.Duration
	// Publisher stores events. Required.
	Publisher Publisher
	// Log gets one line per request. The zero value logs nothing.
	Log zerolog.Logger
	// Registerer takes the handler's metrics. Nil: a private registry.
	Registerer prometheus.Registerer
	// Now stamps received_at. Nil: time.Now.
	Now func() time.Time
}

// Handler is the webhook endpoint. It is safe for concurrent use.
type Handler struct {
	verifier    *verifier
	router      router
	maxBody     int64
	slots       chan struct{} // one token per large body being read
	timeout     time.Duration
	bodyTimeout time.Duration
	pub         Publisher
	log         zerolog.Logger
	metrics     *metrics
	now         func() time.Time
	bufs        sync.Pool // *bytes.Buffer for bodies
}

// New checks cfg, fills its defaults and returns a Handler.
func New(cfg Config) (*Handler, error) {
	if len(cfg.Secrets) == 0 {
		return nil, errors.New("webhook: Secrets is required: at least one webhook secret")
	}
	keys := make([][]byte, len(cfg.Secrets))
	for i, s := range cfg.Secrets {
		if s.IsZero() {
			return nil, fmt.Errorf("webhook: Secrets[%d] is empty", i)
		}
		keys[i] = []byte(s.Reveal())
	}
	if cfg.Publisher == nil {
		return nil, errors.New("webhook: Publisher is required")
	}
	for i, p := range cfg.Pools {
		if name, _, err := jobs.ParseSubject(jobs.Subject(p.Name, jobs.Queued)); err != nil || name != p.Name {
			return nil, fmt.Errorf("webhook: Pools[%d]: name %q cannot be part of a subject", i, p.Name)
		}
		if len(p.Labels) == 0 {
			return nil, fmt.Errorf("webhook: Pools[%d] (%s) has no labels", i, p.Name)
		}
	}
	if cfg.MaxBody < 0 || cfg.PublishTimeout < 0 || cfg.BodyTimeout < 0 || cfg.MaxBodies < 0 {
		return nil, errors.New("webhook: MaxBody, MaxBodies, BodyTimeout and PublishTimeout must not be negative")
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.MaxBodies == 0 {
		cfg.MaxBodies = DefaultMaxBodies
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	slots := make(chan struct{}, cfg.MaxBodies)
	m, err := newMetrics(cfg.Registerer, slots)
	if err != nil {
		return nil, err
	}
	return &Handler{
		verifier:    newVerifier(keys),
		router:      router{pools: cfg.Pools},
		maxBody:     cfg.MaxBody,
		slots:       slots,
		bodyTimeout: cfg.BodyTimeout,
		timeout:     cfg.PublishTimeout,
		pub:         cfg.Publisher,
		log:         cfg.Log,
		metrics:     m,
		now:         cfg.Now,
		bufs:        sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}, nil
}

const (
	headerEvent    = "X-GitHub-Event"
	headerDelivery = "X-GitHub-Delivery"
	maxDeliveryLen = 100
	maxPooledBody  = 2 * firstChunk // a pooled buffer may hold a usual body, no more
)

// delivery is what a request revealed about itself, for its log line.
type delivery struct {
	id     string // only once known to be sane
	event  string
	action jobs.Action
	job    int64
	pool   string
}

// ServeHTTP handles one delivery; see the package documentation for the
// order of checks and the answers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var d delivery
	buf := h.bufs.Get().(*bytes.Buffer)
	a, err := h.handleRecovered(w, r, buf, &d)
	if buf.Cap() <= maxPooledBody {
		buf.Reset()
		h.bufs.Put(buf)
	}
	if err != nil {
		re := asRequestError(err)
		if re.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", http.MethodPost)
		}
		a = answer{status: re.status, outcome: re.outcome, body: errorBody{Error: re.message}}
		if error(re) == err {
			err = nil // nothing more to log than the outcome
		}
	}
	writeJSON(w, a.status, a.body)
	elapsed := time.Since(start)
	event := eventLabel(r.Header.Get(headerEvent))
	h.metrics.requests.WithLabelValues(event, a.outcome).Inc()
	h.metrics.duration.WithLabelValues(a.outcome).Observe(elapsed.Seconds())
	h.logRequest(d, a, err, elapsed)
}

// handleRecovered is handle, with a panic turned into a 503 (logged with
// its stack): GitHub records a failed delivery that can be redelivered,
// instead of a dropped connection. http.ErrAbortHandler passes through.
func (h *Handler) handleRecovered(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer, d *delivery) (a answer, err error) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if e, ok := v.(error); ok && errors.Is(e, http.ErrAbortHandler) {
			panic(v)
		}
		a, err = answer{}, fmt.Errorf("%w: handler panicked: %v\n%s", errUnavailable, v, debug.Stack())
	}()
	return h.handle(w, r, buf, d)
}

// handle runs the checks in order and stores the event. buf receives the
// body; it is only valid until handle returns.
func (h *Handler) handle(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer, d *delivery) (answer, error) {
	if r.Method != http.MethodPost {
		return answer{}, errMethod
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return answer{}, err
	}
	event, id := r.Header.Get(headerEvent), r.Header.Get(headerDelivery)
	if sane(event) {
		d.event = event
	}
	switch {
	case event == "":
		return answer{}, errNoEvent
	case id == "":
		return answer{}, errNoDelivery
	case !sane(id):
		return answer{}, errBadDelivery
	}
	d.id = id
	body, err := h.readBody(w, r, buf)
	if err != nil {
		return answer{}, err
	}
	if err := h.verifier.verify(r.Header, body); err != nil {
		return answer{}, err
	}
	switch event {
	case eventWorkflowJob:
		return h.workflowJob(r.Context(), body, d)
	case eventPing:
		if !validJSON(body) {
			return answer{}, errMalformedJSON
		}
		return answer{http.StatusOK, outcomePing, pingBody{OK: true}}, nil
	default:
		if !validJSON(body) {
			return answer{}, errMalformedJSON
		}
		return answer{http.StatusAccepted, outcomeIgnoredEvent, ignoredBody{Ignored: "event " + event + " is not handled"}}, nil
	}
}

// workflowJob parses, routes and stores a workflow_job delivery.
func (h *Handler) workflowJob(ctx context.Context, body []byte, d *delivery) (answer, error) {
	ev, err := parseJob(body)
	if err != nil {
		return answer{}, err
	}
	d.action, d.job = ev.Action, ev.JobID
	pool, ok := h.router.route(ev.Labels)
	if !ok {
		return answer{http.StatusAccepted, outcomeNoPool, ignoredBody{Ignored: "no pool has all of the job's labels"}}, nil
	}
	d.pool = pool
	ev.Delivery, ev.Pool, ev.ReceivedAt = d.id, pool, h.now().UTC()
	data, err := json.Marshal(ev)
	if err != nil {
		return answer{}, fmt.Errorf("%w: encode event: %w", errUnavailable, err)
	}
	msg := &nats.Msg{
		Subject: jobs.Subject(pool, ev.Action),
		Header:  nats.Header{jetstream.MsgIDHeader: []string{d.id}},
		Data:    data,
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	ack, err := h.pub.PublishMsg(ctx, msg)
	if err != nil {
		return answer{}, fmt.Errorf("%w: publish to %s: %w", errUnavailable, msg.Subject, err)
	}
	outcome := outcomeStored
	if ack != nil && ack.Duplicate {
		outcome = outcomeDuplicate
	}
	return answer{http.StatusAccepted, outcome, storedBody{Delivery: d.id, Pool: pool}}, nil
}
