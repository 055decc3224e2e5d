package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/ephemera-ci/ephemera/internal/ghclient"
)

// Clients hands out go-github clients; *ghclient.Clients satisfies it.
type Clients interface {
	// ForInstallation returns a client for an App installation (0: the
	// configured one, or the token client); with an App and no configured
	// installation it fails with ghclient.ErrNoInstallation.
	ForInstallation(id int64) (*github.Client, error)
	// App returns the client authenticated as the App itself.
	App() (*github.Client, error)
}

var _ Clients = (*ghclient.Clients)(nil)

// repoName is an "owner/name" repository.
type repoName struct{ owner, name string }

func parseRepoName(s string) (repoName, bool) {
	owner, name, ok := strings.Cut(s, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return repoName{}, false
	}
	return repoName{owner, name}, true
}

func (r repoName) String() string { return r.owner + "/" + r.name }

// pathOwner and pathName are the owner and name escaped as one segment of
// a GitHub path each: go-github puts them in paths as they are.
func (r repoName) pathOwner() string { return url.PathEscape(r.owner) }
func (r repoName) pathName() string  { return url.PathEscape(r.name) }

// What the checks read from GitHub.
type (
	repoInfo struct {
		defaultBranch string
		private       bool
	}
	protection struct {
		requiredReviews bool
		bypassers       int // users, teams and apps allowed to bypass reviews
	}
	collaborator struct{ login, role string }
	pullRequest  struct {
		number      int
		association string
	}
	comment struct{ user, body string }
)

// gitHub is what the checks need from GitHub. Errors mean GitHub could
// not be asked or answered unexpectedly; the checks fail closed on them.
type gitHub interface {
	repo(ctx context.Context, r repoName) (repoInfo, error)
	// protection returns nil when the branch is not protected (or absent).
	protection(ctx context.Context, r repoName, branch string) (*protection, error)
	branchExists(ctx context.Context, r repoName, branch string) (bool, error)
	// branchRules returns the types of the ruleset rules that apply to
	// branch, one per rule.
	branchRules(ctx context.Context, r repoName, branch string) ([]string, error)
	outsideCollaborators(ctx context.Context, r repoName) ([]collaborator, error)
	// permission is admin, write, read or none.
	permission(ctx context.Context, r repoName, user string) (string, error)
	// openPullRequest returns the open pull request whose head is
	// owner:branch, or nil.
	openPullRequest(ctx context.Context, r repoName, headOwner, branch string) (*pullRequest, error)
	comments(ctx context.Context, r repoName, number int) ([]comment, error)
	ping(ctx context.Context) error
}

// githubAPI reads GitHub through go-github, under the cache.
type githubAPI struct {
	clients Clients
	cache   *cache
	timeout time.Duration // bounds each request

	mu           sync.Mutex
	wrapped      map[int64]*github.Client     // cached clients by installation (0: default)
	installation map[string]foundInstallation // by lower-case repository
}

// foundInstallation is a repository's installation as looked up at a time.
type foundInstallation struct {
	id int64
	at time.Time
}

// installationFreshness is how long a looked-up installation is reused;
// an App reinstalled on a repository gets a new installation id.
const installationFreshness = time.Hour

func newGitHubAPI(clients Clients, c *cache, timeout time.Duration) *githubAPI {
	return &githubAPI{clients: clients, cache: c, timeout: timeout, wrapped: map[int64]*github.Client{}, installation: map[string]foundInstallation{}}
}

// client returns the cached client that may read repository r.
func (g *githubAPI) client(ctx context.Context, r repoName) (*github.Client, error) {
	id := int64(0)
	base, err := g.clients.ForInstallation(0)
	if errors.Is(err, ghclient.ErrNoInstallation) {
		if id, err = g.installationOf(ctx, r); err != nil {
			return nil, err
		}
		base, err = g.clients.ForInstallation(id)
	}
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.wrapped[id]; ok {
		return c, nil
	}
	hc := base.Client()
	c := github.NewClient(&http.Client{
		Transport: g.cache.transport("installation:"+strconv.FormatInt(id, 10), hc.Transport),
		Timeout:   g.timeout,
	})
	c.BaseURL, c.UploadURL = base.BaseURL, base.UploadURL
	g.wrapped[id] = c
	return c, nil
}

