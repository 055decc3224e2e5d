package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/scaler"
)

// Plan is the stream of jobs a demo submits.
type Plan struct {
	Jobs        int
	Rate        float64       // jobs per second
	Duration    time.Duration // how long each job "runs"
	RejectEvery int           // every n-th job comes from a repository the policy refuses; 0: none
	Timeout     time.Duration // for the whole run
}

// Job is one submitted job and what the demo expects of it.
type Job struct {
	ID         int64
	Pool       string
	Repo       string
	Event      string
	WantReject bool
	Submitted  time.Time
}

// Job describes job i: most jobs are pushes and pull requests to the
// well-configured acme/app; every RejectEvery-th job is a push to
// acme/legacy or an unauthorized fork's pull request, which the policy
// refuses.
func (pl Plan) Job(i int, pools []string) (githubfake.JobSpec, Job) {
	pool := pools[i%len(pools)]
	spec := githubfake.JobSpec{Labels: []string{"self-hosted", pool}, Duration: pl.Duration, Repo: RepoGood, Trigger: githubfake.Trigger{Event: "push"}}
	dj := Job{Pool: pool}
	switch {
	case pl.RejectEvery > 0 && i%pl.RejectEvery == pl.RejectEvery-1:
		dj.WantReject = true
		if (i/pl.RejectEvery)%2 == 0 {
			spec.Repo = RepoLegacy
		} else {
			spec.Trigger = pullRequest(ForkOwner+"/app", fmt.Sprintf("patch-%d", i))
		}
	case i%3 == 1:
		spec.Trigger = pullRequest(RepoGood, fmt.Sprintf("feature-%d", i))
	}
	dj.Repo, dj.Event = spec.Repo, spec.Event
	return spec, dj
}

// pullRequest is a pull request into main from head's branch.
func pullRequest(head, branch string) githubfake.Trigger {
	return githubfake.Trigger{Event: "pull_request", HeadRepository: head, HeadBranch: branch, BaseBranch: "main", SHA: RandomHex(20)}
}

// Snapshot is the system as the live view shows it.
type Snapshot struct {
	At        time.Time
	Pools     []scaler.PoolStatus
	Instances int
	Queued    int
	Running   int
	Done      int
	Rejected  int
	Submitted int
	Events    []string // newest last
}

// Result is what a demo run measured.
type Result struct {
	Jobs                   []Job
	Final                  map[int64]githubfake.Job
	Completed, Rejected    int
	Unexpected             []string        // jobs whose outcome was not the planned one
	Latencies              []time.Duration // queued → running of every job that started, in submission order
	LatencyP50, LatencyP99 time.Duration
	// Queued → the runner that took the job came online, for the jobs
	// whose runner came online after the job was queued (a fresh runner,
	// not one that was idle already).
	OnlineLatencies                    []time.Duration
	OnlineLatencyP50, OnlineLatencyP99 time.Duration
	GitHubRequests                     int
	// PolicyChecks is ephemera_policy_checks_total by outcome (summed
	// over events), read before the scale to zero restarts ephemera.
	PolicyChecks      map[string]float64
	InstancesLeft     int
	RegistrationsLeft int
	SlotsLeft         int
	OpenClaims        int
	Elapsed           time.Duration
}

