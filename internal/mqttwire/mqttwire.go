// Package mqttwire builds and reads raw MQTT frames for tests that must send exactly the
// bytes a hostile or unusual client would (truncated packets, reused packet IDs, chosen
// reason codes), which no client library lets them do.
package mqttwire

import (
	"bytes"
	"io"
)

// VBI encodes n as an MQTT variable byte integer.
func VBI(n int) []byte {
	var b []byte
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

// Str encodes s as an MQTT UTF-8 string (two length bytes, then the bytes).
func Str(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

// Frame joins parts into one packet with fixed header byte hdr and its remaining length.
func Frame(hdr byte, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	return append(append([]byte{hdr}, VBI(len(body))...), body...)
}

// Props wraps MQTT 5 properties with their length.
func Props(p ...[]byte) []byte {
	b := bytes.Join(p, nil)
	return append(VBI(len(b)), b...)
}

// UserProp is an MQTT 5 user property.
func UserProp(k, v string) []byte { return append(append([]byte{0x26}, Str(k)...), Str(v)...) }

// ReadPacket reads one packet: its fixed header byte and its body.
func ReadPacket(r io.Reader) (hdr byte, body []byte, err error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, nil, err
	}
	hdr = b[0]
	n, mult := 0, 1
	for range 4 {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n += int(b[0]&0x7f) * mult
		mult *= 128
		if b[0]&0x80 == 0 {
			break
		}
	}
	body = make([]byte, n)
	_, err = io.ReadFull(r, body)
	return hdr, body, err
}
