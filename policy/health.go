package policy

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"
)

// health answers GET /health, which anyone may call: it must not let
// callers spend the installation's GitHub budget. Concurrent checks share
// one GitHub request, and its answer (good or bad) is reused for ttl, so
// /health causes at most one GitHub request per ttl however often it is
// called.
type health struct {
	ttl     time.Duration
	timeout time.Duration // bounds the GitHub request
	ping    func(context.Context) error
	log     zerolog.Logger

	flight singleflight.Group
	mu     sync.Mutex
	at     time.Time // when the last answer arrived; zero: never
	err    error     // the last answer
}

// last returns the last answer while it is fresh.
func (h *health) last() (err error, fresh bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err, !h.at.IsZero() && time.Since(h.at) < h.ttl
}

// check returns GitHub's answer: the fresh one, or the one of the request
// in flight, or that of a new request. A caller that gives up does not
// cancel the request the others wait for.
func (h *health) check(ctx context.Context) error {
	if err, fresh := h.last(); fresh {
		return err
	}
	ch := h.flight.DoChan("ping", func() (any, error) {
		// A flight that ended between last() and DoChan already asked.
		if err, fresh := h.last(); fresh {
			return nil, err
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.timeout)
		defer cancel()
		err := h.ping(pctx)
		if err != nil {
			h.log.Warn().Err(err).Msg("health: github unreachable")
		}
		h.mu.Lock()
		h.at, h.err = time.Now(), err
		h.mu.Unlock()
		return nil, err
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// handleHealth answers 204 when GitHub answered lately, else 500.
func (s *Service) handleHealth(w http.ResponseWriter, r *http.Request) {
	if err := s.health.check(r.Context()); err != nil {
		writeText(w, http.StatusInternalServerError, "GitHub cannot be reached.")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
