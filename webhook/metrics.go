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
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
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
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register webhook metrics: %w", err)
		}
	}
	return m, nil
}
