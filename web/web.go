// Package web is devicehub's account portal: server-rendered HTML pages (html/template) for
// people without the phone app — register, confirm, sign in, devices, data charts, find my
// device, sessions and the audit log. It is served by the hub's own HTTP server and calls
// the hub in-process; nothing loads from outside the hub (templates, CSS and the one small
// script are embedded with go:embed). See docs/portal.md.
package web

import (
	"crypto/rand"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/devicehub/devicehub/hub"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Cookie names. The session cookie carries the hub session token itself (the same token the
// JSON API takes as a bearer token), so a portal session is an ordinary hub session: it shows
// on the sessions page and signing it out anywhere ends it here too.
const (
	sessionCookie = "dh_session"
	csrfCookie    = "dh_csrf"
	// maxForm bounds every form body; the largest form (register) is well under 4 KiB.
	maxForm = 16 << 10
)

// contentSecurityPolicy allows nothing but the hub's own files: no inline script or style,
// no framing, forms only to the hub.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Options are the portal's dependencies.
type Options struct {
	Hub    *hub.Hub
	Logger *slog.Logger
	// Secure marks cookies Secure: set it when the hub serves HTTPS.
	Secure bool
	// Key signs CSRF tokens (at least 32 bytes). Give a key kept in the store so forms
	// stay valid across restarts; nil makes a random one, valid for this process only.
	Key []byte
	// Clock tells the time for charts' periods (tests pin it); nil is the system clock.
	Clock hub.Clock
}

// Portal is the portal's http.Handler. Mounted in the API server, its requests are counted
// there: the inner mux sets r.Pattern, so the counter is labelled by portal route.
type Portal struct {
	hub    *hub.Hub
	log    *slog.Logger
	secure bool
	key    []byte
	clock  hub.Clock
	mux    *http.ServeMux
	pages  map[string]*template.Template
	static http.Handler
}

// New parses the templates (once: they are read-only afterwards) and builds the routes.
func New(opts Options) (*Portal, error) {
	if opts.Hub == nil {
		return nil, fmt.Errorf("web: Options.Hub is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = hub.SystemClock{}
	}
	key := opts.Key
	if len(key) < 32 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("web: csrf key: %w", err)
		}
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("web: static files: %w", err)
	}
	p := &Portal{hub: opts.Hub, log: opts.Logger, secure: opts.Secure, key: key, clock: opts.Clock,
		mux: http.NewServeMux(), pages: pages,
		static: http.StripPrefix("/static/", http.FileServerFS(sub))}
	p.routes()
	return p, nil
}

func (p *Portal) routes() {
	m := p.mux
	m.Handle("GET /static/", p.staticFiles())
	m.HandleFunc("GET /{$}", p.anon(p.home))
	m.HandleFunc("GET /register", p.anon(p.registerPage))
	m.HandleFunc("POST /register", p.anon(p.registerPost))
	m.HandleFunc("GET /confirm", p.anon(p.confirmPage))
	m.HandleFunc("POST /confirm", p.anon(p.confirmPost))
	m.HandleFunc("POST /confirm/resend", p.anon(p.resendPost))
	m.HandleFunc("GET /confirm/link", p.anon(p.linkPage))
	m.HandleFunc("POST /confirm/link", p.anon(p.linkPost))
	m.HandleFunc("GET /login", p.anon(p.loginPage))
	m.HandleFunc("POST /login", p.anon(p.loginPost))
	m.HandleFunc("POST /logout", p.auth(p.logoutPost))
	m.HandleFunc("GET /forgot", p.anon(p.forgotPage))
	m.HandleFunc("POST /forgot", p.anon(p.forgotPost))
	m.HandleFunc("GET /reset", p.anon(p.resetPage))
	m.HandleFunc("POST /reset", p.anon(p.resetPost))

	m.HandleFunc("GET /devices", p.auth(p.devicesPage))
	m.HandleFunc("POST /devices/bind", p.auth(p.bindPost))
	m.HandleFunc("GET /devices/{id}", p.auth(p.devicePage))
	m.HandleFunc("POST /devices/{id}/rename", p.auth(p.renamePost))
	m.HandleFunc("POST /devices/{id}/unbind", p.auth(p.unbindPost))
	m.HandleFunc("GET /devices/{id}/data", p.auth(p.dataPage))
	m.HandleFunc("GET /data", p.auth(p.dataPage))
	m.HandleFunc("GET /devices/{id}/find", p.auth(p.findPage))
	m.HandleFunc("POST /devices/{id}/commands", p.auth(p.commandPost))

	m.HandleFunc("GET /security", p.auth(p.securityPage))
	m.HandleFunc("POST /security/sessions/{id}/revoke", p.auth(p.revokePost))
	m.HandleFunc("POST /security/sessions/revoke-others", p.auth(p.revokeOthersPost))

	// Anything else: the API's unknown paths keep a JSON answer; the rest gets the 404 page.
	m.HandleFunc("/", p.anon(p.notFound))
}

