package scaler

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/config"
)

// The leader computes each auto pool's day's level from the claims of
// the last day, keeps it for IdleLevelEvery, and computes it again at
// once when the pool's target changes.
func TestTheLeaderKeepsAPoolsDayLevelForIdleLevelEvery(t *testing.T) {
	now := t0
	p := config.Pool{Name: "auto", Max: 40, AutoIdle: true, IdleMax: 30,
		TargetWait: config.TargetWait{Quantile: 0.95, Wait: config.Duration(5 * time.Second)}}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s := &Scaler{cfg: Config{Pools: []config.Pool{p}, Interval: 30 * time.Second, Now: func() time.Time { return now }},
		pools: map[string]config.Pool{p.Name: p}, log: zerolog.Nop(), m: m}
	var claims []claimRec
	arrive := func(at ...time.Time) {
		for _, a := range at {
			claims = append(claims, claimRec{JobID: int64(len(claims) + 1), Pool: p.Name, State: claimProvisioned, ClaimedAt: a, ReceivedAt: a})
		}
	}
	size := func() int { return s.sizeBuffers(worldOf{claims: claims}.build(now))[p.Name] }

	// A push of 20 three hours ago, 20 single jobs an hour apart and a
	// push of 10 a minute ago: 50 jobs, 2 of which may wait at p95; each
	// runner online DefaultReplenish (30 s) after its job, so 18 idle.
	// The push makes the pool batched: the buffer is the level.
	arrive(burst(20, 3*time.Hour, 0)...)
	arrive(burst(20, 30*time.Minute, 19*time.Hour)...)
	arrive(burst(10, time.Minute, 0)...)
	if got := size(); got != 18 {
		t.Fatalf("buffer %d, want the day's level of 18", got)
	}
	// Another push of 20, four hours ago: 70 jobs, 3 may wait, so 19.
	// The leader reads it only IdleLevelEvery after the last level.
	arrive(burst(20, 4*time.Hour, 0)...)
	now = t0.Add(IdleLevelEvery - time.Second)
	if got := size(); got != 18 {
		t.Errorf("buffer %d before IdleLevelEvery passed, want the level kept, 18", got)
	}
	now = t0.Add(IdleLevelEvery)
	if got := size(); got != 19 {
		t.Errorf("buffer %d after IdleLevelEvery, want the new level, 19", got)
	}
	// At p99 none of the 70 may wait: every push's runners idle.
	p.TargetWait.Quantile = 0.99
	s.cfg.Pools[0], s.pools[p.Name] = p, p
	now = now.Add(time.Second)
	if got := size(); got != 20 {
		t.Errorf("buffer %d after the target changed, want the level for p99 at once, 20", got)
	}
}
