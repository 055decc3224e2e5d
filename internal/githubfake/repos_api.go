package githubfake

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

// writeCacheable answers v as JSON with an ETag, and 304 with no body when
// the request's If-None-Match names that ETag, as GitHub does for GETs.
func writeCacheable(w http.ResponseWriter, r *http.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "private, max-age=60, s-maxage=60")
	h.Set("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
	for _, tag := range strings.Split(r.Header.Get("If-None-Match"), ",") {
		if t := strings.TrimSpace(tag); t == etag || t == "W/"+etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
}

func repoNotFound(w http.ResponseWriter, message string) {
	writeJSON(w, http.StatusNotFound, map[string]string{"message": message})
}

// paginate returns the page of items the request asks for (per_page,
// default 30, at most 100; page, from 1) and sets the Link header.
func paginate[T any](w http.ResponseWriter, r *http.Request, items []T) []T {
	q := r.URL.Query()
	per, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || per <= 0 {
		per = 30
	}
	per = min(per, 100)
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page <= 0 {
		page = 1
	}
	last := max(1, (len(items)+per-1)/per)
	if page < last {
		link := func(p int) string {
			q := r.URL.Query()
			q.Set("page", strconv.Itoa(p))
			u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawQuery: q.Encode()}
			return "<" + u.String() + ">"
		}
		w.Header().Set("Link", link(page+1)+`; rel="next", `+link(last)+`; rel="last"`)
	}
	from := min(len(items), (page-1)*per)
	return items[from:min(len(items), from+per)]
}

func userJSON(login string) map[string]any {
	return map[string]any{"login": login, "id": userID(login), "type": "User"}
}

func userID(login string) int64 {
	sum := sha256.Sum256([]byte(login))
	return int64(sum[0])<<16 | int64(sum[1])<<8 | int64(sum[2]) + 1
}

func (s *Server) handleRateLimit(w http.ResponseWriter, r *http.Request) {
	limit, remaining, reset := s.primaryFor(r)
	core := map[string]any{"limit": limit, "remaining": remaining, "used": limit - remaining, "reset": ceilUnix(reset), "resource": "core"}
	writeJSON(w, http.StatusOK, map[string]any{"resources": map[string]any{"core": core}, "rate": core})
}

func (s *Server) handleGetRepo(w http.ResponseWriter, r *http.Request) {
	var v map[string]any
	ok := s.repo(chi.URLParam(r, "owner"), chi.URLParam(r, "repo"), func(spec *RepoSpec) {
		owner, name, _ := strings.Cut(spec.FullName, "/")
		v = map[string]any{
			"id": userID(spec.FullName), "name": name, "full_name": spec.FullName,
			"private": spec.Private, "default_branch": spec.DefaultBranch,
			"owner": userJSON(owner),
		}
	})
	if !ok {
		repoNotFound(w, "Not Found")
		return
	}
	writeCacheable(w, r, v)
}

func (s *Server) handleRepoInstallation(w http.ResponseWriter, r *http.Request) {
	var id int64
	if !s.repo(chi.URLParam(r, "owner"), chi.URLParam(r, "repo"), func(spec *RepoSpec) { id = spec.InstallationID }) {
		repoNotFound(w, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "app_id": 1, "target_type": "Organization"})
}

// branchParam is the branch named in the path, which clients escape.
func branchParam(r *http.Request) string {
	b := chi.URLParam(r, "branch")
	if u, err := url.PathUnescape(b); err == nil {
		return u
	}
	return b
}

func (s *Server) handleGetBranch(w http.ResponseWriter, r *http.Request) {
	branch := branchParam(r)
	var v map[string]any
	s.repo(chi.URLParam(r, "owner"), chi.URLParam(r, "repo"), func(spec *RepoSpec) {
		if p, ok := spec.Branches[branch]; ok {
			sum := sha256.Sum256([]byte(spec.FullName + "@" + branch))
			v = map[string]any{"name": branch, "protected": p != nil, "commit": map[string]any{"sha": hex.EncodeToString(sum[:20])}}
		}
	})
	if v == nil {
		repoNotFound(w, "Branch not found")
		return
	}
	writeCacheable(w, r, v)
}

