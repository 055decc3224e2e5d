package scaler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/jobs"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/scaler"
	"github.com/ephemera-ci/ephemera/scaler/scalertest"
)

// Late, replayed and foreign deliveries, fed straight into the job stream
// so that their order is exactly the one under test.

var deliverySeq atomic.Int64

// publish stores ev in the job stream as the webhook receiver would, under
// a fresh delivery id, and returns its stream sequence.
func (e *env) publish(ev jobs.Event) uint64 {
	e.t.Helper()
	ev.V = jobs.Version
	ev.Delivery = fmt.Sprintf("late-%d", deliverySeq.Add(1))
	if ev.ReceivedAt.IsZero() {
		ev.ReceivedAt = time.Now().UTC()
	}
	if ev.Labels == nil {
		ev.Labels = []string{"self-hosted", ev.Pool}
	}
	data, err := json.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	msg := nats.NewMsg(jobs.Subject(ev.Pool, ev.Action))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, ev.Delivery)
	ack, err := e.bus.JS.PublishMsg(context.Background(), msg)
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

// handled returns a condition: the scaler's consumer has answered (acked
// or terminated) every message up to stream sequence seq, and holds none
// unanswered.
func (e *env) handled(seq uint64) func() bool {
	return func() bool {
		c, err := e.bus.JS.Consumer(context.Background(), "EPHEMERA_JOBS", "ephemera-scaler")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0
	}
}

// eventOnce returns a func that, the first time it is called, publishes
// ev and waits up to 5 s for shown (the job's claim showing the event),
// sending the wait's outcome on the channel; it reports whether that call
// was the first. Tests call it from inside a provisioning.
func (e *env) eventOnce(ev jobs.Event, shown func() bool) (func() bool, <-chan error) {
	var once sync.Once
	seen := make(chan error, 1)
	return func() (first bool) {
		once.Do(func() {
			e.publish(ev)
			seen <- waitfor.Within(5*time.Second, shown)
			first = true
		})
		return first
	}, seen
}

// claim reads job id's raw claim record; ok is false when there is none.
func (e *env) claim(id int64) (c struct {
	State                        string
	Started, Completed, NoRunner bool
}, ok bool) {
	kv, err := e.bus.JS.KeyValue(context.Background(), scaler.BucketJobs)
	if err != nil {
		return c, false
	}
	v, err := kv.Get(context.Background(), strconv.FormatInt(id, 10))
	if err != nil {
		return c, false
	}
	return c, json.Unmarshal(v.Value(), &c) == nil
}

type claimView struct {
	State     string `json:"state"`
	Completed bool   `json:"completed"`
	NoRunner  bool   `json:"no_runner"`
}

func (e *env) deleteClaim(id int64) {
	e.t.Helper()
	kv, err := e.bus.JS.KeyValue(context.Background(), scaler.BucketJobs)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := kv.Purge(context.Background(), strconv.FormatInt(id, 10)); err != nil {
		e.t.Fatal(err)
	}
}

// The cause of the scale-out test's leftover open claim: a job ran on a
// runner that already existed, its completed event was handled before any
// queued delivery of it (a delivery retried while its pool was full, a
// failed delivery redelivered by the reconciler, a create whose error was
// dropped during a NATS restart), and the queued delivery that came after
// opened a fresh claim for a job that was over, and provisioned for it.
func TestAQueuedDeliveryHandledAfterItsJobCompletedProvisionsNothing(t *testing.T) {
	p := pool("small", 0, 5)
	e := newEnv(t, p)
	r := e.start(e.config())
	const job = 424242
	created := time.Now().Add(-time.Minute).UTC()
	seq := e.publish(jobs.Event{Action: jobs.Completed, JobID: job, Pool: "small", Repository: "acme/app", RunnerName: "eph-small-ranonidl", Conclusion: "success", CreatedAt: created})
	waitfor.True(t, 5*time.Second, "the completed event to be handled", e.handled(seq))
	seq = e.publish(jobs.Event{Action: jobs.Queued, JobID: job, Pool: "small", Repository: "acme/app", CreatedAt: created})
	waitfor.True(t, 5*time.Second, "the late queued event to be handled", e.handled(seq))

	if n := e.jobBoundCreates()[job]; n != 0 {
		t.Errorf("%d runners created for a job that had completed, want 0", n)
	}
	c, ok := e.claim(job)
	if ok && !c.Completed {
		t.Errorf("the job's claim is open (%+v): nothing will close it before the reconciler asks GitHub", c)
	}
	if n := metricSum(t, r.reg, "ephemera_jobs_total", map[string]string{"action": "ignored_completed"}); n != 1 {
		t.Errorf("ephemera_jobs_total{action=ignored_completed} = %v, want 1", n)
	}
}

