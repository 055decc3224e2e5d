package githubfake

import "github.com/go-chi/chi/v5"

// reposState is the repositories the policy checks read: branches and
// their protection, collaborators, pull requests and comments. Owned by the
// policy work.
type reposState struct{}

func newReposState() *reposState { return &reposState{} }

func (s *Server) repoRoutes(r chi.Router) {}
