package broker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/metrics"
)

// hookTimeout bounds each call into the hub from a hook: hooks run on the client's read
// goroutine and block that client (never others) while they run.
const hookTimeout = 10 * time.Second

// dropLoginWait bounds how long a login waits for the drop of the device's old session.
const dropLoginWait = 3 * time.Second

// maxAuditedRefusals bounds how many refusals of one connection reach the audit log, so a
// hostile client cannot turn refusals into a write flood.
const maxAuditedRefusals = 10

// conn is what the hook knows about one client ID's session: who it is. It outlives the
// network connection, because mochi checks read access again on every delivery, also to an
// offline persistent session.
type conn struct {
	id        devices.Identity
	anonymous bool
	cl        *mqtt.Client // the connection that authenticated it
	refusals  atomic.Int32
}

// authHook authenticates devices with the hub and enforces, for publish, subscribe, retained
// and will messages alike, that a device touches only its own topics (devices.Authorize*).
// It also carries device requests (devices/{id}/req) to the hub and answers on the response
// topic.
type authHook struct {
	mqtt.HookBase
	hub            *hub.Hub // nil: no devices yet (deny-by-default, or anonymous experiments)
	allowAnonymous bool
	metrics        *metrics.Metrics
	log            *slog.Logger
	srv            *mqtt.Server
	inline         *mqtt.Client  // publishes responses with MQTT 5 properties
	drops          *dropHook     // devices whose session is being dropped (drop.go)
	ids            *packetIDHook // reserves a request's packet ID while the hub handles it (packetids.go)

	conns sync.Map // client ID → *conn
	// busy holds, per connection, a lock held while one of its requests is handled and
	// answered, so a drop the request caused (unbinding itself) waits for the answer.
	busy   sync.Map // *mqtt.Client → *sync.Mutex
	ackers sync.Map // *mqtt.Client → *acker (ingest.go), while it has pipelined publishes
	// maxUnacked bounds each connection's publishes waiting for their commit (0: the default).
	maxUnacked int
}

func (h *authHook) ID() string { return "devicehub-auth" }

func (h *authHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPacketRead, mqtt.OnPublish, mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnClientExpired,
		mqtt.OnSubscribed: // commands.go
		return true
	}
	return false
}

func (h *authHook) refuseLogin(cl *mqtt.Client, reason string) bool {
	h.metrics.AuthFailures.WithLabelValues("mqtt", reason).Inc()
	h.log.Info("mqtt login refused", "client", truncate(cl.ID, 80), "remote", cl.Net.Remote, "reason", reason)
	return false
}

func remoteIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// OnConnectAuthenticate: username = client ID = device ID, password = device secret.
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	username := string(cl.Properties.Username)
	if username == "" || h.hub == nil {
		if h.allowAnonymous {
			h.conns.Store(cl.ID, &conn{anonymous: true, cl: cl})
			return true
		}
		return h.refuseLogin(cl, "no_credentials_accepted")
	}
	// Identifiers with wildcards, '/', '$', NUL or control characters are refused outright,
	// so a raw identity can never widen a topic pattern.
	if devices.ValidIdentifier(cl.ID) != nil || devices.ValidIdentifier(username) != nil {
		return h.refuseLogin(cl, "invalid_identifier")
	}
	// The client ID must be the device ID, checked before mochi hands over any existing
	// session under that client ID (upstream #398): only the device itself inherits it.
	if username != cl.ID {
		return h.refuseLogin(cl, "client_id_mismatch")
	}
	// While a revoked session is being dropped nobody may take it over, not even the device
	// with its factory secret: it would inherit what was queued for the old binding. The
	// login waits a little for the drop to end (usually it is in its last steps) and is
	// refused if it does not, so the device tries again later.
	if h.drops != nil && !h.drops.await(cl.ID, dropLoginWait) {
		return h.refuseLogin(cl, "session_being_dropped")
	}
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	id, err := h.hub.AuthenticateDevice(ctx, username, string(pk.Connect.Password), remoteIP(cl.Net.Remote))
	if err != nil {
		if h.allowAnonymous {
			// Local experiments: anyone gets in, whatever they present.
			h.conns.Store(cl.ID, &conn{anonymous: true, cl: cl})
			return true
		}
		return h.refuseLogin(cl, hub.ErrorCode(err))
	}
	// Will messages skip mochi's ACL (upstream #503): check the will here, at CONNECT.
	if cl.Properties.Will.Flag > 0 {
		if err := devices.AuthorizePublish(id, cl.Properties.Will.TopicName); err != nil {
			h.metrics.ACLRefusals.WithLabelValues("will", devices.RefusalReason(err)).Inc()
			h.audit(id, nil, "will", cl.Properties.Will.TopicName, err)
			return h.refuseLogin(cl, "will_not_allowed")
		}
	}
	h.awaitPrevious(cl)
	h.conns.Store(cl.ID, &conn{id: id, cl: cl})
	return true
}

