package scaler_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/ghactions"
	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/bus/bustest"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/ghbudget"
	"github.com/ephemera-ci/ephemera/internal/ghclient"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/waitfor"
	"github.com/ephemera-ci/ephemera/scaler"
	"github.com/ephemera-ci/ephemera/scaler/scalertest"
)

var (
	keyOnce sync.Once
	keyPEM  string
)

func appKey(t testing.TB) config.Secret {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
	})
	return config.NewSecret(keyPEM)
}

// env is one test's world: embedded JetStream, the GitHub stand-in with
// its webhooks bridged into the job stream, an in-memory LXD.
type env struct {
	t       testing.TB
	srv     *server.Server
	bus     *bus.Bus
	fake    *githubfake.Server
	prov    *scalertest.Provisioner
	tokens  *scalertest.Minter
	bridge  *scalertest.Bridge
	clients *ghclient.Clients
	gh      scaler.GitHub
	pools   []config.Pool
	reg     *prometheus.Registry
}

func pool(name string, minIdle, maxN int) config.Pool {
	return config.Pool{Name: name, Labels: []string{"self-hosted", "linux", name}, MinIdle: minIdle, Max: maxN, Image: "img", InstanceType: "container"}
}

func newEnv(t testing.TB, pools ...config.Pool) *env {
	t.Helper()
	return newEnvBudgetKV(t, nil, pools...)
}

