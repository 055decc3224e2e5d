// Package ghactions is the scaler's GitHub: it registers runners
// just in time, lists and removes them, reads a job's status and, for a
// GitHub App, reads the webhook delivery log and asks for redeliveries —
// with go-github over internal/ghclient, for an organization or a single
// repository. It implements scaler.GitHub and scaler.HookDeliveries, as
// lxdprov implements scaler.Provisioner, and scaler.RunnerReleases (the
// newest runner GitHub offers for download), and answers in the scaler's
// terms: scaler.ErrRunnerBusy, scaler.ErrJobNotFound, scaler.ErrNameTaken,
// scaler.ErrNoInstallation, scaler.ErrNotApp and *scaler.RateLimitedError.
package ghactions

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/ephemera-ci/ephemera/internal/ghbudget"
	"github.com/ephemera-ci/ephemera/internal/ghclient"
	"github.com/ephemera-ci/ephemera/scaler"
)

// Config says where runners are registered.
type Config struct {
	Clients *ghclient.Clients // required
	// Org or Repo ("owner/name"), exactly one.
	Org           string
	Repo          string
	RunnerGroupID int64 // default 1
	// WorkFolder is the runner's work folder; default "_work".
	WorkFolder string
}

// Client is the scaler's GitHub.
type Client struct {
	cfg         Config
	owner, name string
	lastInst    atomic.Int64
}

var (
	_ scaler.GitHub         = (*Client)(nil)
	_ scaler.HookDeliveries = (*Client)(nil)
	_ scaler.RunnerReleases = (*Client)(nil)
)

