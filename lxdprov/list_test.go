package lxdprov

import (
	"testing"
	"time"

	"github.com/canonical/lxd/shared/api"
	"github.com/google/go-cmp/cmp"

	"github.com/ephemera-ci/ephemera/scaler"
)

func TestInstanceStates(t *testing.T) {
	started := map[string]string{"volatile.last_state.power": "RUNNING"}
	for _, tc := range []struct {
		name   string
		status api.StatusCode
		config map[string]string
		want   scaler.InstanceState
	}{
		{"a running instance is running", api.Running, started, scaler.StateRunning},
		{"a starting instance is starting", api.Starting, started, scaler.StateStarting},
		{"a created, never started instance is starting", api.Stopped, nil, scaler.StateStarting},
		{"a stopped instance that ran is stopped", api.Stopped, map[string]string{"volatile.last_state.power": "STOPPED"}, scaler.StateStopped},
		{"a stopping instance is stopping", api.Stopping, started, scaler.StateStopping},
		{"a frozen instance is in error", api.Frozen, started, scaler.StateError},
		{"an instance in error is in error", api.Error, started, scaler.StateError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stateOf(api.Instance{StatusCode: tc.status, Config: tc.config}); got != tc.want {
				t.Errorf("stateOf = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestInstanceReadsEphemerasKeys(t *testing.T) {
	lxdCreated := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		config map[string]string
		want   scaler.Instance
	}{
		{"a job-bound runner",
			map[string]string{KeyPool: "small", KeyJob: "42", KeyCreated: "2026-01-02T03:04:00Z", "volatile.last_state.power": "RUNNING"},
			scaler.Instance{Name: "eph-small-1", Pool: "small", JobID: 42, State: scaler.StateRunning, CreatedAt: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), Location: "m1"}},
		{"a buffer runner without a creation key falls back to LXD's time",
			map[string]string{KeyPool: "small", KeyJob: "0"},
			scaler.Instance{Name: "eph-small-1", Pool: "small", State: scaler.StateRunning, CreatedAt: lxdCreated, Location: "m1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := instanceOf(api.Instance{
				Name: "eph-small-1", StatusCode: api.Running, Location: "m1", CreatedAt: lxdCreated,
				Config: tc.config,
			})
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("instanceOf (-got +want):\n%s", diff)
			}
		})
	}
}
