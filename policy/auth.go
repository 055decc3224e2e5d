package policy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/ephemera-ci/ephemera/internal/logkey"
	"github.com/ephemera-ci/ephemera/internal/tokens"
)

// Answers of the authentication layer.
const (
	msgUnauthorized   = "A valid one-time token or the admin token is required (Authorization: Bearer <token>); a one-time token works only once."
	msgAdminOnRunner  = "The admin token cannot be used on a runner endpoint; use a one-time token."
	msgRunnerOnAdmin  = "A one-time token cannot be used on an operator endpoint; use the admin token."
	msgTokenStoreDown = "The policy service could not verify the token; this is a fault of the service, not of the repository."
)

// consumeTimeout bounds asking the token store.
const consumeTimeout = 5 * time.Second

type runnerKey struct{}

// bearer returns the request's bearer token, or "".
func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// isAdmin compares token with the admin token in constant time (hashes
// first, so that not even the length leaks).
func (s *Service) isAdmin(token string) bool {
	a := sha256.Sum256([]byte(token))
	b := sha256.Sum256([]byte(s.cfg.AdminToken.Reveal()))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// consume spends a one-time token and returns the runner it was minted
// for; it answers the request itself and returns ok=false when the token
// is not accepted.
func (s *Service) consume(w http.ResponseWriter, r *http.Request, token string) (runner string, ok bool) {
	ctx, cancel := context.WithTimeout(r.Context(), consumeTimeout)
	defer cancel()
	runner, err := s.cfg.Tokens.Consume(ctx, token)
	switch {
	case errors.Is(err, tokens.ErrUnknownToken):
		// A runner refused here fails its job with no other trace in
		// ephemera: say so (never the token itself).
		s.refusals.Info().Str(logkey.Path, r.URL.Path).Str(logkey.Remote, r.RemoteAddr).Msg("one-time token refused: unknown, used or expired")
		unauthorized(w)
		return "", false
	case err != nil:
		s.log.Error().Err(err).Str(logkey.Path, r.URL.Path).Msg("token store unavailable")
		writeText(w, http.StatusInternalServerError, msgTokenStoreDown)
		return "", false
	}
	return runner, true
}

// runnerAuth admits a request with a one-time token, which it consumes
// whatever the request's outcome.
func (s *Service) runnerAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := bearer(r)
		switch {
		case token == "":
			unauthorized(w)
			return
		case s.isAdmin(token):
			writeText(w, http.StatusForbidden, msgAdminOnRunner)
			return
		}
		runner, ok := s.consume(w, r, token)
		if !ok {
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), runnerKey{}, runner)))
	})
}

// operatorAuth admits a request with the admin token. A one-time token
// is refused with 403, and spent: any token is good for one request only.
func (s *Service) operatorAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := bearer(r)
		switch {
		case token == "":
			unauthorized(w)
		case s.isAdmin(token):
			next.ServeHTTP(w, r)
		default:
			if _, ok := s.consume(w, r, token); ok {
				writeText(w, http.StatusForbidden, msgRunnerOnAdmin)
			}
		}
	})
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="ephemera-policy"`)
	writeText(w, http.StatusUnauthorized, msgUnauthorized)
}

func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}