// A queued delivery that the webhook receiver stored before the job
// completed, but that the scaler handled only after the completion (a
// backlog in the stream, a retry), is owed its runner: the job took
// another's. Its claim is served and stays completed, never open.
func TestAQueuedDeliveryReceivedBeforeItsJobCompletedIsStillOwedItsRunner(t *testing.T) {
	p := pool("small", 0, 5)
	e := newEnv(t, p)
	e.start(e.config())
	const job = 434343
	received := time.Now().UTC()
	seq := e.publish(jobs.Event{Action: jobs.Completed, JobID: job, Pool: "small", Repository: "acme/app", RunnerName: "eph-small-ranonidl", Conclusion: "success"})
	waitfor.True(t, 5*time.Second, "the completed event to be handled", e.handled(seq))
	seq = e.publish(jobs.Event{Action: jobs.Queued, JobID: job, Pool: "small", Repository: "acme/app", ReceivedAt: received})
	waitfor.True(t, 5*time.Second, "the queued event to be handled", e.handled(seq))
	if n := e.jobBoundCreates()[job]; n != 1 {
		t.Errorf("%d runners created for the job, want its one owed runner", n)
	}
	if c, ok := e.claim(job); !ok || !c.Completed || c.State != "provisioned" {
		t.Errorf("claim %+v (found %v), want provisioned and still completed", c, ok)
	}
}

// A completed event handled while the job's runner is being provisioned,
// before the fences that precede registration and create (a job taken by
// an idle runner while this one was made): the fences re-read the claim,
// and provisioned must go on top of what they read. Written on the copy
// read before provisioning, it dropped the completion and left the claim
// open until reprovisionStuck (the scale-out test's run 12, job 5051).
func TestACompletionHandledMidProvisioningIsKeptOnTheClaim(t *testing.T) {
	p := pool("small", 0, 5)
	e := newEnv(t, p)
	const job = 454545
	mid, seen := e.eventOnce(jobs.Event{Action: jobs.Completed, JobID: job, Pool: "small", Repository: "acme/app", RunnerName: "eph-small-ranonidl", Conclusion: "success"},
		func() bool { c, ok := e.claim(job); return ok && c.Completed })
	e.tokens.OnMint = func(string) { mid() }
	e.start(e.config())
	seq := e.publish(jobs.Event{Action: jobs.Queued, JobID: job, Pool: "small", Repository: "acme/app"})
	waitfor.True(t, 10*time.Second, "the queued event to be handled", e.handled(seq))
	if err := <-seen; err != nil {
		t.Fatalf("the completed event, handled while the runner was provisioned: %v", err)
	}
	c, ok := e.claim(job)
	if !ok || !c.Completed || c.State != "provisioned" {
		t.Errorf("claim %+v (found %v), want provisioned and still completed", c, ok)
	}
}

// A provisioning that fails after the job's own in_progress event moved
// its claim on (the job took another runner meanwhile) still gives the
// claim back. Written at the revision read before, the give-back lost to
// the event's write, and the job's runner waited for the claim's deadline
// and a takeover.
func TestAClaimWhoseProvisioningFailedIsGivenBackAfterTheJobsOwnEventMovedIt(t *testing.T) {
	p := pool("small", 0, 5)
	e := newEnv(t, p)
	const job = 464646
	mid, seen := e.eventOnce(jobs.Event{Action: jobs.InProgress, JobID: job, Pool: "small", Repository: "acme/app", RunnerName: "eph-small-ranonidl"},
		func() bool { c, ok := e.claim(job); return ok && c.Started })
	e.prov.Fail = func(scaler.InstanceSpec) error {
		if mid() {
			return scalertest.ErrInjected
		}
		return nil
	}
	// The failed job asks again only a minute later: its claim stays as
	// the failure left it.
	e.start(e.config(func(c *scaler.Config) { c.CapacityRetry = time.Minute }))
	e.publish(jobs.Event{Action: jobs.Queued, JobID: job, Pool: "small", Repository: "acme/app"})
	if err := <-seen; err != nil {
		t.Fatalf("the in_progress event, handled while the runner was provisioned: %v", err)
	}
	waitfor.True(t, 5*time.Second, "the claim given back, still started", func() bool {
		c, ok := e.claim(job)
		return ok && c.State == "waiting" && c.Started
	})
}

