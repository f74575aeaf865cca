package web

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
)

// deviceRow is one device as the devices page shows it.
type deviceRow struct {
	hub.DeviceView
	Controller bool
	// Battery is the latest battery sample ("" when there is none or it is unavailable).
	Battery string
	// Paired lists the devices it is paired with, oldest pairing first.
	Paired []pairedDevice
}

// pairedDevice is a partner as the pages link to it.
type pairedDevice struct {
	ID   string
	Name string // the partner's name, or its ID when the name is not at hand
}

type devicesData struct {
	Devices []deviceRow
	// Extras is false while the hub cannot tell battery levels.
	Extras   bool
	BindID   string
	BindCode string
}

func (p *Portal) deviceRows(rq *request) ([]deviceRow, bool, error) {
	ds, err := p.hub.Devices(rq.Context(), rq.principal.AccountID)
	if err != nil {
		return nil, false, err
	}
	// One read for every device's pairings; partners are named from the list just read.
	paired, err := p.hub.AccountPairings(rq.Context(), rq.principal.AccountID)
	if err != nil {
		return nil, false, err
	}
	names := make(map[string]string, len(ds))
	for _, d := range ds {
		names[d.ID] = d.Name
	}
	rows := make([]deviceRow, len(ds))
	for i, d := range ds {
		rows[i] = deviceRow{DeviceView: d, Controller: devices.IsController(d.Type)}
		for _, id := range paired[d.ID] {
			rows[i].Paired = append(rows[i].Paired, partner(id, names[id]))
		}
	}
	extras, err := p.deviceExtras(rq, rows)
	return rows, extras, err
}

func (p *Portal) devicesPage(rq *request) {
	rows, extras, err := p.deviceRows(rq)
	if err != nil {
		p.fail(rq, err)
		return
	}
	p.render(rq, http.StatusOK, "devices", page{Title: "Devices", Nav: "devices", Notice: notice(rq),
		Data: devicesData{Devices: rows, Extras: extras}})
}

func (p *Portal) bindPost(rq *request) {
	id, code := strings.TrimSpace(rq.PostForm.Get("device_id")), strings.TrimSpace(rq.PostForm.Get("code"))
	_, err := p.hub.Bind(rq.Context(), rq.principal.AccountID, id, code, "web")
	if err != nil {
		rows, extras, lerr := p.deviceRows(rq)
		if lerr != nil {
			p.fail(rq, lerr)
			return
		}
		p.formError(rq, "devices", page{Title: "Devices", Nav: "devices",
			Data: devicesData{Devices: rows, Extras: extras, BindID: id, BindCode: code}}, err)
		return
	}
	redirect(rq, "/devices?done=bound")
}

type deviceData struct {
	Device     deviceRow
	Controller bool
	Name       string // the rename form's value
}

// device loads one of the signed-in account's devices; another account's device is
// not_found exactly like a missing one, so the page is a 404 whatever the URL.
func (p *Portal) device(rq *request) (deviceRow, error) {
	d, err := p.hub.Device(rq.Context(), rq.principal.AccountID, rq.PathValue("id"))
	if err != nil {
		return deviceRow{}, err
	}
	rows := []deviceRow{{DeviceView: d, Controller: devices.IsController(d.Type)}}
	peers, err := p.hub.PairedDevices(rq.Context(), rq.principal.AccountID, d.ID)
	if err != nil {
		return deviceRow{}, err
	}
	for _, x := range peers {
		rows[0].Paired = append(rows[0].Paired, partner(x.ID, x.Name))
	}
	if _, err := p.deviceExtras(rq, rows); err != nil {
		return deviceRow{}, err
	}
	return rows[0], nil
}

// partner names a paired device by its ID when its name is unknown: a device paired between
// reading the list and reading the pairings is not in the list yet.
func partner(id, name string) pairedDevice {
	if name == "" {
		name = id
	}
	return pairedDevice{ID: id, Name: name}
}

func (p *Portal) devicePage(rq *request) {
	d, err := p.device(rq)
	if err != nil {
		p.fail(rq, err)
		return
	}
	p.render(rq, http.StatusOK, "device", page{Title: d.Name, Nav: "devices", Notice: notice(rq),
		Data: deviceData{Device: d, Controller: d.Controller, Name: d.Name}})
}

func (p *Portal) renamePost(rq *request) {
	d, err := p.device(rq)
	if err != nil {
		p.fail(rq, err)
		return
	}
	name := rq.PostForm.Get("name")
	if _, err := p.hub.RenameDevice(rq.Context(), rq.principal.AccountID, d.ID, name); err != nil {
		p.formError(rq, "device", page{Title: d.Name, Nav: "devices", Data: deviceData{Device: d, Controller: d.Controller, Name: name}}, err)
		return
	}
	redirect(rq, "/devices/"+d.ID+"?done=renamed")
}

func (p *Portal) unbindPost(rq *request) {
	d, err := p.device(rq)
	if err != nil {
		p.fail(rq, err)
		return
	}
	if err := p.hub.Unbind(rq.Context(), rq.principal.AccountID, d.ID, rq.PostForm.Get("password"), "web"); err != nil {
		p.formError(rq, "device", page{Title: d.Name, Nav: "devices", Data: deviceData{Device: d, Controller: d.Controller, Name: d.Name}}, err)
		return
	}
	redirect(rq, "/devices?done=unbound")
}

// batteryWindow is how far back the devices page looks for a battery sample: an older level
// says little about the battery now.
const batteryWindow = 24 * time.Hour

// deviceExtras fills each row's latest battery level from the synced telemetry; false says
// the hub has no telemetry (not built or switched off).
func (p *Portal) deviceExtras(rq *request, rows []deviceRow) (bool, error) {
	to := p.clock.Now()
	for i := range rows {
		info, _ := devices.Info(rows[i].Type)
		if !slices.Contains(info.Streams, devices.StreamBattery) {
			continue
		}
		pts, _, err := p.series(rq, rows[i].ID, devices.StreamBattery, to.Add(-batteryWindow), to)
		if unavailable(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if len(pts) > 0 {
			last := pts[len(pts)-1]
			rows[i].Battery = strconv.FormatFloat(last.V, 'f', 0, 64) + " % (" + last.T.UTC().Format("Jan 2 15:04") + " UTC)"
		}
	}
	return true, nil
}
