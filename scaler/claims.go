package scaler

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/bus"
)

// claimState is where a job's own runner is.
type claimState string

const (
	claimWaiting     claimState = "waiting"     // no runner yet (its pool is at max)
	claimClaimed     claimState = "claimed"     // a replica is provisioning its runner
	claimProvisioned claimState = "provisioned" // its runner exists
)

// claimRec is one job's claim in BucketJobs. Whoever moves it to claimed
// first (create, or compare-and-set from waiting) provisions the job's one
// runner. Every queued job gets one runner, whichever runner GitHub hands
// it to, so a job that started elsewhere still gets its own (which then
// idles); only a job cancelled before it started needs none.
type claimRec struct {
	V              int        `json:"v,omitempty"` // schemaVersion that wrote it; 0: before versions
	JobID          int64      `json:"job_id"`
	Pool           string     `json:"pool"`
	Repo           string     `json:"repo"`
	InstallationID int64      `json:"installation_id,omitempty"`
	State          claimState `json:"state"`
	Runner         string     `json:"runner,omitempty"`
	Owner          string     `json:"owner,omitempty"`
	ClaimedAt      time.Time  `json:"claimed_at"`
	Deadline       time.Time  `json:"deadline,omitzero"`
	JobCreatedAt   time.Time  `json:"job_created_at,omitzero"` // GitHub's created_at
	ReceivedAt     time.Time  `json:"received_at,omitzero"`
	Attempts       int        `json:"attempts"`
	Started        bool       `json:"started,omitempty"`   // a runner took the job
	Completed      bool       `json:"completed,omitempty"` // the job is over
	NoRunner       bool       `json:"no_runner,omitempty"` // cancelled before it started: needs no runner
	// Tombstone marks a claim made by the job's completion (ClaimedAt is
	// then when that was recorded): no queued delivery of the job had been
	// handled by then. One received after that (a late redelivery, a
	// replay) provisions nothing; one received before and handled after
	// (a backlog, a retry) is owed its runner.
	Tombstone bool `json:"tombstone,omitempty"`
	// StartedAt, CompletedAt (GitHub's times, or when the event was
	// handled) and RanOn (the runner that took it) are for the status
	// view (statusjobs.go).
	StartedAt   time.Time `json:"started_at,omitzero"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
	RanOn       string    `json:"ran_on,omitempty"`
	// Heartbeats says the owner keeps a liveness key (liveness.go): when
	// it is gone, the claim is taken over before its deadline.
	Heartbeats bool `json:"heartbeats,omitempty"`
	// FencedAt is when the owner last confirmed, right before an
	// irreversible step, that the claim is still its own.
	FencedAt time.Time `json:"fenced_at,omitzero"`
}

// waiting reports whether the job still waits for a runner to take it.
func (c claimRec) waiting() bool { return !c.Started && !c.Completed }

func (c *claimRec) stamp() (newer bool) { return stampVersion(&c.V) }

// A claim's transitions. Like a runner's, each changes the record in
// place and reports whether it did; the store writes the result by
// compare-and-set.

// claim names the runner owner is about to provision for the job, to be
// done by deadline.
func (c *claimRec) claim(runner, owner string, deadline time.Time) {
	c.State, c.Runner, c.Owner, c.Heartbeats = claimClaimed, runner, owner, true
	c.Tombstone = false // served: an owed delivery of a completed job
	c.Deadline, c.Attempts = deadline.UTC(), c.Attempts+1
}

// takeOver is claim for a claim whose claimant is past its deadline, or
// whose runner came and went: the claim starts afresh at now.
func (c *claimRec) takeOver(runner, owner string, now, deadline time.Time) {
	c.claim(runner, owner, deadline)
	c.ClaimedAt = now.UTC()
}

// giveBack returns a claim whose provisioning failed to waiting: the
// next delivery, anywhere, starts afresh.
func (c *claimRec) giveBack() {
	c.State, c.Runner, c.Owner = claimWaiting, "", ""
}

// fence confirms that the claim is still owner's, for runner, and being
// provisioned; it reports false when it is not.
func (c *claimRec) fence(runner, owner string, now time.Time) bool {
	if c.Runner != runner || c.Owner != owner || c.State != claimClaimed {
		return false
	}
	c.FencedAt = now.UTC()
	return true
}

// expire ends the claim's deadline now, so that the reconciler may serve
// the job again.
func (c *claimRec) expire(now time.Time) { c.Deadline = now.UTC() }

// release undoes the claim owner made for runner after its provisioning
// failed, if the claim is still that: it gives it back, or, after the
// job's last delivery (last), expires it for the reconciler to serve the
// job from.
func (c *claimRec) release(runner, owner string, last bool, now time.Time) bool {
	if c.Runner != runner || c.Owner != owner || c.State != claimClaimed {
		return false
	}
	if last {
		c.expire(now)
	} else {
		c.giveBack()
	}
	return true
}

// provisioned records that runner, the one the claim names, exists.
func (c *claimRec) provisioned(runner string) bool {
	if c.Runner != runner || c.State == claimProvisioned {
		return false
	}
	c.State = claimProvisioned
	return true
}

// started records that a runner (ranOn) took the job, at.
func (c *claimRec) started(at time.Time, ranOn string) bool {
	if c.Started {
		return false
	}
	c.Started, c.StartedAt, c.RanOn = true, at, ranOn
	return true
}

// completed records that the job is over, at; noRunner says no runner took
// it (it was cancelled while queued), so that, when none was being made
// for it either, a late queued delivery creates none.
func (c *claimRec) completed(noRunner bool, at time.Time) bool {
	if c.Completed {
		return false
	}
	c.Completed, c.CompletedAt = true, at
	c.NoRunner = noRunner && !c.Started && c.State == claimWaiting
	return true
}

// fence runs claimRec.fence by compare-and-set: it reports whether the
// claim is still owner's for runner, having moved its revision, so that a
// takeover that read it before fails.
// It returns the claim's new revision.
func (s claimStore) fence(ctx context.Context, job int64, runner, owner string, now time.Time) (uint64, bool, error) {
	for range 20 {
		e, err := s.get(ctx, job)
		if err != nil {
			return 0, false, err
		}
		if !e.Found || e.Val.V > schemaVersion || !e.Val.fence(runner, owner, now) {
			return 0, false, nil
		}
		rev, err := s.swap(ctx, e.Val, e.Rev)
		if err == nil {
			return rev, true, nil
		}
		if !bus.IsConflict(err) {
			return 0, false, err
		}
	}
	return 0, false, fmt.Errorf("fence claim %d: too much contention", job)
}

func jobKey(id int64) string { return strconv.FormatInt(id, 10) }

// claimStore owns BucketJobs: every claim is written through it.
type claimStore struct {
	kv jetstream.KeyValue
}

func (s claimStore) get(ctx context.Context, job int64) (entry[claimRec], error) {
	return get[claimRec](ctx, s.kv, jobKey(job))
}

func (s claimStore) all(ctx context.Context) (map[string]entry[claimRec], error) {
	return loadAll[claimRec](ctx, s.kv)
}

// create writes a job's first claim; it fails with a conflict (see
// isConflict) when the job has one.
func (s claimStore) create(ctx context.Context, c claimRec) (uint64, error) {
	c.V = schemaVersion
	rev, err := s.kv.Create(ctx, jobKey(c.JobID), encode(c))
	if err != nil {
		return 0, fmt.Errorf("create claim %d: %w", c.JobID, err)
	}
	return rev, nil
}

// swap writes c over the claim at revision rev; it fails with a
// conflict when the claim moved meanwhile.
func (s claimStore) swap(ctx context.Context, c claimRec, rev uint64) (uint64, error) {
	if c.V > schemaVersion {
		return 0, fmt.Errorf("update claim %d: %w", c.JobID, errNewerRecord)
	}
	c.V = schemaVersion
	nrev, err := s.kv.Update(ctx, jobKey(c.JobID), encode(c), rev)
	if err != nil {
		return 0, fmt.Errorf("update claim %d: %w", c.JobID, err)
	}
	return nrev, nil
}

// apply runs one transition on the job's claim by compare-and-set,
// retrying on a concurrent write. It reports whether the job has a claim
// and whether the transition changed it. A job without a claim is left
// without one, and a claim written by a newer version is left as it is
// (see schemaVersion).
func (s claimStore) apply(ctx context.Context, job int64, t func(*claimRec) bool) (found, changed bool, err error) {
	_, found, changed, err = update(ctx, s.kv, jobKey(job), t)
	if errors.Is(err, errNewerRecord) {
		return true, false, nil
	}
	return found, changed, err
}
