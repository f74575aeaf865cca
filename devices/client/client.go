// Package client is the device side of devicehub's MQTT protocol, for phone apps, firmware
// written in Go, the simulator and tests. It wraps github.com/eclipse/paho.mqtt.golang
// (MQTT 3.1.1 or 3.1) and speaks the topic scheme and payloads of package devices: requests
// with correlated responses, telemetry, and the command channel.
//
// Every call that waits on the network takes a context and returns when it is done; nothing
// waits forever.
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/devicehub/devicehub/devices"
)

// ErrNotAuthorized is returned (wrapped) by Connect when the broker refuses the credentials
// (CONNACK 4 or 5).
var ErrNotAuthorized = errors.New("not authorized")

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("client closed")

// Options configure a Client.
type Options struct {
	// Broker is the broker URL: tcp://host:port, ssl://host:port, ws://host:port/mqtt or
	// wss://host:port/mqtt.
	Broker string
	// DeviceID is the device's ID; it is the MQTT client ID and username.
	DeviceID string
	// Secret is the device's secret, sent as the MQTT password. When it is empty the client
	// connects without username and password: the anonymous login a hub accepts only with
	// broker.allow_anonymous, for local experiments and tests.
	Secret string
	// CleanSession starts a fresh session; false resumes the broker's stored session, so
	// QoS 1 commands sent while the device was away are delivered.
	CleanSession bool
	// ProtocolVersion is 4 (MQTT 3.1.1, the default) or 3 (MQTT 3.1).
	ProtocolVersion uint
	// ConnectTimeout bounds the connection attempt (default 10s); ctx can cut it shorter.
	ConnectTimeout time.Duration
	// CommandBuffer is how many commands Commands() holds before new ones are dropped
	// (default 64).
	CommandBuffer int
	// Logger receives the client's warnings (default: discard).
	Logger *slog.Logger
}

// RemoteError is a request the hub answered with ok=false.
type RemoteError struct {
	Code    string
	Message string
	Field   string
	// CurrentVersion comes with stale_version: the version to write against.
	CurrentVersion *int64
}

func (e *RemoteError) Error() string {
	s := "hub: " + e.Code
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Field != "" {
		s += " (field " + e.Field + ")"
	}
	return s
}

// Client is a connected device. Its methods are safe for concurrent use.
type Client struct {
	c    mqtt.Client
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	pending  map[string]chan devices.Response
	commands chan devices.Command
	closed   bool
	// subs are the filters Subscribe was granted, subscribed again after paho reconnects:
	// a clean session comes back without them (a phone's sync topic among them).
	subs map[string]subscription
}

type subscription struct {
	qos     byte
	handler mqtt.MessageHandler
}

// Connect connects to the broker as opts.DeviceID and subscribes to the device's response and
// command topics (QoS 1). It returns an error wrapping ErrNotAuthorized when the broker
// refuses the credentials.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	if err := devices.ValidIdentifier(opts.DeviceID); err != nil {
		return nil, fmt.Errorf("device id: %w", err)
	}
	if opts.ProtocolVersion == 0 {
		opts.ProtocolVersion = 4
	}
	if opts.ProtocolVersion != 3 && opts.ProtocolVersion != 4 {
		return nil, fmt.Errorf("protocol version %d: paho speaks MQTT 3.1 (3) and 3.1.1 (4)", opts.ProtocolVersion)
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.CommandBuffer <= 0 {
		opts.CommandBuffer = 64
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cl := &Client{
		opts:     opts,
		log:      log.With("device", opts.DeviceID),
		pending:  make(map[string]chan devices.Response),
		commands: make(chan devices.Command, opts.CommandBuffer),
	}
	resTopic, cmdTopic := devices.ResponseTopic(opts.DeviceID), devices.CommandTopic(opts.DeviceID)
	po := mqtt.NewClientOptions().
		AddBroker(opts.Broker).
		SetClientID(opts.DeviceID).
		SetCleanSession(opts.CleanSession).
		SetProtocolVersion(opts.ProtocolVersion).
		SetConnectTimeout(opts.ConnectTimeout).
		SetConnectRetry(false).
		// Reconnecting after the first connection is paho's job; OnConnect resubscribes.
		SetAutoReconnect(true).
		SetMaxReconnectInterval(30 * time.Second).
		SetOrderMatters(false).
		// Messages of a resumed session can arrive before Subscribe registers its handler;
		// the default handler routes our own two topics whenever they arrive.
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			switch m.Topic() {
			case resTopic:
				cl.onResponse(m)
			case cmdTopic:
				cl.onCommand(m)
			}
		})
	if opts.Secret != "" {
		po.SetUsername(opts.DeviceID).SetPassword(opts.Secret)
	}
	first := true
	var firstMu sync.Mutex
	po.SetOnConnectHandler(func(c mqtt.Client) {
		firstMu.Lock()
		isFirst := first
		first = false
		firstMu.Unlock()
		if isFirst {
			return // Connect subscribes itself, so it can report failure
		}
		ctx, cancel := context.WithTimeout(context.Background(), opts.ConnectTimeout)
		defer cancel()
		if err := cl.subscribeOwn(ctx, c); err != nil {
			cl.log.Warn("resubscribe after reconnect failed", "err", err)
		}
		cl.mu.Lock()
		subs := maps.Clone(cl.subs)
		cl.mu.Unlock()
		for filter, sub := range subs {
			tok := c.Subscribe(filter, sub.qos, sub.handler)
			if err := wait(ctx, tok); err != nil {
				cl.log.Warn("resubscribe after reconnect failed", "filter", filter, "err", err)
			} else if err := subackErr(tok); err != nil {
				cl.log.Warn("resubscribe after reconnect refused", "filter", filter, "err", err)
			}
		}
	})
	cl.c = mqtt.NewClient(po)

	if err := wait(ctx, cl.c.Connect()); err != nil {
		cl.c.Disconnect(0)
		if errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
			return nil, fmt.Errorf("connect %s as %s: %w: %w", opts.Broker, opts.DeviceID, ErrNotAuthorized, err)
		}
		return nil, fmt.Errorf("connect %s as %s: %w", opts.Broker, opts.DeviceID, err)
	}
	if err := cl.subscribeOwn(ctx, cl.c); err != nil {
		cl.c.Disconnect(0)
		return nil, err
	}
	return cl, nil
}

