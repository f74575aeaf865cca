package broker

import (
	"bytes"
	"context"

	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/devicehub/devicehub/devices"
)

// StateStore persists the broker's session state. The SQLite store implements it; writes are
// durable when Apply returns.
type StateStore interface {
	Apply(ctx context.Context, ops ...StateOp) error
	List(ctx context.Context, kind string) ([][]byte, error)
}

// StateOp is one put (Value non-nil) or delete (Value nil; Prefix deletes every key that
// starts with Key).
type StateOp struct {
	Key    string
	Kind   string
	Value  []byte
	Prefix bool
}

// storageHook keeps persistent sessions, subscriptions, QoS 1/2 in-flight messages and
// retained messages in our database, the way mochi's bolt/badger hooks keep them in theirs.
// Every write waits for its commit (group-committed across clients by the store), so a
// message is in the database before the publisher's PUBACK leaves.
type storageHook struct {
	mqtt.HookBase
	store   StateStore
	timeout time.Duration
	// keepRetained: broker.allow_anonymous is on, and the retained messages of clients
	// without credentials are restored at start.
	keepRetained bool
	// inflight holds the keys of the in-flight messages we stored; stored counts them, so
	// the QoS completion of every relayed entry (none of which is stored) builds no key.
	inflight sync.Map
	stored   atomic.Int64
	// dropped holds the connections whose session the hub revoked: their late disconnect
	// must not write the session back.
	dropped sync.Map
}

// forget deletes a client's persisted session now and ignores what its connection reports
// afterwards.
func (h *storageHook) forget(cl *mqtt.Client) {
	h.dropped.Store(cl, struct{}{})
	h.dropClient(cl.ID)
}

func (h *storageHook) ID() string { return "devicehub-storage" }

func (h *storageHook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnSessionEstablished,
		mqtt.OnDisconnect,
		mqtt.OnSubscribed,
		mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage,
		mqtt.OnWillSent,
		mqtt.OnQosPublish,
		mqtt.OnQosComplete,
		mqtt.OnQosDropped,
		mqtt.OnClientExpired,
		mqtt.OnRetainedExpired,
		mqtt.StoredClients,
		mqtt.StoredInflightMessages,
		mqtt.StoredRetainedMessages,
		mqtt.StoredSubscriptions,
	}, []byte{b})
}

func clientKey(id string) string      { return storage.ClientKey + "_" + id }
func subKey(id, filter string) string { return storage.SubscriptionKey + "_" + id + ":" + filter }
func retainedKey(topic string) string { return storage.RetainedKey + "_" + topic }
func inflightKey(id string, pid uint16) string {
	return storage.InflightKey + "_" + id + ":" + strconv.Itoa(int(pid))
}

func (h *storageHook) apply(ops ...StateOp) {
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	if err := h.store.Apply(ctx, ops...); err != nil {
		h.Log.Error("persist broker state", "key", ops[0].Key, "error", err)
	}
}

func put(key, kind string, v storage.Serializable) StateOp {
	b, err := v.MarshalBinary()
	if err != nil {
		// The storage types are plain JSON structs; this cannot fail for them.
		panic(fmt.Sprintf("marshal %s: %v", key, err))
	}
	return StateOp{Key: key, Kind: kind, Value: b}
}

func (h *storageHook) clientOp(cl *mqtt.Client) StateOp {
	props := cl.Properties.Props.Copy(false)
	return put(clientKey(cl.ID), storage.ClientKey, &storage.Client{
		ID:              cl.ID,
		T:               storage.ClientKey,
		Remote:          cl.Net.Remote,
		Listener:        cl.Net.Listener,
		Username:        cl.Properties.Username,
		Clean:           cl.Properties.Clean,
		ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval:     props.SessionExpiryInterval,
			SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			AuthenticationMethod:      props.AuthenticationMethod,
			AuthenticationData:        props.AuthenticationData,
			RequestProblemInfo:        props.RequestProblemInfo,
			RequestProblemInfoFlag:    props.RequestProblemInfoFlag,
			RequestResponseInfo:       props.RequestResponseInfo,
			ReceiveMaximum:            props.ReceiveMaximum,
			TopicAliasMaximum:         props.TopicAliasMaximum,
			User:                      props.User,
			MaximumPacketSize:         props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	})
}

