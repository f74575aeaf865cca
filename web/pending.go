package web

import (
	"net/http"
)

// The hub's telemetry queries, pairings listing and device commands (issues 8 and 9) are
// not there yet. These pages say so rather than show anything made up.

// deviceExtras fills battery levels and pairings; false says the hub cannot tell yet.
func (p *Portal) deviceExtras(_ *request, _ []deviceRow) (bool, error) { return false, nil }

type unavailableData struct {
	Device  *deviceRow
	Feature string
}

func (p *Portal) dataPage(rq *request) {
	d := unavailableData{Feature: "Charts of synced telemetry"}
	if rq.PathValue("id") != "" {
		dev, err := p.device(rq)
		if err != nil {
			p.fail(rq, err)
			return
		}
		d.Device = &dev
	}
	p.render(rq, http.StatusOK, "unavailable", page{Title: "Data", Nav: "data", Data: d})
}

func (p *Portal) findPage(rq *request) {
	dev, err := p.device(rq)
	if err != nil {
		p.fail(rq, err)
		return
	}
	p.render(rq, http.StatusOK, "unavailable", page{Title: "Find device", Nav: "devices",
		Data: unavailableData{Device: &dev, Feature: "Location and remote commands"}})
}

func (p *Portal) commandPost(rq *request) {
	if _, err := p.device(rq); err != nil {
		p.fail(rq, err)
		return
	}
	p.render(rq, http.StatusNotImplemented, "unavailable", page{Title: "Find device", Nav: "devices",
		Data: unavailableData{Feature: "Remote commands"}})
}
