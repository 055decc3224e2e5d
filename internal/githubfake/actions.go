package githubfake

import "github.com/go-chi/chi/v5"

// actionsState is GitHub Actions' side: installations, runners, jobs, the
// broker and webhook deliveries. Owned by the scaler work.
type actionsState struct{}

func newActionsState() *actionsState { return &actionsState{} }

func (s *Server) actionsRoutes(r chi.Router) {}

func (s *Server) closeActions() {}
