package scaler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/ephemera-ci/ephemera/internal/ghclient"
)

// GitHub is what the scaler asks of GitHub. NewGitHub implements it with
// go-github; installation 0 means the configured (or last seen) one.
type GitHub interface {
	// RegisterRunner JIT-registers a runner. A name left registered by an
	// earlier attempt whose answer was lost is removed and the
	// registration retried once.
	RegisterRunner(ctx context.Context, reg Registration) (RegisteredRunner, error)
	// RemoveRunner unregisters a runner; one already gone is success. It
	// fails with ErrRunnerBusy while the runner runs a job.
	RemoveRunner(ctx context.Context, installationID, runnerID int64) error
	// ListRunners lists every runner registered where ephemera registers.
	ListRunners(ctx context.Context, installationID int64) ([]GitHubRunner, error)
	// JobStatus reads a job's status; ErrJobNotFound when GitHub has none.
	JobStatus(ctx context.Context, installationID int64, repo string, jobID int64) (JobStatus, error)
}

// Registration is a runner to JIT-register.
type Registration struct {
	Name           string
	Labels         []string
	InstallationID int64 // from the event; 0: the configured one
}

// RegisteredRunner is GitHub's answer to a JIT registration.
type RegisteredRunner struct {
	ID        int64
	JITConfig string // encoded_jit_config; a secret
}

// GitHubRunner is a runner as GitHub lists it.
type GitHubRunner struct {
	ID     int64
	Name   string
	Online bool
	Busy   bool
}

// JobStatus is a workflow job's state on GitHub.
type JobStatus struct {
	Status     string // queued, in_progress, completed (waiting, …)
	Conclusion string
	RunnerName string
}

// Errors a GitHub implementation returns for the scaler to act on.
var (
	ErrRunnerBusy  = errors.New("github runner is running a job")
	ErrJobNotFound = errors.New("github job not found")
	ErrNameTaken   = errors.New("github runner name already registered")
)

// GitHubConfig says where runners are registered.
type GitHubConfig struct {
	Clients *ghclient.Clients // required
	// Org or Repo ("owner/name"), exactly one.
	Org           string
	Repo          string
	RunnerGroupID int64 // default 1
	// WorkFolder is the runner's work folder; default "_work".
	WorkFolder string
}

type gh struct {
	cfg         GitHubConfig
	owner, name string
	lastInst    atomic.Int64
}

var _ GitHub = (*gh)(nil)

// NewGitHub returns the go-github implementation of GitHub.
func NewGitHub(cfg GitHubConfig) (GitHub, error) {
	if cfg.Clients == nil {
		return nil, errors.New("scaler: GitHubConfig.Clients is required")
	}
	g := &gh{cfg: cfg}
	switch {
	case (cfg.Org == "") == (cfg.Repo == ""):
		return nil, errors.New("scaler: set exactly one of GitHubConfig.Org and GitHubConfig.Repo")
	case cfg.Repo != "":
		var ok bool
		g.owner, g.name, ok = strings.Cut(cfg.Repo, "/")
		if !ok || g.owner == "" || g.name == "" {
			return nil, fmt.Errorf("scaler: GitHubConfig.Repo %q is not owner/name", cfg.Repo)
		}
	}
	if g.cfg.RunnerGroupID == 0 {
		g.cfg.RunnerGroupID = 1
	}
	if g.cfg.WorkFolder == "" {
		g.cfg.WorkFolder = "_work"
	}
	return g, nil
}

// client returns the installation's client; 0 falls back to the
// configured installation, then to the last one seen in an event.
func (g *gh) client(inst int64) (*github.Client, error) {
	if inst != 0 {
		g.lastInst.Store(inst)
	}
	c, err := g.cfg.Clients.ForInstallation(inst)
	if errors.Is(err, ghclient.ErrNoInstallation) {
		if last := g.lastInst.Load(); last != 0 {
			return g.cfg.Clients.ForInstallation(last)
		}
	}
	return c, err
}

// rateLimited adds a *ghclient.RateLimitedError saying until when to
// go-github's own rate-limit errors (it refuses, without asking GitHub,
// until a primary limit's reset), so callers wait as long as needed.
func rateLimited(err error) error {
	var until time.Time
	if rl, ok := errors.AsType[*github.RateLimitError](err); ok {
		until = rl.Rate.Reset.Time
	} else if ab, ok := errors.AsType[*github.AbuseRateLimitError](err); ok && ab.RetryAfter != nil {
		until = time.Now().Add(*ab.RetryAfter)
	}
	if until.IsZero() {
		return err
	}
	return errors.Join(err, &ghclient.RateLimitedError{Until: until})
}

func statusOf(resp *github.Response) int {
	if resp == nil || resp.Response == nil {
		return 0
	}
	return resp.StatusCode
}

