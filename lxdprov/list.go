package lxdprov

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/canonical/lxd/shared/api"

	"github.com/ephemera-ci/ephemera/scaler"
)

// List returns every instance of this provider's pools, in any state, on
// every cluster member: the instances whose user.ephemera.pool names one of
// the pools. ctx is checked before the request; a single LXD request is
// bounded by the client's own timeout.
func (p *Provider) List(ctx context.Context) (out []scaler.Instance, err error) {
	start := time.Now()
	defer func() { p.metrics.observe(opList, start, err) }()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	all, err := p.srv.GetInstances(api.InstanceTypeAny)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	for _, inst := range all {
		if _, ours := p.pools[inst.Config[KeyPool]]; !ours {
			continue
		}
		out = append(out, instanceOf(inst))
	}
	return out, nil
}

// instanceOf reads an LXD instance as the scaler sees it.
func instanceOf(inst api.Instance) scaler.Instance {
	jobID, _ := strconv.ParseInt(inst.Config[KeyJob], 10, 64)
	created, err := time.Parse(time.RFC3339, inst.Config[KeyCreated])
	if err != nil {
		created = inst.CreatedAt
	}
	return scaler.Instance{
		Name:      inst.Name,
		Pool:      inst.Config[KeyPool],
		JobID:     jobID,
		State:     stateOf(inst),
		CreatedAt: created.UTC(),
		Location:  inst.Location,
	}
}

// stateOf maps LXD's status to the scaler's states. An instance that is
// stopped but was never started is being created: LXD without
// instance_create_start creates it stopped and starts it next.
func stateOf(inst api.Instance) scaler.InstanceState {
	switch inst.StatusCode {
	case api.Running:
		return scaler.StateRunning
	case api.Starting, api.Pending, api.Started:
		return scaler.StateStarting
	case api.Stopping, api.Aborting, api.Cancelling:
		return scaler.StateStopping
	case api.Stopped:
		if neverStarted(&inst) {
			return scaler.StateStarting
		}
		return scaler.StateStopped
	default: // Error, Frozen, Freezing, Thawed, unknown
		return scaler.StateError
	}
}

// neverStarted reports whether the instance is stopped and has never run.
func neverStarted(inst *api.Instance) bool {
	_, started := inst.Config["volatile.last_state.power"]
	return inst.StatusCode == api.Stopped && !started
}
