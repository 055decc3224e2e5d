package scaleout

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/demo"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/jobs"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
	"github.com/ephemera-ci/ephemera/policy"
	"github.com/ephemera-ci/ephemera/scaler"
)

// TestASIGSTOPpedScalerIsTakenOverInSecondsAndFencedWhenItWakes pauses a
// real `ephemera scaler` process (SIGSTOP) in the middle of provisioning
// a job's runner — inside its JIT registration, which the GitHub stand-in
// holds for a few seconds — with provision_timeout at its default of 5
// minutes. A second scaler process takes the job over as soon as the
// paused one's liveness key expires, and creates the job's runner on the
// real LXD. Then the paused process is continued (SIGCONT): its
// registration answer arrives, its fence before the instance create finds
// the job taken over, and it undoes its registration instead of creating
// a second job-bound runner.
func TestASIGSTOPpedScalerIsTakenOverInSecondsAndFencedWhenItWakes(t *testing.T) {
	if testing.Short() {
		t.Skip("scaler processes on LXD")
	}
	e2etest.RequireStandinImage(t)
	e2etest.TakeTurn(t)
	b, srv := bustest.Open(t)
	fake, err := githubfake.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)

	name := "f" + demo.RandomHex(2)
	p := config.Pool{Name: name, Labels: []string{"self-hosted", "linux", name}, InstanceType: "container", Image: e2etest.StandinImage, CPU: 1, Memory: 256 << 20, Disk: 1 << 30, MinIdle: 0, Max: 2, Profiles: []string{"default"}}
	observer := lxdtest.New(t, lxdprov.Config{Project: "default", Pools: []config.Pool{p}, PolicyURL: "http://127.0.0.1:1", PreJobHook: policy.HookScript, Log: zerolog.Nop()})

	dir := t.TempDir()
	env := []string{"EPHEMERA_GITHUB_PRIVATE_KEY=" + appKey(t), "EPHEMERA_WEBHOOK_SECRET=" + demo.RandomHex(16), "EPHEMERA_POLICY_ADMIN_TOKEN=" + demo.RandomHex(16)}
	start := func(proc string) (*proc, string) {
		metrics := e2etest.FreePort(t)
		var c strings.Builder
		fmt.Fprintf(&c, "policy: { url: %q }\nmetrics: { listen: %q }\nnats: { url: %q }\n", "http://127.0.0.1:1", metrics, srv.ClientURL())
		fmt.Fprintf(&c, "github: { api_url: %q, app_id: 1, installation_id: 1, org: acme }\n", fake.URL)
		fmt.Fprintf(&c, "reconcile: { interval: 1s, bootstrap_timeout: 10m }\npools:\n")
		fmt.Fprintf(&c, "  - { name: %s, labels: [%s], instance_type: container, image: %s, cpu: 1, memory: 256MiB, disk: 1GiB, min_idle: 0, max: 2, profiles: [default] }\n",
			p.Name, strings.Join(p.Labels, ", "), e2etest.StandinImage)
		path := filepath.Join(dir, proc+".yaml")
		if err := os.WriteFile(path, []byte(c.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return startProc(t, proc, []string{"scaler", "--config", path}, env, "http://"+metrics+"/readyz"), metrics
	}

	// The first JIT registration is held for 8s by the stand-in; the test
	// learns when it arrives.
	entered := make(chan struct{})
	fake.InjectFault(githubfake.Fault{Method: http.MethodPost, Path: "/orgs/*/actions/runners/generate-jitconfig", Delay: 8 * time.Second, Times: 1,
		OnMatch: func() { close(entered) }})

	a, aMetrics := start("scaler-a")
	job := fake.QueueJob(githubfake.JobSpec{Labels: p.Labels, Duration: time.Second})
	publishQueued(t, b.JS, p.Name, job)
	select {
	case <-entered:
	case <-time.After(60 * time.Second):
		t.Fatalf("scaler-a never asked for a JIT registration\n%s", a.stderr)
	}
	claims, err := b.JS.KeyValue(t.Context(), scaler.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	first := claimOf(t, claims, job)
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	t.Cleanup(func() { _ = a.cmd.Process.Signal(syscall.SIGCONT) })
	t.Logf("scaler-a paused while registering %s for job %d", first.Runner, job)

	bProc, _ := start("scaler-b")
	var runner string
	waitfor.True(t, 90*time.Second, "scaler-b to create the job's runner on LXD", func() bool {
		c := claimOf(t, claims, job)
		if c.Runner == first.Runner {
			return false
		}
		for _, in := range list(t, observer) {
			if in.JobID == job && in.Name == c.Runner {
				runner = in.Name
				return true
			}
		}
		return false
	})
	t.Logf("job %d taken over from the paused scaler and its runner %s created %.1fs after the pause (provision_timeout 5m)", job, runner, time.Since(paused).Seconds())

	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 60*time.Second, "scaler-a to find itself fenced out and undo", func() bool {
		return metricValue(t, aMetrics, `ephemera_jobs_total{action="fenced",pool="`+p.Name+`"}`) >= 1
	})
	waitfor.True(t, 30*time.Second, "scaler-a's registration to be removed", func() bool {
		_, ok := fake.RunnerByName(first.Runner)
		return !ok
	})
	var bound []string
	for _, in := range list(t, observer) {
		if in.JobID == job {
			bound = append(bound, in.Name)
		}
	}
	if len(bound) != 1 || bound[0] != runner {
		t.Errorf("job %d's instances: %v, want only %s\nscaler-a:\n%s\nscaler-b:\n%s", job, bound, runner, a.stderr, bProc.stderr)
	}
	if c := claimOf(t, claims, job); c.Runner != runner {
		t.Errorf("the claim names %s, want %s", c.Runner, runner)
	}
}

func publishQueued(t *testing.T, js jetstream.JetStream, pool string, job int64) {
	t.Helper()
	ev := jobs.Event{V: jobs.Version, Delivery: "sigstop-" + demo.RandomHex(4), Action: jobs.Queued, JobID: job, Pool: pool, Repository: "acme/app", Owner: "acme",
		InstallationID: 1, Labels: []string{"self-hosted"}, CreatedAt: time.Now().UTC(), ReceivedAt: time.Now().UTC()}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(jobs.Subject(pool, jobs.Queued))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, ev.Delivery)
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
}

type rawClaim struct {
	Runner string `json:"runner"`
	Owner  string `json:"owner"`
	State  string `json:"state"`
}

func claimOf(t *testing.T, kv jetstream.KeyValue, job int64) rawClaim {
	t.Helper()
	var c rawClaim
	e, err := kv.Get(context.Background(), strconv.FormatInt(job, 10))
	if err != nil {
		return c
	}
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func list(t *testing.T, p *lxdprov.Provider) []scaler.Instance {
	t.Helper()
	in, err := p.List(t.Context())
	if err != nil {
		t.Logf("list instances: %v", err)
	}
	return in
}

// metricValue reads one sample, named with its labels as the text format
// prints them, from a metrics listener; -1 when absent.
func metricValue(t *testing.T, addr, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}
