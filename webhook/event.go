package webhook

import (
	"strings"
	"time"

	"github.com/ephemera-ci/ephemera/internal/jobs"
)

// workflowJob is the part of a workflow_job object ephemera keeps.
type workflowJob struct {
	ID          int64
	RunID       int64
	RunAttempt  int64
	Labels      []string
	RunnerID    int64  // null until a runner takes the job
	RunnerName  string // likewise
	Conclusion  string // null until completed
	CreatedAt   time.Time
	StartedAt   time.Time
	CompletedAt time.Time // null until completed
}

// payload is the part of a workflow_job delivery ephemera keeps.
type payload struct {
	Action         string
	Job            *workflowJob
	Repository     string // full_name
	Owner          string // repository.owner.login
	InstallationID int64
}

// decodePayload reads body in one pass with jsonReader. It accepts exactly
// the documents encoding/json accepts and fills the fields the way
// json.Unmarshal would fill the equivalent tagged struct, except that keys
// match exactly (as in encoding/json/v2), not case-insensitively.
func decodePayload(body []byte) (payload, error) {
	var p payload
	r := &jsonReader{b: body}
	if c := r.peek(); c != '{' && c != 'n' {
		if err := r.skip(); err != nil {
			return p, errMalformedJSON
		}
		if err := r.end(); err != nil {
			return p, errMalformedJSON
		}
		return p, invalidJob("the body is not a JSON object")
	}
	err := r.object("", func(key []byte) error {
		switch string(key) {
		case "action":
			return r.str("action", &p.Action)
		case "workflow_job":
			if isNull, err := r.null(); isNull || err != nil {
				p.Job = nil
				return err
			}
			if p.Job == nil {
				p.Job = &workflowJob{}
			}
			return r.object("workflow_job", func(key []byte) error { return p.Job.member(r, key) })
		case "repository":
			return r.object("repository", func(key []byte) error {
				switch string(key) {
				case "full_name":
					return r.str("repository.full_name", &p.Repository)
				case "owner":
					return r.object("repository.owner", func(key []byte) error {
						if string(key) == "login" {
							return r.str("repository.owner.login", &p.Owner)
						}
						return r.skip()
					})
				}
				return r.skip()
			})
		case "installation":
			return r.object("installation", func(key []byte) error {
				if string(key) == "id" {
					return r.int("installation.id", &p.InstallationID)
				}
				return r.skip()
			})
		}
		return r.skip()
	})
	if err == nil {
		err = r.end()
	}
	switch {
	case err != nil:
		return p, errMalformedJSON
	case r.typeErr != "":
		return p, invalidJob(r.typeErr + " has the wrong type")
	}
	return p, nil
}

// member reads the workflow_job field key.
func (j *workflowJob) member(r *jsonReader, key []byte) error {
	switch string(key) {
	case "id":
		return r.int("workflow_job.id", &j.ID)
	case "run_id":
		return r.int("workflow_job.run_id", &j.RunID)
	case "run_attempt":
		return r.int("workflow_job.run_attempt", &j.RunAttempt)
	case "labels":
		return r.strings("workflow_job.labels", &j.Labels)
	case "runner_id":
		return r.int("workflow_job.runner_id", &j.RunnerID)
	case "runner_name":
		return r.str("workflow_job.runner_name", &j.RunnerName)
	case "conclusion":
		return r.str("workflow_job.conclusion", &j.Conclusion)
	case "created_at":
		return r.time("workflow_job.created_at", &j.CreatedAt)
	case "started_at":
		return r.time("workflow_job.started_at", &j.StartedAt)
	case "completed_at":
		return r.time("workflow_job.completed_at", &j.CompletedAt)
	}
	return r.skip()
}

// parseJob decodes a workflow_job body into an event without its pool,
// delivery and received time. A body that is not JSON is errMalformedJSON;
// JSON that lacks what ephemera needs is an invalidJob error.
func parseJob(body []byte) (jobs.Event, error) {
	p, err := decodePayload(body)
	if err != nil {
		return jobs.Event{}, err
	}
	action := jobs.Action(p.Action)
	j := p.Job
	switch {
	case j == nil:
		return jobs.Event{}, invalidJob("no workflow_job object")
	case !action.Valid():
		return jobs.Event{}, invalidJob("action must be queued, waiting, in_progress or completed")
	case j.ID <= 0:
		return jobs.Event{}, invalidJob("workflow_job.id is missing")
	case p.Repository == "":
		return jobs.Event{}, invalidJob("repository.full_name is missing")
	}
	owner := p.Owner
	if owner == "" {
		owner, _, _ = strings.Cut(p.Repository, "/")
	}
	return jobs.Event{
		V:              jobs.Version,
		Action:         action,
		JobID:          j.ID,
		RunID:          j.RunID,
		RunAttempt:     j.RunAttempt,
		Repository:     p.Repository,
		Owner:          owner,
		InstallationID: p.InstallationID,
		Labels:         j.Labels,
		RunnerID:       j.RunnerID,
		RunnerName:     j.RunnerName,
		Conclusion:     j.Conclusion,
		CreatedAt:      j.CreatedAt,
		StartedAt:      j.StartedAt,
		CompletedAt:    j.CompletedAt,
	}, nil
}

// validJSON reports whether body is one JSON value, as json.Valid does.
func validJSON(body []byte) bool {
	r := &jsonReader{b: body}
	return r.skip() == nil && r.end() == nil
}