func (s *Server) handleGetProtection(w http.ResponseWriter, r *http.Request) {
	branch := branchParam(r)
	var (
		v      map[string]any
		exists bool
	)
	s.repo(chi.URLParam(r, "owner"), chi.URLParam(r, "repo"), func(spec *RepoSpec) {
		var p *BranchProtection
		if p, exists = spec.Branches[branch]; !exists || p == nil {
			return
		}
		v = map[string]any{
			"url":            fmt.Sprintf("%srepos/%s/branches/%s/protection", s.URL, spec.FullName, url.PathEscape(branch)),
			"enforce_admins": map[string]any{"enabled": p.EnforceAdmins},
		}
		if p.RequiredReviews {
			named := func(key string, names []string) []map[string]any {
				out := []map[string]any{}
				for _, n := range names {
					if key == "login" {
						out = append(out, userJSON(n))
					} else {
						out = append(out, map[string]any{"slug": n, "name": n})
					}
				}
				return out
			}
			v["required_pull_request_reviews"] = map[string]any{
				"dismiss_stale_reviews":           p.DismissStaleReviews,
				"require_code_owner_reviews":      false,
				"required_approving_review_count": 1,
				"require_last_push_approval":      false,
				"bypass_pull_request_allowances": map[string]any{
					"users": named("login", p.BypassUsers),
					"teams": named("slug", p.BypassTeams),
					"apps":  named("slug", p.BypassApps),
				},
			}
		}
	})
	switch {
	case !exists:
		repoNotFound(w, "Branch not found")
	case v == nil:
		repoNotFound(w, "Branch not protected")
	default:
		writeCacheable(w, r, v)
	}
}

func (s *Server) handleBranchRules(w http.ResponseWriter, r *http.Request) {
	branch := branchParam(r)
	var (
		rules []map[string]any
		raw   json.RawMessage
	)
	ok := s.repo(chi.URLParam(r, "owner"), chi.URLParam(r, "repo"), func(spec *RepoSpec) {
		raw = spec.RuleAnswers[branch]
		rules = []map[string]any{}
		for i, typ := range spec.Rulesets[branch] {
			rule := map[string]any{"type": typ, "ruleset_source_type": "Repository", "ruleset_source": spec.FullName, "ruleset_id": i + 1}
			if typ == "pull_request" {
				rule["parameters"] = map[string]any{
					"dismiss_stale_reviews_on_push": false, "require_code_owner_review": false,
					"require_last_push_approval": false, "required_approving_review_count": 1,
					"required_review_thread_resolution": false,
				}
			}
			rules = append(rules, rule)
		}
	})
	if !ok {
		repoNotFound(w, "Not Found")
		return
	}
	if raw != nil {
		writeCacheable(w, r, raw)
		return
	}
	writeCacheable(w, r, rules)
}

// rolePermission is the permission a repository role grants.
func rolePermission(role string) string {
	switch role {
	case "admin":
		return "admin"
	case "maintain", "write":
		return "write"
	case "triage", "read":
		return "read"
	}
	return "read" // custom roles inherit at least read
}

func (s *Server) handleListCollaborators(w http.ResponseWriter, r *http.Request) {
	outsideOnly := r.URL.Query().Get("affiliation") == "outside"
	var users []map[string]any
	ok := s.repo(chi.URLParam(r, "owner"), chi.URLParam(r, "repo"), func(spec *RepoSpec) {
		roles := map[string]string{}
		if !outsideOnly {
			for login, perm := range spec.Permissions {
				roles[login] = perm
			}
		}
		for login, role := range spec.OutsideCollaborators {
			roles[login] = role
		}
		for _, login := range slices.Sorted(func(yield func(string) bool) {
			for k := range roles {
				if !yield(k) {
					return
				}
			}
		}) {
			role := roles[login]
			perm := rolePermission(role)
			u := userJSON(login)
			u["role_name"] = role
			u["permissions"] = map[string]bool{
				"pull": true, "triage": role != "read", "push": perm == "write" || perm == "admin",
				"maintain": role == "maintain" || role == "admin", "admin": role == "admin",
			}
			users = append(users, u)
		}
	})
	if !ok {
		repoNotFound(w, "Not Found")
		return
	}
	if users == nil {
		users = []map[string]any{}
	}
	writeCacheable(w, r, paginate(w, r, users))
}

