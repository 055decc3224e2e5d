// Package demo runs a whole ephemera on this machine — embedded NATS, the
// GitHub stand-in, webhook, scaler and policy in this process, real LXD
// containers running the stand-in runner — and drives it with a stream of
// jobs. Command ephemera-demo shows it live; the end-to-end tests and
// benchmarks assert on and measure what it reports.
package demo

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/githubfake"
	"github.com/ephemera-ci/ephemera/internal/serve"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/policy"
)

// Spec describes a whole ephemera on this machine: embedded NATS, the
// GitHub stand-in, webhook, scaler and policy in this process, and real LXD
// containers whose stand-in runner reaches the host over loopback.
type Spec struct {
	Pools            []string // pool names; each gets labels [self-hosted, linux, <name>]
	MinIdle, Max     int
	Image            string // an image with the stand-in runner: the busybox ephemera-standin, or a runner image built with `ephemera image build`
	Memory           int64  // limits.memory of each instance in bytes; 0: 256 MiB
	Interval         time.Duration
	BootstrapTimeout time.Duration
	IdleGrace        time.Duration
	// StoragePool and Template are every pool's storage_pool and
	// template (lxdprov): where root disks live, and whether instances
	// are copies of a prepared template.
	StoragePool string
	Template    bool
	Log         zerolog.Logger
}

// System is a running Spec.
type System struct {
	spec    Spec
	dir     string
	github  *githubfake.Server
	router  *http.Server
	profile string
	unprof  func() error
	cfg     *config.Config

	policyURL atomic.Pointer[url.URL] // where the router sends policy requests

	mu   sync.Mutex
	proc *serve.Process
	stop context.CancelFunc
	done chan error
}

// Repositories of the demo: acme/app is configured safely; acme/legacy
// gives an outside collaborator admin, so the policy refuses its jobs;
// pull requests from stranger/app are forks nobody authorized.
const (
	RepoGood   = "acme/app"
	RepoLegacy = "acme/legacy"
	ForkOwner  = "stranger"
)

// Start starts the system of spec; Close stops it and removes what it
// created.
func Start(ctx context.Context, spec Spec) (_ *System, err error) {
	d := &System{spec: spec}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.dir, err = os.MkdirTemp("", "ephemera-demo-"); err != nil {
		return nil, err
	}
	if d.github, err = githubfake.Start(); err != nil {
		return nil, err
	}
	d.github.SetRepo(githubfake.RepoSpec{FullName: RepoGood, Branches: map[string]*githubfake.BranchProtection{"main": {RequiredReviews: true}}})
	d.github.SetRepo(githubfake.RepoSpec{FullName: RepoLegacy, OutsideCollaborators: map[string]string{"contractor": "admin"}})

	// One loopback port serves instances both the stand-in's runner API and
	// the policy service, so each instance needs one proxy device only.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	routerURL := fmt.Sprintf("http://127.0.0.1:%d/", port)
	d.router = &http.Server{Handler: d.route(), ReadHeaderTimeout: 10 * time.Second}
	go d.router.Serve(ln) //nolint:errcheck // ends with Close
	d.github.SetRunnerURL(routerURL)

	d.profile = "ephemera-demo-" + RandomHex(3)
	if d.unprof, err = lxdprov.LoopbackProfile(ctx, lxdprov.Config{Project: "default"}, d.profile, port); err != nil {
		return nil, err
	}

	cfg := config.Default()
	cfg.Webhook.Listen = "127.0.0.1:0"
	cfg.Policy.Listen = "127.0.0.1:0"
	cfg.Policy.URL = routerURL
	cfg.Metrics.Listen = "127.0.0.1:0"
	cfg.NATS.StoreDir = d.dir + "/nats"
	cfg.GitHub.APIURL = d.github.URL
	cfg.GitHub.Org = "acme"
	cfg.Reconcile = config.Reconcile{
		Interval:         config.Duration(spec.Interval),
		BootstrapTimeout: config.Duration(spec.BootstrapTimeout),
		IdleGrace:        config.Duration(spec.IdleGrace),
		ProvisionTimeout: config.Duration(time.Minute),
	}
	for _, name := range spec.Pools {
		cfg.Pools = append(cfg.Pools, config.Pool{
			Name: name, Labels: []string{"self-hosted", "linux", name},
			InstanceType: config.InstanceContainer, Image: spec.Image,
			CPU: 1, Memory: config.Size(cmp.Or(spec.Memory, 256<<20)), Disk: 1 << 30,
			MinIdle: spec.MinIdle, Max: spec.Max,
			Profiles:    []string{"default", d.profile},
			StoragePool: spec.StoragePool,
			Template:    spec.Template,
		})
	}
	webhookSecret := RandomHex(16)
	cfg.Secrets = config.Secrets{
		WebhookSecrets:   []config.Secret{config.NewSecret(webhookSecret)},
		PolicyAdminToken: config.NewSecret(RandomHex(16)),
		GitHubToken:      config.NewSecret("ghp_demo"),
	}
	if err := cfg.Validate(config.RoleServe); err != nil {
		return nil, err
	}
	d.cfg = &cfg
	if err := d.start(ctx); err != nil {
		return nil, err
	}
	d.github.SetWebhook(githubfake.WebhookConfig{URL: "http://" + d.proc.Addr("webhook") + cfg.Webhook.Path, Secret: webhookSecret})
	return d, nil
}

