package broker_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/devicehub/devicehub/internal/mqttwire"
)

// benchClient is one load client's connection: it publishes at QoS 1 and hands every
// message it receives to the handler it was connected with.
type benchClient interface {
	// publish sends one QoS 1 message; done is called once, with whether the broker
	// acknowledged it.
	publish(topic string, payload []byte, done func(acked bool))
	// close disconnects; the test's clean-up also does.
	close()
}

// benchConnect connects a load client to url (tcp://host:port), subscribed to filter at
// QoS 1 when filter is not empty. BENCH_CLIENT=paho uses paho (the client of
// ../shared/figures.md); the default is wireClient, a minimal MQTT 3.1.1 client, so that on a
// 2-core box the load clients take less of the CPU the brokers are measured on. Either way
// both brokers get the same client.
func benchConnect(b testing.TB, url, id, user, pass, filter string, onMsg func(topic string, payload []byte)) benchClient {
	b.Helper()
	if os.Getenv("BENCH_CLIENT") == "paho" {
		c := pahoConnect(b, url, id, user, pass, nil)
		if filter != "" {
			tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { onMsg(m.Topic(), m.Payload()) })
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				b.Fatalf("subscribe %s: %v", id, tok.Error())
			}
		}
		return pahoClient{c}
	}
	c := wireConnect(b, strings.TrimPrefix(url, "tcp://"), id, user, pass, onMsg)
	if filter != "" {
		c.subscribe(b, filter)
	}
	return c
}

type pahoClient struct{ paho.Client }

func (p pahoClient) close() { p.Disconnect(0) }

func (p pahoClient) publish(topic string, payload []byte, done func(bool)) {
	tok := p.Publish(topic, 1, false, payload)
	go func() { done(tok.WaitTimeout(30*time.Second) && tok.Error() == nil) }()
}

// wireClient speaks just enough MQTT 3.1.1 for the load: CONNECT, one SUBSCRIBE, QoS 1
// PUBLISH out with its PUBACK, and PUBLISH in (acknowledged, the PUBACKs of one read
// written together).
type wireClient struct {
	conn  net.Conn
	onMsg func(topic string, payload []byte)

	wmu  sync.Mutex
	wbuf []byte

	mu      sync.Mutex
	pending map[uint16]func(bool)
	nextID  uint16
	suback  chan struct{}
	readErr error
	closed  sync.Once
}

func wireConnect(b testing.TB, addr, id, user, pass string, onMsg func(string, []byte)) *wireClient {
	b.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	flags := byte(0x02) // clean session
	payload := mqttwire.Str(id)
	if user != "" {
		flags |= 0x80 | 0x40
		payload = append(append(payload, mqttwire.Str(user)...), mqttwire.Str(pass)...)
	}
	connect := mqttwire.Frame(0x10, mqttwire.Str("MQTT"), []byte{4, flags, 0, 60}, payload)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(connect); err != nil {
		b.Fatal(err)
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	hdr, body, err := mqttwire.ReadPacket(r)
	if err != nil || hdr != 0x20 || len(body) < 2 || body[1] != 0 {
		b.Fatalf("connect %s: CONNACK %#x %v, %v", id, hdr, body, err)
	}
	_ = conn.SetDeadline(time.Time{})
	c := &wireClient{conn: conn, onMsg: onMsg, pending: map[uint16]func(bool){}, suback: make(chan struct{}, 1)}
	go c.read(r)
	b.Cleanup(c.close)
	return c
}

func (c *wireClient) close() {
	c.closed.Do(func() {
		c.write([]byte{0xe0, 0}) // DISCONNECT
		c.conn.Close()
	})
}

func (c *wireClient) subscribe(b testing.TB, filter string) {
	b.Helper()
	c.write(mqttwire.Frame(0x82, []byte{0, 1}, mqttwire.Str(filter), []byte{1}))
	select {
	case <-c.suback:
	case <-time.After(10 * time.Second):
		b.Fatalf("no SUBACK for %s", filter)
	}
}

func (c *wireClient) write(p []byte) {
	c.wmu.Lock()
	_, _ = c.conn.Write(p)
	c.wmu.Unlock()
}

func (c *wireClient) publish(topic string, payload []byte, done func(bool)) {
	c.mu.Lock()
	if c.readErr != nil {
		c.mu.Unlock()
		done(false)
		return
	}
	for {
		c.nextID++
		if _, used := c.pending[c.nextID]; c.nextID != 0 && !used {
			break
		}
	}
	pid := c.nextID
	c.pending[pid] = done
	c.mu.Unlock()

	c.wmu.Lock()
	n := 2 + len(topic) + 2 + len(payload)
	w := append(c.wbuf[:0], 0x32)
	for { // remaining length
		d := byte(n % 128)
		if n /= 128; n > 0 {
			d |= 0x80
		}
		w = append(w, d)
		if n == 0 {
			break
		}
	}
	w = binary.BigEndian.AppendUint16(w, uint16(len(topic)))
	w = append(w, topic...)
	w = binary.BigEndian.AppendUint16(w, pid)
	w = append(w, payload...)
	c.wbuf = w
	_, _ = c.conn.Write(w)
	c.wmu.Unlock()
}

// read handles what the broker sends until the connection ends, then fails what is still
// unacknowledged.
func (c *wireClient) read(r *bufio.Reader) {
	var acks []byte
	var err error
	for {
		var hdr byte
		var body []byte
		if hdr, body, err = mqttwire.ReadPacket(r); err != nil {
			break
		}
		switch hdr >> 4 {
		case 4: // PUBACK
			if len(body) >= 2 {
				pid := binary.BigEndian.Uint16(body)
				c.mu.Lock()
				done := c.pending[pid]
				delete(c.pending, pid)
				c.mu.Unlock()
				if done != nil {
					done(true)
				}
			}
		case 3: // PUBLISH
			if len(body) < 2 {
				continue
			}
			tl := int(binary.BigEndian.Uint16(body))
			if len(body) < 2+tl {
				continue
			}
			topic, rest := string(body[2:2+tl]), body[2+tl:]
			if qos := hdr >> 1 & 3; qos > 0 && len(rest) >= 2 {
				acks = append(acks, 0x40, 2, rest[0], rest[1])
				rest = rest[2:]
			}
			if c.onMsg != nil {
				c.onMsg(topic, rest)
			}
		case 9: // SUBACK
			select {
			case c.suback <- struct{}{}:
			default:
			}
		}
		// PUBACKs for everything this read brought in go out in one write.
		if len(acks) > 0 && r.Buffered() == 0 {
			c.write(acks)
			acks = acks[:0]
		}
	}
	if err == nil {
		err = io.EOF
	}
	c.mu.Lock()
	c.readErr = fmt.Errorf("read: %w", err)
	pending := c.pending
	c.pending = map[uint16]func(bool){}
	c.mu.Unlock()
	for _, done := range pending {
		done(false)
	}
}
