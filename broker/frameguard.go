package broker

import (
	"errors"
	"fmt"
	"net"
)

// ErrFrameTooLarge closes a connection that declared a packet larger than allowed.
var ErrFrameTooLarge = errors.New("mqtt packet exceeds the size limit")

// ErrFrameMalformed closes a connection whose byte stream is not MQTT framing.
var ErrFrameMalformed = errors.New("malformed mqtt frame")

// guardedConn reads the MQTT framing (fixed header and remaining length) of everything a client
// sends, below mochi's decoder. It refuses a frame from its declared length, before any of the
// body is buffered: mochi would otherwise allocate whatever a client declares. The first
// frame (CONNECT, not yet authenticated) gets a much smaller limit than the rest.
type guardedConn struct {
	net.Conn
	firstLimit int
	limit      int
	onReject   func(reason string)

	frames    int // frames fully seen
	state     int // 0: header byte, 1: length bytes, 2: body
	length    int
	mult      int
	lenBytes  int
	remaining int
	err       error
}

func newGuard(firstLimit, limit int, onReject func(string)) func(net.Conn) net.Conn {
	return func(c net.Conn) net.Conn {
		return &guardedConn{Conn: c, firstLimit: firstLimit, limit: limit, onReject: onReject}
	}
}

func (g *guardedConn) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.Conn.Read(p)
	if n > 0 {
		if ferr := g.scan(p[:n]); ferr != nil {
			g.err = ferr
			_ = g.Conn.Close()
			if g.onReject != nil {
				reason := "malformed"
				if errors.Is(ferr, ErrFrameTooLarge) {
					reason = "too_large"
				}
				g.onReject(reason)
			}
			return 0, ferr
		}
	}
	return n, err
}

// scan advances the framing state machine over b.
func (g *guardedConn) scan(b []byte) error {
	for len(b) > 0 {
		switch g.state {
		case 0:
			if b[0]>>4 == 0 { // packet type 0 is reserved [MQTT-2.1.2]
				return fmt.Errorf("%w: reserved packet type 0", ErrFrameMalformed)
			}
			g.state, g.length, g.mult, g.lenBytes = 1, 0, 1, 0
			b = b[1:]
		case 1:
			c := b[0]
			b = b[1:]
			g.length += int(c&0x7f) * g.mult
			g.mult *= 128
			g.lenBytes++
			if c&0x80 != 0 {
				if g.lenBytes == 4 { // a remaining length has at most four bytes [MQTT-1.5.5]
					return fmt.Errorf("%w: remaining length longer than four bytes", ErrFrameMalformed)
				}
				continue
			}
			limit := g.limit
			if g.frames == 0 {
				limit = g.firstLimit
			}
			if total := 1 + g.lenBytes + g.length; total > limit {
				return fmt.Errorf("%w: %d bytes declared, %d allowed", ErrFrameTooLarge, total, limit)
			}
			g.remaining = g.length
			g.state = 2
			if g.remaining == 0 {
				g.frames++
				g.state = 0
			}
		case 2:
			k := min(len(b), g.remaining)
			g.remaining -= k
			b = b[k:]
			if g.remaining == 0 {
				g.frames++
				g.state = 0
			}
		}
	}
	return nil
}
