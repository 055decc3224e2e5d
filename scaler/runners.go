package scaler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// runnerState is where a runner is in its life, as the scaler knows it.
// States only move forward.
type runnerState string

const (
	runnerProvisioning runnerState = "provisioning" // slot held, registering or creating
	runnerStarted      runnerState = "started"      // instance running
	runnerBusy         runnerState = "busy"         // GitHub said it took a job
	runnerDone         runnerState = "done"         // its job completed; the instance is on its way out
)

func (s runnerState) rank() int {
	switch s {
	case runnerProvisioning:
		return 0
	case runnerStarted:
		return 1
	case runnerBusy:
		return 2
	case runnerDone:
		return 3
	}
	return -1
}

// runnerRec is one runner's record in BucketRunners.
type runnerRec struct {
	V              int         `json:"v,omitempty"` // schemaVersion that wrote it; 0: before versions
	Name           string      `json:"name"`
	Pool           string      `json:"pool"`
	JobID          int64       `json:"job_id,omitempty"` // the job it was created for
	InstallationID int64       `json:"installation_id,omitempty"`
	RunnerID       int64       `json:"runner_id,omitempty"` // GitHub's id
	Owner          string      `json:"owner"`
	State          runnerState `json:"state"`
	Slot           string      `json:"slot"`
	CreatedAt      time.Time   `json:"created_at"`
	Deadline       time.Time   `json:"deadline"` // provisioning must end by then
	StartedAt      time.Time   `json:"started_at,omitzero"`
	OnlineAt       time.Time   `json:"online_at,omitzero"` // first seen online
	// QueuedAt is when its creation was asked for: its job's queued event
	// received, or the reconciler's top-up. Queued → online is measured
	// from it (ephemera_runner_online_seconds).
	QueuedAt time.Time `json:"queued_at,omitzero"`
	// OnlineBy says how OnlineAt was learnt: onlineWaitingJob, the
	// moment it came online (a job waiting since before the instance
	// started took it); onlineLaterJob, when a job queued after that
	// took it (an upper bound); empty, first seen idle in the runner
	// list; onlineListedBusy, first seen busy there, until the event
	// settles it.
	OnlineBy  string    `json:"online_by,omitempty"`
	IdleSince time.Time `json:"idle_since,omitzero"`
	BusyJob   int64     `json:"busy_job,omitempty"`
	DoneAt    time.Time `json:"done_at,omitzero"`
	// TokenID is the ID (tokens.ID) of the runner's one-time policy
	// token, and TokenExpires when it expires as last minted or extended;
	// empty and zero for records written before tokens were extended (their
	// token expires TokenTTL after CreatedAt), or once it was found
	// consumed or expired.
	TokenID      string    `json:"token_id,omitempty"`
	TokenExpires time.Time `json:"token_expires,omitzero"`
	// Heartbeats says the owner keeps a liveness key (liveness.go): when
	// it is gone, a provisioning is abandoned before its deadline.
	Heartbeats bool `json:"heartbeats,omitempty"`
}

func (r *runnerRec) stamp() (newer bool) { return stampVersion(&r.V) }

// A runner's transitions. Each changes the record in place and reports
// whether it did; one that does not apply (the record is past it
// already) leaves the record as it is, so that replaying an event, or
// two replicas applying the same one, changes nothing.

// created records that the runner's instance exists (regID: GitHub's
// id of its registration). A record the reconciler saw busy already,
// with its id, is left alone.
func (r *runnerRec) created(regID int64, now time.Time) bool {
	if r.State.rank() >= runnerStarted.rank() && r.RunnerID != 0 {
		return false
	}
	if r.State.rank() < runnerStarted.rank() {
		r.State = runnerStarted
	}
	r.RunnerID, r.StartedAt = regID, now.UTC()
	return true
}

// adoptStarted records that a runner whose provisioning was given up
// (undone, or taken over) exists after all; regID 0 when unknown.
func (r *runnerRec) adoptStarted(regID int64, now time.Time) bool {
	if r.State.rank() >= runnerStarted.rank() {
		return false
	}
	r.State, r.StartedAt = runnerStarted, now.UTC()
	if regID != 0 {
		r.RunnerID = regID
	}
	return true
}

// busy records that the runner took a job (job 0: seen busy in GitHub's
// runner list, job unknown). Seen busy in the list before anything told
// it was online, its OnlineAt is that list's time, pending (onlineListedBusy)
// until the job's in_progress event tells when the job started.
func (r *runnerRec) busy(job int64, now time.Time) bool {
	if r.State.rank() >= runnerBusy.rank() {
		return false
	}
	r.State, r.BusyJob, r.IdleSince = runnerBusy, job, time.Time{}
	if r.OnlineAt.IsZero() {
		r.OnlineAt = now.UTC()
		if job == 0 {
			r.OnlineBy = onlineListedBusy
		}
	}
	return true
}

