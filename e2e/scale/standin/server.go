package standin

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ephemera-ci/ephemera/scaler"
)

// Config configures a Server.
type Config struct {
	Profile Profile
	// Online brings the runner of a booted instance online (the GitHub
	// stand-in's RunnerOnline). Required.
	Online func(name string) error
	// Gone, when set, is called when a delete removes an instance that
	// had not exited by itself: the runner's machine vanished (the
	// GitHub stand-in's KillRunner).
	Gone func(name string)
	// MaxParallel bounds the creates in progress at once (0: unbounded);
	// the rest wait their turn, as on a host with that much capacity.
	MaxParallel int
	// Seed makes the latencies reproducible.
	Seed uint64
}

// Record is what happened to one instance.
type Record struct {
	Name      string
	Pool      string
	JobID     int64
	AskedAt   time.Time // the create request arrived
	RunningAt time.Time // the create returned: the instance runs
	OnlineAt  time.Time // its runner came online (zero if it never did)
}

// Stats are the service's counts.
type Stats struct {
	Creates, Deletes, Exits, OnlineFailures int
	// PeakInstances is the most instances that existed at once, in any
	// state; PeakCreating the most creates in progress at once.
	PeakInstances, PeakCreating int
}

// Server is the stand-in service. Create it with New; it is safe for
// concurrent use.
type Server struct {
	cfg  Config
	sem  chan struct{}
	mu   sync.Mutex
	rng  *rand.Rand
	ins  map[string]*instance
	recs map[string]*Record
	st   Stats
	// creating counts creates in progress.
	creating int
}

type instance struct {
	scaler.Instance
	exited bool
}

// ErrNoOnline: Config.Online is required.
var ErrNoOnline = errors.New("standin: Config.Online is required")

// New returns a Server with no instances.
func New(cfg Config) (*Server, error) {
	if cfg.Online == nil {
		return nil, ErrNoOnline
	}
	s := &Server{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		ins: map[string]*instance{}, recs: map[string]*Record{}}
	if cfg.MaxParallel > 0 {
		s.sem = make(chan struct{}, cfg.MaxParallel)
	}
	return s, nil
}

func (s *Server) sample(d Dist) time.Duration {
	if d == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return d.Sample(s.rng)
}

// Handler serves the API the Client speaks:
//
//	POST   /instances         {"name","pool","job_id"}: 201 once running, 409 when it exists
//	GET    /instances         200 [scaler.Instance]
//	DELETE /instances/{name}  204 once deleted, 404 when there is none
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /instances", s.handleCreate)
	mux.HandleFunc("GET /instances", s.handleList)
	mux.HandleFunc("DELETE /instances/{name}", s.handleDelete)
	return mux
}

type createRequest struct {
	Name  string `json:"name"`
	Pool  string `json:"pool"`
	JobID int64  `json:"job_id"`
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Name == "" || req.Pool == "" {
		http.Error(w, "want a JSON body with name and pool", http.StatusBadRequest)
		return
	}
	now := time.Now()
	s.mu.Lock()
	if _, ok := s.ins[req.Name]; ok {
		s.mu.Unlock()
		http.Error(w, "instance exists", http.StatusConflict)
		return
	}
	s.ins[req.Name] = &instance{Instance: scaler.Instance{Name: req.Name, Pool: req.Pool, JobID: req.JobID, State: scaler.StateStarting, CreatedAt: now}}
	s.recs[req.Name] = &Record{Name: req.Name, Pool: req.Pool, JobID: req.JobID, AskedAt: now}
	s.st.Creates++
	s.st.PeakInstances = max(s.st.PeakInstances, len(s.ins))
	s.mu.Unlock()

	if s.sem != nil {
		select {
		case s.sem <- struct{}{}:
			defer func() { <-s.sem }()
		case <-r.Context().Done():
			s.abandon(req.Name)
			return
		}
	}
	s.mu.Lock()
	s.creating++
	s.st.PeakCreating = max(s.st.PeakCreating, s.creating)
	s.mu.Unlock()
	wait := s.sample(s.cfg.Profile.Create)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		s.mu.Lock()
		s.creating--
		s.mu.Unlock()
		s.abandon(req.Name) // LXD leaves a half-made instance; the scaler deletes it
		return
	}
	s.mu.Lock()
	s.creating--
	in, ok := s.ins[req.Name]
	if ok {
		in.State = scaler.StateRunning
		s.recs[req.Name].RunningAt = time.Now()
	}
	s.mu.Unlock()
	if !ok {
		http.Error(w, "deleted while it was created", http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusCreated)
	boot := s.sample(s.cfg.Profile.Boot)
	time.AfterFunc(boot, func() { s.online(req.Name) })
}

// abandon leaves an instance whose create was given up stopped, as LXD
// leaves one whose start never finished.
func (s *Server) abandon(name string) {
	s.mu.Lock()
	if in, ok := s.ins[name]; ok {
		in.State = scaler.StateStopped
	}
	s.mu.Unlock()
}

func (s *Server) online(name string) {
	s.mu.Lock()
	in, ok := s.ins[name]
	alive := ok && in.State == scaler.StateRunning
	s.mu.Unlock()
	if !alive {
		return
	}
	err := s.cfg.Online(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.st.OnlineFailures++
		return
	}
	s.recs[name].OnlineAt = time.Now()
}

func (s *Server) handleList(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	out := make([]scaler.Instance, 0, len(s.ins))
	for _, in := range s.ins {
		out = append(out, in.Instance)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b scaler.Instance) int { return strings.Compare(a.Name, b.Name) })
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.mu.Lock()
	in, ok := s.ins[name]
	s.mu.Unlock()
	if !ok {
		http.Error(w, "no such instance", http.StatusNotFound)
		return
	}
	t := time.NewTimer(s.sample(s.cfg.Profile.Delete))
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	s.mu.Lock()
	_, still := s.ins[name]
	exited := in.exited
	delete(s.ins, name)
	if still {
		s.st.Deletes++
	}
	s.mu.Unlock()
	if still && !exited && s.cfg.Gone != nil {
		s.cfg.Gone(name)
	}
	w.WriteHeader(http.StatusNoContent)
}

// Exit is the runner of instance name exiting after its job: the
// ephemeral instance powers off and is gone a delete's latency later.
// Wire it to the GitHub stand-in's OnRunnerExit.
func (s *Server) Exit(name string) {
	s.mu.Lock()
	in, ok := s.ins[name]
	if ok {
		in.State, in.exited = scaler.StateStopping, true
		s.st.Exits++
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	time.AfterFunc(s.sample(s.cfg.Profile.Delete), func() {
		s.mu.Lock()
		if cur, ok := s.ins[name]; ok && cur == in {
			delete(s.ins, name)
		}
		s.mu.Unlock()
	})
}

// Records returns what happened to every instance ever asked for.
func (s *Server) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Record, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Record) int { return a.AskedAt.Compare(b.AskedAt) })
	return out
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Instances is how many instances exist now, in any state.
func (s *Server) Instances() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ins)
}

// State is instance name's state now, or "" when there is none.
func (s *Server) State(name string) scaler.InstanceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.ins[name]; ok {
		return in.State
	}
	return ""
}
