// Package serve builds the components of one ephemera role (webhook,
// policy, scaler, metrics) from a configuration, wires them to NATS,
// GitHub and LXD, and runs them until its context ends. Command ephemera
// runs it for each role; the demo runs it in process.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/ephemera-ci/ephemera/ghactions"
	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/ghbudget"
	"github.com/ephemera-ci/ephemera/internal/ghclient"
	"github.com/ephemera-ci/ephemera/internal/logkey"
	"github.com/ephemera-ci/ephemera/internal/tokens"
	"github.com/ephemera-ci/ephemera/lxdprov"
	"github.com/ephemera-ci/ephemera/policy"
	"github.com/ephemera-ci/ephemera/scaler"
	"github.com/ephemera-ci/ephemera/webhook"
)

// Process is the components of one role, built and ready to run.
type Process struct {
	cfg  *config.Config
	role config.Role
	log  zerolog.Logger
	bus  *bus.Bus
	reg  *prometheus.Registry

	gh     *ghclient.Clients // shared by scaler and policy
	tokens *tokens.Store     // minted by the scaler, consumed by policy
	policy *policy.Service
	scaler *scaler.Scaler
	lxd    *lxdprov.Provider

	runners []func(context.Context) error
	closers []func()
	addrs   map[string]string // listener name → bound address
}

// Build connects to NATS and builds every component of role; nothing runs
// until Run. On error, whatever was opened is closed.
func Build(ctx context.Context, cfg *config.Config, role config.Role, log zerolog.Logger) (_ *Process, err error) {
	p := &Process{cfg: cfg, role: role, log: log, reg: prometheus.NewRegistry()}
	p.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bc := BusConfig(cfg)
	bc.Name = "ephemera-" + string(role)
	bc.Log = p.logFor("bus")
	p.bus, err = bus.Open(ctx, bc)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.close()
		}
	}()

	mr := chi.NewRouter()
	withHealth(mr, p.bus.Ready, p.logFor("metrics"))
	mr.Handle("/metrics", promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{Registry: p.reg}))
	if role == config.RoleServe || role == config.RoleScaler {
		if err := p.addStatusView(mr); err != nil {
			return nil, err
		}
	}
	if err := p.addListener("metrics", cfg.Metrics.Listen, mr); err != nil {
		return nil, err
	}
	if role == config.RoleServe || role == config.RoleWebhook {
		if err := p.addWebhook(); err != nil {
			return nil, err
		}
	}
	if role == config.RoleServe || role == config.RolePolicy {
		if err := p.addPolicy(ctx); err != nil {
			return nil, err
		}
	}
	if role == config.RoleServe || role == config.RoleScaler {
		if err := p.addScaler(ctx); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *Process) logFor(component string) zerolog.Logger {
	return p.log.With().Str(logkey.Component, component).Logger()
}

func (p *Process) addListener(name, addr string, h http.Handler) error {
	return p.addListenerTLS(name, addr, h, config.ListenerTLS{})
}

// addListenerTLS adds a listener that serves HTTPS when t is enabled.
func (p *Process) addListenerTLS(name, addr string, h http.Handler, t config.ListenerTLS) error {
	l, err := listen(name, addr, h, p.log)
	if err != nil {
		return err
	}
	if t.Enabled() {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			l.ln.Close()
			return fmt.Errorf("%s listener certificate: %w", name, err)
		}
		l.srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	if p.addrs == nil {
		p.addrs = map[string]string{}
	}
	p.addrs[name] = l.ln.Addr().String()
	p.runners = append(p.runners, l.Run)
	return nil
}

// shared builds, once, what the scaler and the policy service share: the
// GitHub clients (one request budget, shared with every other process
// through NATS, and one set of metrics) and the
// one-time token store (the scaler mints, the policy service consumes).
func (p *Process) shared(ctx context.Context) (*ghclient.Clients, *tokens.Store, error) {
	if p.gh == nil {
		kv, err := p.bus.KeyValue(ctx, ghbudget.BucketConfig())
		if err != nil {
			return nil, nil, fmt.Errorf("github budget bucket: %w", err)
		}
		bc := p.cfg.GitHub.Budget
		budget, err := ghbudget.New(ghbudget.Config{
			KV: kv, PointsPerMinute: bc.PointsPerMinute, MaxConcurrent: bc.MaxConcurrent, MaxWait: bc.MaxWait.D(),
			Log: p.logFor("github"), Registerer: p.reg,
		})
		if err != nil {
			return nil, nil, err
		}
		p.runners = append(p.runners, budget.Run)
		gh, err := ghclient.New(ghclient.Config{
			APIURL:         p.cfg.GitHub.APIURL,
			AppID:          p.cfg.GitHub.AppID,
			PrivateKey:     p.cfg.Secrets.GitHubPrivateKey,
			InstallationID: p.cfg.GitHub.InstallationID,
			Token:          p.cfg.Secrets.GitHubToken,
			Budget:         budget,
			Registerer:     p.reg,
			Log:            p.logFor("github"),
		})
		if err != nil {
			return nil, nil, err
		}
		p.gh = gh
	}
	if p.tokens == nil {
		ts, err := tokens.New(ctx, tokens.Config{Bus: p.bus, TTL: p.cfg.TokenTTL()})
		if err != nil {
			return nil, nil, fmt.Errorf("token store: %w", err)
		}
		p.tokens = ts
	}
	return p.gh, p.tokens, nil
}

