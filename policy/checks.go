package policy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ephemera-ci/ephemera/internal/ghbudget"
)

// Outcome is the result of a check or of a whole check-run.
type Outcome string

// Outcomes, the outcome label of ephemera_policy_checks_total.
const (
	Pass  Outcome = "pass"
	Fail  Outcome = "fail"  // the repository must change something: 403
	Error Outcome = "error" // the service could not tell: 500, never a pass
)

// Decision is the answer of a check-run: which check decided and why.
type Decision struct {
	Outcome Outcome
	Check   string // the rule that failed or errored; "" on a pass
	Reason  string // for Fail: one or two sentences for the repository's admins
	Err     error  // for Error: what went wrong, for the log only
}

// checkInput is what a check-run asks about.
type checkInput struct {
	repo         repoName // where the job runs
	source       repoName // pull requests: the head repository
	targetBranch string
	sourceBranch string
	sha          string
}

func (in checkInput) fromFork() bool {
	return !strings.EqualFold(in.source.String(), in.repo.String())
}

// check is one rule: it returns a reason when the repository fails it,
// and an error when GitHub could not tell.
type check func(ctx context.Context, gh gitHub, in checkInput) (reason string, err error)

// checker runs the rules of a policy document section against GitHub.
type checker struct {
	gh     gitHub
	phrase string // the authorization phrase of execute_job
}

func (c *checker) rule(name string) check {
	switch name {
	case RuleTargetBranchProtection:
		return checkTargetBranchProtection
	case RuleCollaborators:
		return checkCollaborators
	case RuleDisallowFork:
		return checkDisallowFork
	case RuleExecuteJob:
		return c.checkExecuteJob
	case RuleExternalContributor:
		return checkExternalContributor
	}
	return nil
}

// run runs section's enabled rules in order; the first that does not pass
// decides.
func (c *checker) run(ctx context.Context, doc Document, section string, in checkInput) Decision {
	// A runner waits for this answer: its GitHub calls come right after
	// a waiting job's registration in the shared budget.
	ctx = ghbudget.WithPriority(ctx, ghbudget.Policy)
	for _, name := range schema[section] {
		if !doc.Enabled(section, name) {
			continue
		}
		reason, err := c.rule(name)(ctx, c.gh, in)
		switch {
		case err != nil:
			return Decision{Outcome: Error, Check: name, Err: err}
		case reason != "":
			return Decision{Outcome: Fail, Check: name, Reason: reason}
		}
	}
	return Decision{Outcome: Pass}
}

// hasPush reports whether a permission (as the permission API names it)
// allows pushing.
func hasPush(perm string) bool {
	return perm == "admin" || perm == "maintain" || perm == "write"
}

func checkTargetBranchProtection(ctx context.Context, gh gitHub, in checkInput) (string, error) {
	info, err := gh.repo(ctx, in.repo)
	if err != nil {
		return "", err
	}
	branch := in.targetBranch
	p, err := gh.protection(ctx, in.repo, branch)
	if err != nil {
		return "", err
	}
	if p == nil {
		exists, err := gh.branchExists(ctx, in.repo, branch)
		if err != nil {
			return "", err
		}
		if !exists {
			return fmt.Sprintf("The target branch %s does not exist in %s.", branch, in.repo), nil
		}
		rules, err := gh.branchRules(ctx, in.repo, branch)
		if err != nil {
			return "", err
		}
		if len(rules) > 0 {
			return fmt.Sprintf("Branch %s of %s is protected by rulesets, which were found instead of branch protection (ruleset rules: %s); protect it with a branch protection rule.", branch, in.repo, strings.Join(rules, ", ")), nil
		}
		return fmt.Sprintf("Branch %s of %s is not protected; add a branch protection rule for it.", branch, in.repo), nil
	}
	if branch != info.defaultBranch && !in.fromFork() {
		return "", nil
	}
	if !p.requiredReviews {
		return fmt.Sprintf("The branch protection of %s in %s must require pull request reviews before merging.", branch, in.repo), nil
	}
	if p.bypassers > 0 {
		return fmt.Sprintf("The branch protection of %s in %s lets users, teams or apps bypass required pull request reviews; remove those bypass allowances.", branch, in.repo), nil
	}
	return "", nil
}

