package scaler_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/internal/ghbudget"
	"github.com/ephemera-ci/ephemera/scaler"
)

// prioritySpy records the budget priority each GitHub call carries.
type prioritySpy struct {
	scaler.GitHub
	mu       sync.Mutex
	register map[string]ghbudget.Priority // runner name → priority
	list     []ghbudget.Priority
}

func (p *prioritySpy) RegisterRunner(ctx context.Context, reg scaler.Registration) (scaler.RegisteredRunner, error) {
	p.mu.Lock()
	p.register[reg.Name] = ghbudget.PriorityOf(ctx, "POST")
	p.mu.Unlock()
	return p.GitHub.RegisterRunner(ctx, reg)
}

func (p *prioritySpy) ListRunners(ctx context.Context, inst int64) ([]scaler.GitHubRunner, error) {
	p.mu.Lock()
	p.list = append(p.list, ghbudget.PriorityOf(ctx, "POST")) // POST: an unmarked call would read as Cleanup
	p.mu.Unlock()
	return p.GitHub.ListRunners(ctx, inst)
}

func TestAWaitingJobsRegistrationGoesFirstInTheGitHubBudgetAndBufferRunnersAfter(t *testing.T) {
	p := pool("prio", 1, 5)
	e := newEnv(t, p)
	spy := &prioritySpy{GitHub: e.gh, register: map[string]ghbudget.Priority{}}
	e.start(e.config(func(c *scaler.Config) { c.GitHub = spy }))
	waitFor(t, 10*time.Second, "the idle buffer", func() bool { return e.idle() == 1 })
	ids := e.queue(1, p, 50*time.Millisecond)
	waitFor(t, 10*time.Second, "the job to complete", e.allCompleted(ids))
	waitFor(t, 10*time.Second, "its job-bound runner", func() bool { return len(e.jobBoundCreates()) == 1 })
	e.succeeded(t, ids)

	spy.mu.Lock()
	defer spy.mu.Unlock()
	kinds := map[bool]int{}
	for _, spec := range e.prov.Specs() {
		want := ghbudget.TopUp
		if spec.JobID != 0 {
			want = ghbudget.Registration
		}
		kinds[spec.JobID != 0]++
		if got := spy.register[spec.Name]; got != want {
			t.Errorf("runner %s (job %d) registered at priority %s, want %s", spec.Name, spec.JobID, got, want)
		}
	}
	if kinds[true] != 1 || kinds[false] == 0 {
		t.Errorf("created %d job-bound and %d buffer runners, want 1 and some", kinds[true], kinds[false])
	}
	for _, pr := range spy.list {
		if pr != ghbudget.Listing {
			t.Fatalf("a reconcile listed runners at priority %s, want listing", pr)
		}
	}
	if len(spy.list) == 0 {
		t.Error("no reconcile listed runners")
	}
}