// New checks cfg and returns the client.
func New(cfg Config) (*Client, error) {
	if cfg.Clients == nil {
		return nil, errors.New("ghactions: Config.Clients is required")
	}
	g := &Client{cfg: cfg}
	switch {
	case (cfg.Org == "") == (cfg.Repo == ""):
		return nil, errors.New("ghactions: set exactly one of Config.Org and Config.Repo")
	case cfg.Repo != "":
		var ok bool
		g.owner, g.name, ok = strings.Cut(cfg.Repo, "/")
		if !ok || g.owner == "" || g.name == "" {
			return nil, fmt.Errorf("ghactions: Config.Repo %q is not owner/name", cfg.Repo)
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
// configured installation, then to the last one seen in an event, else
// scaler.ErrNoInstallation.
func (g *Client) client(inst int64) (*github.Client, error) {
	if inst != 0 {
		g.lastInst.Store(inst)
	}
	c, err := g.cfg.Clients.ForInstallation(inst)
	if errors.Is(err, ghclient.ErrNoInstallation) {
		last := g.lastInst.Load()
		if last == 0 {
			return nil, scaler.ErrNoInstallation
		}
		return g.cfg.Clients.ForInstallation(last)
	}
	return c, err
}

// rateLimited adds a *scaler.RateLimitedError saying until when to wait to
// a rate-limit error: the shared budget's (ghbudget) when the wait is too
// long or GitHub said to wait, ghclient's guard refusing to ask GitHub
// while GitHub said to wait, or go-github's own (it refuses, without asking GitHub,
// until a primary limit's reset), so that jobs wait as long as needed.
func rateLimited(err error) error {
	var until time.Time
	if rl, ok := errors.AsType[*ghclient.RateLimitedError](err); ok {
		until = rl.Until
	} else if le, ok := errors.AsType[*ghbudget.LimitedError](err); ok {
		until = le.Until
	} else if rl, ok := errors.AsType[*github.RateLimitError](err); ok {
		until = rl.Rate.Reset.Time
	} else if ab, ok := errors.AsType[*github.AbuseRateLimitError](err); ok && ab.RetryAfter != nil {
		until = time.Now().Add(*ab.RetryAfter)
	}
	if until.IsZero() {
		return err
	}
	return errors.Join(err, &scaler.RateLimitedError{Until: until})
}

func statusOf(resp *github.Response) int {
	if resp == nil || resp.Response == nil {
		return 0
	}
	return resp.StatusCode
}

func (g *Client) RegisterRunner(ctx context.Context, reg scaler.Registration) (scaler.RegisteredRunner, error) {
	c, err := g.client(reg.InstallationID)
	if err != nil {
		return scaler.RegisteredRunner{}, err
	}
	rr, err := g.generate(ctx, c, reg)
	if !errors.Is(err, scaler.ErrNameTaken) {
		return rr, err
	}
	// A registration under this name exists: ours, from an attempt whose
	// answer was lost. Remove it and try once more.
	runners, err := g.ListRunners(ctx, reg.InstallationID)
	if err != nil {
		return scaler.RegisteredRunner{}, fmt.Errorf("find stale registration %s: %w", reg.Name, err)
	}
	for _, r := range runners {
		if r.Name == reg.Name {
			if err := g.RemoveRunner(ctx, reg.InstallationID, r.ID); err != nil {
				return scaler.RegisteredRunner{}, fmt.Errorf("remove stale registration %s: %w", reg.Name, err)
			}
		}
	}
	return g.generate(ctx, c, reg)
}

func (g *Client) generate(ctx context.Context, c *github.Client, reg scaler.Registration) (scaler.RegisteredRunner, error) {
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
		return scaler.RegisteredRunner{}, scaler.ErrNameTaken
	}
	if err != nil {
		return scaler.RegisteredRunner{}, fmt.Errorf("generate jit config %s: %w", reg.Name, rateLimited(err))
	}
	if jit.GetRunner().GetID() == 0 || jit.GetEncodedJITConfig() == "" {
		return scaler.RegisteredRunner{}, fmt.Errorf("generate jit config %s: answer without runner id or config", reg.Name)
	}
	return scaler.RegisteredRunner{ID: jit.GetRunner().GetID(), JITConfig: jit.GetEncodedJITConfig()}, nil
}

func (g *Client) RemoveRunner(ctx context.Context, inst, id int64) error {
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
		return scaler.ErrRunnerBusy
	}
	if err != nil {
		return fmt.Errorf("remove runner %d: %w", id, rateLimited(err))
	}
	return nil
}

func (g *Client) ListRunners(ctx context.Context, inst int64) ([]scaler.GitHubRunner, error) {
	c, err := g.client(inst)
	if err != nil {
		return nil, err
	}
	ctx = ghclient.WithOp(ctx, "list_runners")
	opts := &github.ListOptions{PerPage: 100}
	var out []scaler.GitHubRunner
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
			out = append(out, scaler.GitHubRunner{ID: r.GetID(), Name: r.GetName(), Online: r.GetStatus() == "online", Busy: r.GetBusy()})
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

func (g *Client) JobStatus(ctx context.Context, inst int64, repo string, jobID int64) (scaler.JobStatus, error) {
	c, err := g.client(inst)
	if err != nil {
		return scaler.JobStatus{}, err
	}
	owner, name, ok := strings.Cut(repo, "/")
	if !ok {
		return scaler.JobStatus{}, fmt.Errorf("job %d: repository %q is not owner/name", jobID, repo)
	}
	j, resp, err := c.Actions.GetWorkflowJobByID(ghclient.WithOp(ctx, "get_job"), owner, name, jobID)
	if statusOf(resp) == http.StatusNotFound {
		return scaler.JobStatus{}, scaler.ErrJobNotFound
	}
	if err != nil {
		return scaler.JobStatus{}, fmt.Errorf("get job %d: %w", jobID, rateLimited(err))
	}
	return scaler.JobStatus{Status: j.GetStatus(), Conclusion: j.GetConclusion(), RunnerName: j.GetRunnerName()}, nil
}

// runnerPackage is the file name of a runner package in GitHub's
// downloads list: actions-runner-<os>-<arch>-<version>.<tar.gz|zip>.
var runnerPackage = regexp.MustCompile(`^actions-runner-[a-z]+-[a-z0-9]+-([0-9]+(?:\.[0-9]+)+)\.(?:tar\.gz|zip)$`)

// LatestRunnerVersion asks GitHub which runner packages it offers for
// download, where runners are registered (the organization's or the
// repository's list), and returns the newest version among them.
func (g *Client) LatestRunnerVersion(ctx context.Context, inst int64) (string, error) {
	c, err := g.client(inst)
	if err != nil {
		return "", err
	}
	ctx = ghclient.WithOp(ctx, "runner_downloads")
	var dl []*github.RunnerApplicationDownload
	if g.cfg.Org != "" {
		dl, _, err = c.Actions.ListOrganizationRunnerApplicationDownloads(ctx, g.cfg.Org)
	} else {
		dl, _, err = c.Actions.ListRunnerApplicationDownloads(ctx, g.owner, g.name)
	}
	if err != nil {
		return "", fmt.Errorf("list runner downloads: %w", rateLimited(err))
	}
	newest := ""
	for _, d := range dl {
		m := runnerPackage.FindStringSubmatch(d.GetFilename())
		if m == nil {
			continue
		}
		if c, _ := scaler.CompareRunnerVersions(m[1], newest); newest == "" || c > 0 {
			newest = m[1]
		}
	}
	if newest == "" {
		return "", fmt.Errorf("list runner downloads: %w", ErrNoRunnerVersion)
	}
	return newest, nil
}

// ErrNoRunnerVersion: GitHub's downloads list named no runner package.
var ErrNoRunnerVersion = errors.New("no runner package with a version in the list")
