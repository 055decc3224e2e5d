package scaler_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/scaler"
)

// The leader applies min_idle: auto: a pool no job came to keeps
// idle_min; a burst of jobs raises its buffer (ephemera_pool_min_idle,
// `ephemera status`) above idle_min and the reconciler tops it up to
// that; once the jobs are older than the lookback the buffer falls back
// to idle_min and the surplus is trimmed. Runners boot in 300ms here, and
// the target is no wait at all, so a burst of 12 jobs at once asks for
// idle_max.
func TestTheLeaderSizesAnAutoPoolFromArrivalsAndShrinksItWhenTheyStop(t *testing.T) {
	p := pool("auto", 0, 20)
	p.AutoIdle, p.IdleMin, p.IdleMax = true, 0, 8
	p.TargetWait = config.TargetWait{Quantile: 0.95}
	e := newEnv(t, p)
	reg := prometheus.NewRegistry()
	reg.MustRegister(scaler.NewStatusCollector(e.bus.JS, e.pools, testLog(t)))
	e.prov.OnCreated = func(spec scaler.InstanceSpec) {
		time.AfterFunc(300*time.Millisecond, func() { _ = e.fake.RunnerOnline(spec.Name) })
	}
	clock := &testClock{}
	r := e.start(e.config(func(c *scaler.Config) { c.Now = clock.Now }))

	status := func() scaler.PoolStatus {
		st, err := scaler.ReadStatus(context.Background(), e.bus.JS, e.pools)
		if err != nil {
			t.Fatal(err)
		}
		return st[0]
	}
	gauge := func() float64 { return metricSum(t, reg, "ephemera_pool_min_idle", map[string]string{"pool": "auto"}) }
	waitfor.True(t, 10*time.Second, "a pass with no job: the buffer at idle_min", func() bool {
		st := status()
		return !st.UpdatedAt.IsZero() && st.MinIdle == 0 && st.Instances == 0
	})

	ids := e.queue(12, p, 50*time.Millisecond)
	waitfor.True(t, 20*time.Second, "the burst's jobs completed", e.allCompleted(ids))
	waitfor.True(t, 10*time.Second, "the buffer sized to idle_max, shown by the gauge, and topped up", func() bool {
		st := status()
		return st.MinIdle == 8 && gauge() == 8 && st.Idle == 8
	})
	// The burst's jobs waited for runners booting since after they were
	// queued: their times are exact.
	if n := metricSum(t, r.reg, "ephemera_runner_online_seconds", map[string]string{"pool": "auto", "via": "waiting_job"}); n == 0 {
		t.Error("no exact queued → online time observed")
	}

	clock.advance(scaler.IdleLookback + time.Minute)
	waitfor.True(t, 10*time.Second, "the buffer back at idle_min and the surplus trimmed", func() bool {
		st := status()
		return st.MinIdle == 0 && gauge() == 0 && st.Idle == 0 && len(e.prov.Instances()) == 0
	})
}
