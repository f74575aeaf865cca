package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"

	"github.com/devicehub/devicehub/hub"
)

// bearer returns the token of an "Authorization: Bearer <token>" header, or "".
func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// requireAccount runs next for requests with a valid session token, and answers 401 otherwise.
func (s *Server) requireAccount(next func(w http.ResponseWriter, r *http.Request, p hub.Principal)) http.HandlerFunc {
	return s.withLog(func(w http.ResponseWriter, r *http.Request) {
		token := bearer(r)
		if token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="devicehub"`)
			writeError(w, hub.Errorf(hub.EUnauthorized, "send Authorization: Bearer <token> from POST /api/v1/sessions"))
			return
		}
		p, err := s.opts.Hub.Authenticate(r.Context(), token)
		if err != nil {
			if hub.ErrorCode(err) == hub.EUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="devicehub", error="invalid_token"`)
			}
			writeError(w, err)
			return
		}
		next(w, r, p)
	})
}

// requireAdmin runs next for requests bearing the admin token. With no admin token configured
// the admin endpoints do not exist (404).
func (s *Server) requireAdmin(next http.HandlerFunc) http.HandlerFunc {
	return s.withLog(func(w http.ResponseWriter, r *http.Request) {
		if s.opts.AdminToken == "" {
			writeError(w, hub.Errorf(hub.ENotFound, "no such endpoint"))
			return
		}
		// Comparing digests keeps the comparison constant-time whatever the lengths.
		got, want := sha256.Sum256([]byte(bearer(r))), sha256.Sum256([]byte(s.opts.AdminToken))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			writeError(w, hub.Errorf(hub.EUnauthorized, "admin endpoints need Authorization: Bearer <admin.token>"))
			return
		}
		next(w, r)
	})
}

// clientIP is the connection's address. Forwarded headers are not trusted: behind a proxy
// every client would share the proxy's limits (see docs/api.md).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
