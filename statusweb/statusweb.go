// Package statusweb serves ephemera's live, read-only web view: per pool
// the buffer, capacity and waiting jobs; per runner its state, age, job
// and repository; the last jobs with their queue and run times; and a chart
// of queue wait over the last hour. Everything is read from the scaler's
// KV buckets (scaler.ReadStatus, scaler.ReadRunnersAndJobs), so any
// replica serves the same view, and the page updates through server-sent
// events within a fraction of a second of a change in KV. Its assets are
// embedded: the page needs no network beyond its own listener. It shows
// no secret: no token, no JIT configuration, no webhook payload.
package statusweb

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/config"
)

//go:embed assets
var assets embed.FS

// Config configures a Handler.
type Config struct {
	JetStream jetstream.JetStream // required
	Pools     []config.Pool       // required
	// Token, when set, must be presented: as a bearer token, or once as
	// ?token= which sets a cookie for the page and its event stream.
	Token config.Secret
	// RequireToken refuses every request (403) while Token is empty: the
	// listener is not on loopback.
	RequireToken bool
	// Heartbeat is how often the event stream sends the state even when
	// nothing changed (ages and the chart move on). Default 5s.
	Heartbeat time.Duration
	Log       zerolog.Logger
}

// Handler serves the view: GET / (the page), /status/assets/*,
// /status/state (the state as JSON) and /status/events (the state as
// server-sent events, one on every change).
type Handler struct {
	cfg  Config
	mux  *http.ServeMux
	done chan struct{} // closed when Run returns: every stream ends
}

// New returns the view's handler.
func New(cfg Config) (*Handler, error) {
	if cfg.JetStream == nil {
		return nil, errors.New("statusweb: JetStream is required")
	}
	if len(cfg.Pools) == 0 {
		return nil, errors.New("statusweb: Pools is required")
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), done: make(chan struct{})}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	h.mux.HandleFunc("GET /{$}", h.page(static))
	h.mux.Handle("GET /status/assets/", http.StripPrefix("/status/assets/", http.FileServerFS(static)))
	h.mux.HandleFunc("GET /status/state", h.state)
	h.mux.HandleFunc("GET /status/events", h.events)
	return h, nil
}

// Run returns when ctx ends, and ends every event stream then: an HTTP
// server's Shutdown waits for open requests, and a stream never finishes
// on its own.
func (h *Handler) Run(ctx context.Context) error {
	<-ctx.Done()
	close(h.done)
	return nil
}

// ServeHTTP authorizes the request, then serves it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authorize(w, r) {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'")
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) page(static fs.FS) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	}
}
