package web

import (
	"net/http"
	"strings"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

type findData struct {
	Device   deviceRow
	Location *hub.LocationView
	NoFix    string // why there is no location ("" when there is one)
	LostMode *hub.LostMode
	Commands []hub.CommandView
	// Unavailable: the hub has no commands (not built or switched off).
	Unavailable bool
	// The lock form's values after a refused lock.
	Message, Contact string
}

// findPage shows a phone's or tablet's last location, its lost mode, the command buttons and
// every command's state.
func (p *Portal) findPage(rq *request) {
	dev, err := p.device(rq)
	if err != nil {
		p.fail(rq, err)
		return
	}
	d, err := p.findData(rq, dev)
	if err != nil {
		p.fail(rq, err)
		return
	}
	p.render(rq, http.StatusOK, "find", page{Title: "Find " + dev.Name, Nav: "devices", Notice: notice(rq), Data: d})
}

func (p *Portal) findData(rq *request, dev deviceRow) (findData, error) {
	ctx, acc := rq.Context(), rq.principal.AccountID
	d := findData{Device: dev}
	loc, err := p.hub.Location(ctx, acc, dev.ID)
	switch {
	case err == nil:
		d.Location = &loc
	case unavailable(err):
		d.Unavailable = true
		return d, nil
	case hub.ErrorCode(err) == hub.ENotFound:
		d.NoFix = errorText(err)
	default:
		return d, err
	}
	if d.LostMode, err = p.hub.LostModeOf(ctx, acc, dev.ID); err != nil {
		return d, err
	}
	if d.Commands, err = p.hub.Commands(ctx, acc, dev.ID, 20); err != nil {
		return d, err
	}
	return d, nil
}

// commandPost issues locate, ring, lock, unlock or wipe. Wipe needs the confirmation box
// ticked and the account password: it cannot be undone.
func (p *Portal) commandPost(rq *request) {
	dev, err := p.device(rq)
	if err != nil {
		p.fail(rq, err)
		return
	}
	f := rq.PostForm
	req := hub.CommandRequest{Type: f.Get("type")}
	if req.Type == devices.CmdLock {
		req.Message, req.ContactNumber = strings.TrimSpace(f.Get("message")), strings.TrimSpace(f.Get("contact_number"))
	}
	refuse := func(status int, msg string, err error) {
		d, derr := p.findData(rq, dev)
		if derr != nil {
			p.fail(rq, derr)
			return
		}
		d.Message, d.Contact = req.Message, req.ContactNumber
		pg := page{Title: "Find " + dev.Name, Nav: "devices", Data: d}
		if err != nil {
			p.formError(rq, "find", pg, err)
			return
		}
		pg.Error = msg
		p.render(rq, status, "find", pg)
	}
	if req.Type == devices.CmdWipe {
		if f.Get("confirm") != "yes" {
			refuse(http.StatusBadRequest, "Tick the box to confirm that the device should be erased.", nil)
			return
		}
		if err := p.hub.VerifyPassword(rq.Context(), rq.principal.AccountID, f.Get("password")); err != nil {
			refuse(0, "", err)
			return
		}
	}
	if _, err := p.hub.IssueCommand(rq.Context(), rq.principal.AccountID, dev.ID, req, "web"); err != nil {
		if unavailable(err) {
			p.render(rq, http.StatusNotImplemented, "unavailable", page{Title: "Find " + dev.Name, Nav: "devices",
				Data: unavailableData{Device: &dev, Feature: "Remote commands"}})
			return
		}
		refuse(0, "", err)
		return
	}
	redirect(rq, "/devices/"+dev.ID+"/find?done=sent")
}

type unavailableData struct {
	Device  *deviceRow
	Feature string
}
