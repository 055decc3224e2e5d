package githubfake

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

// Job statuses and the conclusions the stand-in uses.
const (
	JobQueued     = "queued"
	JobInProgress = "in_progress"
	JobCompleted  = "completed"

	ConclusionSuccess   = "success"
	ConclusionCancelled = "cancelled"
)

// JobSpec is a job to queue.
type JobSpec struct {
	Repo           string   // owner/name; default "acme/app"
	Labels         []string // runs-on
	InstallationID int64    // default 1
	// Duration is how long the job runs once a runner took it. A runner
	// brought online from Go (RunnerOnline) completes it by itself after
	// Duration when it is above zero; a runner driven over HTTP gets it
	// in the job and reports completion itself.
	Duration time.Duration
	Trigger
}

// Trigger is what started a job's workflow, as the runner's pre-job hook
// reads it from its environment and event file.
type Trigger struct {
	// Event is GITHUB_EVENT_NAME; default "push".
	Event string `json:"event"`
	// For a pull request: the head repository, head and base branches and
	// head SHA.
	HeadRepository string `json:"head_repository,omitempty"`
	HeadBranch     string `json:"head_branch,omitempty"`
	BaseBranch     string `json:"base_branch,omitempty"`
	SHA            string `json:"sha,omitempty"`
}

// Job is a job as tests see it.
type Job struct {
	ID, RunID, RunAttempt int64
	Repo                  string
	Labels                []string
	InstallationID        int64
	Status                string
	Conclusion            string
	CreatedAt             time.Time
	StartedAt             time.Time
	CompletedAt           time.Time
	RunnerID              int64
	RunnerName            string
	RunnerOnlineAt        time.Time // when the runner that took the job came online
	Duration              time.Duration
	// Log is the job's log as its runner uploaded it with the completion
	// (runners driven over HTTP only): what GitHub shows for the job.
	Log string
	Trigger
}

type job struct{ Job }

// ErrUnknownRunner: no runner of that name or id is registered.
var ErrUnknownRunner = errors.New("githubfake: unknown runner")

// ErrUnknownJob: no job of that id.
var ErrUnknownJob = errors.New("githubfake: unknown job")

// QueueJob queues a job, sends its queued webhook and hands it to an
// online idle runner whose labels cover it, if there is one.
func (s *Server) QueueJob(spec JobSpec) int64 {
	if spec.Repo == "" {
		spec.Repo = "acme/app"
	}
	if spec.InstallationID == 0 {
		spec.InstallationID = 1
	}
	if spec.Event == "" {
		spec.Event = "push"
	}
	a := s.actions
	a.mu.Lock()
	defer a.mu.Unlock()
	a.nextJobID++
	j := &job{Job{
		ID: a.nextJobID, RunID: a.nextJobID * 10, RunAttempt: 1,
		Repo: spec.Repo, Labels: slices.Clone(spec.Labels), InstallationID: spec.InstallationID,
		Status: JobQueued, CreatedAt: time.Now().UTC().Truncate(time.Second), Duration: spec.Duration,
		Trigger: spec.Trigger,
	}}
	a.jobs[j.ID] = j
	a.queue = append(a.queue, j.ID)
	s.emitLocked(j)
	if rn := a.idleRunnerFor(j); rn != nil {
		s.assignLocked(j, rn)
	}
	return j.ID
}

// RunnerOnline brings the registered runner name online, as its process
// would after starting with the JIT config; it then takes queued jobs and
// completes each after the job's Duration (when above zero).
func (s *Server) RunnerOnline(name string) error {
	a := s.actions
	a.mu.Lock()
	defer a.mu.Unlock()
	rn := a.byName(name)
	if rn == nil {
		return ErrUnknownRunner
	}
	rn.InProcess = true
	s.onlineLocked(rn)
	return nil
}

func (s *Server) onlineLocked(rn *runner) {
	if rn.Online {
		return
	}
	rn.Online, rn.OnlineAt = true, time.Now()
	s.dispatchRunnerLocked(rn)
}

// CompleteJob completes a job that is in progress with conclusion; the
// ephemeral runner that ran it exits and is unregistered.
func (s *Server) CompleteJob(id int64, conclusion string) error {
	a := s.actions
	a.mu.Lock()
	defer a.mu.Unlock()
	j := a.jobs[id]
	if j == nil {
		return ErrUnknownJob
	}
	if j.Status != JobInProgress {
		return nil
	}
	s.completeLocked(j, conclusion)
	return nil
}

// ConclusionFailure is the conclusion of a job whose runner died under it.
const ConclusionFailure = "failure"

// KillRunner is the runner's machine vanishing: the runner goes offline
// and a job it was running fails, as GitHub fails a job whose runner
// stopped answering. The registration stays (offline) until removed.
func (s *Server) KillRunner(name string) error {
	a := s.actions
	a.mu.Lock()
	defer a.mu.Unlock()
	rn := a.byName(name)
	if rn == nil {
		return ErrUnknownRunner
	}
	rn.Online = false
	if j := a.jobs[rn.JobID]; rn.Busy && j != nil && j.Status == JobInProgress {
		j.Status, j.Conclusion, j.CompletedAt = JobCompleted, ConclusionFailure, time.Now().UTC()
		s.emitLocked(j)
		delete(a.runners, rn.ID)
	}
	rn.Busy = false
	return nil
}