func (h *storageHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.apply(h.clientOp(cl))
}

func (h *storageHook) OnWillSent(cl *mqtt.Client, _ packets.Packet) {
	h.apply(h.clientOp(cl))
}

func (h *storageHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if cl.Net.Inline {
		return
	}
	if _, ok := h.dropped.LoadAndDelete(cl); ok {
		return
	}
	if !expire {
		h.apply(h.clientOp(cl))
		return
	}
	if errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) {
		return
	}
	h.dropClient(cl.ID)
}

func (h *storageHook) OnClientExpired(cl *mqtt.Client) { h.dropClient(cl.ID) }

// dropClient forgets a session with everything that belongs to it.
func (h *storageHook) dropClient(id string) {
	h.apply(
		StateOp{Key: clientKey(id)},
		StateOp{Key: storage.SubscriptionKey + "_" + id + ":", Prefix: true},
		StateOp{Key: storage.InflightKey + "_" + id + ":", Prefix: true},
	)
}

func (h *storageHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	ops := make([]StateOp, 0, len(pk.Filters))
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= 0x80 {
			continue // refused filters are not part of the session
		}
		ops = append(ops, put(subKey(cl.ID, f.Filter), storage.SubscriptionKey, &storage.Subscription{
			ID: subKey(cl.ID, f.Filter), T: storage.SubscriptionKey, Client: cl.ID, Qos: codes[i],
			Filter: f.Filter, Identifier: f.Identifier, NoLocal: f.NoLocal,
			RetainHandling: f.RetainHandling, RetainAsPublished: f.RetainAsPublished,
		}))
	}
	if len(ops) > 0 {
		h.apply(ops...)
	}
}

func (h *storageHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	ops := make([]StateOp, 0, len(pk.Filters))
	for _, f := range pk.Filters {
		ops = append(ops, StateOp{Key: subKey(cl.ID, f.Filter)})
	}
	if len(ops) > 0 {
		h.apply(ops...)
	}
}

func message(id, kind string, cl *mqtt.Client, pk packets.Packet, sent int64) *storage.Message {
	props := pk.Properties.Copy(false)
	return &storage.Message{
		ID: id, T: kind, Client: cl.ID, Origin: pk.Origin, PacketID: pk.PacketID,
		FixedHeader: pk.FixedHeader, TopicName: pk.TopicName, Payload: pk.Payload,
		Sent: sent, Created: pk.Created,
		Properties: storage.MessageProperties{
			PayloadFormat: props.PayloadFormat, PayloadFormatFlag: props.PayloadFormatFlag,
			MessageExpiryInterval: props.MessageExpiryInterval, ContentType: props.ContentType,
			ResponseTopic: props.ResponseTopic, CorrelationData: props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier, TopicAlias: props.TopicAlias,
			User: props.User,
		},
	}
}

func (h *storageHook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if r == -1 {
		h.apply(StateOp{Key: retainedKey(pk.TopicName)})
		return
	}
	h.apply(put(retainedKey(pk.TopicName), storage.RetainedKey, message(retainedKey(pk.TopicName), storage.RetainedKey, cl, pk, 0)))
}

func (h *storageHook) OnRetainedExpired(topic string) { h.apply(StateOp{Key: retainedKey(topic)}) }

func (h *storageHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, _ int) {
	// mochi records our own PUBACK to an inbound QoS 1 publish as in flight and completes it
	// right after sending it: persisting that would cost two commits per message for nothing.
	if cl.Net.Inline || pk.FixedHeader.Type == packets.Puback || !persistable(pk.TopicName) {
		return
	}
	k := inflightKey(cl.ID, pk.PacketID)
	h.remember(k)
	h.apply(put(k, storage.InflightKey, message(k, storage.InflightKey, cl, pk, sent)))
}