func (p *Process) addWebhook() error {
	cfg := p.cfg
	h, err := webhook.New(webhook.Config{
		Secrets:        cfg.Secrets.WebhookSecrets,
		Pools:          cfg.Pools,
		MaxBody:        int64(cfg.Webhook.MaxBody),
		PublishTimeout: cfg.Webhook.PublishTimeout.D(),
		BodyTimeout:    cfg.Webhook.BodyTimeout.D(),
		MaxBodies:      cfg.Webhook.MaxBodiesAtOnce,
		Publisher:      p.bus.JS,
		Log:            p.logFor("webhook"),
		Registerer:     p.reg,
	})
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	r := chi.NewRouter()
	withHealth(r, p.bus.Ready, p.logFor("webhook"))
	r.Handle(cfg.Webhook.Path, h)
	return p.addListener("webhook", cfg.Webhook.Listen, r)
}

func (p *Process) addPolicy(ctx context.Context) error {
	cfg := p.cfg
	gh, ts, err := p.shared(ctx)
	if err != nil {
		return err
	}
	svc, err := policy.New(ctx, policy.Config{
		AdminToken:          cfg.Secrets.PolicyAdminToken,
		Tokens:              ts,
		Bus:                 p.bus,
		GitHub:              gh,
		AuthorizationPhrase: cfg.Policy.AuthorizationPhrase,
		DefaultDisallowFork: cfg.Policy.DefaultDisallowFork,
		CacheTTL:            cfg.Policy.CacheTTL.D(),
		GitHubTimeout:       cfg.Policy.GitHubTimeout.D(),
		Log:                 p.logFor("policy"),
		Registerer:          p.reg,
	})
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	p.policy = svc
	r := chi.NewRouter()
	withHealth(r, func(ctx context.Context) error {
		return errors.Join(p.bus.Ready(ctx), svc.Ready(ctx))
	}, p.logFor("policy"))
	r.Mount("/", svc.Handler())
	return p.addListenerTLS("policy", cfg.Policy.Listen, r, cfg.Policy.TLS)
}

func (p *Process) addScaler(ctx context.Context) error {
	cfg := p.cfg
	gh, ts, err := p.shared(ctx)
	if err != nil {
		return err
	}
	prov, err := lxdprov.New(ctx, lxdprov.Config{
		Socket:     cfg.LXD.Socket,
		URL:        cfg.LXD.URL,
		ClientCert: cfg.LXD.ClientCert,
		ClientKey:  cfg.LXD.ClientKey,
		ServerCert: cfg.LXD.ServerCert,
		Project:    cfg.LXD.Project,
		Pools:      cfg.Pools,
		PolicyURL:  cfg.Policy.URL,
		PreJobHook: policy.HookScript,
		Network:    cfg.Runners.Network,
		Log:        p.logFor("lxd"),
		Registerer: p.reg,
	})
	if err != nil {
		return fmt.Errorf("lxd: %w", err)
	}
	p.lxd = prov
	p.closers = append(p.closers, func() { _ = prov.Close() })
	p.runners = append(p.runners, prov.Run) // the pools' templates
	ghs, err := ghactions.New(ghactions.Config{
		Clients:       gh,
		Org:           cfg.GitHub.Org,
		Repo:          cfg.GitHub.Repo,
		RunnerGroupID: cfg.GitHub.RunnerGroupID,
	})
	if err != nil {
		return err
	}
	s, err := scaler.New(ctx, scaler.Config{
		Pools:            cfg.Pools,
		JetStream:        p.bus.JS,
		Provisioner:      prov,
		GitHub:           ghs,
		Tokens:           ts,
		Interval:         cfg.Reconcile.Interval.D(),
		BootstrapTimeout: cfg.Reconcile.BootstrapTimeout.D(),
		IdleGrace:        cfg.Reconcile.IdleGrace.D(),
		ProvisionTimeout: cfg.Reconcile.ProvisionTimeout.D(),
		TokenTTL:         ts.TTL(),
		MaxRunnerAge:     cfg.Reconcile.MaxRunnerAge.D(),
		Replicas:         cfg.NATS.Replicas,
		Log:              p.log, // the scaler names itself, with its replica id
		Registerer:       p.reg,
	})
	if err != nil {
		return fmt.Errorf("scaler: %w", err)
	}
	p.scaler = s
	p.runners = append(p.runners, s.Run)
	if err := p.reg.Register(scaler.NewStatusCollector(p.bus.JS, cfg.Pools, p.logFor("status"))); err != nil {
		return fmt.Errorf("pool status metrics: %w", err)
	}
	return nil
}

// Addr is the address listener name ("webhook", "policy", "metrics") is
// bound to, or "" when the role has no such listener.
func (p *Process) Addr(name string) string { return p.addrs[name] }

// Bus is the process's NATS connection.
func (p *Process) Bus() *bus.Bus { return p.bus }

// LXD is the scaler's LXD provider, or nil when the role runs no scaler.
func (p *Process) LXD() *lxdprov.Provider { return p.lxd }

// close releases what Build opened, NATS last.
func (p *Process) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
	p.bus.Close()
}

// Run runs every component until ctx ends or one fails, then drains NATS.
// Listeners stop accepting and finish in-flight requests first, so a
// delivery answered 2xx is stored before the connection closes.
func (p *Process) Run(ctx context.Context) error {
	defer p.close()
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range p.runners {
		g.Go(func() error { return r(gctx) })
	}
	return g.Wait()
}
