package main

import (
	"context"
	"io"

	"github.com/ephemera-ci/ephemera/internal/cli"
	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/internal/logkey"
	"github.com/ephemera-ci/ephemera/internal/serve"
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
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	log, err := cli.NewLogger(cf.log, stderr)
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
	p, err := serve.Build(ctx, cfg, role, log)
	if err != nil {
		return err
	}
	if u := p.Bus().ClientURL(); u != "" && cfg.NATS.URL == "" {
		mlog.Info().Str("url", u).Msg("embedded nats listening")
	}
	if err := p.Run(ctx); err != nil {
		mlog.Error().Err(err).Msg("stopped with an error")
		return err
	}
	mlog.Info().Msg("stopped")
	return nil
}
