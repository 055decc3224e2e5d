// Package scalertest holds test doubles for the scaler: an in-memory
// Provisioner that checks the pool maximum at every change, a token
// minter, and a webhook bridge that turns the GitHub stand-in's webhooks
// into JetStream job events the way the webhook receiver does.
package scalertest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ephemera-ci/ephemera/scaler"
)

// Provisioner is an in-memory scaler.Provisioner. Its zero value works.
// It counts, per pool, instances plus creates in flight at every change
// and remembers the highest count, so a test can assert a pool's max
// held at every moment, not just at sampled ones.
type Provisioner struct {
	// CreateDelay is how long each create takes.
	CreateDelay time.Duration
	// Fail, when set, is asked before each create; an error fails it.
	Fail func(spec scaler.InstanceSpec) error
	// OnCreated, when set, is called on its own goroutine after a create
	// succeeded: e.g. bring the runner online in the GitHub stand-in.
	OnCreated func(spec scaler.InstanceSpec)
	// OnDeleted, when set, is called (synchronously, before Delete
	// returns) when Delete removes an existing instance: e.g. kill its
	// runner in the GitHub stand-in, failing the job it ran.
	OnDeleted func(name string)

	mu        sync.Mutex
	instances map[string]scaler.Instance
	creating  map[string]int // per pool
	peak      map[string]int // per pool
	jobLive   map[int64]int  // job-bound instances + creates, per job
	jobPeak   map[int64]int
	specs     []scaler.InstanceSpec
	creates   int
	deletes   int
}

var _ scaler.Provisioner = (*Provisioner)(nil)

func (p *Provisioner) init() {
	if p.instances == nil {
		p.instances = map[string]scaler.Instance{}
		p.creating = map[string]int{}
		p.peak = map[string]int{}
		p.jobLive = map[int64]int{}
		p.jobPeak = map[int64]int{}
	}
}

func (p *Provisioner) countLocked(pool string) int {
	n := p.creating[pool]
	for _, in := range p.instances {
		if in.Pool == pool {
			n++
		}
	}
	return n
}

func (p *Provisioner) observeLocked(pool string) {
	if n := p.countLocked(pool); n > p.peak[pool] {
		p.peak[pool] = n
	}
}

// Create implements scaler.Provisioner.
func (p *Provisioner) Create(ctx context.Context, spec scaler.InstanceSpec) error {
	p.mu.Lock()
	p.init()
	if _, ok := p.instances[spec.Name]; ok {
		p.mu.Unlock()
		return fmt.Errorf("create %s: %w", spec.Name, scaler.ErrInstanceExists)
	}
	p.creating[spec.Pool]++
	p.creates++
	p.observeLocked(spec.Pool)
	p.jobUpLocked(spec.JobID)
	delay, fail, onCreated := p.CreateDelay, p.Fail, p.OnCreated
	p.mu.Unlock()

	done := func() {
		p.mu.Lock()
		p.creating[spec.Pool]--
		p.jobDownLocked(spec.JobID)
		p.mu.Unlock()
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			done()
			return ctx.Err()
		}
	}
	if fail != nil {
		if err := fail(spec); err != nil {
			done()
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		done()
		return err
	}
	p.mu.Lock()
	p.creating[spec.Pool]--
	p.instances[spec.Name] = scaler.Instance{
		Name: spec.Name, Pool: spec.Pool, JobID: spec.JobID, State: scaler.StateRunning, CreatedAt: time.Now(),
	}
	p.specs = append(p.specs, spec)
	p.observeLocked(spec.Pool)
	p.mu.Unlock()
	if onCreated != nil {
		go onCreated(spec)
	}
	return nil
}

// List implements scaler.Provisioner.
func (p *Provisioner) List(context.Context) ([]scaler.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Collect(maps.Values(p.instances)), nil
}

// Delete implements scaler.Provisioner.
func (p *Provisioner) Delete(_ context.Context, name string) error {
	p.mu.Lock()
	p.init()
	_, existed := p.instances[name]
	p.removeLocked(name)
	onDeleted := p.OnDeleted
	p.mu.Unlock()
	if existed && onDeleted != nil {
		onDeleted(name)
	}
	return nil
}

func (p *Provisioner) removeLocked(name string) {
	if in, ok := p.instances[name]; ok {
		p.deletes++
		p.jobDownLocked(in.JobID)
	}
	delete(p.instances, name)
}

func (p *Provisioner) jobUpLocked(job int64) {
	if job == 0 {
		return
	}
	p.jobLive[job]++
	p.jobPeak[job] = max(p.jobPeak[job], p.jobLive[job])
}

func (p *Provisioner) jobDownLocked(job int64) {
	if job != 0 {
		p.jobLive[job]--
	}
}

// JobPeak is the most job-bound instances (plus creates in flight) that
// ever existed at once for job.
func (p *Provisioner) JobPeak(job int64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	return p.jobPeak[job]
}

// Exit removes an instance as LXD does when an ephemeral instance powers
// off: wire it to githubfake's OnRunnerExit.
func (p *Provisioner) Exit(name string) {
	p.mu.Lock()
	p.init()
	p.removeLocked(name)
	p.mu.Unlock()
}

// Add puts an instance in place as if created earlier (by a replica that
// died before recording it, say).
func (p *Provisioner) Add(in scaler.Instance) {
	p.mu.Lock()
	p.init()
	p.instances[in.Name] = in
	p.observeLocked(in.Pool)
	p.jobUpLocked(in.JobID)
	p.mu.Unlock()
}

// SetState changes an instance's state (e.g. stopped).
func (p *Provisioner) SetState(name string, st scaler.InstanceState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if in, ok := p.instances[name]; ok {
		in.State = st
		p.instances[name] = in
	}
}

// Count is the number of instances of pool plus creates in flight.
func (p *Provisioner) Count(pool string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	return p.countLocked(pool)
}

// Peak is the highest Count(pool) ever observed.
func (p *Provisioner) Peak(pool string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	return p.peak[pool]
}

// Instances returns the instances, by name.
func (p *Provisioner) Instances() []scaler.Instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Collect(maps.Values(p.instances))
	slices.SortFunc(out, func(a, b scaler.Instance) int { return cmpString(a.Name, b.Name) })
	return out
}

// Specs returns every successful create's spec, in order.
func (p *Provisioner) Specs() []scaler.InstanceSpec {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.specs)
}

// Creates is how many creates were attempted.
func (p *Provisioner) Creates() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.creates
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ErrInjected is what Fail functions made with FailTimes return.
var ErrInjected = errors.New("scalertest: injected provisioner failure")

// FailTimes returns a Fail function that fails the first n creates.
func FailTimes(n int) func(scaler.InstanceSpec) error {
	var mu sync.Mutex
	return func(scaler.InstanceSpec) error {
		mu.Lock()
		defer mu.Unlock()
		if n > 0 {
			n--
			return ErrInjected
		}
		return nil
	}
}
