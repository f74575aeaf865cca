package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
)

// ErrFrameTooLarge closes a connection that declared a packet larger than allowed.
var ErrFrameTooLarge = errors.New("mqtt packet exceeds the size limit")

// ErrFrameMalformed closes a connection whose byte stream is not well-formed MQTT.
var ErrFrameMalformed = errors.New("malformed mqtt frame")

const (
	// guardInitialBuf is the read-ahead a connection starts with; it grows to the largest
	// frame in progress (never past the size limits).
	guardInitialBuf = 4096
	// guardKeepBuf is the largest buffer kept once drained: a connection that sent one big
	// frame does not hold on to it while idle.
	guardKeepBuf = 64 * 1024
)

// guardedConn sits between a client's connection and mochi's decoder. It reads the MQTT
// framing of everything the client sends and releases a frame's bytes to mochi only after
// the frame passed validateFrame:
//
//   - A frame is refused from its declared length, before any of its body is buffered: mochi
//     would otherwise allocate whatever a client declares. The first frame (CONNECT, not yet
//     authenticated) gets a much smaller limit than the rest.
//   - A frame is buffered whole (bounded by those limits) and its structure checked against
//     the spec, so mochi never decodes a frame it could index past the end of (#501).
//   - A PUBLISH is released once its variable header (topic, packet identifier, properties)
//     checks out; its payload, which mochi copies without interpreting, streams through.
//
// The protocol level comes from the CONNECT. Read is only called by the one goroutine that
// decodes the connection, so the state needs no lock.
type guardedConn struct {
	net.Conn
	firstLimit int
	limit      int
	onReject   func(reason string)

	version byte   // protocol level of the CONNECT; 0 until it passed
	buf     []byte // read-ahead; buf[r:w] was read from Conn and not yet handed out
	r, w    int
	ready   int   // buf[r:r+ready] is validated
	pass    int   // PUBLISH payload bytes still to come, released unexamined
	need    int   // bytes from r the frame in progress needs before it can be checked
	rerr    error // read error from Conn, returned once what was read is handed out
	perr    error // rejection, raised once the frames validated before it are handed out
	err     error // the connection was rejected

	// done is closed when mochi has finished with the connection (its session clean-up
	// included), see listener.go.
	done chan struct{}
}

// finish records that mochi has returned from serving the connection.
func (g *guardedConn) finish() { close(g.done) }

func newGuard(firstLimit, limit int, onReject func(string)) func(net.Conn) net.Conn {
	return func(c net.Conn) net.Conn {
		return &guardedConn{Conn: c, firstLimit: firstLimit, limit: limit, onReject: onReject, done: make(chan struct{})}
	}
}

func (g *guardedConn) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if g.ready > 0 {
			n := copy(p, g.buf[g.r:g.r+g.ready])
			g.r += n
			g.ready -= n
			g.release()
			return n, nil
		}
		if g.perr != nil {
			return 0, g.reject(g.perr)
		}
		if g.w > g.r {
			if err := g.advance(); err != nil {
				if g.ready > 0 {
					g.perr = err
					continue
				}
				return 0, g.reject(err)
			}
			if g.ready > 0 {
				continue
			}
		}
		if g.rerr != nil {
			err := g.rerr
			g.rerr = nil
			var ne net.Error
			if g.version == 0 && g.onReject != nil && errors.As(err, &ne) && ne.Timeout() {
				g.onReject("connect_timeout") // no complete CONNECT in time (listener.go)
			}
			return 0, err
		}
		if g.pass > 0 && g.w == g.r {
			// The rest of a validated PUBLISH: straight into the caller's buffer.
			n, err := g.Conn.Read(p[:min(len(p), g.pass)])
			g.pass -= n
			if n > 0 {
				g.rerr = err
				return n, nil
			}
			return 0, err
		}
		g.fill()
	}
}

// reject closes the connection for good.
func (g *guardedConn) reject(err error) error {
	g.err = err
	g.buf = nil
	// Counted before the close, so whoever sees the connection closed also sees the count.
	if g.onReject != nil {
		reason := "malformed"
		if errors.Is(err, ErrFrameTooLarge) {
			reason = "too_large"
		}
		g.onReject(reason)
	}
	_ = g.Conn.Close()
	return err
}

// release drops a large buffer once everything in it was handed out.
func (g *guardedConn) release() {
	if g.r == g.w {
		g.r, g.w = 0, 0
		if len(g.buf) > guardKeepBuf {
			g.buf = nil
		}
	}
}

// fill reads from Conn into the buffer, first making room for the frame in progress.
func (g *guardedConn) fill() {
	if g.r > 0 {
		g.w = copy(g.buf, g.buf[g.r:g.w])
		g.r = 0
	}
	if size := max(g.need, guardInitialBuf); len(g.buf) < size {
		if len(g.buf) > 0 {
			size = max(size, min(2*len(g.buf), g.limit))
		}
		nb := make([]byte, size)
		copy(nb, g.buf[:g.w])
		g.buf = nb
	}
	n, err := g.Conn.Read(g.buf[g.w:])
	g.w += n
	g.rerr = err
}

// advance validates the frames complete in buf[r+ready:w], moving them to ready.
func (g *guardedConn) advance() error {
	for {
		u := g.buf[g.r+g.ready : g.w]
		if g.pass > 0 {
			k := min(g.pass, len(u))
			g.ready += k
			g.pass -= k
			if g.pass > 0 {
				return nil
			}
			continue
		}
		if len(u) == 0 {
			g.need = 0
			return nil
		}
		typ := u[0] >> 4
		if typ == 0 { // packet type 0 is reserved [MQTT-2.1.2]
			return fmt.Errorf("%w: reserved packet type 0", ErrFrameMalformed)
		}
		if g.version == 0 && typ != pktConnect {
			return fmt.Errorf("%w: first packet must be CONNECT, got type %d [MQTT-3.1.0-1]", ErrFrameMalformed, typ)
		}
		rem, vn, ok, complete := varint(u[1:])
		if !complete {
			g.need = 1 + vn + 1
			return nil
		}
		if !ok { // at most four bytes, minimally encoded [MQTT-1.5.5-1]
			return fmt.Errorf("%w: remaining length is not a valid variable byte integer", ErrFrameMalformed)
		}
		limit := g.limit
		if g.version == 0 {
			limit = g.firstLimit
		}
		hl := 1 + vn
		if total := hl + rem; total > limit {
			return fmt.Errorf("%w: %d bytes declared, %d allowed", ErrFrameTooLarge, total, limit)
		}
		body := u[hl:]
		if typ == pktPublish {
			v5 := g.version == 5
			n, done, err := publishHeaderLen(u[0], body, rem, v5)
			if err != nil {
				return err
			}
			if !done {
				g.need = hl + n
				return nil
			}
			if err := validatePublishHeader(u[0], body[:n], v5); err != nil {
				return err
			}
			g.ready += hl + n
			g.pass = rem - n
			continue
		}
		if len(body) < rem {
			g.need = hl + rem
			return nil
		}
		if err := validateControl(g.version, u[0], body[:rem]); err != nil {
			return err
		}
		if typ == pktConnect { // validated: name length, name, then the level
			g.version = body[2+int(binary.BigEndian.Uint16(body))]
		}
		g.ready += hl + rem
	}
}