func (cl *Client) subscribeOwn(ctx context.Context, c mqtt.Client) error {
	filters := map[string]byte{
		devices.ResponseTopic(cl.opts.DeviceID): 1,
		devices.CommandTopic(cl.opts.DeviceID):  1,
	}
	tok := c.SubscribeMultiple(filters, func(_ mqtt.Client, m mqtt.Message) {
		if m.Topic() == devices.ResponseTopic(cl.opts.DeviceID) {
			cl.onResponse(m)
		} else {
			cl.onCommand(m)
		}
	})
	if err := wait(ctx, tok); err != nil {
		return fmt.Errorf("subscribe to own topics: %w", err)
	}
	return subackErr(tok)
}

// wait waits for a paho token or ctx, whichever comes first.
func wait(ctx context.Context, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// subackErr turns failure codes in a SUBACK (0x80 and above; MQTT 3.1.1 only has 0x80) into
// an error: paho reports them as a granted "QoS" rather than as an error.
func subackErr(tok mqtt.Token) error {
	st, ok := tok.(*mqtt.SubscribeToken)
	if !ok {
		return nil
	}
	for filter, code := range st.Result() {
		if code >= 0x80 {
			return &SubscribeError{Filter: filter, Code: code}
		}
	}
	return nil
}

// SubscribeError is a subscription the broker refused.
type SubscribeError struct {
	Filter string
	Code   byte // the SUBACK return code (0x80 for MQTT 3.1.1)
}

func (e *SubscribeError) Error() string {
	return fmt.Sprintf("subscribe %q refused by the broker (code 0x%02x)", e.Filter, e.Code)
}

func (cl *Client) onResponse(m mqtt.Message) {
	var r devices.Response
	if err := json.Unmarshal(m.Payload(), &r); err != nil {
		cl.log.Warn("undecodable response", "err", err)
		return
	}
	cl.mu.Lock()
	ch, ok := cl.pending[r.ID]
	delete(cl.pending, r.ID)
	cl.mu.Unlock()
	if !ok {
		// Late answers to requests that timed out, or duplicates of a QoS 1 redelivery.
		cl.log.Debug("response to no pending request", "id", r.ID)
		return
	}
	ch <- r // buffered, one slot, one sender (the entry was removed above)
}

func (cl *Client) onCommand(m mqtt.Message) {
	var c devices.Command
	if err := json.Unmarshal(m.Payload(), &c); err != nil {
		cl.log.Warn("undecodable command", "err", err)
		return
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.closed {
		return
	}
	select {
	case cl.commands <- c:
	default:
		// Blocking here would stall paho's delivery of responses too. A dropped command is
		// not acknowledged, and unacknowledged commands are the hub's to send again.
		cl.log.Warn("command buffer full; command dropped", "command", c.ID, "type", c.Type)
	}
}

// Commands returns the channel of events and commands the hub sends this device. It is
// closed by Close. Commands that ask the device to act must be acknowledged with
// Ack(ctx, cmd.ID, devices.AckAcknowledged or devices.AckFailed, detail); the channel drops
// commands when the reader falls Options.CommandBuffer behind.
func (cl *Client) Commands() <-chan devices.Command { return cl.commands }

// Ack acknowledges command cmdID with status devices.AckAcknowledged or devices.AckFailed.
func (cl *Client) Ack(ctx context.Context, cmdID, status, detail string) error {
	_, err := cl.Request(ctx, devices.OpCommandAck, devices.CommandAckArgs{CommandID: cmdID, Status: status, Detail: detail})
	return err
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Request sends op with args (anything encoding/json accepts, or nil) on the device's request
// topic at QoS 1 and waits for the matching response. It returns the result, a *RemoteError
// when the hub answered ok=false, or ctx's error when no answer came in time.
func (cl *Client) Request(ctx context.Context, op string, args any) (json.RawMessage, error) {
	req := devices.Request{ID: newRequestID(), Op: op}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return nil, fmt.Errorf("request %s: encode args: %w", op, err)
		}
		req.Args = b
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", op, err)
	}
	ch := make(chan devices.Response, 1)
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return nil, ErrClosed
	}
	cl.pending[req.ID] = ch
	cl.mu.Unlock()
	defer func() {
		cl.mu.Lock()
		delete(cl.pending, req.ID)
		cl.mu.Unlock()
	}()

	if err := wait(ctx, cl.c.Publish(devices.RequestTopic(cl.opts.DeviceID), 1, false, payload)); err != nil {
		return nil, fmt.Errorf("request %s: publish: %w", op, err)
	}
	select {
	case r := <-ch:
		if !r.OK {
			if r.Error == nil {
				return nil, &RemoteError{Code: "internal", Message: "response with ok=false and no error"}
			}
			return nil, &RemoteError{Code: r.Error.Code, Message: r.Error.Message, Field: r.Error.Field, CurrentVersion: r.Error.CurrentVersion}
		}
		return r.Result, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("request %s (id %s): no response: %w", op, req.ID, ctx.Err())
	}
}