// A captured, signed queued body replayed under a fresh delivery id after
// the job's claim has expired (JobClaimTTL) must not provision: completed
// jobs are remembered for MaxJobAge.
func TestAQueuedBodyReplayedAfterTheClaimExpiredProvisionsNothing(t *testing.T) {
	p := pool("small", 0, 5)
	e := newEnv(t, p)
	e.start(e.config())
	ids := e.queue(1, p, 50*time.Millisecond)
	waitFor(t, 10*time.Second, "the job to complete", e.allCompleted(ids))
	waitfor.True(t, 5*time.Second, "its completed event to be handled", func() bool {
		c, ok := e.claim(ids[0])
		return ok && c.Completed
	})
	e.deleteClaim(ids[0]) // as the claim bucket's TTL would, a day later
	before := e.jobBoundCreates()[ids[0]]

	seq := e.publish(jobs.Event{Action: jobs.Queued, JobID: ids[0], Pool: "small", Repository: "acme/app", CreatedAt: time.Now().Add(-25 * time.Hour).UTC()})
	waitfor.True(t, 5*time.Second, "the replay to be handled", e.handled(seq))
	if n := e.jobBoundCreates()[ids[0]]; n != before {
		t.Errorf("the replay created %d more runners, want 0", n-before)
	}
}

// A queued body whose job was created longer ago than GitHub lets a run
// live is a replay whatever ephemera remembers: ignored.
func TestAQueuedJobOlderThanGitHubKeepsAnyRunIsIgnored(t *testing.T) {
	p := pool("small", 0, 5)
	e := newEnv(t, p)
	r := e.start(e.config())
	seq := e.publish(jobs.Event{Action: jobs.Queued, JobID: 777, Pool: "small", Repository: "acme/app", CreatedAt: time.Now().Add(-scaler.MaxJobAge - time.Hour).UTC()})
	waitfor.True(t, 5*time.Second, "the stale event to be handled", e.handled(seq))
	if n := len(e.prov.Specs()); n != 0 {
		t.Errorf("%d runners created for a job older than MaxJobAge, want 0", n)
	}
	if _, ok := e.claim(777); ok {
		t.Errorf("a claim was opened for a job older than MaxJobAge")
	}
	if n := metricSum(t, r.reg, "ephemera_jobs_total", map[string]string{"action": "ignored_stale"}); n != 1 {
		t.Errorf("ephemera_jobs_total{action=ignored_stale} = %v, want 1", n)
	}
}

// Another self-hosted runner that matches a pool's labels may take a job;
// its name is no valid KV key ("build box 1", "runner-2@ip-10-0-0-1").
// The event is handled once (the job's claim moves on), never retried
// forever.
func TestEventsNamingARunnerEphemeraDidNotMakeAreHandledOnce(t *testing.T) {
	p := pool("small", 0, 5)
	e := newEnv(t, p)
	e.start(e.config())
	var seq uint64
	for i, name := range []string{"build box 1", "runner-2@ip-host", "eph-small-", "eph-other-abcdefgh", "eph-small-abc.def"} {
		job := int64(9000 + i)
		e.publish(jobs.Event{Action: jobs.InProgress, JobID: job, Pool: "small", Repository: "acme/app", RunnerName: name})
		seq = e.publish(jobs.Event{Action: jobs.Completed, JobID: job, Pool: "small", Repository: "acme/app", RunnerName: name, Conclusion: "success"})
	}
	waitfor.True(t, 5*time.Second, "every event to be handled", e.handled(seq))
	for i := range 5 {
		if c, ok := e.claim(int64(9000 + i)); !ok || !c.Completed {
			t.Errorf("job %d: claim %+v (found %v), want it recorded completed", 9000+i, c, ok)
		}
	}
	if n := e.countKeys(scaler.BucketRunners); n != 0 {
		t.Errorf("%d runner records written for runners ephemera did not make, want 0", n)
	}
}