// awaitPrevious waits, briefly, until mochi has finished with the device's previous
// connection if that one has ended. mochi v2.7.9 cleans up an ended clean session after its
// disconnect hooks ran, by client ID (it unsubscribes the session's filters and deletes the
// ID from its client table): a reconnect of the same device set up meanwhile lost its
// subscriptions and its place in the table, so nothing more was delivered to it. A
// previous connection still open is taken over by mochi instead, which marks it so.
func (h *authHook) awaitPrevious(cl *mqtt.Client) {
	prev, ok := h.srv.Clients.Get(cl.ID)
	if !ok || prev == cl || !prev.Closed() {
		return
	}
	awaitFinished(prev)
}

// awaitFinished waits, at most previousConnWait, until mochi is done with cl's connection
// (finished, listener.go).
func awaitFinished(cl *mqtt.Client) {
	gc, ok := cl.Net.Conn.(*guardedConn)
	if !ok {
		return
	}
	t := time.NewTimer(previousConnWait)
	defer t.Stop()
	select {
	case <-gc.done:
	case <-t.C:
	}
}

// previousConnWait bounds awaitFinished: the clean-up it waits for takes microseconds once
// the disconnect hooks returned.
const previousConnWait = 2 * time.Second

// connOf returns who a client is. A session restored from the store after a restart has not
// authenticated in this process: its identity comes from the hub (so queued messages still
// reach an offline device that is entitled to them, and nothing reaches one that is not).
func (h *authHook) connOf(cl *mqtt.Client) *conn {
	if v, ok := h.conns.Load(cl.ID); ok {
		return v.(*conn)
	}
	if cl.Net.Inline {
		return nil
	}
	// A restored session of a client that was let in without credentials (not a device)
	// stays anonymous, so what is published to its subscriptions is queued for it.
	anonymous := func() *conn {
		if !h.allowAnonymous {
			return nil
		}
		v, _ := h.conns.LoadOrStore(cl.ID, &conn{anonymous: true, cl: cl})
		return v.(*conn)
	}
	if h.hub == nil {
		return anonymous()
	}
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	id, err := h.hub.DeviceIdentity(ctx, cl.ID)
	if hub.ErrorCode(err) == hub.ENotFound {
		return anonymous()
	}
	if err != nil {
		return nil
	}
	c := &conn{id: id}
	v, _ := h.conns.LoadOrStore(cl.ID, c)
	return v.(*conn)
}

// forget removes what the hook knows of a client ID (its session was dropped or expired).
func (h *authHook) forget(clientID string) { h.conns.Delete(clientID) }

// awaitRequest returns once the request cl is handling, if any, has been answered.
func (h *authHook) awaitRequest(cl *mqtt.Client) {
	if mu, ok := h.busy.Load(cl); ok {
		mu.(*sync.Mutex).Lock()
		mu.(*sync.Mutex).Unlock() //nolint:staticcheck // a barrier, not a critical section
	}
}

