// Package jobs is the wire contract between the webhook receiver and the
// scaler: the event stored in JetStream and the subjects it is stored under.
// It holds nothing else.
package jobs

import (
	"fmt"
	"strings"
	"time"
)

// Version is the current value of Event.V.
const Version = 1

// Stream is the JetStream stream that holds job events.
const Stream = "EPHEMERA_JOBS"

// SubjectAll matches every job event.
const SubjectAll = "ephemera.jobs.>"

const subjectPrefix = "ephemera.jobs."

// Action is a workflow_job action.
type Action string

// The workflow_job actions GitHub sends.
const (
	Queued     Action = "queued"
	Waiting    Action = "waiting"
	InProgress Action = "in_progress"
	Completed  Action = "completed"
)

// Valid reports whether a is one of the four actions.
func (a Action) Valid() bool {
	switch a {
	case Queued, Waiting, InProgress, Completed:
		return true
	}
	return false
}

// Event is one workflow_job delivery, reduced to what ephemera uses. It is
// stored as JSON under Subject(Pool, Action) with Nats-Msg-Id = Delivery.
type Event struct {
	V              int       `json:"v"`
	Delivery       string    `json:"delivery"` // X-GitHub-Delivery
	Action         Action    `json:"action"`
	JobID          int64     `json:"job_id"`
	RunID          int64     `json:"run_id"`
	RunAttempt     int64     `json:"run_attempt"`
	Repository     string    `json:"repository"` // owner/name
	Owner          string    `json:"owner"`
	InstallationID int64     `json:"installation_id,omitempty"`
	Labels         []string  `json:"labels"`
	RunnerID       int64     `json:"runner_id,omitempty"`
	RunnerName     string    `json:"runner_name,omitempty"`
	Conclusion     string    `json:"conclusion,omitempty"`
	CreatedAt      time.Time `json:"created_at,omitzero"`
	StartedAt      time.Time `json:"started_at,omitzero"`
	CompletedAt    time.Time `json:"completed_at,omitzero"`
	ReceivedAt     time.Time `json:"received_at"`
	Pool           string    `json:"pool"`
}

// Subject is the subject an event of pool and action is stored under.
func Subject(pool string, action Action) string {
	return subjectPrefix + pool + "." + string(action)
}

// PoolSubjects matches every event of pool.
func PoolSubjects(pool string) string { return subjectPrefix + pool + ".*" }

// ParseSubject splits a job subject into its pool and action.
func ParseSubject(subject string) (pool string, action Action, err error) {
	rest, ok := strings.CutPrefix(subject, subjectPrefix)
	if ok {
		pool, a, ok2 := strings.Cut(rest, ".")
		if ok2 && pool != "" && Action(a).Valid() {
			return pool, Action(a), nil
		}
	}
	return "", "", fmt.Errorf("not a job subject: %q", subject)
}
