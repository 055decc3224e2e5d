package scaler

import (
	"context"
	"errors"
	"time"
)

// Provisioner creates, lists and deletes runner instances. lxdprov.Provider
// implements it on LXD; tests may use an in-memory one.
type Provisioner interface {
	// Create creates and starts one instance. It returns once the instance
	// runs, or fails with an error wrapping one of the Err* sentinels
	// below where one applies. It is bounded by ctx.
	Create(ctx context.Context, spec InstanceSpec) error
	// List returns every instance of this deployment's pools, in any state.
	List(ctx context.Context) ([]Instance, error)
	// Delete force-stops and deletes the instance; one already gone is
	// success.
	Delete(ctx context.Context, name string) error
}

// InstanceSpec is one runner instance to create.
type InstanceSpec struct {
	// Name is both the instance's and the GitHub runner's name:
	// eph-<pool>-<suffix>, at most 63 characters of [a-z0-9-].
	Name string
	Pool string // a configured pool's name
	// JobID is the job this runner was created for; 0 for a buffer runner.
	JobID int64
	// JITConfig is GitHub's encoded_jit_config, passed verbatim to
	// run.sh --jitconfig. A secret: never log it.
	JITConfig string
	// PolicyToken is the one-time token the pre-job hook presents to the
	// policy service. A secret: never log it.
	PolicyToken string
}

// Instance is an instance as the provisioner sees it.
type Instance struct {
	Name      string
	Pool      string
	JobID     int64 // 0 when not created for a job
	State     InstanceState
	CreatedAt time.Time
	Location  string // cluster member, when clustered
}

// InstanceState is an instance's lifecycle state.
type InstanceState string

// Instance states. Every state other than Running and Starting means the
// instance will not run a job any more.
const (
	StateStarting InstanceState = "starting"
	StateRunning  InstanceState = "running"
	StateStopping InstanceState = "stopping"
	StateStopped  InstanceState = "stopped"
	StateError    InstanceState = "error"
)

// Errors a Provisioner wraps so the scaler can act on them.
var (
	// ErrInstanceExists: an instance of that name exists already.
	ErrInstanceExists = errors.New("instance already exists")
	// ErrInstanceNotFound: no instance of that name.
	ErrInstanceNotFound = errors.New("instance not found")
	// ErrNoCapacity: the provider is out of resources now; retry later.
	ErrNoCapacity = errors.New("out of capacity")
	// ErrMisconfigured: a permanent problem (missing image or profile,
	// unknown pool); retrying will not help until the operator acts.
	ErrMisconfigured = errors.New("provisioner misconfigured")
)
