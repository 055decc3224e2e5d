package lxdprov

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the provider's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec   // ephemera_lxd_requests_total{op,outcome}
	duration *prometheus.HistogramVec // ephemera_lxd_operation_seconds{op}
	creates  *prometheus.CounterVec   // ephemera_lxd_creates_total{pool,source}
}

// Operation names, the op label.
const (
	opCreate = "create"
	opList   = "list"
	opDelete = "delete"
	opGuard  = "network_guard"
	// opTemplate is a template's build (template.go).
	opTemplate = "template_build"
	// opImageVersions reads the runner version of every pool's image.
	opImageVersions = "image_versions"
)

// Where a created instance came from, the source label.
const (
	SourceTemplate = "template"
	SourceImage    = "image"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	requests, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ephemera_lxd_requests_total",
		Help: "LXD operations by operation (create, list, delete, network_guard, template_build, image_versions) and outcome.",
	}, []string{"op", "outcome"}))
	if err != nil {
		return nil, err
	}
	duration, err := register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ephemera_lxd_operation_seconds",
		Help:    "Duration of LXD operations (create includes start), by operation.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"op"}))
	if err != nil {
		return nil, err
	}
	creates, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ephemera_lxd_creates_total",
		Help: "Instances created and started, by pool and source: a copy of the pool's template, or the image.",
	}, []string{"pool", "source"}))
	if err != nil {
		return nil, err
	}
	return &metrics{requests: requests, duration: duration, creates: creates}, nil
}

// register registers c, or returns the collector already registered under
// its name (several providers may share one registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// observe records one operation that started at start and ended with err.
func (m *metrics) observe(op string, start time.Time, err error) {
	m.requests.WithLabelValues(op, outcome(err)).Inc()
	m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}
