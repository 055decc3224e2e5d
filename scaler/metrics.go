package scaler

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	jobs       *prometheus.CounterVec   // ephemera_jobs_total{pool,action}
	runners    *prometheus.GaugeVec     // ephemera_runners{pool,state}
	provision  *prometheus.HistogramVec // ephemera_provision_seconds{pool}
	jobWait    *prometheus.HistogramVec // ephemera_job_wait_seconds{pool}
	reconcile  *prometheus.CounterVec   // ephemera_reconcile_actions_total{pool,action}
	passes     prometheus.Histogram     // ephemera_reconcile_seconds
	terminated *prometheus.CounterVec   // ephemera_scaler_messages_terminated_total{reason}
	leader     prometheus.Gauge         // ephemera_scaler_leader
	online     *prometheus.HistogramVec // ephemera_runner_online_seconds{pool,via}
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	buckets := []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600}
	m := &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ephemera_jobs_total",
			Help: "Job events handled by the scaler, by pool and what was done (provisioned, duplicate, capacity_wait, failed, in_progress, completed, cancelled, ...).",
		}, []string{"pool", "action"}),
		runners: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ephemera_runners",
			Help: "Runners by pool and state (idle, busy, provisioning, finishing), as of the last reconcile.",
		}, []string{"pool", "state"}),
		provision: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ephemera_provision_seconds", Buckets: buckets,
			Help: "From the queued event's arrival (or the reconciler's decision) to the runner's instance running.",
		}, []string{"pool"}),
		jobWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ephemera_job_wait_seconds", Buckets: buckets,
			Help: "How long jobs waited for a runner: GitHub's created_at to started_at.",
		}, []string{"pool"}),
		reconcile: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ephemera_reconcile_actions_total",
			Help: "Reconciler actions by pool and action (top_up, trim, trim_busy, bootstrap_timeout, orphan_registration, delete_finished, release_slot, reprovision, redeliver, adopt).",
		}, []string{"pool", "action"}),
		passes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ephemera_reconcile_seconds", Buckets: buckets,
			Help: "How long one reconcile pass took on the leader, reading the state through applying the plan and redelivering.",
		}),
		terminated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ephemera_scaler_messages_terminated_total",
			Help: "Job messages the scaler gave up on, by reason.",
		}, []string{"reason"}),
		online: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ephemera_runner_online_seconds", Buckets: buckets,
			Help: "Queued → runner online: from a runner's job's queued event (or the top-up that asked for it) to the runner online on GitHub. via=waiting_job: exact, a job waiting since before the instance started took it as it came online; via=later_job: an upper bound, a job queued later took it before the runner list showed it; via=listing: first seen in the runner list, estimated to half a reconcile interval. Observed by the leader.",
		}, []string{"pool", "via"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ephemera_scaler_leader",
			Help: "1 while this replica holds the reconciler lease.",
		}),
	}
	for _, c := range []prometheus.Collector{m.jobs, m.runners, m.provision, m.jobWait, m.reconcile, m.passes, m.terminated, m.leader, m.online} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register scaler metrics: %w", err)
		}
	}
	return m, nil
}