func (g *gh) RegisterRunner(ctx context.Context, reg Registration) (RegisteredRunner, error) {
	c, err := g.client(reg.InstallationID)
	if err != nil {
		return RegisteredRunner{}, err
	}
	rr, err := g.generate(ctx, c, reg)
	if !errors.Is(err, ErrNameTaken) {
		return rr, err
	}
	// A registration under this name exists: ours, from an attempt whose
	// answer was lost. Remove it and try once more.
	runners, err := g.ListRunners(ctx, reg.InstallationID)
	if err != nil {
		return RegisteredRunner{}, fmt.Errorf("find stale registration %s: %w", reg.Name, err)
	}
	for _, r := range runners {
		if r.Name == reg.Name {
			if err := g.RemoveRunner(ctx, reg.InstallationID, r.ID); err != nil {
				return RegisteredRunner{}, fmt.Errorf("remove stale registration %s: %w", reg.Name, err)
			}
		}
	}
	return g.generate(ctx, c, reg)
}

func (g *gh) generate(ctx context.Context, c *github.Client, reg Registration) (RegisteredRunner, error) {
	ctx = ghclient.WithOp(ctx, "generate_jitconfig")
	req := &github.GenerateJITConfigRequest{
		Name: reg.Name, RunnerGroupID: g.cfg.RunnerGroupID, Labels: reg.Labels, WorkFolder: github.String(g.cfg.WorkFolder),
	}
	var (
		jit  *github.JITRunnerConfig
		resp *github.Response
		err  error
	)
	if g.cfg.Org != "" {
		jit, resp, err = c.Actions.GenerateOrgJITConfig(ctx, g.cfg.Org, req)
	} else {
		jit, resp, err = c.Actions.GenerateRepoJITConfig(ctx, g.owner, g.name, req)
	}
	if statusOf(resp) == http.StatusConflict {
		return RegisteredRunner{}, ErrNameTaken
	}
	if err != nil {
		return RegisteredRunner{}, fmt.Errorf("generate jit config %s: %w", reg.Name, rateLimited(err))
	}
	if jit.GetRunner().GetID() == 0 || jit.GetEncodedJITConfig() == "" {
		return RegisteredRunner{}, fmt.Errorf("generate jit config %s: answer without runner id or config", reg.Name)
	}
	return RegisteredRunner{ID: jit.GetRunner().GetID(), JITConfig: jit.GetEncodedJITConfig()}, nil
}

func (g *gh) RemoveRunner(ctx context.Context, inst, id int64) error {
	c, err := g.client(inst)
	if err != nil {
		return err
	}
	ctx = ghclient.WithOp(ctx, "remove_runner")
	var resp *github.Response
	if g.cfg.Org != "" {
		resp, err = c.Actions.RemoveOrganizationRunner(ctx, g.cfg.Org, id)
	} else {
		resp, err = c.Actions.RemoveRunner(ctx, g.owner, g.name, id)
	}
	switch statusOf(resp) {
	case http.StatusNotFound:
		return nil
	case http.StatusUnprocessableEntity:
		return ErrRunnerBusy
	}
	if err != nil {
		return fmt.Errorf("remove runner %d: %w", id, rateLimited(err))
	}
	return nil
}

func (g *gh) ListRunners(ctx context.Context, inst int64) ([]GitHubRunner, error) {
	c, err := g.client(inst)
	if err != nil {
		return nil, err
	}
	ctx = ghclient.WithOp(ctx, "list_runners")
	opts := &github.ListOptions{PerPage: 100}
	var out []GitHubRunner
	for {
		var (
			rs   *github.Runners
			resp *github.Response
		)
		if g.cfg.Org != "" {
			rs, resp, err = c.Actions.ListOrganizationRunners(ctx, g.cfg.Org, opts)
		} else {
			rs, resp, err = c.Actions.ListRunners(ctx, g.owner, g.name, opts)
		}
		if err != nil {
			return nil, fmt.Errorf("list runners: %w", rateLimited(err))
		}
		for _, r := range rs.Runners {
			out = append(out, GitHubRunner{ID: r.GetID(), Name: r.GetName(), Online: r.GetStatus() == "online", Busy: r.GetBusy()})
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

func (g *gh) JobStatus(ctx context.Context, inst int64, repo string, jobID int64) (JobStatus, error) {
	c, err := g.client(inst)
	if err != nil {
		return JobStatus{}, err
	}
	owner, name, ok := strings.Cut(repo, "/")
	if !ok {
		return JobStatus{}, fmt.Errorf("job %d: repository %q is not owner/name", jobID, repo)
	}
	j, resp, err := c.Actions.GetWorkflowJobByID(ghclient.WithOp(ctx, "get_job"), owner, name, jobID)
	if statusOf(resp) == http.StatusNotFound {
		return JobStatus{}, ErrJobNotFound
	}
	if err != nil {
		return JobStatus{}, fmt.Errorf("get job %d: %w", jobID, rateLimited(err))
	}
	return JobStatus{Status: j.GetStatus(), Conclusion: j.GetConclusion(), RunnerName: j.GetRunnerName()}, nil
}
