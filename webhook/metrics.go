package webhook

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the event label. X-GitHub-Event comes from the caller, so it is
// folded into a fixed set to keep the label's cardinality bounded.
const (
	eventWorkflowJob = "workflow_job"
	eventPing        = "ping"
	eventOther       = "other"
	eventNone        = "none" // header missing
)

func eventLabel(event string) string {
	switch event {
	case eventWorkflowJob, eventPing:
		return event
	case "":
		return eventNone
	}
	return eventOther
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bodies   *prometheus.GaugeVec
}

// States of the bodies gauge.
const (
	bodyReading = "reading" // a request's body is being read
	bodyWaiting = "waiting" // a large body waits for a slot
)

func newMetrics(reg prometheus.Registerer, slots chan struct{}) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ephemera_webhook_requests_total",
			Help: "Webhook requests by GitHub event (workflow_job, ping, other, none) and outcome.",
		}, []string{"event", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ephemera_webhook_request_duration_seconds",
			Help:    "Time from request to answer, by outcome; for stored events it includes the wait for JetStream's PubAck.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
		bodies: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ephemera_webhook_bodies",
			Help: "Request bodies being read now (reading), and large bodies waiting for one of webhook.max_bodies_at_once slots (waiting).",
		}, []string{"state"}),
	}
	inUse := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ephemera_webhook_body_slots_in_use",
		Help: "Large bodies (over 32 KiB) being read now; at most webhook.max_bodies_at_once.",
	}, func() float64 { return float64(len(slots)) })
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.bodies, inUse} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register webhook metrics: %w", err)
		}
	}
	return m, nil
}
