package githubfake

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

// runner is a registered self-hosted runner.
type runner struct {
	ID      int64
	Name    string
	Labels  []string
	GroupID int64
	Scope   string // "org:<org>" or "repo:<owner>/<name>"
	Token   string // in the JIT config; the stand-in runner presents it

	Online    bool
	Busy      bool
	JobID     int64 // the job it runs, when busy
	OnlineAt  time.Time
	InProcess bool // brought online from Go: the broker completes its jobs itself
}

// Runner is a registered runner as tests see it.
type Runner struct {
	ID     int64
	Name   string
	Labels []string
	Scope  string
	Online bool
	Busy   bool
	JobID  int64
}

// JITConfig is what encoded_jit_config decodes to (base64 of this JSON).
// A stand-in runner reads it to drive the /_fake/runners API.
type JITConfig struct {
	RunnerID int64    `json:"runner_id"`
	Name     string   `json:"name"`
	Token    string   `json:"token"`
	URL      string   `json:"url"` // the stand-in's base URL
	Labels   []string `json:"labels"`
}

// DecodeJITConfig decodes an encoded_jit_config the stand-in issued.
func DecodeJITConfig(encoded string) (JITConfig, error) {
	var c JITConfig
	b, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return c, fmt.Errorf("jit config: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("jit config: %w", err)
	}
	return c, nil
}

func scopeOf(r *http.Request) string {
	if org := chi.URLParam(r, "org"); org != "" {
		return "org:" + org
	}
	return "repo:" + chi.URLParam(r, "owner") + "/" + chi.URLParam(r, "repo")
}

type apiLabel struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

type apiRunner struct {
	ID     int64      `json:"id"`
	Name   string     `json:"name"`
	OS     string     `json:"os"`
	Status string     `json:"status"`
	Busy   bool       `json:"busy"`
	Labels []apiLabel `json:"labels"`
}

func (rn *runner) api() apiRunner {
	a := apiRunner{ID: rn.ID, Name: rn.Name, OS: "Linux", Status: "offline", Busy: rn.Busy, Labels: []apiLabel{}}
	if rn.Online {
		a.Status = "online"
	}
	for i, l := range rn.Labels {
		a.Labels = append(a.Labels, apiLabel{ID: int64(i + 1), Name: l, Type: "custom"})
	}
	return a
}

func (rn *runner) view() Runner {
	return Runner{ID: rn.ID, Name: rn.Name, Labels: slices.Clone(rn.Labels), Scope: rn.Scope, Online: rn.Online, Busy: rn.Busy, JobID: rn.JobID}
}