// Run submits the plan's jobs, calls view with a snapshot every
// refresh until every job has finished and each pool is back to min_idle,
// then scales every pool to zero through ephemera itself (a restart with
// min_idle 0 and a short idle grace: the reconciler removes each idle
// runner on GitHub first, then its instance) and counts what is left.
func (d *System) Run(ctx context.Context, pl Plan, refresh time.Duration, view func(Snapshot)) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, pl.Timeout)
	defer cancel()
	start := time.Now()
	var res Result
	names := d.spec.Pools
	seen := map[int64]string{} // job id → last status reported
	var events []string
	event := func(format string, args ...any) {
		events = append(events, time.Now().Format(time.TimeOnly)+"  "+fmt.Sprintf(format, args...))
		if len(events) > 8 {
			events = events[len(events)-8:]
		}
	}
	snap := func() Snapshot {
		s := Snapshot{At: time.Now(), Submitted: len(res.Jobs)}
		s.Pools, _ = scaler.ReadStatus(ctx, d.proc.Bus().JS, d.cfg.Pools)
		s.Instances, _ = d.Instances(ctx)
		byID := map[int64]Job{}
		for _, j := range res.Jobs {
			byID[j.ID] = j
		}
		for _, j := range d.github.Jobs() {
			dj, ok := byID[j.ID]
			if !ok {
				continue
			}
			switch {
			case j.Status == githubfake.JobQueued:
				s.Queued++
			case j.Status == githubfake.JobInProgress:
				s.Running++
			case j.Conclusion == githubfake.ConclusionSuccess:
				s.Done++
			default:
				s.Rejected++
			}
			st := j.Status + "/" + j.Conclusion
			if seen[j.ID] != st {
				seen[j.ID] = st
				switch j.Status {
				case githubfake.JobInProgress:
					event("job %d (%s %s) started on %s", j.ID, dj.Repo, dj.Event, j.RunnerName)
				case githubfake.JobCompleted:
					event("job %d (%s %s) %s on %s", j.ID, dj.Repo, dj.Event, j.Conclusion, j.RunnerName)
				}
			}
		}
		s.Events = slices.Clone(events)
		return s
	}

	tick := time.NewTicker(refresh)
	defer tick.Stop()
	interval := time.Duration(float64(time.Second) / pl.Rate)
	nextSubmit := time.Now()
	for i := 0; ; {
		if i < pl.Jobs && !time.Now().Before(nextSubmit) {
			spec, dj := pl.Job(i, names)
			dj.Submitted = time.Now()
			dj.ID = d.github.QueueJob(spec)
			res.Jobs = append(res.Jobs, dj)
			event("job %d queued: %s %s → pool %s", dj.ID, dj.Repo, dj.Event, dj.Pool)
			i++
			nextSubmit = nextSubmit.Add(interval)
			continue
		}
		s := snap()
		view(s)
		if i == pl.Jobs && s.Done+s.Rejected == pl.Jobs && settled(s.Pools, d.cfg.Pools) {
			break
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("demo did not finish within %s: %d done, %d rejected, %d running, %d queued", pl.Timeout, s.Done, s.Rejected, s.Running, s.Queued)
		case <-tick.C:
		}
	}

	// Every job's outcome and latency.
	res.Final = map[int64]githubfake.Job{}
	for _, j := range d.github.Jobs() {
		res.Final[j.ID] = j
	}
	for _, dj := range res.Jobs {
		j := res.Final[dj.ID]
		ok := j.Conclusion == githubfake.ConclusionSuccess
		if ok {
			res.Completed++
		} else {
			res.Rejected++
		}
		if ok == dj.WantReject {
			res.Unexpected = append(res.Unexpected, fmt.Sprintf("job %d (%s %s): %s", dj.ID, dj.Repo, dj.Event, j.Conclusion))
		}
		if !j.StartedAt.IsZero() {
			res.Latencies = append(res.Latencies, j.StartedAt.Sub(dj.Submitted))
		}
		if j.RunnerOnlineAt.After(dj.Submitted) {
			res.OnlineLatencies = append(res.OnlineLatencies, j.RunnerOnlineAt.Sub(dj.Submitted))
		}
	}
	res.LatencyP50, res.LatencyP99 = Percentile(res.Latencies, 50), Percentile(res.Latencies, 99)
	res.OnlineLatencyP50, res.OnlineLatencyP99 = Percentile(res.OnlineLatencies, 50), Percentile(res.OnlineLatencies, 99)
	res.GitHubRequests = GitHubRequests(d.github)
	var err error
	if res.PolicyChecks, err = d.policyChecks(); err != nil {
		return res, err
	}

	// Scale to zero through ephemera's own reconciler.
	event("scaling every pool to zero")
	if err := d.Restart(ctx, func(c *config.Config) {
		for i := range c.Pools {
			c.Pools[i].MinIdle = 0
		}
		c.Reconcile.IdleGrace = config.Duration(time.Second)
		c.Reconcile.Interval = config.Duration(time.Second)
	}); err != nil {
		return res, err
	}
	for {
		s := snap()
		view(s)
		if s.Instances == 0 && len(d.github.Runners()) == 0 && slotsHeld(s.Pools) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("pools did not scale to zero within %s: %d instances, %d registrations", pl.Timeout, s.Instances, len(d.github.Runners()))
		case <-tick.C:
		}
	}
	res.InstancesLeft, _ = d.Instances(ctx)
	res.RegistrationsLeft = len(d.github.Runners())
	if res.SlotsLeft, res.OpenClaims, err = KVLeftovers(ctx, d.proc.Bus().JS); err != nil {
		return res, err
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// settled reports whether every pool is back to min_idle with nothing
// being provisioned or busy.
func settled(st []scaler.PoolStatus, pools []config.Pool) bool {
	if len(st) != len(pools) {
		return false
	}
	for i, p := range st {
		if p.Idle != pools[i].MinIdle || p.Busy != 0 || p.Provisioning != 0 || p.Instances != pools[i].MinIdle || p.WaitingJobs != 0 {
			return false
		}
	}
	return true
}

func slotsHeld(st []scaler.PoolStatus) int {
	n := 0
	for _, p := range st {
		n += p.Instances
	}
	return n
}

// KVLeftovers counts held slots and claims of jobs that are not over.
func KVLeftovers(ctx context.Context, js jetstream.JetStream) (slots, openClaims int, err error) {
	count := func(bucket string, open func([]byte) bool) (int, error) {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			return 0, err
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return 0, err
		}
		n := 0
		for k := range keys.Keys() {
			e, err := kv.Get(ctx, k)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return 0, err
			}
			if open(e.Value()) {
				n++
			}
		}
		return n, nil
	}
	if slots, err = count(scaler.BucketSlots, func([]byte) bool { return true }); err != nil {
		return 0, 0, err
	}
	openClaims, err = count(scaler.BucketJobs, func(v []byte) bool {
		var c struct{ Completed, NoRunner bool }
		return json.Unmarshal(v, &c) != nil || !(c.Completed || c.NoRunner)
	})
	return slots, openClaims, err
}

// GitHubRequests counts the REST requests ephemera made to the stand-in
// (the stand-in runners' own /_fake calls are not GitHub API requests).
func GitHubRequests(f *githubfake.Server) int {
	n := 0
	for _, c := range f.Calls() {
		if !strings.HasPrefix(c.Path, "/_fake/") {
			n++
		}
	}
	return n
}

// Percentile is the p-th percentile of d (nearest rank), 0 for none.
func Percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

// policyChecks reads ephemera_policy_checks_total by outcome from the
// running ephemera's registry.
func (d *System) policyChecks() (map[string]float64, error) {
	d.mu.Lock()
	p := d.proc
	d.mu.Unlock()
	families, err := p.Registry().Gather()
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "ephemera_policy_checks_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out, nil
}
