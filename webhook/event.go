package webhook

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/ephemera-ci/ephemera/internal/jobs"
)

// payload is the part of a workflow_job delivery ephemera reads. Decoding
// into this small struct, rather than go-github's full WorkflowJobEvent,
// keeps the hot path to one pass over the body with few allocations.
type payload struct {
	Action      string       `json:"action"`
	WorkflowJob *workflowJob `json:"workflow_job"`
	Repository  struct {
		FullName string `json:"full_name"`
		Owner    struct {
			Login string `json:"login"`
		} `json:"owner"`
	} `json:"repository"`
	Installation struct {
		ID int64 `json:"id"`
	} `json:"installation"`
}

type workflowJob struct {
	ID          int64     `json:"id"`
	RunID       int64     `json:"run_id"`
	RunAttempt  int64     `json:"run_attempt"`
	Labels      []string  `json:"labels"`
	RunnerID    int64     `json:"runner_id"`   // null until a runner takes the job
	RunnerName  string    `json:"runner_name"` // likewise
	Conclusion  string    `json:"conclusion"`  // null until completed
	CreatedAt   time.Time `json:"created_at"`
	StartedAt   time.Time `json:"started_at"`
	CompletedAt time.Time `json:"completed_at"` // null until completed
}

// parseJob decodes a workflow_job body into an event without its pool,
// delivery and received time. A body that is not JSON is errMalformedJSON;
// JSON that lacks what ephemera needs is an invalidJob error.
func parseJob(body []byte) (jobs.Event, error) {
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		// The decoder's messages can quote the body, so they are dropped
		// here and never logged. A wrong type is named by its field path,
		// which comes from payload's tags, not from the body.
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && te.Field != "" {
			return jobs.Event{}, invalidJob(te.Field + " has the wrong type")
		}
		return jobs.Event{}, errMalformedJSON
	}
	action := jobs.Action(p.Action)
	j := p.WorkflowJob
	switch {
	case j == nil:
		return jobs.Event{}, invalidJob("no workflow_job object")
	case !action.Valid():
		return jobs.Event{}, invalidJob("action must be queued, waiting, in_progress or completed")
	case j.ID <= 0:
		return jobs.Event{}, invalidJob("workflow_job.id is missing")
	case p.Repository.FullName == "":
		return jobs.Event{}, invalidJob("repository.full_name is missing")
	}
	owner := p.Repository.Owner.Login
	if owner == "" {
		owner, _, _ = strings.Cut(p.Repository.FullName, "/")
	}
	return jobs.Event{
		V:              jobs.Version,
		Action:         action,
		JobID:          j.ID,
		RunID:          j.RunID,
		RunAttempt:     j.RunAttempt,
		Repository:     p.Repository.FullName,
		Owner:          owner,
		InstallationID: p.Installation.ID,
		Labels:         j.Labels,
		RunnerID:       j.RunnerID,
		RunnerName:     j.RunnerName,
		Conclusion:     j.Conclusion,
		CreatedAt:      j.CreatedAt,
		StartedAt:      j.StartedAt,
		CompletedAt:    j.CompletedAt,
	}, nil
}
