package ghbudget

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	used     *prometheus.GaugeVec
	waiting  *prometheus.GaugeVec
	inFlight prometheus.Gauge
	wait     *prometheus.HistogramVec
	limited  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		used: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ephemera_github_budget_used_points",
			Help: "Points spent on a GitHub endpoint in the last minute, by every process, as this one last wrote them (GitHub allows 900).",
		}, []string{"endpoint"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ephemera_github_budget_waiting",
			Help: "GitHub requests of this process waiting for the budget, by priority.",
		}, []string{"priority"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ephemera_github_budget_in_flight",
			Help: "GitHub requests of this process in flight under the budget.",
		}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ephemera_github_budget_wait_seconds",
			Help:    "How long GitHub requests waited for the budget, by priority.",
			Buckets: []float64{0.001, 0.01, 0.1, 0.5, 1, 5, 15, 30, 60, 120},
		}, []string{"priority"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ephemera_github_budget_limited_total",
			Help: "GitHub answers that were a rate limit, by endpoint (the budget aims at none).",
		}, []string{"endpoint"}),
	}
	for _, c := range []prometheus.Collector{m.used, m.waiting, m.inFlight, m.wait, m.limited} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register github budget metrics: %w", err)
		}
	}
	for _, p := range Priorities() {
		m.waiting.WithLabelValues(p.String())
	}
	return m, nil
}
