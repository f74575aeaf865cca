package broker

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/devicehub/devicehub/devices"
)

// defaultDropFlush bounds how long a dropped device has to acknowledge the last messages the
// hub sent it (the "unbound" notice, the response to its own unbind request). Its rights
// end at once whatever this is; it only decides when the connection is closed, so it is
// generous: 3 s was once too short for a phone's own unbind answer on a loaded machine.
const defaultDropFlush = 10 * time.Second

// Drop disconnects a device and forgets its session: subscriptions, queued messages and the
// persisted copy of both. The hub calls it when a device's credentials are revoked, right
// after telling the device ("unbound").
//
// The device's rights end at once: the hook forgets its identity (the next check reads the
// hub, where it is unbound), its will is cleared, its stored session deleted, and no new
// login under its ID is accepted until the drop is complete, so nobody, not even the device
// with its factory secret, inherits what was queued for the old binding. The disconnect
// itself waits, in the background and at most dropFlush, until the device acknowledged the
// hub's messages on its commands and response topics: mochi would otherwise close the
// connection with the notice still queued. In the background, because Drop may run on the
// device's own read goroutine (a device unbinding itself), which must return to read those
// acknowledgements and to send the response to the request.
func (b *Broker) Drop(deviceID string) {
	b.auth.forget(deviceID)
	cl, ok := b.srv.Clients.Get(deviceID)
	if !ok {
		return
	}
	if b.storage != nil {
		b.storage.forget(cl)
	}
	atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	done := b.drops.start(deviceID, cl)
	go func() {
		defer done()
		b.auth.awaitRequest(cl)
		if !cl.Closed() {
			b.drops.flush(cl, b.dropFlush)
			disconnect(b.srv, cl, packets.ErrNotAuthorized)
		}
		// mochi's own clean-up of the ended connection goes by client ID (it unsubscribes
		// and removes whatever is registered under it): a login let in before that is over
		// would lose its subscriptions to it. Logins wait for this drop, so it waits for that.
		awaitFinished(cl)
		// The client ID may belong to a newer connection by now (never a login: they are
		// refused while this runs, but a takeover that began before Drop); its state is not
		// this session's.
		if cur, ok := b.srv.Clients.Get(deviceID); ok && cur != cl {
			return
		}
		b.srv.UnsubscribeClient(cl)
		cl.ClearInflights()
		b.srv.Clients.Delete(deviceID)
		b.auth.forget(deviceID) // what a request answered meanwhile may have cached
		b.log.Info("device session dropped", "device", deviceID)
	}()
}

// dropHook tracks the devices being dropped and wakes a drop when one of its messages is
// acknowledged or its connection ends.
type dropHook struct {
	mqtt.HookBase
	mu     sync.Mutex
	ids    map[string]*dropping
	wakes  map[*mqtt.Client]*dropWake
	active atomic.Int32 // len(wakes): every client's QoS completion asks, almost always for none
}

// dropping is one device ID with drops running.
type dropping struct {
	n     int
	ended chan struct{} // closed when the last of them ends
}

// dropWake is one connection with drops running (a device unbound and bound again can have
// two at once); they share the channel.
type dropWake struct {
	n int
	c chan struct{}
}

func newDropHook() *dropHook {
	return &dropHook{ids: map[string]*dropping{}, wakes: map[*mqtt.Client]*dropWake{}}
}

func (h *dropHook) ID() string { return "devicehub-drop" }

func (h *dropHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnQosComplete, mqtt.OnQosDropped, mqtt.OnDisconnect:
		return true
	}
	return false
}

func (h *dropHook) dropping(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ids[id] != nil
}

// await waits at most max until no drop of the device is running, and reports whether none
// is. A device that logs in again right after it was unbound usually does so while the drop
// of its old session finishes its last steps (its connection is already closed): it waits
// for those instead of being refused.
func (h *dropHook) await(id string, max time.Duration) bool {
	h.mu.Lock()
	d := h.ids[id]
	h.mu.Unlock()
	if d == nil {
		return true
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-d.ended:
		return !h.dropping(id)
	case <-t.C:
		return false
	}
}

// start marks the device as being dropped; the returned func ends that.
func (h *dropHook) start(id string, cl *mqtt.Client) func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.ids[id]
	if d == nil {
		d = &dropping{ended: make(chan struct{})}
		h.ids[id] = d
	}
	d.n++
	w := h.wakes[cl]
	if w == nil {
		w = &dropWake{c: make(chan struct{}, 1)}
		h.wakes[cl] = w
		h.active.Add(1)
	}
	w.n++
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if d.n--; d.n == 0 {
			close(d.ended)
			delete(h.ids, id)
		}
		if w.n--; w.n == 0 {
			delete(h.wakes, cl)
			h.active.Add(-1)
		}
	}
}

func (h *dropHook) wake(cl *mqtt.Client) {
	if h.active.Load() == 0 {
		return
	}
	h.mu.Lock()
	w := h.wakes[cl]
	h.mu.Unlock()
	if w != nil {
		select {
		case w.c <- struct{}{}:
		default:
		}
	}
}

func (h *dropHook) OnQosComplete(cl *mqtt.Client, _ packets.Packet) { h.wake(cl) }
func (h *dropHook) OnQosDropped(cl *mqtt.Client, _ packets.Packet)  { h.wake(cl) }
func (h *dropHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool)   { h.wake(cl) }

// flush waits until none of the hub's messages to cl under devices/{id}/ (commands, the
// response topic, an MQTT 5 response topic the device chose there; not sync entries, which
// the controller's cursor keeps) is unacknowledged, the connection ended, or max has passed.
func (h *dropHook) flush(cl *mqtt.Client, max time.Duration) {
	h.mu.Lock()
	var wake chan struct{}
	if w := h.wakes[cl]; w != nil {
		wake = w.c
	}
	h.mu.Unlock()
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	own, sync := devices.DevicesPrefix+"/"+cl.ID+"/", devices.ControllerSyncTopic(cl.ID)
	for {
		pending := false
		for _, pk := range cl.State.Inflight.GetAll(false) {
			if pk.FixedHeader.Type == packets.Publish && strings.HasPrefix(pk.TopicName, own) && pk.TopicName != sync {
				pending = true
				break
			}
		}
		if !pending || cl.Closed() {
			return
		}
		select {
		case <-wake:
		case <-deadline.C:
			return
		}
	}
}