// tookJob records that the runner took job (queued on GitHub at
// created) at started, as its in_progress event says. When the runner
// was not seen online before — or only seen busy in the list, which a
// pass can do before the event is handled — that is when it was first
// known online, and exactly when it came online if the job was waiting
// since before the instance started: GitHub hands a waiting job to a
// runner the moment it comes online. The event settles the job and the
// online time even when the record moved on without it (marked busy by
// the list, or done by a completed event handled first); handled again,
// it changes nothing.
func (r *runnerRec) tookJob(job int64, created, started time.Time) bool {
	settle := r.OnlineAt.IsZero() || r.OnlineBy == onlineListedBusy
	moved := r.busy(job, started)
	if r.BusyJob == 0 && r.State.rank() >= runnerBusy.rank() {
		r.BusyJob, moved = job, true
	}
	if !settle {
		return moved
	}
	r.OnlineAt = started.UTC()
	bound := r.StartedAt
	if bound.IsZero() {
		bound = r.CreatedAt
	}
	r.OnlineBy = onlineLaterJob
	if !created.IsZero() && !bound.IsZero() && !created.After(bound) {
		r.OnlineBy = onlineWaitingJob
	}
	return true
}

// How a runner's OnlineAt was learnt (runnerRec.OnlineBy), and the via
// label of ephemera_runner_online_seconds.
const (
	onlineWaitingJob = "waiting_job"
	onlineLaterJob   = "later_job"
	onlineListing    = "listing"
	// onlineListedBusy (a record's, never a label) is a runner first seen
	// busy in the list: its in_progress event, when handled, says more.
	onlineListedBusy = "listed_busy"
)

// idle records when the runner was first seen online and not busy.
func (r *runnerRec) idle(since time.Time) bool {
	if !r.IdleSince.IsZero() || r.State.rank() >= runnerBusy.rank() {
		return false
	}
	r.IdleSince = since.UTC()
	if r.OnlineAt.IsZero() {
		r.OnlineAt = r.IdleSince
	}
	return true
}

// done records that the runner's job completed, or that it left GitHub
// after it was online: its instance is on its way out.
func (r *runnerRec) done(now time.Time) bool {
	if r.State == runnerDone {
		return false
	}
	r.State, r.DoneAt, r.IdleSince = runnerDone, now.UTC(), time.Time{}
	return true
}

// tokenExtended records that the runner's token was extended until then.
func (r *runnerRec) tokenExtended(until time.Time) bool {
	if r.TokenID == "" || !until.After(r.TokenExpires) {
		return false
	}
	r.TokenExpires = until.UTC()
	return true
}

// tokenLost records that the runner's token can no longer be extended
// (consumed, expired, unknown): the reconciler replaces the runner while
// it waits idle.
func (r *runnerRec) tokenLost(now time.Time) bool {
	if r.TokenID == "" {
		return false
	}
	r.TokenID, r.TokenExpires = "", now.UTC()
	return true
}

// runnerStore owns BucketRunners: every runner record is written through
// it, and every change of state through one of runnerRec's transitions.
type runnerStore struct {
	kv jetstream.KeyValue
}

func (s runnerStore) get(ctx context.Context, name string) (entry[runnerRec], error) {
	return get[runnerRec](ctx, s.kv, name)
}

func (s runnerStore) all(ctx context.Context) (map[string]entry[runnerRec], error) {
	return loadAll[runnerRec](ctx, s.kv)
}

// create records a new runner; it fails when the name is taken.
func (s runnerStore) create(ctx context.Context, rec runnerRec) error {
	rec.V = schemaVersion
	if _, err := s.kv.Create(ctx, rec.Name, encode(rec)); err != nil {
		return fmt.Errorf("record runner %s: %w", rec.Name, err)
	}
	return nil
}

// apply runs one transition on the runner's record by compare-and-set
// and reports whether it changed it. A runner without a record is left
// without one, and a record written by a newer version is left as it is
// (see schemaVersion).
func (s runnerStore) apply(ctx context.Context, name string, t func(*runnerRec) bool) (bool, error) {
	_, _, changed, err := update(ctx, s.kv, name, t)
	if errors.Is(err, errNewerRecord) {
		return false, nil
	}
	return changed, err
}

// forget deletes the runner's record.
func (s runnerStore) forget(ctx context.Context, name string) error {
	return deleteRev(ctx, s.kv, name, 0)
}
