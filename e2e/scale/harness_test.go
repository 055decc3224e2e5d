package scale

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ephemera-ci/ephemera/e2e/e2etest"
	"github.com/ephemera-ci/ephemera/e2e/scale/standin"
	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/demo"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/scaler"
)

// Options shape one harness.
type Options struct {
	Pools    int // default 20
	Max      int // per pool; default 100
	MinIdle  int // per pool
	Replicas int // scaler processes; default 3
	Profile  standin.Profile
	// TimeScale compresses the clock: provider latencies, job durations,
	// the reconcile timings, the GitHub request budget's windows and
	// max_wait, and the GitHub stand-in's limits are divided by it.
	// Figures of a run with TimeScale ≠ 1 are labelled scaled. Default 1.
	TimeScale float64
	// GitHubLimits makes the GitHub stand-in enforce GitHub's documented
	// limits (githubfake.GitHubLimits) on the run's clock: 5,000
	// requests an hour per installation, 100 in flight, 900 points a
	// minute per endpoint, refused with 403 and Retry-After.
	GitHubLimits bool
	// Debug logs every job message each replica handles (EPHEMERA_SCALE_DEBUG=1
	// sets it for every scenario), for logLate to print.
	Debug bool
	// Interval, BootstrapTimeout, IdleGrace: the reconcile settings in
	// unscaled time; defaults 30s, 10m, 2m (the configuration's).
	Interval, BootstrapTimeout, IdleGrace time.Duration
	// PointsPerMinute is the shared GitHub request budget per endpoint
	// (github.budget.points_per_minute) a minute of the run's clock (a
	// minute/TimeScale of real time); 0: GitHub's 900; negative: no
	// budget to speak of (a million points a minute).
	PointsPerMinute int
	Seed            uint64
}

func (o *Options) defaults() {
	if o.Pools == 0 {
		o.Pools = 20
	}
	if o.Max == 0 {
		o.Max = 100
	}
	if o.Replicas == 0 {
		o.Replicas = 3
	}
	if o.Profile.Create == nil {
		o.Profile = standin.LXDContainer()
	}
	if o.TimeScale <= 0 {
		o.TimeScale = 1
	}
	if os.Getenv("EPHEMERA_SCALE_DEBUG") == "1" {
		o.Debug = true
	}
	if o.Interval == 0 {
		o.Interval = 30 * time.Second
	}
	if o.BootstrapTimeout == 0 {
		o.BootstrapTimeout = 10 * time.Minute
	}
	if o.IdleGrace == 0 {
		o.IdleGrace = 2 * time.Minute
	}
	if o.PointsPerMinute == 0 {
		o.PointsPerMinute = 900
	}
	if o.PointsPerMinute < 0 {
		o.PointsPerMinute = 1_000_000
	}
}

// scaled is d on the run's clock (a TimeScale not set yet is 1: dividing
// by 0 made an infinite duration, converted to a negative one).
func (o *Options) scaled(d time.Duration) time.Duration {
	if o.TimeScale <= 0 {
		return d
	}
	return time.Duration(float64(d) / o.TimeScale)
}

// Harness is one running system: NATS cluster, GitHub stand-in,
// provisioner stand-in, one webhook receiver and the scaler replicas.
type Harness struct {
	t       testing.TB
	opt     Options
	Cluster *bustest.Cluster
	Fake    *githubfake.Server
	Standin *standin.Server
	Webhook *proc
	Scalers []*proc
	pools   []string

	mu     sync.Mutex
	queued map[int64]time.Time // job → when the harness queued it
	dir    string
	cfg    string // the scalers' configuration file
	env    []string
	sURL   string
}