// persistable says whether an in-flight message to a client is written to the database.
// The hub's own messages to a device are not: its commands topic carries secrets (the
// binding secret in "bound", link keys in "paired") and its response topic bind codes, which
// must not sit in plain text in the database, and neither needs the broker's copy to survive
// a restart. The hub's store is their queue: owner commands, settings and pairing notices
// are sent again from it each time the device subscribes; a lost response is a request to
// send again, and a lost "bound" a binding to repeat (binding again to the same account
// issues a new secret). Sync entries are not persisted here either (relay.go). So nothing
// of the hub's topic trees (devices/…, accounts/…, an MQTT 5 response topic included) is
// persisted; other topics are (anonymous experiments).
func persistable(topic string) bool {
	return !strings.HasPrefix(topic, devices.DevicesPrefix+"/") && !strings.HasPrefix(topic, devices.AccountsPrefix+"/")
}

func (h *storageHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	h.forgetInflight(cl.ID, pk.PacketID)
}

func (h *storageHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	h.forgetInflight(cl.ID, pk.PacketID)
}

// remember records that the in-flight message under key k is stored.
func (h *storageHook) remember(k string) {
	if _, loaded := h.inflight.LoadOrStore(k, struct{}{}); !loaded {
		h.stored.Add(1)
	}
}

// forgetInflight deletes a stored in-flight message. Only keys we stored are deleted: mochi
// also completes its own PUBACKs, which we never stored, and a commit for each of those would
// sit on the publish path.
func (h *storageHook) forgetInflight(client string, pid uint16) {
	if h.stored.Load() == 0 {
		return
	}
	k := inflightKey(client, pid)
	if _, ok := h.inflight.LoadAndDelete(k); ok {
		h.stored.Add(-1)
		h.apply(StateOp{Key: k})
	}
}

func list[T any, PT interface {
	*T
	storage.Serializable
}](h *storageHook, kind string) ([]T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raw, err := h.store.List(ctx, kind)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(raw))
	for _, b := range raw {
		var v T
		if err := PT(&v).UnmarshalBinary(b); err != nil {
			return nil, fmt.Errorf("decode stored %s: %w", kind, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func (h *storageHook) StoredClients() ([]storage.Client, error) {
	return list[storage.Client](h, storage.ClientKey)
}
func (h *storageHook) StoredSubscriptions() ([]storage.Subscription, error) {
	return list[storage.Subscription](h, storage.SubscriptionKey)
}

// StoredRetainedMessages restores the retained messages of clients without credentials when
// broker.allow_anonymous is on (devices never leave any, limits.go). Otherwise it restores
// none and deletes what is stored (by an older version, or by an experiment with
// allow_anonymous), so no retained state survives into a hub whose clients are all devices.
func (h *storageHook) StoredRetainedMessages() ([]storage.Message, error) {
	if h.keepRetained {
		return list[storage.Message](h, storage.RetainedKey)
	}
	// Read, not decoded: what is there is deleted whatever it holds, and a start with
	// nothing stored costs no commit.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stored, err := h.store.List(ctx, storage.RetainedKey)
	if err != nil {
		return nil, err
	}
	if len(stored) > 0 {
		h.apply(StateOp{Key: storage.RetainedKey + "_", Prefix: true})
	}
	return nil, nil
}

// StoredInflightMessages restores the in-flight messages this version persists and deletes
// any of the hub's own (devices/…, accounts/…) that an older version wrote: those may carry a
// binding secret, a link key or a bind code, which must not stay at rest in plain text, and
// the hub's store sends what still matters again (see persistable).
func (h *storageHook) StoredInflightMessages() ([]storage.Message, error) {
	msgs, err := list[storage.Message](h, storage.InflightKey)
	if err != nil {
		return nil, err
	}
	kept := msgs[:0]
	var purge []StateOp
	for _, m := range msgs {
		if !persistable(m.TopicName) {
			purge = append(purge, StateOp{Key: m.ID})
			continue
		}
		h.remember(m.ID)
		kept = append(kept, m)
	}
	if len(purge) > 0 {
		h.apply(purge...)
		h.Log.Info("deleted in-flight messages of the hub's topics stored by an older version", "count", len(purge))
	}
	return kept, nil
}
