package scaler

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// GitHub is what the scaler asks of GitHub; package ghactions implements
// it with go-github. Installation 0 means the configured (or last seen)
// one. While GitHub says to wait, a method fails with a *RateLimitedError
// in its error's chain.
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
	// ErrNoInstallation: installation 0 was asked for, and no installation
	// is configured nor was one seen in an event yet.
	ErrNoInstallation = errors.New("no GitHub App installation id: set github.installation_id or pass the one from the event")
)

// RateLimitedError is a GitHub implementation's answer while GitHub has
// said to wait: nothing is asked of GitHub before Until, so the job waits
// that long.
type RateLimitedError struct{ Until time.Time }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("github rate limit: waiting until %s", e.Until.UTC().Format(time.RFC3339))
}
