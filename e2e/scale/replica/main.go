// Command replica is one scaler replica of the scale harness (e2e/scale):
// ephemera's scaler and reconciler, wired as `ephemera scaler` wires them
// (internal/serve) — NATS, the GitHub clients, the one-time token store,
// ghactions — but with the provisioner stand-in (e2e/scale/standin) in
// place of LXD, so that a harness on one machine can run a thousand
// runners and still measure each replica as the process it is in
// production (CPU seconds, peak RSS). Test-only: the harness builds and
// starts it; it is not installed.
//
//	replica --config FILE --standin URL [--concurrency N]
//
// It serves /readyz and /metrics on metrics.listen and stops on SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/ephemera-ci/ephemera/e2e/scale/standin"
	"github.com/ephemera-ci/ephemera/ghactions"
	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/ghbudget"
	"github.com/ephemera-ci/ephemera/internal/ghclient"
	"github.com/ephemera-ci/ephemera/internal/serve"
	"github.com/ephemera-ci/ephemera/internal/tokens"
	"github.com/ephemera-ci/ephemera/scaler"
)

func main() {
	cfgPath := flag.String("config", "", "ephemera configuration file")
	standinURL := flag.String("standin", "", "the provisioner stand-in's base URL")
	concurrency := flag.Int("concurrency", 0, "scaler Concurrency (0: the scaler's default)")
	level := flag.String("log-level", "warn", "log level: debug logs every job message handled")
	timeScale := flag.Float64("time-scale", 1, "compress the GitHub request budget's minute and hour (and its lease) by this factor, as the harness compresses the stand-in's")
	flag.Parse()
	if *timeScale <= 0 {
		fmt.Fprintln(os.Stderr, "replica: --time-scale must be above 0")
		os.Exit(2)
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil {
		fmt.Fprintln(os.Stderr, "replica: --log-level:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := zerolog.New(os.Stderr).With().Timestamp().Logger().Level(lvl)
	if err := run(ctx, *cfgPath, *standinURL, *concurrency, *timeScale, log); err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfgPath, standinURL string, concurrency int, timeScale float64, log zerolog.Logger) error {
	if cfgPath == "" || standinURL == "" {
		return errors.New("--config and --standin are required")
	}
	cfg, err := config.Load(cfgPath, config.RoleScaler)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bc := serve.BusConfig(cfg)
	bc.Name, bc.Log = "ephemera-scale-replica", log
	b, err := bus.Open(ctx, bc)
	if err != nil {
		return err
	}
	defer b.Close()
	// The GitHub request budget shared through NATS, wired as serve wires it.
	kv, err := b.KeyValue(ctx, ghbudget.BucketConfig())
	if err != nil {
		return err
	}
	bgc := cfg.GitHub.Budget
	scaled := func(d time.Duration) time.Duration { return time.Duration(float64(d) / timeScale) }
	budget, err := ghbudget.New(ghbudget.Config{
		KV: kv, PointsPerMinute: bgc.PointsPerMinute, MaxConcurrent: bgc.MaxConcurrent, MaxWait: bgc.MaxWait.D(),
		Minute: scaled(time.Minute), Hour: scaled(time.Hour), LeaseTTL: scaled(time.Minute),
		Log: log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	gh, err := ghclient.New(ghclient.Config{
		APIURL: cfg.GitHub.APIURL, AppID: cfg.GitHub.AppID, PrivateKey: cfg.Secrets.GitHubPrivateKey,
		InstallationID: cfg.GitHub.InstallationID, Token: cfg.Secrets.GitHubToken, Budget: budget, Registerer: reg, Log: log,
	})
	if err != nil {
		return err
	}
	ts, err := tokens.New(ctx, tokens.Config{Bus: b, TTL: cfg.TokenTTL()})
	if err != nil {
		return err
	}
	ghs, err := ghactions.New(ghactions.Config{Clients: gh, Org: cfg.GitHub.Org, Repo: cfg.GitHub.Repo, RunnerGroupID: cfg.GitHub.RunnerGroupID})
	if err != nil {
		return err
	}
	s, err := scaler.New(ctx, scaler.Config{
		Pools: cfg.Pools, JetStream: b.JS, Provisioner: standin.NewClient(standinURL), GitHub: ghs, Tokens: ts,
		Interval: cfg.Reconcile.Interval.D(), BootstrapTimeout: cfg.Reconcile.BootstrapTimeout.D(),
		IdleGrace: cfg.Reconcile.IdleGrace.D(), ProvisionTimeout: cfg.Reconcile.ProvisionTimeout.D(),
		Replicas: cfg.NATS.Replicas, Concurrency: concurrency,
		Log: log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := b.Ready(r.Context()); err != nil {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return budget.Run(gctx) })
	g.Go(func() error { return s.Run(gctx) })
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}