// newEnvBudgetKV is newEnv with the GitHub budget's bucket seen through
// wrap (nil: as it is).
func newEnvBudgetKV(t testing.TB, wrap func(jetstream.KeyValue) jetstream.KeyValue, pools ...config.Pool) *env {
	t.Helper()
	b, srv := bustest.Open(t)
	fake, err := githubfake.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	e := &env{t: t, srv: srv, bus: b, fake: fake, tokens: &scalertest.Minter{}, pools: pools, reg: prometheus.NewRegistry()}
	// The GitHub budget as in production, shared by the replicas, with
	// room for test speed in points but few requests in flight: a burst
	// queues in it instead of swamping the stand-in.
	kv, err := b.KeyValue(t.Context(), ghbudget.BucketConfig())
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		kv = wrap(kv)
	}
	budget, err := ghbudget.New(ghbudget.Config{KV: kv, PointsPerMinute: 1_000_000, MaxConcurrent: 8, Registerer: e.reg})
	if err != nil {
		t.Fatal(err)
	}
	e.clients, err = ghclient.New(ghclient.Config{
		APIURL: fake.URL, AppID: 1, PrivateKey: appKey(t), InstallationID: 1, Timeout: time.Second,
		Budget: budget, Registerer: e.reg, Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.gh, err = ghactions.New(ghactions.Config{Clients: e.clients, Org: "acme"}); err != nil {
		t.Fatal(err)
	}
	e.prov = &scalertest.Provisioner{
		OnCreated: func(spec scaler.InstanceSpec) { _ = fake.RunnerOnline(spec.Name) },
		OnDeleted: func(name string) { _ = fake.KillRunner(name) },
	}
	fake.OnRunnerExit(e.prov.Exit)
	e.bridge = scalertest.NewBridge(b.JS, pools, "s3cret")
	t.Cleanup(e.bridge.Close)
	fake.SetWebhook(githubfake.WebhookConfig{URL: e.bridge.URL, Secret: "s3cret"})
	return e
}

func testLog(t testing.TB) zerolog.Logger {
	if os.Getenv("EPHEMERA_TEST_LOG") == "" {
		return zerolog.Nop()
	}
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

// config is a scaler config with test timing: everything fast.
func (e *env) config(mods ...func(*scaler.Config)) scaler.Config {
	cfg := scaler.Config{
		Pools: e.pools, JetStream: e.bus.JS, Provisioner: e.prov, GitHub: e.gh, Tokens: e.tokens,
		Interval: 200 * time.Millisecond, BootstrapTimeout: 3 * time.Second, IdleGrace: 300 * time.Millisecond,
		ProvisionTimeout: 3 * time.Second, AckWait: 2 * time.Second, CapacityRetry: 100 * time.Millisecond,
		ShutdownGrace: time.Second, Log: testLog(e.t),
	}
	for _, m := range mods {
		m(&cfg)
	}
	return cfg
}

// replica is one running scaler.
type replica struct {
	bus    *bus.Bus
	s      *scaler.Scaler
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry
}

// start runs a scaler replica (on its own NATS connection) until stop or
// the test's end.
func (e *env) start(cfg scaler.Config) *replica {
	e.t.Helper()
	if cfg.Registerer == nil {
		r := prometheus.NewRegistry()
		cfg.Registerer = r
	}
	conn := bustest.Connect(e.t, e.srv.ClientURL())
	cfg.JetStream = conn.JS
	s, err := scaler.New(context.Background(), cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{bus: conn, s: s, cancel: cancel, done: make(chan error, 1), reg: cfg.Registerer.(*prometheus.Registry)}
	go func() { r.done <- s.Run(ctx) }()
	e.t.Cleanup(r.stop)
	return r
}

func (r *replica) stop() {
	r.cancel()
	<-r.done
	r.done <- nil // stop is idempotent
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawClaim is job id's claim record as stored, or why there is none.
func (e *env) rawClaim(id int64) string {
	return e.rawValue(scaler.BucketJobs, strconv.FormatInt(id, 10))
}

func (e *env) queue(n int, p config.Pool, d time.Duration) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = e.fake.QueueJob(githubfake.JobSpec{Labels: []string{"self-hosted", p.Name}, Duration: d})
	}
	return ids
}

func (e *env) allCompleted(ids []int64) func() bool {
	return func() bool {
		for _, id := range ids {
			if j, _ := e.fake.GetJob(id); j.Status != githubfake.JobCompleted {
				return false
			}
		}
		return true
	}
}

// clean reports whether nothing is left: no instance, no registration, no
// slot.
func (e *env) clean() bool {
	return len(e.prov.Instances()) == 0 && len(e.fake.Runners()) == 0 && e.countKeys(scaler.BucketSlots) == 0
}

// waitClean waits up to d for nothing to be left behind (clean), and
// fails t naming what is left — instances, registrations, slots with the
// runner each holds and that runner's record — and the GitHub budget's
// records: clean-up waits for the budget, so places held in flight there
// leave everything behind.
func (e *env) waitClean(t testing.TB, d time.Duration) {
	t.Helper()
	if waitfor.Within(d, e.clean) == nil {
		return
	}
	for _, in := range e.prov.Instances() {
		t.Logf("left behind: instance %s (job %d, %s, created %s)", in.Name, in.JobID, in.State, in.CreatedAt.Format(time.RFC3339Nano))
	}
	for _, r := range e.fake.Runners() {
		t.Logf("left behind: registration %s (id %d, online %t, busy %t, job %d)", r.Name, r.ID, r.Online, r.Busy, r.JobID)
	}
	for _, key := range e.keys(scaler.BucketSlots) {
		runner := e.rawValue(scaler.BucketSlots, key)
		t.Logf("left behind: slot %s = %s; its runner's record: %s", key, runner, e.rawValue(scaler.BucketRunners, strings.Trim(runner, `"`)))
	}
	for _, key := range e.keys(ghbudget.Bucket) {
		t.Logf("github budget %s: %s", key, e.rawValue(ghbudget.Bucket, key))
	}
	t.Fatalf("timed out after %s waiting for nothing to be left behind", d)
}

// keys lists bucket's keys; nil when there are none or they cannot be read.
func (e *env) keys(bucket string) []string {
	kv, err := e.bus.JS.KeyValue(context.Background(), bucket)
	if err != nil {
		return nil
	}
	keys, _ := kv.Keys(context.Background())
	return keys
}

// rawValue is key's value in bucket as stored, or why there is none.
func (e *env) rawValue(bucket, key string) string {
	kv, err := e.bus.JS.KeyValue(context.Background(), bucket)
	if err != nil {
		return err.Error()
	}
	v, err := kv.Get(context.Background(), key)
	if err != nil {
		return err.Error()
	}
	return string(v.Value())
}

func (e *env) countKeys(bucket string) int {
	kv, err := e.bus.JS.KeyValue(context.Background(), bucket)
	if err != nil {
		return -1
	}
	keys, err := kv.Keys(context.Background())
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return 0
	}
	if err != nil {
		return -1
	}
	return len(keys)
}

// jobBoundCreates counts successful creates per job.
func (e *env) jobBoundCreates() map[int64]int {
	out := map[int64]int{}
	for _, s := range e.prov.Specs() {
		if s.JobID != 0 {
			out[s.JobID]++
		}
	}
	return out
}

func counter(t testing.TB, r *prometheus.Registry, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

func metricSum(t testing.TB, r *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := r.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// idle counts runners online and not busy on the stand-in.
func (e *env) idle() int {
	n := 0
	for _, r := range e.fake.Runners() {
		if r.Online && !r.Busy {
			n++
		}
	}
	return n
}

// succeeded fails t for every job that did not conclude success: a job
// whose runner's instance was deleted under it fails.
func (e *env) succeeded(t testing.TB, ids []int64) {
	t.Helper()
	for _, id := range ids {
		if j, _ := e.fake.GetJob(id); j.Conclusion != githubfake.ConclusionSuccess {
			t.Errorf("job %d concluded %q, want success", id, j.Conclusion)
		}
	}
}

// putKV writes a raw value into one of the scaler's buckets, creating it
// as scaler.New would.
func (e *env) putKV(bucket, key, value string) {
	e.t.Helper()
	kv, err := e.bus.JS.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: bucket, Storage: jetstream.FileStorage})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), key, []byte(value)); err != nil {
		e.t.Fatal(err)
	}
}
