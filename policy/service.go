package policy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/config"
)

// TokenStore mints and consumes one-time tokens; *tokens.Store satisfies
// it. Consume returns tokens.ErrUnknownToken for a token it does not
// accept.
type TokenStore interface {
	Mint(ctx context.Context, runnerName string) (string, error)
	Consume(ctx context.Context, token string) (runnerName string, err error)
}

// Config configures the service.
type Config struct {
	// AdminToken authenticates operators (/one-time-token, /policy);
	// required.
	AdminToken config.Secret
	// Tokens is the one-time token store; required.
	Tokens TokenStore
	// Bus holds the policy document's key-value bucket; required.
	Bus *bus.Bus
	// GitHub gives the clients the checks read GitHub with; required.
	GitHub Clients

	// AuthorizationPhrase starts the comment that authorizes a fork's
	// commit; default "/ephemera run-workflows".
	AuthorizationPhrase string
	// DefaultDisallowFork enables disallow_fork in the default document.
	DefaultDisallowFork bool
	// CacheTTL is how long a GitHub answer is served without asking
	// GitHub again; default 30s, negative disables the cache.
	CacheTTL time.Duration
	// CacheEntries bounds the cache; default 10000 answers.
	CacheEntries int
	// GitHubTimeout bounds each GitHub request; default 10s.
	GitHubTimeout time.Duration
	// CheckTimeout bounds a whole check-run; default 30s.
	CheckTimeout time.Duration
	// HealthTTL is how long GET /health reuses GitHub's last answer; it
	// sends at most one GitHub request per HealthTTL. Default 10s.
	HealthTTL time.Duration

	Log        zerolog.Logger
	Registerer prometheus.Registerer // nil: a private registry
}

// Service is the policy service; Handler serves its API.
type Service struct {
	cfg     Config
	docs    *docStore
	checker *checker
	gh      gitHub
	metrics *metrics
	log     zerolog.Logger
	// refusals logs refused tokens, at most a burst a second: a flood of
	// bad tokens must not flood the log.
	refusals zerolog.Logger
	health   *health
}

// New checks cfg, fills its defaults and creates the document bucket.
func New(ctx context.Context, cfg Config) (*Service, error) {
	switch {
	case cfg.AdminToken.IsZero():
		return nil, errors.New("policy: AdminToken is required")
	case cfg.Tokens == nil:
		return nil, errors.New("policy: Tokens is required")
	case cfg.Bus == nil:
		return nil, errors.New("policy: Bus is required")
	case cfg.GitHub == nil:
		return nil, errors.New("policy: GitHub is required")
	}
	if cfg.AuthorizationPhrase == "" {
		cfg.AuthorizationPhrase = "/ephemera run-workflows"
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = 30 * time.Second
	}
	if cfg.CacheEntries <= 0 {
		cfg.CacheEntries = 10000
	}
	if cfg.GitHubTimeout <= 0 {
		cfg.GitHubTimeout = 10 * time.Second
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 30 * time.Second
	}
	if cfg.HealthTTL <= 0 {
		cfg.HealthTTL = 10 * time.Second
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	docs, err := newDocStore(ctx, cfg.Bus, DefaultDocument(cfg.DefaultDisallowFork), cfg.Log)
	if err != nil {
		return nil, err
	}
	gh := newGitHubAPI(cfg.GitHub, newCache(cfg.CacheTTL, cfg.CacheEntries, m.cache), cfg.GitHubTimeout)
	return &Service{
		cfg:      cfg,
		docs:     docs,
		checker:  &checker{gh: gh, phrase: cfg.AuthorizationPhrase},
		gh:       gh,
		metrics:  m,
		log:      cfg.Log,
		refusals: cfg.Log.Sample(&zerolog.BurstSampler{Burst: 20, Period: time.Second}),
		health:   &health{ttl: cfg.HealthTTL, timeout: cfg.GitHubTimeout, ping: gh.ping, log: cfg.Log},
	}, nil
}

// Handler serves the API: the paths, bodies and status codes of
// repo-policy-compliance.
func (s *Service) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(recoverPanics(s.log))
	r.Get("/health", s.handleHealth)
	r.Group(func(r chi.Router) {
		r.Use(s.operatorAuth)
		r.Get("/one-time-token", s.handleOneTimeToken)
		r.Post("/policy", s.handlePostPolicy)
		r.Get("/policy", s.handleGetPolicy)
	})
	r.Group(func(r chi.Router) {
		r.Use(s.runnerAuth)
		r.Get("/auth-health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
		r.Post("/always-fail/check-run", s.handleAlwaysFail)
		r.Post("/check-run", s.handleCheckRun(eventPullRequest))
		for _, ev := range []event{eventPullRequest, eventWorkflowDispatch, eventPush, eventSchedule, eventDefault} {
			r.Post("/"+ev.name+"/check-run", s.handleCheckRun(ev))
		}
	})
	return r
}

// Ready reports whether the service can answer checks: the policy
// document's bucket can be read. GitHub's reachability is /health's
// business, not readiness: a GitHub outage makes checks fail closed.
func (s *Service) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := s.docs.kv.Status(ctx); err != nil {
		return fmt.Errorf("policy document bucket: %w", err)
	}
	return nil
}
