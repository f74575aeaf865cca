package web

import "net/http"

// The hub's location and command methods (issue 9) have not landed yet: the find page says
// so rather than show anything made up.

type unavailableData struct {
	Device  *deviceRow
	Feature string
}

func (p *Portal) findPage(rq *request) {
	dev, err := p.device(rq)
	if err != nil {
		p.fail(rq, err)
		return
	}
	p.render(rq, http.StatusOK, "unavailable", page{Title: "Find " + dev.Name, Nav: "devices",
		Data: unavailableData{Device: &dev, Feature: "Location and remote commands"}})
}

func (p *Portal) commandPost(rq *request) {
	dev, err := p.device(rq)
	if err != nil {
		p.fail(rq, err)
		return
	}
	p.render(rq, http.StatusNotImplemented, "unavailable", page{Title: "Find " + dev.Name, Nav: "devices",
		Data: unavailableData{Device: &dev, Feature: "Remote commands"}})
}
