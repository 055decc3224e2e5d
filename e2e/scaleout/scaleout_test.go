package scaleout

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/demo"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/logkey"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/lxdprov/lxdtest"
	"github.com/ephemera-ci/ephemera/policy"
	"github.com/ephemera-ci/ephemera/scaler"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// proc is one ephemera component process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stderr *e2etest.SyncBuffer
	done   chan error
}

func startProc(t *testing.T, name string, args []string, env []string, readyURL string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(binary, args...), stderr: &e2etest.SyncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Get(readyURL); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("%s exited before ready: %v\n%s", name, err, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 60s\n%s", name, p.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		p.done <- nil
	}
}

func (p *proc) term(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- nil
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM\n%s", p.name, err, p.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("%s did not stop after SIGTERM", p.name)
	}
}

// failover is a load balancer: round robin over backends, trying the next
// one when a backend refuses the connection, as nginx's proxy_next_upstream
// does; a request in flight when its backend dies fails (502).
type failover struct {
	backends []string
	next     atomic.Uint64
	proxy    *httputil.ReverseProxy
}

type backendKey struct{}

func newFailover(backends ...string) *failover {
	f := &failover{backends: backends}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: "http", Host: r.In.Context().Value(backendKey{}).(string)})
			r.Out.Host = r.In.Host
		},
	}
	return f
}

func (f *failover) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := readAll(r)
	start := f.next.Add(1)
	for i := range len(f.backends) {
		b := f.backends[(int(start)+i)%len(f.backends)]
		if c, err := net.DialTimeout("tcp", b, time.Second); err != nil {
			continue // refused: the next backend
		} else {
			c.Close()
		}
		r2 := r.Clone(contextWith(r, b))
		r2.Body = readCloser(body)
		f.proxy.ServeHTTP(w, r2)
		return
	}
	http.Error(w, "no backend", http.StatusBadGateway)
}

func serveLB(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func appKey(t *testing.T) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
}