// installationOf finds the App installation of r, at most once an hour.
func (g *githubAPI) installationOf(ctx context.Context, r repoName) (int64, error) {
	key := strings.ToLower(r.String())
	g.mu.Lock()
	found, ok := g.installation[key]
	g.mu.Unlock()
	if ok && time.Since(found.at) < installationFreshness {
		return found.id, nil
	}
	app, err := g.clients.App()
	if err != nil {
		return 0, err
	}
	inst, _, err := app.Apps.FindRepositoryInstallation(ghclient.WithOp(ctx, "find_installation"), r.pathOwner(), r.pathName())
	if err != nil {
		return 0, fmt.Errorf("find the app installation of %s: %w", r, err)
	}
	g.mu.Lock()
	g.installation[key] = foundInstallation{id: inst.GetID(), at: time.Now()}
	g.mu.Unlock()
	return inst.GetID(), nil
}

func isNotFound(resp *github.Response) bool {
	return resp != nil && resp.StatusCode == http.StatusNotFound
}

func (g *githubAPI) repo(ctx context.Context, r repoName) (repoInfo, error) {
	c, err := g.client(ctx, r)
	if err != nil {
		return repoInfo{}, err
	}
	repo, _, err := c.Repositories.Get(ghclient.WithOp(ctx, "repository"), r.pathOwner(), r.pathName())
	if err != nil {
		return repoInfo{}, fmt.Errorf("get repository %s: %w", r, err)
	}
	return repoInfo{defaultBranch: repo.GetDefaultBranch(), private: repo.GetPrivate()}, nil
}

func (g *githubAPI) protection(ctx context.Context, r repoName, branch string) (*protection, error) {
	c, err := g.client(ctx, r)
	if err != nil {
		return nil, err
	}
	p, resp, err := c.Repositories.GetBranchProtection(ghclient.WithOp(ctx, "branch_protection"), r.pathOwner(), r.pathName(), branch)
	if errors.Is(err, github.ErrBranchNotProtected) || (err != nil && isNotFound(resp)) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get branch protection of %s:%s: %w", r, branch, err)
	}
	out := &protection{}
	if rev := p.GetRequiredPullRequestReviews(); rev != nil {
		out.requiredReviews = true
		if b := rev.BypassPullRequestAllowances; b != nil {
			out.bypassers = len(b.Users) + len(b.Teams) + len(b.Apps)
		}
	}
	return out, nil
}

func (g *githubAPI) branchExists(ctx context.Context, r repoName, branch string) (bool, error) {
	c, err := g.client(ctx, r)
	if err != nil {
		return false, err
	}
	_, resp, err := c.Repositories.GetBranch(ghclient.WithOp(ctx, "branch"), r.pathOwner(), r.pathName(), branch, 0)
	if err != nil && isNotFound(resp) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get branch %s:%s: %w", r, branch, err)
	}
	return true, nil
}

func (g *githubAPI) branchRules(ctx context.Context, r repoName, branch string) ([]string, error) {
	c, err := g.client(ctx, r)
	if err != nil {
		return nil, err
	}
	// Not go-github's GetRulesForBranch: it sends the branch unescaped and
	// cannot decode every rule type GitHub answers (see rules.go).
	u := fmt.Sprintf("repos/%s/%s/rules/branches/%s", r.pathOwner(), r.pathName(), url.PathEscape(branch))
	req, err := c.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("get rules of %s:%s: %w", r, branch, err)
	}
	var raw json.RawMessage
	if _, err := c.Do(ghclient.WithOp(ctx, "branch_rules"), req, &raw); err != nil {
		return nil, fmt.Errorf("get rules of %s:%s: %w", r, branch, err)
	}
	types, err := ruleTypes(raw)
	if err != nil {
		return nil, fmt.Errorf("get rules of %s:%s: %w", r, branch, err)
	}
	return types, nil
}

