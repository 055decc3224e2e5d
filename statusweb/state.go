package statusweb

import (
	"context"
	"time"

	"github.com/ephemera-ci/ephemera/scaler"
)

// Limits of what one state carries.
const (
	maxJobs    = 50
	maxRunners = 200
	waitWindow = time.Hour
)

// State is what the page shows, as sent to it.
type State struct {
	At      time.Time           `json:"at"`
	Pools   []scaler.PoolStatus `json:"pools"`
	Runners []scaler.RunnerView `json:"runners"`
	Jobs    []scaler.JobView    `json:"jobs"` // newest first
	// Waits are the queue waits of jobs that started in the last hour.
	Waits []Wait `json:"waits"`
}

// Wait is one job's queue wait, for the chart.
type Wait struct {
	Pool      string    `json:"pool"`
	StartedAt time.Time `json:"started_at"`
	Seconds   float64   `json:"seconds"`
}

func (h *Handler) read(ctx context.Context) (State, error) {
	pools, err := scaler.ReadStatus(ctx, h.cfg.JetStream, h.cfg.Pools)
	if err != nil {
		return State{}, err
	}
	runners, jobs, err := scaler.ReadRunnersAndJobs(ctx, h.cfg.JetStream)
	if err != nil {
		return State{}, err
	}
	liveCounts(pools, runners)
	now := time.Now().UTC()
	st := State{At: now, Pools: pools, Runners: runners, Jobs: jobs, Waits: []Wait{}}
	for _, j := range jobs {
		if !j.StartedAt.IsZero() && now.Sub(j.StartedAt) <= waitWindow {
			st.Waits = append(st.Waits, Wait{Pool: j.Pool, StartedAt: j.StartedAt, Seconds: max(0, j.StartedAt.Sub(j.QueuedAt).Seconds())})
		}
	}
	if len(st.Jobs) > maxJobs {
		st.Jobs = st.Jobs[:maxJobs]
	}
	if len(st.Runners) > maxRunners {
		st.Runners = st.Runners[:maxRunners]
	}
	return st, nil
}

// liveCounts replaces the reconciler's last counts of idle, busy,
// provisioning and finishing runners (as old as reconcile.interval) with
// counts of the runner records now in KV, which change as events arrive.
func liveCounts(pools []scaler.PoolStatus, runners []scaler.RunnerView) {
	idx := map[string]int{}
	for i := range pools {
		idx[pools[i].Pool] = i
		pools[i].Idle, pools[i].Busy, pools[i].Provisioning, pools[i].Finishing = 0, 0, 0, 0
	}
	for _, r := range runners {
		i, ok := idx[r.Pool]
		if !ok {
			continue
		}
		switch r.State {
		case "idle":
			pools[i].Idle++
		case "busy":
			pools[i].Busy++
		case "provisioning", "started":
			pools[i].Provisioning++
		case "finishing":
			pools[i].Finishing++
		}
	}
}
