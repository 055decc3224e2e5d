package scaler_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/scaler"
)

// claimOf reads job id's claim record from KV.
func (e *env) claimOf(id int64) (state string, started bool) {
	kv, err := e.bus.JS.KeyValue(context.Background(), scaler.BucketJobs)
	if err != nil {
		return "", false
	}
	v, err := kv.Get(context.Background(), strconv.FormatInt(id, 10))
	if err != nil {
		return "", false
	}
	var c struct {
		State   string `json:"state"`
		Started bool   `json:"started"`
	}
	_ = json.Unmarshal(v.Value(), &c)
	return c.State, c.Started
}

// TestAJobThatStartsWhileItsRunnerIsCreatedIsStillRecordedProvisioned
// covers the race in which the job's in_progress event moves its claim on
// while the instance is still being created: the claim must still end up
// "provisioned", not stay "claimed" (where, past its deadline, a later
// delivery of the job would take it over).
func TestAJobThatStartsWhileItsRunnerIsCreatedIsStillRecordedProvisioned(t *testing.T) {
	p := pool("small", 0, 5)
	e := newEnv(t, p)
	var id int64
	e.prov.Fail = func(spec scaler.InstanceSpec) error {
		// The runner comes online and takes its job before the create
		// returns; wait until the scaler has recorded the job started.
		_ = e.fake.RunnerOnline(spec.Name)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if _, started := e.claimOf(spec.JobID); started {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	}
	e.start(e.config())
	id = e.queue(1, p, 50*time.Millisecond)[0]
	waitFor(t, 10*time.Second, "the job to complete", e.allCompleted([]int64{id}))
	waitFor(t, 5*time.Second, "the claim to be recorded provisioned", func() bool {
		state, started := e.claimOf(id)
		return state == "provisioned" && started
	})
}

// claimRanOn is the runner job id's claim says the job ran on.
func (e *env) claimRanOn(id int64) string {
	var c struct {
		RanOn string `json:"ran_on"`
	}
	_ = json.Unmarshal([]byte(e.rawClaim(id)), &c)
	return c.RanOn
}