// Start brings a harness up; everything stops at the test's cleanup.
func Start(t testing.TB, opt Options) *Harness {
	t.Helper()
	opt.defaults()
	h := &Harness{t: t, opt: opt, queued: map[int64]time.Time{}, dir: t.TempDir()}
	h.Cluster = bustest.StartCluster(t, 3)

	fake, err := githubfake.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	h.Fake = fake
	if opt.GitHubLimits {
		l := githubfake.GitHubLimits()
		l.TimeScale = opt.TimeScale
		fake.SetLimits(l)
	}

	h.Standin, err = standin.New(standin.Config{
		Profile: opt.Profile.Scaled(opt.TimeScale),
		Online:  fake.RunnerOnline,
		Gone:    func(name string) { _ = fake.KillRunner(name) },
		Seed:    opt.Seed,
	})
	if err != nil {
		t.Fatal(err)
	}
	fake.OnRunnerExit(h.Standin.Exit)
	h.sURL = serve(t, h.Standin.Handler())

	for i := range opt.Pools {
		h.pools = append(h.pools, fmt.Sprintf("p%02d", i))
	}
	secret := demo.RandomHex(24)
	h.env = append(os.Environ(), "EPHEMERA_WEBHOOK_SECRET="+secret, "EPHEMERA_GITHUB_PRIVATE_KEY="+appKey(t))
	hookAddr := e2etest.FreePort(t)
	metrics := e2etest.FreePort(t)
	h.Webhook = h.start("webhook", ephemeraBin, metrics,
		"webhook", "--config", h.writeConfig("webhook", hookAddr, metrics), "--log-level", "warn")
	for i := range opt.Replicas {
		h.Scalers = append(h.Scalers, h.StartScaler(fmt.Sprintf("scaler-%d", i)))
	}
	fake.SetWebhook(githubfake.WebhookConfig{URL: "http://" + hookAddr + "/webhook", Secret: secret})
	return h
}

// StartScaler starts one more scaler replica.
func (h *Harness) StartScaler(name string) *proc {
	metrics := e2etest.FreePort(h.t)
	level := "warn"
	if h.opt.Debug {
		level = "debug"
	}
	return h.start(name, replicaBin, metrics, "--config", h.writeConfig(name, "127.0.0.1:0", metrics),
		"--standin", h.sURL, "--log-level", level, "--time-scale", strconv.FormatFloat(h.opt.TimeScale, 'g', -1, 64))
}

// writeConfig writes the configuration of one process.
func (h *Harness) writeConfig(name, webhook, metrics string) string {
	o := h.opt
	var b strings.Builder
	// Runners never call the policy service here (no pre-job hook runs).
	fmt.Fprintf(&b, "webhook: { listen: %q }\npolicy: { url: \"http://127.0.0.1:9\" }\nmetrics: { listen: %q }\n", webhook, metrics)
	fmt.Fprintf(&b, "nats: { url: %q, replicas: 3 }\n", h.Cluster.URL())
	fmt.Fprintf(&b, "github: { api_url: %q, app_id: 1, installation_id: 1, org: acme, budget: { points_per_minute: %d, max_wait: %s } }\n",
		h.Fake.URL, o.PointsPerMinute, o.scaled(2*time.Minute))
	fmt.Fprintf(&b, "reconcile: { interval: %s, bootstrap_timeout: %s, idle_grace: %s, provision_timeout: %s }\npools:\n",
		o.scaled(o.Interval), o.scaled(o.BootstrapTimeout), o.scaled(o.IdleGrace), o.scaled(5*time.Minute))
	for _, p := range h.pools {
		fmt.Fprintf(&b, "  - { name: %s, labels: [self-hosted, linux, %s], instance_type: container, image: standin, min_idle: %d, max: %d }\n",
			p, p, o.MinIdle, o.Max)
	}
	path := filepath.Join(h.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		h.t.Fatal(err)
	}
	return path
}

// Queue queues one job for pool i that runs for d (unscaled), and
// remembers when.
func (h *Harness) Queue(i int, d time.Duration) int64 {
	pool := h.pools[i%len(h.pools)]
	at := time.Now()
	id := h.Fake.QueueJob(githubfake.JobSpec{Labels: []string{"self-hosted", "linux", pool}, Duration: h.opt.scaled(d)})
	h.mu.Lock()
	h.queued[id] = at
	h.mu.Unlock()
	return id
}

