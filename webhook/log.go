package webhook

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// logRequest writes the one line a request gets. It carries ids, names and
// the outcome, never the payload, a header value that failed its sanity
// check, or a secret; cause is an internal error (a NATS failure), never a
// decoder message that could quote the body.
func (h *Handler) logRequest(d delivery, a answer, cause error, elapsed time.Duration) {
	var e *zerolog.Event
	switch {
	case a.status >= 500:
		e = h.log.Error().Err(cause)
	case a.status >= 400:
		e = h.log.Warn()
	default:
		e = h.log.Info()
	}
	if e == nil {
		return
	}
	if d.id != "" {
		e.Str(logkey.Delivery, d.id)
	}
	if d.event != "" {
		e.Str(logkey.Event, d.event)
	}
	if d.action != "" {
		e.Str(logkey.Action, string(d.action))
	}
	if d.job != 0 {
		e.Int64(logkey.Job, d.job)
	}
	if d.pool != "" {
		e.Str(logkey.Pool, d.pool)
	}
	e.Str(logkey.Outcome, a.outcome).
		Int(logkey.Status, a.status).
		Dur(logkey.Duration, elapsed).
		Msg("webhook delivery")
}
