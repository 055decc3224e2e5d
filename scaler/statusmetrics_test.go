package scaler_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/scaler"
)

func TestStatusCollectorExportsPoolStatusFromKV(t *testing.T) {
	small := pool("small", 0, 1)
	e := newEnv(t, small)
	reg := prometheus.NewRegistry()
	reg.MustRegister(scaler.NewStatusCollector(e.bus.JS, e.pools, testLog(t)))
	e.prov.OnCreated = func(scaler.InstanceSpec) {} // runners never come online: the jobs wait
	e.start(e.config())
	e.queue(2, small, time.Second)

	waitfor.True(t, 10*time.Second, "two waiting jobs and one instance exported", func() bool {
		return metricSum(t, reg, "ephemera_jobs_waiting", map[string]string{"pool": "small"}) == 2 &&
			metricSum(t, reg, "ephemera_pool_instances", map[string]string{"pool": "small"}) == 1
	})
	want := `
# HELP ephemera_pool_max The pool's configured max: instances it may hold.
# TYPE ephemera_pool_max gauge
ephemera_pool_max{pool="small"} 1
# HELP ephemera_pool_min_idle The pool's idle buffer: min_idle, or the one min_idle: auto sized at the leader's last pass.
# TYPE ephemera_pool_min_idle gauge
ephemera_pool_min_idle{pool="small"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ephemera_pool_max", "ephemera_pool_min_idle"); err != nil {
		t.Error(err)
	}
	if got := metricSum(t, reg, "ephemera_jobs_oldest_wait_seconds", map[string]string{"pool": "small"}); got <= 0 {
		t.Errorf("oldest wait %v, want > 0", got)
	}
}