// Queued returns when each job was queued.
func (h *Harness) Queued() map[int64]time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[int64]time.Time, len(h.queued))
	for k, v := range h.queued {
		out[k] = v
	}
	return out
}

// WaitStarted waits until n jobs have started (a runner took them), for
// at most d; it reports whether they did.
func (h *Harness) WaitStarted(n int, d time.Duration) bool {
	return waitfor.Within(d, throttle(250*time.Millisecond, func() bool { return h.Started() >= n })) == nil
}

// Started counts the jobs a runner has taken.
func (h *Harness) Started() int {
	n := 0
	for _, j := range h.Fake.Jobs() {
		if !j.StartedAt.IsZero() {
			n++
		}
	}
	return n
}

// throttle evaluates cond at most once per d (it reads the GitHub
// stand-in's whole job list, which at thousands of jobs costs the
// system under test CPU when polled every 20 ms).
func throttle(d time.Duration, cond func() bool) func() bool {
	var last time.Time
	return func() bool {
		if time.Since(last) < d {
			return false
		}
		last = time.Now()
		return cond()
	}
}

// proc is one process the harness started.
type proc struct {
	name    string
	cmd     *exec.Cmd
	stderr  *e2etest.SyncBuffer
	metrics string // its metrics listener
	done    chan struct{}
	err     error
}

