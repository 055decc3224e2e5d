package main

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/ephemera-ci/ephemera/internal/bus"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/logkey"
	"github.com/ephemera-ci/ephemera/webhook"
)

var roleSummary = map[config.Role]string{
	config.RoleServe:   "Runs every component in one process: webhook, scaler, policy and metrics,\nwith NATS embedded (JetStream under nats.store_dir) unless nats.url is set.",
	config.RoleWebhook: "Runs the webhook receiver alone, against the NATS cluster at nats.url.",
	config.RoleScaler:  "Runs the scaler and reconciler alone, against the NATS cluster at nats.url.",
	config.RolePolicy:  "Runs the policy service alone, against the NATS cluster at nats.url.",
}

// runRole runs the components of role until ctx ends (a signal), then
// stops them in order: listeners stop accepting and finish in-flight
// requests, components return, and only then is NATS drained.
func runRole(ctx context.Context, role config.Role, args []string, stderr io.Writer) error {
	var cf commonFlags
	fs := newFlagSet(string(role), stderr, &cf, roleSummary[role])
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(cf, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(cf.config, role)
	if err != nil {
		return err
	}
	// log carries no component: each component adds its own name.
	mlog := log.With().Str(logkey.Component, string(role)).Logger()
	mlog.Info().Str("version", version).Msg("starting")

	b, err := bus.Open(ctx, bus.Config{
		URL:             cfg.NATS.URL,
		CredsFile:       cfg.NATS.CredsFile,
		StoreDir:        cfg.NATS.StoreDir,
		Listen:          cfg.NATS.Listen,
		DuplicateWindow: cfg.NATS.DuplicateWindow.D(),
		Replicas:        cfg.NATS.Replicas,
		Name:            "ephemera-" + string(role),
		Log:             log.With().Str(logkey.Component, "bus").Logger(),
	})
	if err != nil {
		return err
	}
	defer b.Close()
	if u := b.ClientURL(); u != "" && cfg.NATS.URL == "" {
		mlog.Info().Str("url", u).Msg("embedded nats listening")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var runners []func(context.Context) error
	mr := chi.NewRouter()
	withHealth(mr, b.Ready)
	mr.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	ml, err := listen("metrics", cfg.Metrics.Listen, mr, log)
	if err != nil {
		return err
	}
	runners = append(runners, ml.Run)

	if role == config.RoleServe || role == config.RoleWebhook {
		run, err := webhookListener(cfg, b, reg, log)
		if err != nil {
			return err
		}
		runners = append(runners, run)
	}

	g, gctx := errgroup.WithContext(ctx)
	for _, r := range runners {
		g.Go(func() error { return r(gctx) })
	}
	err = g.Wait()
	if err != nil {
		mlog.Error().Err(err).Msg("stopped with an error")
		return err
	}
	mlog.Info().Msg("stopped")
	return nil
}

func webhookListener(cfg *config.Config, b *bus.Bus, reg prometheus.Registerer, log zerolog.Logger) (func(context.Context) error, error) {
	h, err := webhook.New(webhook.Config{
		Secrets:        cfg.Secrets.WebhookSecrets,
		Pools:          cfg.Pools,
		MaxBody:        int64(cfg.Webhook.MaxBody),
		PublishTimeout: cfg.Webhook.PublishTimeout.D(),
		Publisher:      b.JS,
		Log:            log.With().Str(logkey.Component, "webhook").Logger(),
		Registerer:     reg,
	})
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	r := chi.NewRouter()
	withHealth(r, b.Ready)
	r.Handle(cfg.Webhook.Path, h)
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found: deliveries go to " + cfg.Webhook.Path})
	})
	l, err := listen("webhook", cfg.Webhook.Listen, r, log)
	if err != nil {
		return nil, err
	}
	return l.Run, nil
}