func (s *Server) handlePermission(w http.ResponseWriter, r *http.Request) {
	user := chi.URLParam(r, "user")
	var perm, role string
	ok := s.repo(chi.URLParam(r, "owner"), chi.URLParam(r, "repo"), func(spec *RepoSpec) {
		owner, _, _ := strings.Cut(spec.FullName, "/")
		switch p, inPerms := spec.Permissions[user]; {
		case strings.EqualFold(user, owner):
			perm, role = "admin", "admin"
		case inPerms:
			perm, role = rolePermission(p), p
		default:
			if r, ok := spec.OutsideCollaborators[user]; ok {
				perm, role = rolePermission(r), r
			} else {
				perm, role = "none", ""
			}
		}
	})
	if !ok {
		repoNotFound(w, "Not Found")
		return
	}
	writeCacheable(w, r, map[string]any{"permission": perm, "role_name": role, "user": userJSON(user)})
}

func prJSON(spec *RepoSpec, pr PullRequest) map[string]any {
	headOwner, _, _ := strings.Cut(pr.HeadRepo, "/")
	author := pr.Author
	if author == "" {
		author = headOwner
	}
	base := pr.BaseRef
	if base == "" {
		base = spec.DefaultBranch
	}
	state := "open"
	if pr.Closed {
		state = "closed"
	}
	return map[string]any{
		"id": int64(pr.Number) + 1000, "number": pr.Number, "state": state,
		"author_association": pr.AuthorAssociation,
		"user":               userJSON(author),
		"head": map[string]any{
			"label": headOwner + ":" + pr.HeadRef, "ref": pr.HeadRef, "sha": pr.HeadSHA,
			"user": userJSON(headOwner), "repo": map[string]any{"full_name": pr.HeadRepo},
		},
		"base": map[string]any{"ref": base, "repo": map[string]any{"full_name": spec.FullName}},
	}
}

func (s *Server) handleListPulls(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	head, state := q.Get("head"), q.Get("state")
	if state == "" {
		state = "open"
	}
	var pulls []map[string]any
	ok := s.repo(chi.URLParam(r, "owner"), chi.URLParam(r, "repo"), func(spec *RepoSpec) {
		pulls = []map[string]any{}
		for _, pr := range spec.PullRequests {
			headOwner, _, _ := strings.Cut(pr.HeadRepo, "/")
			if head != "" && !strings.EqualFold(head, headOwner+":"+pr.HeadRef) {
				continue
			}
			if state != "all" && (state == "closed") != pr.Closed {
				continue
			}
			pulls = append(pulls, prJSON(spec, pr))
		}
	})
	if !ok {
		repoNotFound(w, "Not Found")
		return
	}
	writeCacheable(w, r, paginate(w, r, pulls))
}

func (s *Server) handleListComments(w http.ResponseWriter, r *http.Request) {
	number, err := strconv.Atoi(chi.URLParam(r, "number"))
	if err != nil {
		repoNotFound(w, "Not Found")
		return
	}
	var comments []map[string]any
	s.repo(chi.URLParam(r, "owner"), chi.URLParam(r, "repo"), func(spec *RepoSpec) {
		for _, pr := range spec.PullRequests {
			if pr.Number != number {
				continue
			}
			comments = []map[string]any{}
			for i, c := range pr.Comments {
				comments = append(comments, map[string]any{
					"id": number*1000 + i, "body": c.Body, "user": userJSON(c.User),
					"created_at": time.Unix(1700000000+int64(i), 0).UTC().Format(time.RFC3339),
				})
			}
		}
	})
	if comments == nil {
		repoNotFound(w, "Not Found")
		return
	}
	writeCacheable(w, r, paginate(w, r, comments))
}