func (h *Harness) start(name, bin, metrics string, args ...string) *proc {
	h.t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), stderr: &e2etest.SyncBuffer{}, metrics: metrics, done: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	p.cmd.Env = h.env
	if err := p.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	h.t.Cleanup(p.Kill)
	ready := func() bool {
		select {
		case <-p.done:
			return true
		default:
		}
		resp, err := http.Get("http://" + metrics + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if err := waitfor.Within(time.Minute, ready); err != nil {
		h.t.Fatalf("%s not ready in a minute\n%s", name, p.stderr)
	}
	select {
	case <-p.done:
		h.t.Fatalf("%s exited before it was ready: %v\n%s", name, p.err, p.stderr)
	default:
	}
	return p
}

// Kill SIGKILLs the process (if it still runs) and waits for it.
func (p *proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Alive reports whether the process still runs.
func (p *proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func serve(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func appKey(t testing.TB) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
}

func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	waitfor.True(t, d, what, throttle(250*time.Millisecond, cond))
}

// logLate writes, for each job that never started or waited longer than
// d for a runner, what happened to it and what the processes logged
// about it, to a trail file whose path it logs with a summary (a
// benchmark's own log keeps 10 lines): the jobs that never started
// first, then those no runner was ever asked for, then the late ones.
func (h *Harness) logLate(t testing.TB, d time.Duration) {
	queued := h.Queued()
	recs := map[int64][]standin.Record{}
	for _, r := range h.Standin.Records() {
		recs[r.JobID] = append(recs[r.JobID], r)
	}
	var never, late []githubfake.Job
	for _, j := range h.Fake.Jobs() {
		q, ok := queued[j.ID]
		switch {
		case !ok:
		case j.StartedAt.IsZero():
			never = append(never, j)
		case j.StartedAt.Sub(q) >= d:
			late = append(late, j)
		}
	}
	var unasked []int64
	for id := range queued {
		if len(recs[id]) == 0 {
			unasked = append(unasked, id)
		}
	}
	slices.Sort(unasked)
	if len(never)+len(late)+len(unasked) == 0 {
		return
	}
	var b strings.Builder
	logf := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	job := func(j githubfake.Job) {
		q := queued[j.ID]
		logf("job %d (%v): queued %s, started %s on %s", j.ID, j.Labels, q.Format(time.StampMilli), j.StartedAt.Local().Format(time.StampMilli), j.RunnerName)
		for _, r := range recs[j.ID] {
			rn, registered := h.Fake.RunnerByName(r.Name)
			logf("  runner %s asked %s running %s online %s; registered %v: %+v; instance now %q",
				r.Name, r.AskedAt.Format(time.StampMilli), r.RunningAt.Format(time.StampMilli), r.OnlineAt.Format(time.StampMilli),
				registered, rn, h.Standin.State(r.Name))
		}
		idle := 0
		for _, rn := range h.Fake.Runners() {
			if rn.Online && !rn.Busy && slices.Equal(rn.Labels, j.Labels) {
				idle++
			}
		}
		logf("  job status %s %s; %d idle online runners with its labels", j.Status, j.Conclusion, idle)
		h.logJob(logf, j.ID)
	}
	for _, j := range never {
		job(j)
		h.chain(logf, j.ID, recs)
	}
	deliveries := map[int64][]string{}
	for _, dl := range h.Fake.Deliveries() {
		deliveries[dl.JobID] = append(deliveries[dl.JobID], fmt.Sprintf("%s %d %q redelivery=%v", dl.Action, dl.StatusCode, dl.Status, dl.Redelivery))
	}
	for _, id := range unasked {
		logf("job %d: no runner was ever asked for; deliveries %v", id, deliveries[id])
		h.logJob(logf, id)
	}
	for _, j := range late {
		job(j)
	}
	path := filepath.Join(os.TempDir(), "ephemera-scale-"+strings.NewReplacer("/", "_", "=", "-").Replace(t.Name())+".trail")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Logf("write the trail: %v", err)
		path = "(not written)"
	}
	t.Logf("%d jobs never started, %d had no runner asked for, %d waited longer than %s; their trail: %s", len(never), len(unasked), len(late), d, path)
}

// chain follows a job that never started through the runners that took
// other jobs (GitHub lets a runner take any queued job with its labels):
// its claim's runner ran job X, X's claim's runner ran job Y, … up to the
// runner that is not busy or gone, whose job's trail it logs.
func (h *Harness) chain(logf func(string, ...any), id int64, recs map[int64][]standin.Record) {
	seen := map[int64]bool{}
	for !seen[id] {
		seen[id] = true
		var cl struct {
			Runner string `json:"runner"`
		}
		stored := h.storedClaim(id)
		if err := json.Unmarshal([]byte(stored), &cl); err != nil || cl.Runner == "" {
			logf("  chain: job %d: claim names no runner: %s", id, stored)
			break
		}
		rn, registered := h.Fake.RunnerByName(cl.Runner)
		logf("  chain: job %d's runner %s: registered %v, busy %v with job %d; instance %q", id, cl.Runner, registered, rn.Busy, rn.JobID, h.Standin.State(cl.Runner))
		if !registered || !rn.Busy || rn.JobID == 0 {
			break
		}
		id = rn.JobID
	}
	for _, r := range recs[id] {
		logf("  chain end: job %d's runner %s asked %s running %s online %s; instance %q", id, r.Name,
			r.AskedAt.Format(time.StampMilli), r.RunningAt.Format(time.StampMilli), r.OnlineAt.Format(time.StampMilli), h.Standin.State(r.Name))
	}
	h.logJob(logf, id)
}

// logJob logs job id's stored claim and every log line of the webhook
// receiver and the scalers that names it.
func (h *Harness) logJob(logf func(string, ...any), id int64) {
	logf("  claim: %s", h.storedClaim(id))
	for _, p := range append(h.Scalers, h.Webhook) {
		for line := range strings.SplitSeq(p.stderr.String(), "\n") {
			if strings.Contains(line, fmt.Sprintf(":%d,", id)) || strings.Contains(line, fmt.Sprintf(":%d}", id)) {
				logf("  %s: %s", p.name, line)
			}
		}
	}
}

// storedClaim is job id's claim record as stored, or why it cannot be read.
func (h *Harness) storedClaim(id int64) string {
	nc, err := nats.Connect(h.Cluster.URL())
	if err != nil {
		return err.Error()
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, scaler.BucketJobs)
	if err != nil {
		return err.Error()
	}
	e, err := kv.Get(ctx, strconv.FormatInt(id, 10))
	if err != nil {
		return err.Error()
	}
	return string(e.Value())
}
