package serve

import (
	"fmt"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ephemera-ci/ephemera/internal/config"
	"github.com/ephemera-ci/ephemera/statusweb"
)

// addStatusView serves the live web view at / of the metrics listener
// (roles that run the scaler). Off loopback it needs status.token_file.
func (p *Process) addStatusView(r chi.Router) error {
	h, err := statusweb.New(statusweb.Config{
		JetStream:    p.bus.JS,
		Pools:        p.cfg.Pools,
		Token:        p.cfg.Secrets.StatusToken,
		RequireToken: !config.OnLoopback(p.cfg.Metrics.Listen),
		Log:          p.logFor("status"),
	})
	if err != nil {
		return fmt.Errorf("status view: %w", err)
	}
	p.runners = append(p.runners, h.Run) // ends the event streams at shutdown
	r.Handle("/", h)
	r.Handle("/status/*", h)
	return nil
}

// Registry is the process's metrics registry: every family its
// components registered, whether or not it has a sample yet (the
// monitoring tests check the dashboard and alert rules against it).
func (p *Process) Registry() *prometheus.Registry { return p.reg }