func checkCollaborators(ctx context.Context, gh gitHub, in checkInput) (string, error) {
	cs, err := gh.outsideCollaborators(ctx, in.repo)
	if err != nil {
		return "", err
	}
	var over []string
	for _, c := range cs {
		if c.role != "read" {
			over = append(over, fmt.Sprintf("%s (%s)", c.login, c.role))
		}
	}
	if len(over) == 0 {
		return "", nil
	}
	slices.Sort(over)
	if len(over) > 5 {
		over = append(over[:5], fmt.Sprintf("and %d more", len(over)-5))
	}
	return fmt.Sprintf("Outside collaborators of %s have more than read access: %s; lower them to read.", in.repo, strings.Join(over, ", ")), nil
}

func checkDisallowFork(ctx context.Context, gh gitHub, in checkInput) (string, error) {
	if !in.fromFork() {
		return "", nil
	}
	perm, err := gh.permission(ctx, in.repo, in.source.owner)
	if err != nil {
		return "", err
	}
	if hasPush(perm) {
		return "", nil
	}
	return fmt.Sprintf("%s does not run jobs for pull requests from forks whose owner lacks write access, and %s is such a fork.", in.repo, in.source), nil
}

func (c *checker) checkExecuteJob(ctx context.Context, gh gitHub, in checkInput) (string, error) {
	if !in.fromFork() {
		return "", nil
	}
	perm, err := gh.permission(ctx, in.repo, in.source.owner)
	if err != nil {
		return "", err
	}
	if hasPush(perm) {
		return "", nil
	}
	pr, err := gh.openPullRequest(ctx, in.repo, in.source.owner, in.sourceBranch)
	if err != nil {
		return "", err
	}
	if pr == nil {
		return fmt.Sprintf("No open pull request from %s:%s was found in %s, so no one has authorized this commit to run.", in.source.owner, in.sourceBranch, in.repo), nil
	}
	comments, err := gh.comments(ctx, in.repo, pr.number)
	if err != nil {
		return "", err
	}
	want := c.phrase + " " + in.sha
	checked := map[string]bool{}
	for _, cm := range comments {
		if checked[cm.user] || !authorizes(cm.body, want) {
			continue
		}
		checked[cm.user] = true
		perm, err := gh.permission(ctx, in.repo, cm.user)
		if err != nil {
			return "", err
		}
		if hasPush(perm) {
			return "", nil
		}
	}
	return fmt.Sprintf("Pull request #%d comes from a fork: a user with write access to %s must comment %q to run this commit.", pr.number, in.repo, want), nil
}

// authorizes reports whether a comment body holds line want on a line of
// its own; quoted lines (first non-space character '>') do not count.
func authorizes(body, want string) bool {
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimSpace(line) // also drops a CRLF's '\r'
		if strings.HasPrefix(line, ">") {
			continue
		}
		if line == want {
			return true
		}
	}
	return false
}

func checkExternalContributor(ctx context.Context, gh gitHub, in checkInput) (string, error) {
	info, err := gh.repo(ctx, in.repo)
	if err != nil {
		return "", err
	}
	pr, err := gh.openPullRequest(ctx, in.repo, in.source.owner, in.sourceBranch)
	if err != nil {
		return "", err
	}
	if pr == nil {
		return fmt.Sprintf("No open pull request from %s:%s was found in %s, so its author cannot be checked.", in.source.owner, in.sourceBranch, in.repo), nil
	}
	switch pr.association {
	case "OWNER", "MEMBER", "COLLABORATOR":
		return "", nil
	case "CONTRIBUTOR":
		if info.private {
			return "", nil
		}
	}
	return fmt.Sprintf("Pull request #%d in %s was opened by an external contributor (%s); only owners, members and collaborators may run jobs here.", pr.number, in.repo, pr.association), nil
}