// CancelJob cancels a job: a queued one completes with conclusion
// cancelled and never gets a runner; one in progress completes cancelled
// and its runner exits.
func (s *Server) CancelJob(id int64) error {
	a := s.actions
	a.mu.Lock()
	defer a.mu.Unlock()
	j := a.jobs[id]
	if j == nil {
		return ErrUnknownJob
	}
	switch j.Status {
	case JobQueued:
		a.unqueue(id)
		j.Status, j.Conclusion, j.CompletedAt = JobCompleted, ConclusionCancelled, time.Now().UTC()
		s.emitLocked(j)
	case JobInProgress:
		s.completeLocked(j, ConclusionCancelled)
	}
	return nil
}

// Jobs returns every job, oldest first.
func (s *Server) Jobs() []Job {
	a := s.actions
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Job, 0, len(a.jobs))
	for _, j := range a.jobs {
		out = append(out, j.view())
	}
	slices.SortFunc(out, func(x, y Job) int { return int(x.ID - y.ID) })
	return out
}

// GetJob returns the job id.
func (s *Server) GetJob(id int64) (Job, bool) {
	a := s.actions
	a.mu.Lock()
	defer a.mu.Unlock()
	if j := a.jobs[id]; j != nil {
		return j.view(), true
	}
	return Job{}, false
}

func (j *job) view() Job {
	v := j.Job
	v.Labels = slices.Clone(j.Labels)
	return v
}

func (a *actionsState) unqueue(id int64) {
	if i := slices.Index(a.queue, id); i >= 0 {
		a.queue = slices.Delete(a.queue, i, i+1)
	}
}

// covers reports whether the runner's labels include every job label,
// ignoring case, as GitHub matches them.
func covers(runnerLabels, jobLabels []string) bool {
	for _, jl := range jobLabels {
		if !slices.ContainsFunc(runnerLabels, func(rl string) bool { return strings.EqualFold(rl, jl) }) {
			return false
		}
	}
	return true
}

// idleRunnerFor is the online idle runner that has waited longest and
// covers j, or nil. GitHub does not bind a job to the runner created for
// it: whichever idle runner fits takes it.
func (a *actionsState) idleRunnerFor(j *job) *runner {
	var best *runner
	for _, rn := range a.runners {
		if rn.Online && !rn.Busy && covers(rn.Labels, j.Labels) && (best == nil || rn.OnlineAt.Before(best.OnlineAt)) {
			best = rn
		}
	}
	return best
}

// dispatchRunnerLocked gives the idle runner rn the oldest queued job it
// covers.
func (s *Server) dispatchRunnerLocked(rn *runner) {
	a := s.actions
	for _, id := range a.queue {
		if j := a.jobs[id]; covers(rn.Labels, j.Labels) {
			s.assignLocked(j, rn)
			return
		}
	}
}

func (s *Server) assignLocked(j *job, rn *runner) {
	a := s.actions
	a.unqueue(j.ID)
	rn.Busy, rn.JobID = true, j.ID
	j.Status, j.StartedAt = JobInProgress, time.Now().UTC()
	j.RunnerID, j.RunnerName, j.RunnerOnlineAt = rn.ID, rn.Name, rn.OnlineAt
	s.emitLocked(j)
	if rn.InProcess && j.Duration > 0 && !a.closed {
		id := j.ID
		a.timers = append(a.timers, time.AfterFunc(j.Duration, func() { _ = s.CompleteJob(id, ConclusionSuccess) }))
	}
}

// completeLocked completes j; its ephemeral runner exits and is removed.
func (s *Server) completeLocked(j *job, conclusion string) {
	a := s.actions
	j.Status, j.Conclusion, j.CompletedAt = JobCompleted, conclusion, time.Now().UTC()
	s.emitLocked(j)
	if rn := a.runners[j.RunnerID]; rn != nil && rn.JobID == j.ID {
		delete(a.runners, rn.ID)
		s.exitLocked(rn.Name)
	}
}

func (s *Server) exitLocked(name string) {
	for _, f := range s.actions.onExit {
		go f(name)
	}
}

type apiJob struct {
	ID          int64      `json:"id"`
	RunID       int64      `json:"run_id"`
	RunAttempt  int64      `json:"run_attempt"`
	Status      string     `json:"status"`
	Conclusion  *string    `json:"conclusion"`
	Name        string     `json:"name"`
	Labels      []string   `json:"labels"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   time.Time  `json:"started_at"`
	CompletedAt *time.Time `json:"completed_at"`
	RunnerID    *int64     `json:"runner_id"`
	RunnerName  *string    `json:"runner_name"`
	HeadBranch  string     `json:"head_branch"`
	HeadSHA     string     `json:"head_sha"`
}

func (j *job) api() apiJob {
	out := apiJob{
		ID: j.ID, RunID: j.RunID, RunAttempt: j.RunAttempt, Status: j.Status, Name: "build",
		Labels: slices.Clone(j.Labels), CreatedAt: j.CreatedAt, StartedAt: j.CreatedAt,
		HeadBranch: "main", HeadSHA: "0123456789abcdef0123456789abcdef01234567",
	}
	if !j.StartedAt.IsZero() {
		out.StartedAt = j.StartedAt
	}
	if j.Conclusion != "" {
		c := j.Conclusion
		out.Conclusion = &c
	}
	if !j.CompletedAt.IsZero() {
		t := j.CompletedAt
		out.CompletedAt = &t
	}
	if j.RunnerName != "" {
		id, name := j.RunnerID, j.RunnerName
		out.RunnerID, out.RunnerName = &id, &name
	}
	return out
}

func (s *Server) handleGetJob(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r)
	repo := chi.URLParam(r, "owner") + "/" + chi.URLParam(r, "repo")
	a := s.actions
	a.mu.Lock()
	j := a.jobs[id]
	if !ok || j == nil || !strings.EqualFold(j.Repo, repo) {
		a.mu.Unlock()
		notFound(w)
		return
	}
	body := j.api()
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}
