package policy

import (
	"errors"
	"net/http"
	"runtime/debug"

	"github.com/rs/zerolog"

	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// msgPanic answers a request whose handler panicked.
const msgPanic = "The policy service failed while answering; this is a fault of the service, not of the repository."

// recoverPanics answers a panicking handler 500 — an error, never a pass,
// and never a dropped connection that a pre-job hook cannot tell from a
// network failure — and logs the panic with its stack.
// http.ErrAbortHandler is passed on: it asks for the connection to drop.
func recoverPanics(log zerolog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(v)
				}
				log.Error().Interface("panic", v).Bytes("stack", debug.Stack()).Str(logkey.Path, r.URL.Path).Msg("handler panicked")
				writeText(w, http.StatusInternalServerError, msgPanic)
			}()
			next.ServeHTTP(w, r)
		})
	}
}
