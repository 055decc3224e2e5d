package githubfake

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

// The /_fake/runners API lets a stand-in runner process (in an LXD
// instance, say) act as GitHub's runner would, authenticated with the
// token from its JIT config (Authorization: Bearer <token>):
//
//	POST /_fake/runners/{id}/online           come online; 204
//	GET  /_fake/runners/{id}/job?wait=30s     long-poll for the assigned job:
//	                                          200 RunnerJob, or 204 when none came
//	POST /_fake/runners/{id}/jobs/{job}/complete  {"conclusion":"success","log":"…"};
//	                                          204; the log is the job's (Job.Log);
//	                                          the ephemeral runner is then removed
//
// Unknown runner or wrong token: 401.
func (s *Server) runnerAPIRoutes(r chi.Router) {
	r.Post("/_fake/runners/{id}/online", s.handleRunnerOnline)
	r.Get("/_fake/runners/{id}/job", s.handleRunnerJob)
	r.Post("/_fake/runners/{id}/jobs/{job}/complete", s.handleRunnerComplete)
}

// RunnerJob is what a stand-in runner receives for its job.
type RunnerJob struct {
	ID         int64    `json:"id"`
	RunID      int64    `json:"run_id"`
	RunAttempt int64    `json:"run_attempt"`
	Repository string   `json:"repository"`
	Labels     []string `json:"labels"`
	DurationMS int64    `json:"duration_ms"` // how long to pretend to work
	Trigger
}

// authRunner returns the runner the request's token belongs to; the
// caller holds no lock. It answers 401 itself on failure.
func (s *Server) authRunner(w http.ResponseWriter, r *http.Request) *runner {
	id, ok := pathID(r)
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	a := s.actions
	a.mu.Lock()
	rn := a.runners[id]
	a.mu.Unlock()
	if !ok || rn == nil || subtle.ConstantTimeCompare([]byte(tok), []byte(rn.Token)) != 1 {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Bad credentials"})
		return nil
	}
	return rn
}

func (s *Server) handleRunnerOnline(w http.ResponseWriter, r *http.Request) {
	rn := s.authRunner(w, r)
	if rn == nil {
		return
	}
	a := s.actions
	a.mu.Lock()
	s.onlineLocked(rn)
	a.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRunnerJob(w http.ResponseWriter, r *http.Request) {
	rn := s.authRunner(w, r)
	if rn == nil {
		return
	}
	wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
	if err != nil || wait <= 0 || wait > time.Minute {
		wait = 30 * time.Second
	}
	deadline := time.Now().Add(wait)
	a := s.actions
	for {
		a.mu.Lock()
		var out *RunnerJob
		if j := a.jobs[rn.JobID]; rn.Busy && j != nil && j.Status == JobInProgress {
			out = &RunnerJob{ID: j.ID, RunID: j.RunID, RunAttempt: j.RunAttempt, Repository: j.Repo, Labels: j.Labels, DurationMS: j.Duration.Milliseconds(), Trigger: j.Trigger}
		}
		a.mu.Unlock()
		if out != nil {
			writeJSON(w, http.StatusOK, out)
			return
		}
		if time.Now().After(deadline) {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) handleRunnerComplete(w http.ResponseWriter, r *http.Request) {
	rn := s.authRunner(w, r)
	if rn == nil {
		return
	}
	var body struct {
		Conclusion string `json:"conclusion"`
		Log        string `json:"log"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	if body.Conclusion == "" {
		body.Conclusion = ConclusionSuccess
	}
	a := s.actions
	a.mu.Lock()
	j := a.jobs[rn.JobID]
	ok := j != nil && chi.URLParam(r, "job") == itoa(j.ID) && j.Status == JobInProgress
	if ok {
		j.Log = body.Log
		s.completeLocked(j, body.Conclusion)
	}
	a.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusConflict, map[string]string{"message": "not this runner's job"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
