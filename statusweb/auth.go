package statusweb

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

const cookieName = "ephemera_status"

// authorize lets the request through, or answers it: 403 when a token is
// required and none is configured, 401 without the right token. A valid
// ?token= sets an HttpOnly cookie and redirects to the same page without
// it, so the token leaves the address bar and the browser's history.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) bool {
	want := h.cfg.Token.Reveal()
	if want == "" {
		if h.cfg.RequireToken {
			http.Error(w, "the status view is off: metrics.listen is not on loopback and status.token_file is not set", http.StatusForbidden)
			return false
		}
		return true
	}
	if q := r.URL.Query().Get("token"); q != "" {
		if !equal(q, want) {
			unauthorized(w)
			return false
		}
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: q, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		u := *r.URL
		qs := u.Query()
		qs.Del("token")
		u.RawQuery = qs.Encode()
		http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
		return false
	}
	if got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && equal(got, want) {
		return true
	}
	if c, err := r.Cookie(cookieName); err == nil && equal(c.Value, want) {
		return true
	}
	unauthorized(w)
	return false
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="ephemera status"`)
	http.Error(w, "a bearer token (status.token_file) is required", http.StatusUnauthorized)
}