// route sends the stand-in runner's API to the GitHub stand-in and
// everything else to the policy service.
func (d *System) route() http.Handler {
	fake := d.github.Handler()
	pol := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		if u := d.policyURL.Load(); u != nil {
			r.SetURL(u)
		}
	}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/_fake/") {
			fake.ServeHTTP(w, r)
			return
		}
		pol.ServeHTTP(w, r)
	})
}

// start builds and runs ephemera serve with d.cfg.
func (d *System) start(ctx context.Context) error {
	p, err := serve.Build(ctx, d.cfg, config.RoleServe, d.spec.Log)
	if err != nil {
		return err
	}
	d.policyURL.Store(&url.URL{Scheme: "http", Host: p.Addr("policy")})
	d.cfg.Metrics.Listen = p.Addr("metrics") // the status view keeps its address across a restart
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	d.mu.Lock()
	d.proc, d.stop, d.done = p, stop, done
	d.mu.Unlock()
	return nil
}

// Stop stops ephemera (gracefully, as SIGTERM would) and returns its error.
func (d *System) Stop() error {
	d.mu.Lock()
	stop, done := d.stop, d.done
	d.stop, d.done = nil, nil
	d.mu.Unlock()
	if stop == nil {
		return nil
	}
	stop()
	return <-done
}

// Restart stops ephemera and starts it again with the configuration
// changed by change, on the same NATS store: its state carries over.
func (d *System) Restart(ctx context.Context, change func(*config.Config)) error {
	if err := d.Stop(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	change(d.cfg)
	if err := d.start(ctx); err != nil {
		return err
	}
	d.github.SetWebhook(githubfake.WebhookConfig{URL: "http://" + d.proc.Addr("webhook") + d.cfg.Webhook.Path, Secret: d.cfg.Secrets.WebhookSecrets[0].Reveal()})
	return nil
}

// GitHub is the GitHub stand-in the system runs against.
func (d *System) GitHub() *githubfake.Server { return d.github }

// MetricsURL is the address of ephemera's Prometheus metrics.
func (d *System) MetricsURL() string { return d.StatusURL() + "metrics" }

// StatusURL is the address of the live status view (the metrics listener;
// it stays the same across Restart).
func (d *System) StatusURL() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return "http://" + d.proc.Addr("metrics") + "/"
}

// Instances lists the demo's instances in LXD.
func (d *System) Instances(ctx context.Context) (int, error) {
	d.mu.Lock()
	p := d.proc
	d.mu.Unlock()
	if p == nil || p.LXD() == nil {
		return 0, errors.New("ephemera is not running")
	}
	in, err := p.LXD().List(ctx)
	return len(in), err
}

// TemplatesReady reports whether every pool with a template has it ready
// (always true without Spec.Template).
func (d *System) TemplatesReady() bool {
	d.mu.Lock()
	p := d.proc
	d.mu.Unlock()
	if p == nil || p.LXD() == nil {
		return false
	}
	for _, name := range d.spec.Pools {
		if d.spec.Template && !p.LXD().TemplateReady(name) {
			return false
		}
	}
	return true
}

// Close stops everything and removes what the demo created: instances
// still there (after an interrupted run), the profile, the store.
func (d *System) Close() {
	_ = d.Stop()
	if d.cfg != nil && d.unprof != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if p, err := lxdprov.New(ctx, lxdprov.Config{Project: "default", Pools: d.cfg.Pools, PolicyURL: d.cfg.Policy.URL, PreJobHook: policy.HookScript, Log: zerolog.Nop()}); err == nil {
			if in, err := p.List(ctx); err == nil {
				for _, i := range in {
					_ = p.Delete(ctx, i.Name)
				}
			}
			_ = p.DeleteTemplates(ctx)
			_ = p.Close()
		}
	}
	if d.unprof != nil {
		_ = d.unprof()
	}
	if d.router != nil {
		d.router.Close()
	}
	if d.github != nil {
		d.github.Close()
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
}

// RandomHex is n random bytes in hex: unique names and throwaway secrets.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