func (h *authHook) audit(id devices.Identity, c *conn, action, topic string, err error) {
	if h.hub == nil || !id.Bound() {
		return
	}
	if c != nil && c.refusals.Add(1) > maxAuditedRefusals {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	h.hub.RecordRefusal(ctx, id, action, topic, devices.RefusalReason(err))
}

// OnACLCheck decides every subscription filter and every inbound publish topic (and, through
// mochi, retained messages on subscribe).
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	c := h.connOf(cl)
	if c == nil {
		return false
	}
	if c.anonymous {
		return true
	}
	var err error
	action := "subscribe"
	if write {
		action = "publish"
		err = devices.AuthorizePublish(c.id, topic)
	} else {
		err = devices.AuthorizeSubscribe(c.id, topic)
	}
	if err == nil {
		return true
	}
	reason := devices.RefusalReason(err)
	h.metrics.ACLRefusals.WithLabelValues(action, reason).Inc()
	h.log.Info("mqtt access refused", "device", c.id.DeviceID, "action", action, "topic", truncate(topic, 200), "reason", reason)
	h.audit(c.id, c, action, topic, err)
	return false
}

// OnPacketRead refuses an MQTT 3.1.1 client's QoS 1 publish to a topic it may not publish to
// before mochi handles it: mochi's own refusal would send the connection DISCONNECT, which
// 3.1.1 lets only clients send [MQTT-3.14], where 3.1.1 asks the server to close the
// connection [MQTT-3.3.5-2], which rejecting the packet does. A QoS 0 publish (dropped) and
// MQTT 5 (PUBACK 0x87) are left to OnACLCheck, which mochi calls for them.
func (h *authHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 || cl.Properties.ProtocolVersion >= 5 || cl.Net.Inline {
		return pk, nil
	}
	if !h.OnACLCheck(cl, pk.TopicName, true) {
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

// OnPublish carries requests to the hub. A request is acknowledged and not fanned out
// (CodeSuccessIgnore: the v3.1.1 and v5 acknowledgement path alike); its answer goes to the
// device's response topic, or to the MQTT 5 response topic when the device named one of its
// own topics, with the correlation data copied.
//
// "Acknowledge but do not deliver" is returned as an ignored packet with a nil error: an
// error would make mochi drop our changes to the packet. Retained messages never get this
// far (limits.go).
func (h *authHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	c := h.connOf(cl)
	if c == nil || c.anonymous || h.hub == nil {
		return pk, nil
	}
	devID, kind, stream, ok := devices.ParseDeviceTopic(pk.TopicName)
	if ok && devID == c.id.DeviceID && kind == devices.KindTelemetry {
		return h.ingestTelemetry(cl, c, pk, stream) // ingest.go
	}
	if pk.FixedHeader.Qos > 0 {
		h.settle(cl) // ingest.go: earlier telemetry is acknowledged first
	}
	if !ok || devID != c.id.DeviceID || kind != devices.KindRequest {
		return pk, nil
	}
	h.handleRequest(cl, c, pk)
	pk.Ignore = true
	return pk, nil
}

func (h *authHook) handleRequest(cl *mqtt.Client, c *conn, pk packets.Packet) {
	if h.ids != nil && pk.FixedHeader.Qos > 0 {
		h.ids.reserve(cl, pk.PacketID)
	}
	mu, ok := h.busy.Load(cl)
	if !ok {
		mu, _ = h.busy.LoadOrStore(cl, &sync.Mutex{})
	}
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	resp := devices.Response{}
	req, err := devices.DecodeRequest(pk.Payload)
	if err == nil {
		resp.ID = req.ID
		var result any
		result, err = h.hub.HandleRequest(ctx, c.id, req)
		if err == nil && result != nil {
			resp.Result, err = json.Marshal(result)
		}
	} else {
		resp.ID = salvageID(pk.Payload)
		err = hubDecodeError(err)
	}
	if err != nil {
		resp.Error = errorBody(err)
		if resp.Error.Code == hub.EInternal {
			h.log.Error("device request failed", "device", c.id.DeviceID, "op", req.Op, "error", err)
		}
	} else {
		resp.OK = true
	}
	b, _ := json.Marshal(resp)
	topic := devices.ResponseTopic(c.id.DeviceID)
	out := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic,
		Payload:     b,
		PacketID:    1, // mochi never acknowledges the inline client's publishes, but validates the ID
	}
	if rt := pk.Properties.ResponseTopic; ownResponseTopic(c.id, rt) {
		out.TopicName = rt
	}
	out.Properties.CorrelationData = pk.Properties.CorrelationData
	if err := h.srv.InjectPacket(h.inline, out); err != nil {
		h.log.Warn("send response", "device", c.id.DeviceID, "error", err)
	}
}

// ownResponseTopic says whether an MQTT 5 Response Topic the device chose may carry its
// answer: a topic name (no wildcards) under its own devices/{self}/ that it may subscribe
// to. Being allowed to subscribe is not enough: a bound controller may subscribe to its
// account's accounts/{account}/… topics, and an answer there would reach every controller of
// the account.
func ownResponseTopic(id devices.Identity, rt string) bool {
	return rt != "" && strings.HasPrefix(rt, devices.DevicesPrefix+"/"+id.DeviceID+"/") &&
		devices.ValidTopicName(rt) == nil && devices.AuthorizeSubscribe(id, rt) == nil
}

// OnSessionEstablish closes the connection that a device reconnecting over MQTT 3.1.1 leaves
// behind, just before mochi takes its session over. mochi would first send that connection
// DISCONNECT 0x8E, which MQTT 3.1.1 lets only clients send [MQTT-3.14]; 3.1.1 asks the
// server to close it [MQTT-3.1.4-2], and a client that gets a packet it cannot parse may
// report a protocol error instead of a lost connection. The session itself is taken over as
// before (mochi finds the old client, now closed); MQTT 5 connections still get 0x8E.
func (h *authHook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if old, ok := h.srv.Clients.Get(cl.ID); ok && old != cl && !old.Net.Inline && old.Properties.ProtocolVersion < 5 {
		old.Stop(packets.ErrSessionTakenOver)
	}
}

func (h *authHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	c := h.connOf(cl)
	if c == nil || c.anonymous || h.hub == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	h.hub.DeviceOnline(ctx, c.id.DeviceID, true)
}

func (h *authHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	h.stopAcker(cl) // ingest.go
	h.busy.Delete(cl)
	v, ok := h.conns.Load(cl.ID)
	if !ok {
		return
	}
	c := v.(*conn)
	if c.cl != cl {
		return // a newer connection of the same device owns the entry now
	}
	if expire {
		h.conns.CompareAndDelete(cl.ID, c)
	}
	if c.anonymous || h.hub == nil {
		return
	}
	// A takeover by the same device (a reconnect) is not going offline.
	if cur, ok := h.srv.Clients.Get(cl.ID); ok && cur != cl && !cur.Closed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	h.hub.DeviceOnline(ctx, c.id.DeviceID, false)
}

// errorBody maps a hub error to the response's error (internal errors show no detail).
func errorBody(err error) *devices.ErrorBody {
	if e := hub.AsError(err); e != nil && e.Code != hub.EInternal {
		return &devices.ErrorBody{Code: e.Code, Message: e.Message, Field: e.Field, CurrentVersion: e.CurrentVersion}
	}
	return &devices.ErrorBody{Code: hub.EInternal, Message: "internal error"}
}

func hubDecodeError(err error) error {
	var de *devices.DecodeError
	if errors.As(err, &de) {
		return &hub.Error{Code: hub.EInvalid, Field: de.Field, Message: de.Message, Err: err}
	}
	return &hub.Error{Code: hub.EInvalid, Message: err.Error(), Err: err}
}

// salvageID recovers the request ID from a request that failed to decode, so the device can
// match the error to its request.
func salvageID(b []byte) string {
	var v struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(b, &v) != nil || len(v.ID) > 64 {
		return ""
	}
	return v.ID
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func (h *authHook) OnClientExpired(cl *mqtt.Client) { h.forget(cl.ID) }
