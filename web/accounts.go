package web

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/devicehub/devicehub/hub"
)

// notices are the fixed messages a redirect can ask for with ?done=…: a URL can pick one but
// cannot put its own text on the page.
func notice(rq *request) string {
	switch rq.URL.Query().Get("done") {
	case "registered":
		return "We sent a 6-digit code (and, to an email address, a link). Enter the code below, or open the link."
	case "resent":
		return "If this account is waiting for confirmation, a new code is on its way."
	case "confirmed":
		return "Your account is confirmed. Sign in."
	case "forgot":
		return "If this identifier has an account, a reset code is on its way."
	case "reset":
		return "Your password was changed and every session signed out. Sign in with the new password."
	case "signedout":
		return "You are signed out."
	case "bound":
		return "The device was bound to your account."
	case "renamed":
		return "The device was renamed."
	case "unbound":
		return "The device was signed out of your account."
	case "revoked":
		return "The session was signed out."
	case "revokedothers":
		return "Every other session was signed out."
	case "sent":
		return "The command was sent."
	}
	return ""
}

// formValues is what an account form sent, given back to the template so a failed form
// keeps what was typed (never the password).
type formValues struct {
	Identifier string
	Code       string
	Token      string
	Next       string
}

func (rq *request) accountRequest() hub.AccountRequest {
	f := rq.PostForm
	var challenge json.RawMessage
	// The page's script puts the solved puzzle here as JSON; anything else is passed on for
	// the hub to refuse as challenge_failed, exactly like a bad API answer.
	if c := strings.TrimSpace(f.Get("challenge")); c != "" {
		if json.Valid([]byte(c)) {
			challenge = json.RawMessage(c)
		} else {
			challenge = json.RawMessage(`"invalid"`)
		}
	}
	return hub.AccountRequest{
		Identifier: strings.TrimSpace(f.Get("identifier")),
		Password:   f.Get("password"),
		Code:       strings.TrimSpace(f.Get("code")),
		Challenge:  challenge,
		IP:         clientIP(rq.Request),
		UserAgent:  rq.UserAgent(),
	}
}

func (p *Portal) home(rq *request) {
	if rq.signedIn() {
		redirect(rq, "/devices")
		return
	}
	redirect(rq, "/login")
}

func (p *Portal) registerPage(rq *request) {
	p.render(rq, http.StatusOK, "register", page{Title: "Create an account", Nav: "register", Data: formValues{}})
}

func (p *Portal) registerPost(rq *request) {
	req := rq.accountRequest()
	pg := page{Title: "Create an account", Nav: "register", Data: formValues{Identifier: req.Identifier}}
	if req.Password != rq.PostForm.Get("password2") {
		pg.Error, pg.Field = "The two passwords differ.", "password2"
		p.render(rq, http.StatusBadRequest, "register", pg)
		return
	}
	id, err := p.hub.Register(rq.Context(), req)
	if err != nil {
		p.formError(rq, "register", pg, err)
		return
	}
	redirect(rq, "/confirm?done=registered&identifier="+urlQueryEscape(id.Value))
}

func (p *Portal) confirmPage(rq *request) {
	p.render(rq, http.StatusOK, "confirm", page{Title: "Confirm your account", Nav: "register", Notice: notice(rq),
		Data: formValues{Identifier: rq.URL.Query().Get("identifier")}})
}

func (p *Portal) confirmPost(rq *request) {
	req := rq.accountRequest()
	pg := page{Title: "Confirm your account", Nav: "register", Data: formValues{Identifier: req.Identifier}}
	if _, err := p.hub.ConfirmCode(rq.Context(), req); err != nil {
		p.formError(rq, "confirm", pg, err)
		return
	}
	redirect(rq, "/login?done=confirmed&identifier="+urlQueryEscape(req.Identifier))
}

func (p *Portal) resendPost(rq *request) {
	req := rq.accountRequest()
	pg := page{Title: "Confirm your account", Nav: "register", Data: formValues{Identifier: req.Identifier}}
	id, err := p.hub.ResendCode(rq.Context(), req)
	if err != nil {
		p.formError(rq, "confirm", pg, err)
		return
	}
	redirect(rq, "/confirm?done=resent&identifier="+urlQueryEscape(id.Value))
}