func (g *githubAPI) outsideCollaborators(ctx context.Context, r repoName) ([]collaborator, error) {
	c, err := g.client(ctx, r)
	if err != nil {
		return nil, err
	}
	opts := &github.ListCollaboratorsOptions{Affiliation: "outside", ListOptions: github.ListOptions{PerPage: 100}}
	var out []collaborator
	for {
		users, resp, err := c.Repositories.ListCollaborators(ghclient.WithOp(ctx, "collaborators"), r.pathOwner(), r.pathName(), opts)
		if err != nil {
			return nil, fmt.Errorf("list outside collaborators of %s: %w", r, err)
		}
		for _, u := range users {
			out = append(out, collaborator{login: u.GetLogin(), role: roleOf(u)})
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

// roleOf is a collaborator's role name, or, from a GitHub that does not
// send one, the highest permission it holds.
func roleOf(u *github.User) string {
	if role := u.GetRoleName(); role != "" {
		return role
	}
	p := u.GetPermissions()
	for _, perm := range []string{"admin", "maintain", "push", "triage"} {
		if p[perm] {
			if perm == "push" {
				return "write"
			}
			return perm
		}
	}
	return "read"
}

func (g *githubAPI) permission(ctx context.Context, r repoName, user string) (string, error) {
	c, err := g.client(ctx, r)
	if err != nil {
		return "", err
	}
	p, resp, err := c.Repositories.GetPermissionLevel(ghclient.WithOp(ctx, "permission"), r.pathOwner(), r.pathName(), url.PathEscape(user))
	if err != nil && isNotFound(resp) {
		return "none", nil // no such user: no access
	}
	if err != nil {
		return "", fmt.Errorf("get permission of %s on %s: %w", user, r, err)
	}
	return p.GetPermission(), nil
}

func (g *githubAPI) openPullRequest(ctx context.Context, r repoName, headOwner, branch string) (*pullRequest, error) {
	c, err := g.client(ctx, r)
	if err != nil {
		return nil, err
	}
	prs, _, err := c.PullRequests.List(ghclient.WithOp(ctx, "pulls"), r.pathOwner(), r.pathName(), &github.PullRequestListOptions{
		State: "open", Head: headOwner + ":" + branch, ListOptions: github.ListOptions{PerPage: 100},
	})
	if err != nil {
		return nil, fmt.Errorf("list pull requests of %s: %w", r, err)
	}
	if len(prs) == 0 {
		return nil, nil
	}
	return &pullRequest{number: prs[0].GetNumber(), association: prs[0].GetAuthorAssociation()}, nil
}

func (g *githubAPI) comments(ctx context.Context, r repoName, number int) ([]comment, error) {
	c, err := g.client(ctx, r)
	if err != nil {
		return nil, err
	}
	opts := &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 100}}
	var out []comment
	for {
		cs, resp, err := c.Issues.ListComments(ghclient.WithOp(ctx, "comments"), r.pathOwner(), r.pathName(), number, opts)
		if err != nil {
			return nil, fmt.Errorf("list comments of %s#%d: %w", r, number, err)
		}
		for _, cm := range cs {
			out = append(out, comment{user: cm.GetUser().GetLogin(), body: cm.GetBody()})
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

// ping asks GitHub for the rate limit, a request that costs nothing.
func (g *githubAPI) ping(ctx context.Context) error {
	c, err := g.clients.ForInstallation(0)
	if errors.Is(err, ghclient.ErrNoInstallation) {
		c, err = g.clients.App()
	}
	if err != nil {
		return err
	}
	if _, _, err := c.RateLimit.Get(ghclient.WithOp(ctx, "rate_limit")); err != nil {
		return fmt.Errorf("get rate limit: %w", err)
	}
	return nil
}