// TestScaleOutOnLXD runs ephemera as separate processes against a
// three-node NATS cluster (JetStream replicas 3; deploy/nats/node.conf's
// TLS with client certificates and passwords) — two webhook receivers
// behind a load balancer, three scalers, two policy services — on the real
// LXD, while the GitHub stand-in sends 120 jobs into two pools of max 15,
// with duplicate and out-of-order deliveries. Meanwhile one scaler is
// SIGKILLed, one NATS node restarted and one webhook receiver SIGKILLed.
// No job may be lost or served twice, max is never exceeded, and nothing
// leaks.
func TestScaleOutOnLXD(t *testing.T) {
	if testing.Short() {
		t.Skip("scale-out on LXD with a NATS cluster")
	}
	e2etest.RequireStandinImage(t)
	e2etest.TakeTurn(t)
	// The cluster of deploy/nats/node.conf: TLS from a CA made here,
	// client certificates and passwords; every process connects with them.
	cluster := bustest.StartSecureCluster(t, 3)

	fake, err := githubfake.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	fake.SetRepo(githubfake.RepoSpec{FullName: demo.RepoGood, Branches: map[string]*githubfake.BranchProtection{"main": {RequiredReviews: true}}})
	fake.SetRepo(githubfake.RepoSpec{FullName: demo.RepoLegacy, OutsideCollaborators: map[string]string{"contractor": "admin"}})

	// Runners reach the stand-in and both policy replicas on one port.
	policyAddrs := []string{e2etest.FreePort(t), e2etest.FreePort(t)}
	policyLB := newFailover(policyAddrs...)
	fakeHandler := fake.Handler()
	runnerAddr := serveLB(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/_fake/") {
			fakeHandler.ServeHTTP(w, r)
			return
		}
		policyLB.ServeHTTP(w, r)
	}))
	_, port, _ := net.SplitHostPort(runnerAddr)
	fake.SetRunnerURL("http://" + runnerAddr + "/")
	profile := "t-scaleout-" + demo.RandomHex(3)
	var portN int
	fmt.Sscan(port, &portN)
	unprof, err := lxdprov.LoopbackProfile(t.Context(), lxdprov.Config{Project: "default"}, profile, portN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unprof() })

	prefix := "s" + demo.RandomHex(2)
	pools := []config.Pool{
		{Name: prefix + "-a", Labels: []string{"self-hosted", "linux", prefix + "-a"}, InstanceType: "container", Image: e2etest.StandinImage, CPU: 1, Memory: 256 << 20, Disk: 1 << 30, MinIdle: 1, Max: 15, Profiles: []string{"default", profile}},
		{Name: prefix + "-b", Labels: []string{"self-hosted", "linux", prefix + "-b"}, InstanceType: "container", Image: e2etest.StandinImage, CPU: 1, Memory: 256 << 20, Disk: 1 << 30, MinIdle: 1, Max: 15, Profiles: []string{"default", profile}},
	}
	// Instances are deleted at the end whatever happens.
	observer := lxdtest.New(t, lxdprov.Config{Project: "default", Pools: pools, PolicyURL: "http://" + runnerAddr, PreJobHook: policy.HookScript, Log: zerolog.Nop()})

	dir := t.TempDir()
	natsPassword := filepath.Join(dir, "nats-password")
	if err := os.WriteFile(natsPassword, []byte(cluster.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := demo.RandomHex(16)
	env := []string{
		"EPHEMERA_WEBHOOK_SECRET=" + secret,
		"EPHEMERA_POLICY_ADMIN_TOKEN=" + demo.RandomHex(16),
		"EPHEMERA_GITHUB_PRIVATE_KEY=" + appKey(t),
	}
	writeCfg := func(name, webhook, policyListen, metrics string, minIdle int, idleGrace string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "webhook: { listen: %q }\npolicy: { listen: %q, url: %q }\nmetrics: { listen: %q }\n", webhook, policyListen, "http://"+runnerAddr, metrics)
		fmt.Fprintf(&b, "nats: { url: %q, replicas: 3, user: %s, password_file: %q, tls: { ca_file: %q, cert_file: %q, key_file: %q } }\n",
			cluster.URL(), cluster.User, natsPassword, cluster.PKI.CAFile, cluster.PKI.ClientCert, cluster.PKI.ClientKey)
		fmt.Fprintf(&b, "github: { api_url: %q, app_id: 1, installation_id: 1, org: acme }\n", fake.URL)
		fmt.Fprintf(&b, "reconcile: { interval: 1s, bootstrap_timeout: 90s, idle_grace: %s, provision_timeout: 30s }\npools:\n", idleGrace)
		for _, p := range pools {
			fmt.Fprintf(&b, "  - { name: %s, labels: [%s], instance_type: container, image: %s, cpu: 1, memory: 256MiB, disk: 1GiB, min_idle: %d, max: %d, profiles: [default, %s] }\n",
				p.Name, strings.Join(p.Labels, ", "), e2etest.StandinImage, minIdle, p.Max, profile)
		}
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	var procs []*proc // every process started, for the trail of a job that went wrong
	start := func(role, name, webhook, policyListen string, minIdle int, idleGrace string) *proc {
		metrics := e2etest.FreePort(t)
		cfg := writeCfg(name, webhook, policyListen, metrics, minIdle, idleGrace)
		p := startProc(t, name, []string{role, "--config", cfg}, env, "http://"+metrics+"/readyz")
		procs = append(procs, p)
		return p
	}

	webhookAddrs := []string{e2etest.FreePort(t), e2etest.FreePort(t)}
	var webhooks, scalers []*proc
	for i, a := range webhookAddrs {
		webhooks = append(webhooks, start("webhook", fmt.Sprintf("webhook-%d", i), a, "127.0.0.1:0", 1, "5s"))
	}
	for i, a := range policyAddrs {
		start("policy", fmt.Sprintf("policy-%d", i), "127.0.0.1:0", a, 1, "5s")
	}
	for i := range 3 {
		scalers = append(scalers, start("scaler", fmt.Sprintf("scaler-%d", i), "127.0.0.1:0", "127.0.0.1:0", 1, "5s"))
	}
	hookLB := serveLB(t, newFailover(webhookAddrs...))
	fake.SetWebhook(githubfake.WebhookConfig{URL: "http://" + hookLB + "/webhook", Secret: secret})
	fake.SetKnobs(githubfake.Knobs{DuplicateSameID: true, DuplicateNewID: true, QueuedDelay: 300 * time.Millisecond})

	// Sample every pool's instances in LXD throughout.
	var maxSeen sync.Map
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if in, err := observer.List(t.Context()); err == nil {
				count := map[string]int{}
				for _, i := range in {
					count[i.Pool]++
				}
				for p, n := range count {
					if old, ok := maxSeen.Load(p); !ok || n > old.(int) {
						maxSeen.Store(p, n)
					}
				}
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	const jobs = 120
	plan := demo.Plan{Duration: time.Second, RejectEvery: 10}
	names := []string{pools[0].Name, pools[1].Name}
	var planned []demo.Job
	for i := range jobs {
		spec, dj := plan.Job(i, names)
		dj.ID = fake.QueueJob(spec)
		planned = append(planned, dj)
		switch i {
		case 30:
			t.Log("SIGKILL scaler-0")
			scalers[0].kill()
		case 60:
			t.Log("restart NATS node 1")
			cluster.Restart(1)
		case 80:
			t.Log("SIGKILL webhook-1")
			webhooks[1].kill()
		}
		time.Sleep(150 * time.Millisecond)
	}

	submitted := time.Now()
	t.Logf("%d jobs submitted", jobs)
	// Every job finishes: none lost.
	deadline := time.Now().Add(8 * time.Minute)
	for {
		finished := 0
		for _, j := range fake.Jobs() {
			if j.Status == githubfake.JobCompleted {
				finished++
			}
		}
		if finished >= jobs {
			break
		}
		if time.Now().After(deadline) {
			for _, j := range fake.Jobs() {
				if j.Status != githubfake.JobCompleted {
					t.Logf("unfinished job %d: %s, runner %q; claim %s", j.ID, j.Status, j.RunnerName, storedClaim(t, cluster, j.ID))
					trail(t, procs, j.ID, j.RunnerName)
				}
			}
			for _, r := range fake.Runners() {
				t.Logf("registration %s (%d): online %v, busy %v, job %d", r.Name, r.ID, r.Online, r.Busy, r.JobID)
			}
			t.Fatalf("only %d of %d jobs finished in 8 minutes", finished, jobs)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("every job finished %s after the last was submitted", time.Since(submitted).Round(time.Second))
	final := map[int64]githubfake.Job{}
	for _, j := range fake.Jobs() {
		final[j.ID] = j
	}
	usedBy := map[string]int64{}
	for _, dj := range planned {
		j := final[dj.ID]
		if (j.Conclusion == githubfake.ConclusionSuccess) == dj.WantReject {
			t.Errorf("job %d (%s %s): %s on %s; its log:\n%s", dj.ID, dj.Repo, dj.Event, j.Conclusion, j.RunnerName, j.Log)
			trail(t, procs, dj.ID, j.RunnerName)
		}
		if other, ok := usedBy[j.RunnerName]; ok {
			t.Errorf("jobs %d and %d both ran on %s", other, dj.ID, j.RunnerName)
		}
		usedBy[j.RunnerName] = dj.ID
	}
	starts := map[int64]int{}
	for _, d := range fake.Deliveries() {
		if d.Action == "in_progress" && !d.Redelivery {
			starts[d.JobID]++
		}
	}
	for _, dj := range planned {
		if starts[dj.ID] != 1 {
			t.Errorf("job %d started %d times", dj.ID, starts[dj.ID])
			trail(t, procs, dj.ID, final[dj.ID].RunnerName)
		}
	}

	// Drain: stop the scalers, then one scaler with min_idle 0 trims the rest.
	for _, s := range scalers[1:] {
		s.term(t)
	}
	drainer := start("scaler", "scaler-drain", "127.0.0.1:0", "127.0.0.1:0", 0, "1s")
	deadline = time.Now().Add(3 * time.Minute)
	for {
		in, err := observer.List(t.Context())
		if err == nil && len(in) == 0 && len(fake.Runners()) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, i := range in {
				t.Logf("instance %s: %s, job %d, created %s", i.Name, i.State, i.JobID, i.CreatedAt.Format(time.TimeOnly))
			}
			for _, r := range fake.Runners() {
				t.Logf("registration %s (%d): online %v, busy %v, job %d", r.Name, r.ID, r.Online, r.Busy, r.JobID)
			}
			logTail(t, drainer)
			t.Fatalf("not drained after 3 minutes: %d instances, %d registrations (%v)", len(in), len(fake.Runners()), err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("drained in %s", time.Since(deadline.Add(-3*time.Minute)).Round(time.Second))
	close(stopSampling)
	<-sampled
	for _, p := range pools {
		if n, ok := maxSeen.Load(p.Name); !ok || n.(int) > p.Max {
			t.Errorf("pool %s: at most %v instances seen, max is %d", p.Name, n, p.Max)
		} else {
			t.Logf("pool %s: at most %d instances at once (max %d)", p.Name, n, p.Max)
		}
	}
	bc := cluster.BusConfig()
	bc.Replicas = 3
	b, err := bus.Open(t.Context(), bc)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	deadline = time.Now().Add(30 * time.Second)
	for {
		slots, open, err := demo.KVLeftovers(t.Context(), b.JS)
		if err == nil && slots == 0 && open == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, c := range openClaims(t, b.JS) {
				t.Logf("open claim %s: %s", c.Key(), c.Value())
				id, _ := strconv.ParseInt(c.Key(), 10, 64)
				var rec struct{ Runner string }
				_ = json.Unmarshal(c.Value(), &rec)
				trail(t, procs, id, rec.Runner)
			}
			t.Fatalf("left in KV: %d slots, %d open claims (%v)", slots, open, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	st, _ := scaler.ReadStatus(t.Context(), b.JS, pools)
	t.Logf("final status %+v; %d GitHub requests for %d jobs", st, demo.GitHubRequests(fake), jobs)
}

func readAll(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	defer r.Body.Close()
	return io.ReadAll(r.Body)
}

func readCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

func contextWith(r *http.Request, backend string) context.Context {
	return context.WithValue(r.Context(), backendKey{}, backend)
}

// logTail logs the warnings and errors of a process's last log lines.
func logTail(t *testing.T, p *proc) {
	t.Helper()
	lines := strings.Split(p.stderr.String(), "\n")
	n := 0
	for i := len(lines) - 1; i >= 0 && n < 40; i-- {
		if strings.Contains(lines[i], `"level":"warn"`) || strings.Contains(lines[i], `"level":"error"`) || strings.Contains(lines[i], `"action"`) {
			t.Logf("%s: %s", p.name, lines[i])
			n++
		}
	}
}

// trail logs every line any process wrote about job id or its runner, so
// that a job that went wrong can be followed through webhook receivers,
// scalers and policy replicas.
func trail(t *testing.T, procs []*proc, id int64, runner string) {
	t.Helper()
	jobField := fmt.Sprintf(`"%s":%d`, logkey.Job, id)
	runnerField := fmt.Sprintf(`"%s":%q`, logkey.Runner, runner)
	for _, p := range procs {
		for line := range strings.SplitSeq(p.stderr.String(), "\n") {
			// A runner refused before any check names no runner: every
			// refusal is printed (there are none in a good run).
			refusal := strings.Contains(line, "one-time token refused") || strings.Contains(line, "token store unavailable")
			if strings.Contains(line, jobField) || (runner != "" && strings.Contains(line, runnerField)) || refusal {
				t.Logf("%s: %s", p.name, line)
			}
		}
	}
}

// storedClaim returns job id's claim record as stored, or why it cannot.
func storedClaim(t *testing.T, cluster *bustest.Cluster, id int64) string {
	t.Helper()
	bc := cluster.BusConfig()
	bc.Replicas = 3
	b, err := bus.Open(t.Context(), bc)
	if err != nil {
		return err.Error()
	}
	defer b.Close()
	kv, err := b.JS.KeyValue(t.Context(), scaler.BucketJobs)
	if err != nil {
		return err.Error()
	}
	e, err := kv.Get(t.Context(), strconv.FormatInt(id, 10))
	if err != nil {
		return err.Error()
	}
	return string(e.Value())
}

// openClaims returns the job claims that are neither completed nor known
// to need no runner, as KV entries (key: the job id, value: the record).
func openClaims(t *testing.T, js jetstream.JetStream) []jetstream.KeyValueEntry {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), scaler.BucketJobs)
	if err != nil {
		t.Logf("open claims: %v", err)
		return nil
	}
	keys, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Logf("open claims: %v", err)
		return nil
	}
	var open []jetstream.KeyValueEntry
	for k := range keys.Keys() {
		e, err := kv.Get(t.Context(), k)
		if err != nil {
			continue
		}
		var c struct{ Completed, NoRunner bool }
		if json.Unmarshal(e.Value(), &c) != nil || !(c.Completed || c.NoRunner) {
			open = append(open, e)
		}
	}
	return open
}