// PublishTelemetry publishes one sample of stream: body's JSON fields plus seq and ts. body
// must encode to a JSON object (one of the devices.*Sample types, or a map). It waits for the
// broker's PUBACK.
func (cl *Client) PublishTelemetry(ctx context.Context, stream string, seq uint64, ts time.Time, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("telemetry %s: encode: %w", stream, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return fmt.Errorf("telemetry %s: body must encode to a JSON object: %w", stream, err)
	}
	if fields == nil {
		fields = map[string]json.RawMessage{}
	}
	fields["seq"], _ = json.Marshal(seq)
	fields["ts"], _ = json.Marshal(ts.UTC().Format(time.RFC3339Nano))
	payload, err := json.Marshal(fields)
	if err != nil {
		return fmt.Errorf("telemetry %s: %w", stream, err)
	}
	return cl.Publish(ctx, devices.TelemetryTopic(cl.opts.DeviceID, stream), 1, false, payload)
}

// Subscribe subscribes to filter and calls handler for each message (on paho's goroutines,
// possibly concurrently). It returns a *SubscribeError when the broker refuses the filter. A
// granted filter is subscribed again whenever the client reconnects.
func (cl *Client) Subscribe(ctx context.Context, filter string, qos byte, handler func(topic string, payload []byte)) error {
	h := func(_ mqtt.Client, m mqtt.Message) { handler(m.Topic(), m.Payload()) }
	tok := cl.c.Subscribe(filter, qos, h)
	if err := wait(ctx, tok); err != nil {
		return fmt.Errorf("subscribe %q: %w", filter, err)
	}
	if err := subackErr(tok); err != nil {
		return err
	}
	cl.mu.Lock()
	if cl.subs == nil {
		cl.subs = map[string]subscription{}
	}
	cl.subs[filter] = subscription{qos: qos, handler: h}
	cl.mu.Unlock()
	return nil
}

// Publish publishes a raw message and, for QoS 1 and 2, waits for the broker's
// acknowledgement. It does not check the topic: tests use it to try what the hub refuses.
func (cl *Client) Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error {
	if err := wait(ctx, cl.c.Publish(topic, qos, retained, payload)); err != nil {
		return fmt.Errorf("publish %q: %w", topic, err)
	}
	return nil
}

// Connected reports whether the client is connected right now.
func (cl *Client) Connected() bool { return cl.c.IsConnectionOpen() }

// Close disconnects (giving in-flight work 250ms) and closes the Commands channel. It is safe
// to call more than once.
func (cl *Client) Close() {
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return
	}
	cl.closed = true
	cl.mu.Unlock()
	cl.c.Disconnect(250)
	cl.mu.Lock()
	close(cl.commands)
	cl.mu.Unlock()
}
