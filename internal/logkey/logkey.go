// Package logkey names the structured log fields every component uses, so
// that one query finds a delivery, a job or a runner across all of them.
package logkey

// Log field names.
const (
	Component = "component"
	Delivery  = "delivery"
	Event     = "event"
	Action    = "action"
	Job       = "job_id"
	Run       = "run_id"
	Repo      = "repo"
	Pool      = "pool"
	Runner    = "runner"
	RunnerID  = "runner_id"
	Instance  = "instance"
	Outcome   = "outcome"
	Reason    = "reason"
	Duration  = "duration"
	Status    = "status"
	Method    = "method"
	Path      = "path"
	Remote    = "remote"
	Op        = "op"
	Check     = "check"
	// Scaler.
	Replica       = "replica"
	PreviousOwner = "previous_owner"
	NewRunner     = "new_runner"
	RetryIn       = "retry_in"
	Delivered     = "delivered" // how many times JetStream delivered a message
	Redeliveries  = "redeliveries"
	Listed        = "listed" // whether a reconcile pass read GitHub's runner list
	// min_idle: auto's sizing.
	MinIdle   = "min_idle"
	Replenish = "replenish"
	Rate      = "rate_per_second"
	Replay    = "replay_buffer"
	Poisson   = "poisson_buffer"
	DayLevel  = "day_level" // -1: none yet
	Batched   = "batched"
	Until     = "until" // a token's new expiry
	// Runner versions: the one an image pins, the newest GitHub lists.
	Image         = "image"
	RunnerVersion = "runner_version"
	LatestVersion = "latest_version"
	// The runner network guard.
	Network = "network"
	ACL     = "acl"
	// Instance templates (lxdprov): the template copied, and where an
	// instance came from (template or image).
	Template = "template"
	Source   = "source"
	// The policy service: when the document it applies was read.
	ReadAt = "read_at"
)
