package web

import (
	"net/http"

	"github.com/devicehub/devicehub/hub"
)

type sessionRow struct {
	hub.Session
	Current bool
}

type securityData struct {
	Sessions []sessionRow
	Others   int
	Audit    []hub.AuditEntry
}

func (p *Portal) securityPage(rq *request) {
	ctx, acc := rq.Context(), rq.principal.AccountID
	ss, err := p.hub.Sessions(ctx, acc)
	if err != nil {
		p.fail(rq, err)
		return
	}
	audit, err := p.hub.Audit(ctx, acc, 200)
	if err != nil {
		p.fail(rq, err)
		return
	}
	d := securityData{Audit: audit}
	for _, s := range ss {
		cur := s.ID == rq.principal.SessionID
		if !cur {
			d.Others++
		}
		d.Sessions = append(d.Sessions, sessionRow{Session: s, Current: cur})
	}
	p.render(rq, http.StatusOK, "security", page{Title: "Security", Nav: "security", Notice: notice(rq), Data: d})
}

func (p *Portal) revokePost(rq *request) {
	id := rq.PathValue("id")
	if err := p.hub.RevokeSession(rq.Context(), rq.principal.AccountID, id); err != nil {
		p.fail(rq, err) // someone else's session is not_found: the 404 page
		return
	}
	if id == rq.principal.SessionID {
		p.clearCookie(rq.w, sessionCookie)
		redirect(rq, "/login?done=signedout")
		return
	}
	redirect(rq, "/security?done=revoked")
}

// revokeOthersPost signs out every session but this one (the "I lost my phone" button).
func (p *Portal) revokeOthersPost(rq *request) {
	ctx, acc := rq.Context(), rq.principal.AccountID
	ss, err := p.hub.Sessions(ctx, acc)
	if err != nil {
		p.fail(rq, err)
		return
	}
	for _, s := range ss {
		if s.ID == rq.principal.SessionID {
			continue
		}
		// A session that expired or was revoked meanwhile is already what we want.
		if err := p.hub.RevokeSession(ctx, acc, s.ID); err != nil && hub.ErrorCode(err) != hub.ENotFound {
			p.fail(rq, err)
			return
		}
	}
	redirect(rq, "/security?done=revokedothers")
}
