package endtoend

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/demo"
)

// TestEndToEndOnLXD runs the demo's scenario with assertions: real LXD
// containers, each running the stand-in runner, which takes its job from
// the GitHub stand-in's broker and asks the policy service before running.
func TestEndToEndOnLXD(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end on LXD")
	}
	e2etest.RequireStandinImage(t)
	e2etest.TakeTurn(t)
	prefix := "e" + demo.RandomHex(2)
	sys, err := demo.Start(t.Context(), demo.Spec{
		Pools: []string{prefix + "-a", prefix + "-b"}, MinIdle: 1, Max: 4, Image: e2etest.StandinImage,
		Interval: time.Second, BootstrapTimeout: time.Minute, IdleGrace: 5 * time.Second,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()

	plan := demo.Plan{Jobs: 16, Rate: 4, Duration: time.Second, RejectEvery: 4, Timeout: 5 * time.Minute}
	res, err := sys.Run(t.Context(), plan, 200*time.Millisecond, func(demo.Snapshot) {})
	if err != nil {
		t.Fatal(err) // includes: not every job finished, or pools did not settle to min_idle
	}
	t.Logf("%d completed, %d rejected, queued→running p50 %s p99 %s, %.2f GitHub requests per job, %s",
		res.Completed, res.Rejected, res.LatencyP50, res.LatencyP99, float64(res.GitHubRequests)/float64(len(res.Jobs)), res.Elapsed)

	// Every job ended as planned: compliant ones succeeded, the others
	// failed at the pre-job check.
	for _, u := range res.Unexpected {
		t.Errorf("unexpected outcome: %s", u)
	}
	if res.Rejected != plan.Jobs/plan.RejectEvery {
		t.Errorf("%d jobs rejected, want %d", res.Rejected, plan.Jobs/plan.RejectEvery)
	}
	if got := res.PolicyChecks["fail"]; got != float64(plan.Jobs/plan.RejectEvery) {
		t.Errorf(`ephemera_policy_checks_total{outcome="fail"} = %v, want %d`, got, plan.Jobs/plan.RejectEvery)
	}
	// Each job ran once, on a runner of its own pool that ran no other job.
	usedBy := map[string]int64{}
	for _, dj := range res.Jobs {
		j := res.Final[dj.ID]
		if j.RunnerName == "" || !strings.HasPrefix(j.RunnerName, "eph-"+dj.Pool+"-") {
			t.Errorf("job %d ran on %q, want a runner of pool %s", dj.ID, j.RunnerName, dj.Pool)
			continue
		}
		if other, ok := usedBy[j.RunnerName]; ok {
			t.Errorf("jobs %d and %d both ran on %s", other, dj.ID, j.RunnerName)
		}
		usedBy[j.RunnerName] = dj.ID
	}
	// Every webhook-reported start and completion happened once per job.
	starts := map[int64]int{}
	for _, d := range sys.GitHub().Deliveries() {
		if d.Action == "in_progress" && !d.Redelivery {
			starts[d.JobID]++
		}
	}
	for _, dj := range res.Jobs {
		if starts[dj.ID] != 1 {
			t.Errorf("job %d started %d times, want once", dj.ID, starts[dj.ID])
		}
	}
	// After the drain, nothing is left anywhere.
	if res.InstancesLeft+res.RegistrationsLeft+res.SlotsLeft+res.OpenClaims != 0 {
		t.Errorf("left after drain: %d instances, %d registrations, %d slots, %d open claims",
			res.InstancesLeft, res.RegistrationsLeft, res.SlotsLeft, res.OpenClaims)
	}
	if n := len(sys.GitHub().Runners()); n != 0 {
		t.Errorf("%d GitHub registrations left", n)
	}
}
