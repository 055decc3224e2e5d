package scaler

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/config"
)

// StatusCollector exports what [ReadStatus] reads from KV as gauges, read
// at scrape time: each pool's max and min_idle, the slots it holds
// (instances counted against max), its waiting jobs with the oldest
// wait, and the runner version its image pins against GitHub's newest. Every scaler replica reports the same shared values; alerts take
// the max by pool.
type StatusCollector struct {
	js      jetstream.JetStream
	pools   []config.Pool
	log     zerolog.Logger
	timeout time.Duration

	max, minIdle, instances, waiting, oldest *prometheus.Desc
	versionOutdated, versionInfo             *prometheus.Desc
}

// NewStatusCollector returns a collector of the pools' status in js.
func NewStatusCollector(js jetstream.JetStream, pools []config.Pool, log zerolog.Logger) *StatusCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"pool"}, nil)
	}
	return &StatusCollector{
		js: js, pools: pools, log: log, timeout: 5 * time.Second,
		max:       d("ephemera_pool_max", "The pool's configured max: instances it may hold."),
		minIdle:   d("ephemera_pool_min_idle", "The pool's idle buffer: min_idle, or the one min_idle: auto sized at the leader's last pass."),
		instances: d("ephemera_pool_instances", "Slots the pool holds now: instances that exist in LXD or are being created, counted against max."),
		waiting:   d("ephemera_jobs_waiting", "Queued jobs whose runner has not taken a job yet."),
		oldest:    d("ephemera_jobs_oldest_wait_seconds", "Age of the oldest waiting job, from GitHub's created_at (0 when none waits)."),
		versionOutdated: d("ephemera_runner_version_outdated",
			"1 when the pool's image pins an older GitHub Actions runner than the newest GitHub lists for download (checked daily), else 0; absent while either is unknown."),
		versionInfo: prometheus.NewDesc("ephemera_runner_version_info",
			"Always 1: the runner version the pool's image pins (pinned) and the newest GitHub lists (latest), as of the last daily check.",
			[]string{"pool", "pinned", "latest"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *StatusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.max, c.minIdle, c.instances, c.waiting, c.oldest, c.versionOutdated, c.versionInfo} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. When KV cannot be read the
// gauges are left out of this scrape (and the reason logged), so the rest
// of the scrape still succeeds.
func (c *StatusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	st, err := ReadStatus(ctx, c.js, c.pools)
	if err != nil {
		c.log.Warn().Err(err).Msg("pool status metrics")
		return
	}
	for _, p := range st {
		g := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, p.Pool)
		}
		g(c.max, float64(p.Max))
		g(c.minIdle, float64(p.MinIdle))
		g(c.instances, float64(p.Instances))
		g(c.waiting, float64(p.WaitingJobs))
		g(c.oldest, p.OldestWaitingSeconds)
		if p.RunnerVersion != "" || p.LatestRunnerVersion != "" {
			ch <- prometheus.MustNewConstMetric(c.versionInfo, prometheus.GaugeValue, 1, p.Pool, p.RunnerVersion, p.LatestRunnerVersion)
		}
		if _, ok := CompareRunnerVersions(p.RunnerVersion, p.LatestRunnerVersion); ok {
			outdated := 0.0
			if p.RunnerOutdated {
				outdated = 1
			}
			g(c.versionOutdated, outdated)
		}
	}
}
