package githubfake

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/go-chi/chi/v5"
)

// RepoSpec describes a repository as the policy checks see it. Set it up
// with SetRepo; unset optional fields read as GitHub's defaults.
type RepoSpec struct {
	FullName string // "owner/name"; required
	Private  bool
	// DefaultBranch defaults to "main". It exists even when Branches does
	// not list it.
	DefaultBranch string
	// InstallationID is the App installation GET /repos/{o}/{r}/installation
	// answers; default 1.
	InstallationID int64
	// Branches are the repository's branches and their classic branch
	// protection; a nil protection is an unprotected branch.
	Branches map[string]*BranchProtection
	// Rulesets maps a branch to the types of the ruleset rules that apply
	// to it (e.g. "pull_request", "deletion").
	Rulesets map[string][]string
	// RuleAnswers maps a branch to the answer of its rules endpoint, sent
	// verbatim instead of one made from Rulesets: rules as GitHub's REST
	// description allows them, parameters or not.
	RuleAnswers map[string]json.RawMessage
	// OutsideCollaborators maps a login to its role name: read, triage,
	// write, maintain, admin or a custom role.
	OutsideCollaborators map[string]string
	// Permissions maps a login to its permission on the repository: admin,
	// maintain, write, triage or read. The owner is admin; outside
	// collaborators have their role's permission; anyone else has none.
	Permissions  map[string]string
	PullRequests []PullRequest
}

// BranchProtection is a branch's classic protection rule.
type BranchProtection struct {
	RequiredReviews bool // require pull-request reviews before merging
	// Users, teams and apps allowed to bypass required reviews.
	BypassUsers, BypassTeams, BypassApps []string
	DismissStaleReviews                  bool
	EnforceAdmins                        bool
}

// PullRequest is a pull request on the repository.
type PullRequest struct {
	Number   int
	Author   string // login; default the head repository's owner
	HeadRepo string // full name of the head repository
	HeadRef  string
	HeadSHA  string
	BaseRef  string // default the default branch
	Closed   bool
	// AuthorAssociation as GitHub reports it: OWNER, MEMBER, COLLABORATOR,
	// CONTRIBUTOR, FIRST_TIME_CONTRIBUTOR, FIRST_TIMER, NONE.
	AuthorAssociation string
	Comments          []Comment
}

// Comment is an issue comment on a pull request.
type Comment struct {
	User string
	Body string
}

// reposState is the repositories the policy checks read: branches and
// their protection, collaborators, pull requests and comments. It has its
// own lock, independent of the server's.
type reposState struct {
	mu    sync.Mutex
	repos map[string]*RepoSpec // by lower-case full name
}

func newReposState() *reposState { return &reposState{repos: map[string]*RepoSpec{}} }

// SetRepo creates or replaces a repository.
func (s *Server) SetRepo(spec RepoSpec) {
	spec = cloneSpec(spec)
	if spec.DefaultBranch == "" {
		spec.DefaultBranch = "main"
	}
	if spec.InstallationID == 0 {
		spec.InstallationID = 1
	}
	if spec.Branches == nil {
		spec.Branches = map[string]*BranchProtection{}
	}
	if _, ok := spec.Branches[spec.DefaultBranch]; !ok {
		spec.Branches[spec.DefaultBranch] = nil
	}
	s.repos.mu.Lock()
	defer s.repos.mu.Unlock()
	s.repos.repos[strings.ToLower(spec.FullName)] = &spec
}

// UpdateRepo changes a repository set up with SetRepo in place; it reports
// whether the repository exists.
func (s *Server) UpdateRepo(fullName string, change func(*RepoSpec)) bool {
	s.repos.mu.Lock()
	defer s.repos.mu.Unlock()
	spec, ok := s.repos.repos[strings.ToLower(fullName)]
	if ok {
		change(spec)
	}
	return ok
}

// AddComment adds a comment to pull request number of a repository; it
// reports whether the pull request exists.
func (s *Server) AddComment(fullName string, number int, c Comment) bool {
	found := false
	s.UpdateRepo(fullName, func(spec *RepoSpec) {
		for i := range spec.PullRequests {
			if spec.PullRequests[i].Number == number {
				spec.PullRequests[i].Comments = append(spec.PullRequests[i].Comments, c)
				found = true
			}
		}
	})
	return found
}

func cloneSpec(spec RepoSpec) RepoSpec {
	spec.Branches = maps.Clone(spec.Branches)
	spec.Rulesets = maps.Clone(spec.Rulesets)
	spec.RuleAnswers = maps.Clone(spec.RuleAnswers)
	spec.OutsideCollaborators = maps.Clone(spec.OutsideCollaborators)
	spec.Permissions = maps.Clone(spec.Permissions)
	spec.PullRequests = slices.Clone(spec.PullRequests)
	for i := range spec.PullRequests {
		spec.PullRequests[i].Comments = slices.Clone(spec.PullRequests[i].Comments)
	}
	return spec
}

// repo runs read on a copy-safe view of the named repository under the
// lock; it reports false when there is no such repository.
func (s *Server) repo(owner, name string, read func(*RepoSpec)) bool {
	s.repos.mu.Lock()
	defer s.repos.mu.Unlock()
	spec, ok := s.repos.repos[strings.ToLower(owner+"/"+name)]
	if ok {
		read(spec)
	}
	return ok
}

func (s *Server) repoRoutes(r chi.Router) {
	r.Get("/rate_limit", s.handleRateLimit)
	const repo = "/repos/{owner}/{repo}"
	r.Get(repo, s.handleGetRepo)
	r.Get(repo+"/installation", s.handleRepoInstallation)
	r.Get(repo+"/branches/{branch}", s.handleGetBranch)
	r.Get(repo+"/branches/{branch}/protection", s.handleGetProtection)
	r.Get(repo+"/rules/branches/{branch}", s.handleBranchRules)
	r.Get(repo+"/collaborators", s.handleListCollaborators)
	r.Get(repo+"/collaborators/{user}/permission", s.handlePermission)
	r.Get(repo+"/pulls", s.handleListPulls)
	r.Get(repo+"/issues/{number}/comments", s.handleListComments)
}