// linkPage is where the emailed confirmation link lands in a browser. It asks for one click
// rather than confirming on GET: mail scanners that fetch links then cannot confirm for the
// person (the JSON API's GET still confirms, for links opened by other clients).
func (p *Portal) linkPage(rq *request) {
	p.render(rq, http.StatusOK, "link", page{Title: "Confirm your account", Nav: "register",
		Data: formValues{Token: rq.URL.Query().Get("token")}})
}

func (p *Portal) linkPost(rq *request) {
	token := rq.PostForm.Get("token")
	pg := page{Title: "Confirm your account", Nav: "register", Data: formValues{Token: token}}
	if _, err := p.hub.ConfirmToken(rq.Context(), token, clientIP(rq.Request)); err != nil {
		p.formError(rq, "link", pg, err)
		return
	}
	redirect(rq, "/login?done=confirmed")
}

func (p *Portal) loginPage(rq *request) {
	q := rq.URL.Query()
	p.render(rq, http.StatusOK, "login", page{Title: "Sign in", Nav: "login", Notice: notice(rq),
		Data: formValues{Identifier: q.Get("identifier"), Next: q.Get("next")}})
}

func (p *Portal) loginPost(rq *request) {
	req := rq.accountRequest()
	next := rq.PostForm.Get("next")
	pg := page{Title: "Sign in", Nav: "login", Data: formValues{Identifier: req.Identifier, Next: next}}
	token, sess, err := p.hub.Login(rq.Context(), req)
	if err != nil {
		if hub.ErrorCode(err) == hub.EAccountPending {
			pg.Error = "This account is not confirmed yet: enter the code we sent on the confirmation page."
			p.render(rq, http.StatusForbidden, "login", pg)
			return
		}
		p.formError(rq, "login", pg, err)
		return
	}
	p.setCookie(rq.w, sessionCookie, token, sess.ExpiresAt)
	redirect(rq, safeNext(next))
}

func (p *Portal) logoutPost(rq *request) {
	if err := p.hub.RevokeSession(rq.Context(), rq.principal.AccountID, rq.principal.SessionID); err != nil && hub.ErrorCode(err) != hub.ENotFound {
		p.fail(rq, err)
		return
	}
	p.clearCookie(rq.w, sessionCookie)
	redirect(rq, "/login?done=signedout")
}

func (p *Portal) forgotPage(rq *request) {
	p.render(rq, http.StatusOK, "forgot", page{Title: "Forgot password", Nav: "login",
		Data: formValues{Identifier: rq.URL.Query().Get("identifier")}})
}

func (p *Portal) forgotPost(rq *request) {
	req := rq.accountRequest()
	pg := page{Title: "Forgot password", Nav: "login", Data: formValues{Identifier: req.Identifier}}
	if err := p.hub.ForgotPassword(rq.Context(), req); err != nil {
		p.formError(rq, "forgot", pg, err)
		return
	}
	redirect(rq, "/reset?done=forgot&identifier="+urlQueryEscape(req.Identifier))
}

func (p *Portal) resetPage(rq *request) {
	p.render(rq, http.StatusOK, "reset", page{Title: "Choose a new password", Nav: "login", Notice: notice(rq),
		Data: formValues{Identifier: rq.URL.Query().Get("identifier")}})
}

func (p *Portal) resetPost(rq *request) {
	req := rq.accountRequest()
	pg := page{Title: "Choose a new password", Nav: "login", Data: formValues{Identifier: req.Identifier}}
	if req.Password != rq.PostForm.Get("password2") {
		pg.Error, pg.Field = "The two passwords differ.", "password2"
		p.render(rq, http.StatusBadRequest, "reset", pg)
		return
	}
	if err := p.hub.ResetPassword(rq.Context(), req); err != nil {
		p.formError(rq, "reset", pg, err)
		return
	}
	// Every session was revoked, this browser's included.
	p.clearCookie(rq.w, sessionCookie)
	redirect(rq, "/login?done=reset&identifier="+urlQueryEscape(req.Identifier))
}