// ServeHTTP adds the security headers every answer carries, then routes.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		// Mounted at "/", the portal also receives API paths the API does not know; they keep
		// answering like the API, in JSON.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"no such endpoint"}}` + "\n"))
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if p.secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	p.mux.ServeHTTP(w, r)
}

func (p *Portal) staticFiles() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Embedded files have no modification time; a short cache keeps pages fast without
		// pinning an old script after an upgrade for long.
		w.Header().Set("Cache-Control", "public, max-age=300")
		p.static.ServeHTTP(w, r)
	})
}

// request is what every handler gets: the request, the signed-in principal (zero when
// anonymous) and the CSRF token for the page's forms.
type request struct {
	*http.Request
	w         http.ResponseWriter
	principal hub.Principal
	token     string // the session token, "" when anonymous
	csrf      string
}

func (rq *request) signedIn() bool { return rq.principal.AccountID != "" }

type handler func(rq *request)

// anon serves pages that work without a session (a valid session is still recognised, so
// the navigation shows it). POSTs must carry the CSRF token.
func (p *Portal) anon(h handler) http.HandlerFunc {
	return p.wrap(h, false)
}

// auth serves pages that need a session; without one, the browser goes to the sign-in page.
func (p *Portal) auth(h handler) http.HandlerFunc {
	return p.wrap(h, true)
}

func (p *Portal) wrap(h handler, needSession bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rq := &request{Request: r, w: w}
		if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
			pr, err := p.hub.Authenticate(r.Context(), c.Value)
			switch {
			case err == nil:
				rq.principal, rq.token = pr, c.Value
			case hub.ErrorCode(err) == hub.EUnauthorized:
				p.clearCookie(w, sessionCookie) // expired or revoked elsewhere
			default:
				p.fail(rq, err)
				return
			}
		}
		if needSession && !rq.signedIn() {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			} else {
				p.render(rq, http.StatusForbidden, "message", page{Title: "Signed out",
					Error: "Your session has ended. Sign in again and retry."})
			}
			return
		}
		rq.csrf = p.csrfToken(w, r, rq.principal.SessionID)
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				p.render(rq, http.StatusBadRequest, "message", page{Title: "Bad request", Error: "The form could not be read."})
				return
			}
			if !p.checkCSRF(r, rq.principal.SessionID) {
				p.log.Warn("web: csrf refused", "path", r.URL.Path, "ip", clientIP(r))
				p.render(rq, http.StatusForbidden, "message", page{Title: "Form expired",
					Error: "This form expired or did not come from this site. Go back, reload the page and try again."})
				return
			}
		}
		h(rq)
		p.log.Debug("web", "method", r.Method, "path", r.URL.Path, "took", time.Since(start))
	}
}

// clientIP is the TCP peer, as in the API: forwarded headers are not trusted, so the portal
// shares the API's per-IP limits exactly.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (p *Portal) setCookie(w http.ResponseWriter, name, value string, expires time.Time) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteLaxMode}
	if !expires.IsZero() {
		c.Expires = expires
		c.MaxAge = int(time.Until(expires).Seconds())
	}
	http.SetCookie(w, c)
}

func (p *Portal) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteLaxMode})
}

// ConfirmLinks sends browsers that open the emailed confirmation link
// (GET /api/v1/accounts/confirm?token=…, the address the hub writes into the email) to the
// portal's confirmation page, and every other request to api. Programs asking for JSON get
// the API's answer as before; people get a page instead of JSON.
func (p *Portal) ConfirmLinks(api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/api/v1/accounts/confirm" &&
			r.Header.Get("Authorization") == "" && strings.Contains(r.Header.Get("Accept"), "text/html") {
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/confirm/link"
			r2.URL.RawPath = ""
			p.ServeHTTP(w, r2)
			return
		}
		api.ServeHTTP(w, r)
	})
}
