package scaler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StatusBuckets are the KV buckets the status view reads: a change in any
// of them may change what it shows.
var StatusBuckets = []string{BucketRunners, BucketJobs, BucketSlots, BucketMeta}

// RunnerView is one runner as the status view shows it. It carries no
// secret: no JIT config, no token.
type RunnerView struct {
	Name string `json:"name"`
	Pool string `json:"pool"`
	// State is provisioning (slot held, registering or creating), started
	// (instance running, not yet seen online), idle, busy or finishing
	// (its job is over; the instance is on its way out).
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	// Job is the job it runs (busy) or was created for; Repo that job's
	// repository when known.
	Job  int64  `json:"job,omitempty"`
	Repo string `json:"repo,omitempty"`
}

// JobView is one job as the status view shows it.
type JobView struct {
	ID   int64  `json:"id"`
	Pool string `json:"pool"`
	Repo string `json:"repo"`
	// State is waiting (no runner took it yet), running, done or
	// cancelled (over before any runner took it).
	State  string `json:"state"`
	Runner string `json:"runner,omitempty"`
	// QueuedAt is GitHub's created_at (else when the scaler first saw
	// it); StartedAt and CompletedAt are GitHub's times (else when the
	// event was handled). Zero when not reached.
	QueuedAt    time.Time `json:"queued_at"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
}

// eventTime is GitHub's time t when it sent one, else now.
func eventTime(t, now time.Time) time.Time {
	if t.IsZero() {
		return now.UTC()
	}
	return t.UTC()
}

// ReadRunnersAndJobs reads every runner and job claim from KV, newest
// first; like [ReadStatus] it needs no running scaler, and a bucket that
// does not exist yet reads as empty.
func ReadRunnersAndJobs(ctx context.Context, js jetstream.JetStream) ([]RunnerView, []JobView, error) {
	claims, err := readBucket[claimRec](ctx, js, BucketJobs)
	if err != nil {
		return nil, nil, err
	}
	runners, err := readBucket[runnerRec](ctx, js, BucketRunners)
	if err != nil {
		return nil, nil, err
	}
	repoOf := map[int64]string{}
	jobs := make([]JobView, 0, len(claims))
	for _, e := range claims {
		c := e.Val
		repoOf[c.JobID] = c.Repo
		j := JobView{ID: c.JobID, Pool: c.Pool, Repo: c.Repo, Runner: c.RanOn, StartedAt: c.StartedAt, CompletedAt: c.CompletedAt}
		j.QueuedAt = c.JobCreatedAt
		if j.QueuedAt.IsZero() {
			j.QueuedAt = c.ReceivedAt
		}
		if j.QueuedAt.IsZero() {
			j.QueuedAt = c.ClaimedAt
		}
		switch {
		case c.Completed && !c.Started && c.NoRunner:
			j.State = "cancelled"
		case c.Completed:
			j.State = "done"
		case c.Started:
			j.State = "running"
		default:
			j.State = "waiting"
		}
		jobs = append(jobs, j)
	}
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].QueuedAt.After(jobs[b].QueuedAt) })
	out := make([]RunnerView, 0, len(runners))
	for _, e := range runners {
		r := e.Val
		rs := RunnerView{Name: r.Name, Pool: r.Pool, CreatedAt: r.CreatedAt, Job: r.JobID}
		switch r.State {
		case runnerProvisioning:
			rs.State = "provisioning"
		case runnerStarted:
			rs.State = "started"
			if !r.IdleSince.IsZero() {
				rs.State = "idle"
			}
		case runnerBusy:
			rs.State = "busy"
			if r.BusyJob != 0 {
				rs.Job = r.BusyJob
			}
		case runnerDone:
			rs.State = "finishing"
		default:
			rs.State = string(r.State)
		}
		rs.Repo = repoOf[rs.Job]
		out = append(out, rs)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].CreatedAt.After(out[b].CreatedAt) })
	return out, jobs, nil
}

func readBucket[T any](ctx context.Context, js jetstream.JetStream, name string) (map[string]entry[T], error) {
	kv, err := js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("status: bucket %s: %w", name, err)
	}
	return loadAll[T](ctx, kv)
}
