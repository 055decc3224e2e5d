package policy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// Answers that name no internal detail.
const (
	msgServiceFault = "The policy service could not complete the check because GitHub could not be asked; this is a fault of the service, not of the repository."
	msgAlwaysFail   = "This runner refuses every job (always-fail policy)."
)

// writeRequestError answers a body that could not be read.
func writeRequestError(w http.ResponseWriter, err error) {
	var bad *badRequestError
	switch {
	case errors.Is(err, errNotJSON):
		writeText(w, http.StatusUnsupportedMediaType, "The request body must be JSON, sent with Content-Type: application/json.")
	case errors.As(err, &bad):
		writeText(w, http.StatusBadRequest, bad.msg)
	default:
		writeText(w, http.StatusBadRequest, "The request could not be read.")
	}
}

func (s *Service) handleCheckRun(ev event) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		body, err := readJSON(w, r)
		if err != nil {
			writeRequestError(w, err)
			return
		}
		in, err := parseCheckRun(ev, body)
		if err != nil {
			writeRequestError(w, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CheckTimeout)
		defer cancel()
		d := s.decide(ctx, ev, in)
		elapsed := time.Since(start)
		s.metrics.checks.WithLabelValues(ev.name, string(d.Outcome)).Inc()
		s.metrics.duration.WithLabelValues(ev.name).Observe(elapsed.Seconds())

		runner, _ := r.Context().Value(runnerKey{}).(string)
		l := s.log.With().Str(logkey.Event, ev.name).Str(logkey.Repo, in.repo.String()).
			Str(logkey.Runner, runner).Str(logkey.Outcome, string(d.Outcome)).Dur(logkey.Duration, elapsed).Logger()
		switch d.Outcome {
		case Pass:
			l.Info().Msg("check-run passed")
			w.WriteHeader(http.StatusNoContent)
		case Fail:
			l.Info().Str(logkey.Check, d.Check).Str(logkey.Reason, d.Reason).Msg("check-run failed")
			writeText(w, http.StatusForbidden, d.Reason)
		default:
			l.Error().Str(logkey.Check, d.Check).Err(d.Err).Msg("check-run could not be completed")
			writeText(w, http.StatusInternalServerError, msgServiceFault)
		}
	}
}

// decide runs the checks of ev's section of the current policy document.
func (s *Service) decide(ctx context.Context, ev event, in checkInput) Decision {
	doc, err := s.docs.get(ctx)
	if err != nil {
		return Decision{Outcome: Error, Err: err}
	}
	d := s.checker.run(ctx, doc, ev.section, in)
	if d.Outcome == Error && d.Err == nil {
		d.Err = errors.New("check errored without a cause")
	}
	return d
}

func (s *Service) handleAlwaysFail(w http.ResponseWriter, _ *http.Request) {
	s.metrics.checks.WithLabelValues("always_fail", string(Fail)).Inc()
	writeText(w, http.StatusForbidden, msgAlwaysFail)
}

// handleOneTimeToken mints a token for an operator; ?runner= names the
// runner it is for.
func (s *Service) handleOneTimeToken(w http.ResponseWriter, r *http.Request) {
	runner := r.URL.Query().Get("runner")
	if runner == "" {
		runner = "operator"
	}
	if len(runner) > 128 {
		writeText(w, http.StatusBadRequest, "The runner name is longer than 128 characters.")
		return
	}
	token, err := s.cfg.Tokens.Mint(r.Context(), runner)
	if err != nil {
		s.log.Error().Err(err).Msg("mint one-time token")
		writeText(w, http.StatusInternalServerError, "The policy service could not mint a token; try again later.")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(token))
}

func (s *Service) handlePostPolicy(w http.ResponseWriter, r *http.Request) {
	body, err := readJSON(w, r)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	doc, err := ParseDocument(body)
	var derr *DocumentError
	if errors.As(err, &derr) {
		writeText(w, http.StatusBadRequest, derr.Error()+".")
		return
	}
	if err := s.docs.put(r.Context(), doc); err != nil {
		s.log.Error().Err(err).Msg("store policy document")
		writeText(w, http.StatusInternalServerError, "The policy service could not store the document; try again later.")
		return
	}
	s.log.Info().Msg("policy document replaced")
	w.WriteHeader(http.StatusNoContent)
}

// handleGetPolicy answers the document in force, every rule written out.
func (s *Service) handleGetPolicy(w http.ResponseWriter, r *http.Request) {
	doc, err := s.docs.get(r.Context())
	if err != nil {
		s.log.Error().Err(err).Msg("read policy document")
		writeText(w, http.StatusInternalServerError, "The policy service could not read the document; try again later.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(doc.Expanded())
}
