package realimage

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/demo"
)

// hookRefusal is how ephemera's pre-job hook reports the policy's 403 in
// the job's log, followed by the policy's reason.
const hookRefusal = "ephemera pre-job: the repository is not compliant with the runner policy: "

// TestRealImageOnLXD runs a fixed mix of 20 jobs — every fifth from a
// repository the policy refuses (acme/legacy pushes and unauthorized fork
// pull requests, alternately) — through webhook → NATS → scaler → LXD →
// real cloud-init → real pre-job hook → policy, on a runner image built
// by `ephemera image build` from the Debian base: compliant jobs
// complete; each refused job fails at the hook with the policy's reason
// in its job log; ephemera_policy_checks_total{outcome="fail"} counts
// exactly the refused ones; every instance powers off and is deleted; the
// idle buffer refills; after the scale to zero nothing is left.
func TestRealImageOnLXD(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end on a real image")
	}
	e2etest.TakeTurn(t)
	image := buildRunnerImage(t)

	prefix := "r" + demo.RandomHex(2)
	sys, err := demo.Start(t.Context(), demo.Spec{
		Pools: []string{prefix + "-a", prefix + "-b"}, MinIdle: 1, Max: 3, Image: image, Memory: 512 << 20,
		Interval: time.Second, BootstrapTimeout: 3 * time.Minute, IdleGrace: 5 * time.Second,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()

	plan := demo.Plan{Jobs: 20, Rate: 1, Duration: time.Second, RejectEvery: 5, Timeout: 12 * time.Minute}
	res, err := sys.Run(t.Context(), plan, 250*time.Millisecond, func(demo.Snapshot) {})
	if err != nil {
		t.Fatal(err) // includes: not every job finished, pools did not refill to min_idle or scale to zero
	}
	t.Logf("%d completed, %d refused; queued → fresh runner online p50 %s p99 %s (%d jobs); queued → running p50 %s p99 %s; %s",
		res.Completed, res.Rejected, res.OnlineLatencyP50, res.OnlineLatencyP99, len(res.OnlineLatencies), res.LatencyP50, res.LatencyP99, res.Elapsed)

	for _, u := range res.Unexpected {
		t.Errorf("unexpected outcome: %s", u)
	}
	wantRefused := plan.Jobs / plan.RejectEvery
	if res.Rejected != wantRefused {
		t.Errorf("%d jobs refused, want %d", res.Rejected, wantRefused)
	}
	if got := res.PolicyChecks["fail"]; got != float64(wantRefused) {
		t.Errorf(`ephemera_policy_checks_total{outcome="fail"} = %v, want %d (all outcomes: %v)`, got, wantRefused, res.PolicyChecks)
	}
	if got := res.PolicyChecks["pass"]; got != float64(plan.Jobs-wantRefused) {
		t.Errorf(`ephemera_policy_checks_total{outcome="pass"} = %v, want %d (all outcomes: %v)`, got, plan.Jobs-wantRefused, res.PolicyChecks)
	}

	// What each job's log says: the real hook ran on every job; a refused
	// job failed at the hook with the policy's reason and ran no step.
	for _, dj := range res.Jobs {
		j := res.Final[dj.ID]
		if !strings.Contains(j.Log, "Run '/opt/ephemera/pre-job.sh'") {
			t.Errorf("job %d (%s %s): the pre-job hook did not run; log:\n%s", dj.ID, dj.Repo, dj.Event, j.Log)
			continue
		}
		if !dj.WantReject {
			if !strings.Contains(j.Log, "complies with the runner policy") {
				t.Errorf("job %d (%s %s) ran without the hook's pass; log:\n%s", dj.ID, dj.Repo, dj.Event, j.Log)
			}
			continue
		}
		_, reason, found := strings.Cut(j.Log, hookRefusal)
		reason, _, _ = strings.Cut(reason, "\n")
		switch {
		case !found || strings.TrimSpace(reason) == "":
			t.Errorf("refused job %d (%s %s): no policy reason in its log:\n%s", dj.ID, dj.Repo, dj.Event, j.Log)
		case dj.Repo == demo.RepoLegacy && !strings.Contains(reason, "contractor (admin)"):
			t.Errorf("refused job %d (%s): reason %q does not name the outside collaborator", dj.ID, dj.Repo, reason)
		case !strings.Contains(j.Log, "Process completed with exit code 1"):
			t.Errorf("refused job %d: the hook's failure is not in its log:\n%s", dj.ID, j.Log)
		case strings.Contains(j.Log, "steps ran"):
			t.Errorf("refused job %d: its steps ran after the hook refused it:\n%s", dj.ID, j.Log)
		}
	}

	if res.InstancesLeft+res.RegistrationsLeft+res.SlotsLeft+res.OpenClaims != 0 {
		t.Errorf("left after the scale to zero: %d instances, %d registrations, %d slots, %d open claims",
			res.InstancesLeft, res.RegistrationsLeft, res.SlotsLeft, res.OpenClaims)
	}
}