func (s *Server) handleGenerateJIT(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name          string   `json:"name"`
		RunnerGroupID int64    `json:"runner_group_id"`
		Labels        []string `json:"labels"`
		WorkFolder    string   `json:"work_folder"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Name == "" || len(req.Labels) == 0 {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"message": "Validation Failed"})
		return
	}
	scope := scopeOf(r)
	a := s.actions
	a.mu.Lock()
	for _, rn := range a.runners {
		if rn.Scope == scope && rn.Name == req.Name {
			a.mu.Unlock()
			writeJSON(w, http.StatusConflict, map[string]string{"message": "Already exists - A runner with the name " + req.Name + " already exists."})
			return
		}
	}
	a.nextRunnerID++
	rn := &runner{ID: a.nextRunnerID, Name: req.Name, Labels: slices.Clone(req.Labels), GroupID: req.RunnerGroupID, Scope: scope, Token: randomHex(16)}
	a.runners[rn.ID] = rn
	runnerURL := a.runnerURL
	a.mu.Unlock()
	if runnerURL == "" {
		runnerURL = s.URL
	}

	cfg, _ := json.Marshal(JITConfig{RunnerID: rn.ID, Name: rn.Name, Token: rn.Token, URL: runnerURL, Labels: rn.Labels})
	writeJSON(w, http.StatusCreated, map[string]any{
		"runner":             rn.api(),
		"encoded_jit_config": base64.StdEncoding.EncodeToString(cfg),
	})
}

func (s *Server) handleListRunners(w http.ResponseWriter, r *http.Request) {
	perPage, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if perPage <= 0 || perPage > 100 {
		perPage = 30
	}
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	if page <= 0 {
		page = 1
	}
	scope := scopeOf(r)
	a := s.actions
	a.mu.Lock()
	var all []apiRunner
	for _, rn := range a.runners {
		if rn.Scope == scope {
			all = append(all, rn.api())
		}
	}
	a.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	total := len(all)
	from := min((page-1)*perPage, total)
	to := min(from+perPage, total)
	if to < total {
		u := *r.URL
		q := u.Query()
		q.Set("page", strconv.Itoa(page+1))
		q.Set("per_page", strconv.Itoa(perPage))
		u.RawQuery = q.Encode()
		w.Header().Set("Link", fmt.Sprintf(`<%s%s>; rel="next"`, strings.TrimSuffix(s.URL, "/"), u.RequestURI()))
	}
	writeJSON(w, http.StatusOK, map[string]any{"total_count": total, "runners": append([]apiRunner{}, all[from:to]...)})
}

func (s *Server) handleGetRunner(w http.ResponseWriter, r *http.Request) {
	a := s.actions
	a.mu.Lock()
	rn := a.runnerInScopeLocked(r)
	if rn == nil {
		a.mu.Unlock()
		notFound(w)
		return
	}
	body := rn.api()
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// handleDeleteRunner removes a runner; GitHub refuses (422) while it runs
// a job, which is the scaler's guard against killing jobs.
func (s *Server) handleDeleteRunner(w http.ResponseWriter, r *http.Request) {
	a := s.actions
	a.mu.Lock()
	rn := a.runnerInScopeLocked(r)
	if rn == nil {
		a.mu.Unlock()
		notFound(w)
		return
	}
	if rn.Busy {
		a.mu.Unlock()
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"message": "Bad request - Runner \"" + rn.Name + "\" is still running a job\""})
		return
	}
	delete(a.runners, rn.ID)
	a.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// Runners returns every registered runner, by id.
func (s *Server) Runners() []Runner {
	a := s.actions
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Runner, 0, len(a.runners))
	for _, rn := range a.runners {
		out = append(out, rn.view())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// RunnerByName returns the runner registered under name (any scope).
func (s *Server) RunnerByName(name string) (Runner, bool) {
	a := s.actions
	a.mu.Lock()
	defer a.mu.Unlock()
	if rn := a.byName(name); rn != nil {
		return rn.view(), true
	}
	return Runner{}, false
}

func (a *actionsState) byName(name string) *runner {
	for _, rn := range a.runners {
		if rn.Name == name {
			return rn
		}
	}
	return nil
}

// OnRunnerExit registers f, called (outside any lock, on its own
// goroutine) with a runner's name when the runner exits: an ephemeral
// runner after its job, or a runner removed while online. A test
// provisioner uses it to delete the instance, as the VM powers off.
func (s *Server) OnRunnerExit(f func(name string)) {
	a := s.actions
	a.mu.Lock()
	a.onExit = append(a.onExit, f)
	a.mu.Unlock()
}

// SetRunnerURL sets the base URL that JIT configs tell runners to use for
// the /_fake/runners API, for runners that reach the stand-in by another
// address (an LXD proxy device, say). Empty: Server.URL.
func (s *Server) SetRunnerURL(u string) {
	a := s.actions
	a.mu.Lock()
	a.runnerURL = u
	a.mu.Unlock()
}

// runnerInScopeLocked is the runner the request's path names, when it is
// registered in the request's org or repository; the caller holds a.mu.
func (a *actionsState) runnerInScopeLocked(r *http.Request) *runner {
	id, ok := pathID(r)
	rn := a.runners[id]
	if !ok || rn == nil || rn.Scope != scopeOf(r) {
		return nil
	}
	return rn
}
