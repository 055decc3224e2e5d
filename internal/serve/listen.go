package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// shutdownTimeout bounds how long a listener waits for in-flight requests
// (a webhook's publish, a policy check) after the stop signal.
const shutdownTimeout = 20 * time.Second

// readyFunc reports whether a listener's dependencies are usable.
type readyFunc func(context.Context) error

// withHealth adds GET /healthz (alive) and GET /readyz (dependencies ready)
// to a listener's routes, and a 404 that reveals nothing. Listeners may
// face the internet, so their answers say nothing about the deployment
// (no stream, bucket or path names, no versions): why a listener is not
// ready goes to the log.
func withHealth(r chi.Router, ready readyFunc, log zerolog.Logger) {
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", func(w http.ResponseWriter, req *http.Request) {
		if err := ready(req.Context()); err != nil {
			log.Warn().Err(err).Msg("not ready")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	r.NotFound(notFound)
}

// notFound answers a path no route serves, naming none that do.
func notFound(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// listener is one HTTP listener of the process.
type listener struct {
	name    string
	srv     *http.Server
	ln      net.Listener
	log     zerolog.Logger
	stopped chan struct{}
}

// listen binds addr now, so a port conflict fails start-up, not later.
func listen(name, addr string, h http.Handler, log zerolog.Logger) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	return &listener{
		name: name,
		ln:   ln,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       120 * time.Second,
		},
		log: log.With().Str(logkey.Component, name).Logger(),
	}, nil
}

// Run serves until ctx ends, then stops accepting and waits for in-flight
// requests to finish (bounded by shutdownTimeout).
func (l *listener) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	tlsOn := l.srv.TLSConfig != nil
	go func() {
		if tlsOn {
			errc <- l.srv.ServeTLS(l.ln, "", "")
			return
		}
		errc <- l.srv.Serve(l.ln)
	}()
	l.log.Info().Str("addr", l.ln.Addr().String()).Bool("tls", tlsOn).Msg("listening")
	select {
	case err := <-errc:
		return fmt.Errorf("%s listener: %w", l.name, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := l.srv.Shutdown(sctx)
	if e := <-errc; e != nil && !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("%s listener shutdown: %w", l.name, err)
	}
	l.log.Info().Msg("stopped")
	return nil
}
