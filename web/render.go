package web

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/devicehub/devicehub/hub"
)

// page is what every template gets. Data is the page's own content.
type page struct {
	Title  string
	Nav    string // the active navigation entry
	Error  string // shown in <p class="error">: pages that succeed never have one
	Field  string // the form field the error is about
	Notice string
	Signed bool
	CSRF   string
	Data   any
}

func templateFuncs() template.FuncMap {
	return template.FuncMap{
		"when": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				if v.IsZero() {
					return "never"
				}
				return v.UTC().Format("2006-01-02 15:04:05 UTC")
			case *time.Time:
				if v == nil || v.IsZero() {
					return "never"
				}
				return v.UTC().Format("2006-01-02 15:04:05 UTC")
			}
			return ""
		},
		"isoTime": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"fixed":   func(f float64, prec int) string { return strconv.FormatFloat(f, 'f', prec, 64) },
	}
}

// parsePages parses each page template together with the layout, once, at start. Each page
// gets its own template set so their "content" blocks do not collide.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	pages := make(map[string]*template.Template)
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(templateFuncs()).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("web: parse %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// render executes a page into a buffer first, so a template error becomes a clean 500
// rather than half a page.
func (p *Portal) render(rq *request, status int, name string, pg page) {
	t, ok := p.pages[name]
	if !ok {
		p.fail(rq, fmt.Errorf("web: no template %q", name))
		return
	}
	pg.Signed = rq.signedIn()
	pg.CSRF = rq.csrf
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", pg); err != nil {
		p.log.Error("web: render", "page", name, "error", err)
		http.Error(rq.w, "internal error", http.StatusInternalServerError)
		return
	}
	h := rq.w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Pages show account data: never keep them in shared or back-button caches.
	h.Set("Cache-Control", "no-store")
	rq.w.WriteHeader(status)
	_, _ = rq.w.Write(buf.Bytes())
}

// fail answers an unexpected error: the cause goes to the log, the person sees a generic page.
func (p *Portal) fail(rq *request, err error) {
	if e := hub.AsError(err); e != nil {
		if status, ok := statusOf(e.Code); ok {
			if e.Code == hub.ENotFound {
				p.notFound(rq)
				return
			}
			p.render(rq, status, "message", page{Title: "Something went wrong", Error: errorText(err)})
			return
		}
	}
	p.log.Error("web: internal error", "method", rq.Method, "path", rq.URL.Path, "error", err)
	p.render(rq, http.StatusInternalServerError, "message", page{Title: "Something went wrong",
		Error: "Something went wrong on our side. Try again in a moment."})
}

func (p *Portal) notFound(rq *request) {
	p.render(rq, http.StatusNotFound, "notfound", page{Title: "Not found"})
}

// statusOf maps hub error codes to HTTP statuses, as the API's table does (api/errors.go), so
// a page answers with the status the API would.
func statusOf(code string) (int, bool) {
	switch code {
	case hub.EInvalid, hub.EInvalidCode:
		return http.StatusBadRequest, true
	case hub.EStale, hub.EConflict, hub.EDeviceLocked, hub.ENotBound, hub.ENotPairable:
		return http.StatusConflict, true
	case hub.EUnauthorized:
		return http.StatusUnauthorized, true
	case hub.EForbidden, hub.EChallengeFailed, hub.EAccountPending, hub.ENotSameAccount:
		return http.StatusForbidden, true
	case hub.ENotFound:
		return http.StatusNotFound, true
	case hub.ETooLarge:
		return http.StatusRequestEntityTooLarge, true
	case hub.ERateLimited:
		return http.StatusTooManyRequests, true
	}
	return 0, false
}

// errorText is the people-facing text of a hub error.
func errorText(err error) string {
	e := hub.AsError(err)
	if e == nil {
		return "Something went wrong on our side. Try again in a moment."
	}
	msg := e.Message
	if msg != "" {
		msg = strings.ToUpper(msg[:1]) + msg[1:]
	}
	if e.Code == hub.ERateLimited && e.RetryAfterSeconds > 0 {
		msg += fmt.Sprintf(" (about %d s).", e.RetryAfterSeconds)
	}
	return msg
}

// formError re-renders a form after a hub error with the API's status; unexpected errors
// become the generic 500 page.
func (p *Portal) formError(rq *request, name string, pg page, err error) {
	e := hub.AsError(err)
	status, ok := 0, false
	if e != nil {
		status, ok = statusOf(e.Code)
	}
	if !ok {
		p.fail(rq, err)
		return
	}
	if e.Code == hub.ERateLimited && e.RetryAfterSeconds > 0 {
		rq.w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfterSeconds))
	}
	pg.Error, pg.Field = errorText(err), e.Field
	p.render(rq, status, name, pg)
}

// CSRF. Every form carries a token that is an HMAC, under a server key, of a random value in
// the HttpOnly dh_csrf cookie and of the session ID ("" before sign-in). A cross-site page can
// neither read the cookie nor compute the HMAC; a cookie planted by a sibling host still
// needs the key; and a token stops working when the session it was made for ends. Anonymous
// forms (sign in, register) are covered too, which stops login CSRF.

const csrfField = "csrf"

func (p *Portal) csrfToken(w http.ResponseWriter, r *http.Request, sessionID string) string {
	v := ""
	if c, err := r.Cookie(csrfCookie); err == nil && validCSRFCookie(c.Value) {
		v = c.Value
	} else {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		v = base64.RawURLEncoding.EncodeToString(b)
		// A browser-session cookie: the session cookie, not this one, decides how long a
		// sign-in lasts.
		p.setCookie(w, csrfCookie, v, time.Time{})
		// The request being served may be the POST that checks: it sees the new value only
		// from the next request on, which is what a missing cookie deserves.
	}
	return p.csrfMAC(v, sessionID)
}

func (p *Portal) csrfMAC(cookie, sessionID string) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte("devicehub-csrf\x00" + cookie + "\x00" + sessionID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func validCSRFCookie(v string) bool {
	b, err := base64.RawURLEncoding.DecodeString(v)
	return err == nil && len(b) == 32
}

// checkCSRF checks a POST's token against the request's own cookie and session, and, as a
// second line, that a browser-sent Origin is this host.
func (p *Portal) checkCSRF(r *http.Request, sessionID string) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	c, err := r.Cookie(csrfCookie)
	if err != nil || !validCSRFCookie(c.Value) {
		return false
	}
	got := r.PostForm.Get(csrfField)
	want := p.csrfMAC(c.Value, sessionID)
	return hmac.Equal([]byte(got), []byte(want))
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// safeNext keeps post-login redirects on this site: a local absolute path only. Browsers
// read "/\host" like "//host" and drop tabs and newlines anywhere in a URL ("/\t/host" is
// "//host" to them), so backslashes and every control character are refused, not only a
// leading "//"; what is left must parse as a path without scheme or host.
func safeNext(next string) string {
	const home = "/devices"
	if next == "" || len(next) > 2048 || next[0] != '/' || strings.HasPrefix(next, "//") {
		return home
	}
	for _, r := range next {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return home
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return home
	}
	return next
}

// redirect answers a successful POST with 303 to a page (post/redirect/get), so reloading
// does not send the form again.
func redirect(rq *request, to string) {
	http.Redirect(rq.w, rq.Request, to, http.StatusSeeOther)
}
