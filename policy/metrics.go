package policy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	checks   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	cache    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ephemera_policy_checks_total",
			Help: "Check-runs answered, by event and outcome (pass, fail, error).",
		}, []string{"event", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ephemera_policy_check_duration_seconds",
			Help:    "Time to answer a check-run, by event.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"event"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ephemera_policy_cache_total",
			Help: "GitHub reads of the policy checks by cache result: hit (no request), revalidated (304), miss (full request), shared (joined an identical request in flight).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.checks, m.duration, m.cache} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register policy metrics: %w", err)
		}
	}
	return m, nil
}
