package broker

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// The frame validator checks the structure of every control packet a client sends against
// MQTT 3.1.1 and MQTT 5 before mochi's decoder sees it. mochi's decoders trust parts of the
// frame (a v5 SUBSCRIBE filter with no options byte indexes past the end of the buffer and
// kills the process, upstream issue #501), so the guard only releases a frame whose every
// field fits. It is stricter than mochi: whatever it accepts, mochi decodes without error
// (except the AUTH forms mochi does not implement), so a malformed frame closes only the
// connection that sent it. Nothing here allocates unless a frame is rejected.

// Limits the spec leaves open; both are far above what a device sends.
const (
	// maxUserProperties bounds the user properties of one packet (and of a will): mochi keeps
	// each in a slice and echoes them in SUBACK/UNSUBACK.
	maxUserProperties = 64
	// maxTopicLevels bounds the levels of a topic name or filter: mochi's topic tree walks a
	// topic in time quadratic in its levels (isolateParticle rescans from the start), so a
	// 256 KiB filter of "a/a/a/..." would cost seconds of CPU per packet.
	maxTopicLevels = 128
)

// MQTT control packet types [MQTT-2.1.2].
const (
	pktConnect     = 1
	pktConnack     = 2
	pktPublish     = 3
	pktPuback      = 4
	pktPubrec      = 5
	pktPubrel      = 6
	pktPubcomp     = 7
	pktSubscribe   = 8
	pktSuback      = 9
	pktUnsubscribe = 10
	pktUnsuback    = 11
	pktPingreq     = 12
	pktPingresp    = 13
	pktDisconnect  = 14
	pktAuth        = 15
)

// malformed builds the rejection error (only on the reject path, so the hot path stays
// allocation-free).
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrFrameMalformed}, args...)...)
}

// validateFrame checks one complete control packet: hdr is its first byte, body the
// remaining bytes (exactly the declared remaining length). version is the protocol level
// from the client's CONNECT (3, 4 or 5), or 0 while no CONNECT has been seen.
func validateFrame(version, hdr byte, body []byte) error {
	if version != 0 && version != 3 && version != 4 && version != 5 {
		return malformed("protocol level %d", version)
	}
	if hdr>>4 == pktPublish {
		if version == 0 {
			return malformed("first packet must be CONNECT [MQTT-3.1.0-1]")
		}
		n, done, err := publishHeaderLen(hdr, body, len(body), version == 5)
		if err != nil {
			return err
		}
		if !done {
			return malformed("PUBLISH variable header exceeds the packet")
		}
		return validatePublishHeader(hdr, body[:n], version == 5)
	}
	return validateControl(version, hdr, body)
}

// validateControl checks every packet type except PUBLISH, which the guard validates from
// its variable header alone (see publishHeaderLen).
func validateControl(version, hdr byte, body []byte) error {
	typ, flags := hdr>>4, hdr&0x0f
	if version == 0 {
		if typ != pktConnect {
			return malformed("first packet must be CONNECT, got type %d [MQTT-3.1.0-1]", typ)
		}
		if flags != 0 {
			return malformed("CONNECT flags %#x [MQTT-2.2.2-2]", flags)
		}
		return validateConnect(body)
	}
	v5 := version == 5
	switch typ {
	case pktConnect:
		return malformed("second CONNECT [MQTT-3.1.0-2]")
	case pktPuback, pktPubrec, pktPubrel, pktPubcomp:
		want := byte(0)
		if typ == pktPubrel {
			want = 2 // [MQTT-3.6.1-1]
		}
		if flags != want {
			return malformed("packet type %d flags %#x [MQTT-2.2.2-2]", typ, flags)
		}
		return validatePubResponse(body, v5)
	case pktSubscribe:
		if flags != 2 {
			return malformed("SUBSCRIBE flags %#x [MQTT-3.8.1-1]", flags)
		}
		return validateSubscribe(body, v5)
	case pktUnsubscribe:
		if flags != 2 {
			return malformed("UNSUBSCRIBE flags %#x [MQTT-3.10.1-1]", flags)
		}
		return validateUnsubscribe(body, v5)
	case pktPingreq:
		if flags != 0 || len(body) != 0 {
			return malformed("PINGREQ flags %#x, %d bytes [MQTT-3.12.1]", flags, len(body))
		}
		return nil
	case pktDisconnect:
		if flags != 0 {
			return malformed("DISCONNECT flags %#x [MQTT-3.14.1-1]", flags)
		}
		return validateDisconnect(body, v5)
	case pktAuth:
		if !v5 {
			return malformed("packet type 15 is reserved before MQTT 5")
		}
		if flags != 0 {
			return malformed("AUTH flags %#x [MQTT-3.15.1-1]", flags)
		}
		return validateAuth(body)
	default: // 0 reserved; CONNACK, SUBACK, UNSUBACK, PINGRESP only flow server to client
		return malformed("packet type %d is not sent by clients", typ)
	}
}

// validateConnect checks a CONNECT body [MQTT-3.1].
func validateConnect(body []byte) error {
	r := frameReader{b: body}
	name, ok := r.bin()
	if !ok {
		return malformed("CONNECT protocol name")
	}
	version, ok := r.u8()
	if !ok {
		return malformed("CONNECT protocol level")
	}
	switch {
	case string(name) == "MQTT" && (version == 4 || version == 5):
	case string(name) == "MQIsdp" && version == 3:
	default:
		return malformed("CONNECT protocol %q level %d [MQTT-3.1.2-1] [MQTT-3.1.2-2]", name, version)
	}
	v5 := version == 5
	flags, ok := r.u8()
	if !ok {
		return malformed("CONNECT flags")
	}
	if flags&0x01 != 0 {
		return malformed("CONNECT reserved flag [MQTT-3.1.2-3]")
	}
	will := flags&0x04 != 0
	willQoS := (flags >> 3) & 0x03
	willRetain := flags&0x20 != 0
	password := flags&0x40 != 0
	username := flags&0x80 != 0
	if willQoS == 3 {
		return malformed("CONNECT will QoS 3 [MQTT-3.1.2-12]")
	}
	if !will && (willQoS != 0 || willRetain) {
		return malformed("CONNECT will QoS/retain without will flag [MQTT-3.1.2-11] [MQTT-3.1.2-13]")
	}
	if password && !username && !v5 {
		return malformed("CONNECT password without user name [MQTT-3.1.2-22]")
	}
	if _, ok := r.u16(); !ok {
		return malformed("CONNECT keep alive")
	}
	if v5 {
		if err := r.props(ctxConnect, nil); err != nil {
			return err
		}
	}
	if err := r.str("client identifier"); err != nil { // [MQTT-3.1.3-4]
		return err
	}
	if will {
		if v5 {
			if err := r.props(ctxWill, nil); err != nil {
				return err
			}
		}
		topic, err := r.strBytes("will topic")
		if err != nil {
			return err
		}
		if err := checkTopicName(topic, "will topic"); err != nil {
			return err
		}
		if _, ok := r.bin(); !ok { // [MQTT-3.1.3-10]
			return malformed("CONNECT will payload")
		}
	}
	if username {
		if err := r.str("user name"); err != nil { // [MQTT-3.1.3-11]
			return err
		}
	}
	if password {
		if _, ok := r.bin(); !ok {
			return malformed("CONNECT password")
		}
	}
	if r.left() != 0 {
		return malformed("%d bytes after the CONNECT payload", r.left())
	}
	return nil
}

// publishHeaderLen finds the end of a PUBLISH variable header (topic, packet identifier,
// v5 properties) in the first bytes of its body. remaining is the declared body length;
// body may hold fewer bytes. done is false when body is too short to tell; n is then the
// number of body bytes needed to make progress.
func publishHeaderLen(hdr byte, body []byte, remaining int, v5 bool) (n int, done bool, err error) {
	if len(body) < 2 {
		return needPublish(2, remaining)
	}
	n = 2 + int(binary.BigEndian.Uint16(body))
	if (hdr>>1)&0x03 != 0 {
		n += 2 // packet identifier
	}
	if v5 {
		if len(body) < n+1 {
			return needPublish(n+1, remaining)
		}
		plen, vn, ok, complete := varint(body[n:])
		if !complete {
			return needPublish(n+vn+1, remaining)
		}
		if !ok {
			return 0, false, malformed("PUBLISH property length [MQTT-1.5.5-1]")
		}
		n += vn + plen
	}
	if n > remaining {
		return 0, false, malformed("PUBLISH variable header (%d bytes) exceeds the packet (%d)", n, remaining)
	}
	if len(body) < n {
		return n, false, nil
	}
	return n, true, nil
}

func needPublish(n, remaining int) (int, bool, error) {
	if n > remaining {
		return 0, false, malformed("PUBLISH variable header exceeds the packet (%d bytes)", remaining)
	}
	return n, false, nil
}

// validatePublishHeader checks the fixed header and the variable header (as delimited by
// publishHeaderLen) of a PUBLISH [MQTT-3.3]. The payload is application data.
func validatePublishHeader(hdr byte, vh []byte, v5 bool) error {
	qos := (hdr >> 1) & 0x03
	if qos == 3 {
		return malformed("PUBLISH QoS 3 [MQTT-3.3.1-4]")
	}
	if qos == 0 && hdr&0x08 != 0 {
		return malformed("PUBLISH DUP with QoS 0 [MQTT-3.3.1-2]")
	}
	r := frameReader{b: vh}
	topic, err := r.strBytes("topic name") // [MQTT-3.3.2-1]
	if err != nil {
		return err
	}
	if qos > 0 {
		if id, ok := r.u16(); !ok || id == 0 {
			return malformed("PUBLISH packet identifier [MQTT-2.2.1-3]")
		}
	}
	var pi propInfo
	if v5 {
		if err := r.props(ctxPublish, &pi); err != nil {
			return err
		}
	}
	if len(topic) == 0 {
		if !pi.topicAlias { // [MQTT-4.7.3-1], v5: only with a Topic Alias [MQTT-3.3.2-8]
			return malformed("PUBLISH with an empty topic name")
		}
		return nil
	}
	return checkTopicName(topic, "topic name")
}

// validatePubResponse checks PUBACK, PUBREC, PUBREL and PUBCOMP [MQTT-3.4] to [MQTT-3.7].
func validatePubResponse(body []byte, v5 bool) error {
	r := frameReader{b: body}
	if id, ok := r.u16(); !ok || id == 0 {
		return malformed("packet identifier [MQTT-2.2.1-3]")
	}
	if !v5 {
		if r.left() != 0 {
			return malformed("remaining length %d, want 2", len(body))
		}
		return nil
	}
	if r.left() == 0 { // reason code 0x00 and no properties
		return nil
	}
	r.u8() // reason code; mochi checks the set
	if r.left() == 0 {
		return nil
	}
	if err := r.props(ctxPubResponse, nil); err != nil {
		return err
	}
	if r.left() != 0 {
		return malformed("%d bytes after the properties", r.left())
	}
	return nil
}

// validateSubscribe checks a SUBSCRIBE [MQTT-3.8].
func validateSubscribe(body []byte, v5 bool) error {
	r := frameReader{b: body}
	if id, ok := r.u16(); !ok || id == 0 {
		return malformed("SUBSCRIBE packet identifier [MQTT-2.2.1-3]")
	}
	if v5 {
		if err := r.props(ctxSubscribe, nil); err != nil {
			return err
		}
	}
	if r.left() == 0 {
		return malformed("SUBSCRIBE without topic filters [MQTT-3.8.3-3]")
	}
	for r.left() > 0 {
		filter, err := r.strBytes("topic filter")
		if err != nil {
			return err
		}
		if err := checkTopicFilter(filter); err != nil {
			return err
		}
		opts, ok := r.u8() // each filter is followed by its options byte (#501)
		if !ok {
			return malformed("SUBSCRIBE topic filter without subscription options")
		}
		if opts&0x03 == 3 {
			return malformed("SUBSCRIBE QoS 3 [MQTT-3-8.3-4]")
		}
		if v5 {
			if opts&0xc0 != 0 || (opts>>4)&0x03 == 3 { // [MQTT-3.8.3-5]
				return malformed("SUBSCRIBE options %#x [MQTT-3.8.3-5]", opts)
			}
		} else if opts&0xfc != 0 {
			return malformed("SUBSCRIBE options %#x [MQTT-3-8.3-4]", opts)
		}
	}
	return nil
}

// validateUnsubscribe checks an UNSUBSCRIBE [MQTT-3.10].
func validateUnsubscribe(body []byte, v5 bool) error {
	r := frameReader{b: body}
	if id, ok := r.u16(); !ok || id == 0 {
		return malformed("UNSUBSCRIBE packet identifier [MQTT-2.2.1-3]")
	}
	if v5 {
		if err := r.props(ctxUnsubscribe, nil); err != nil {
			return err
		}
	}
	if r.left() == 0 {
		return malformed("UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]")
	}
	for r.left() > 0 {
		filter, err := r.strBytes("topic filter")
		if err != nil {
			return err
		}
		if err := checkTopicFilter(filter); err != nil {
			return err
		}
	}
	return nil
}

// validateDisconnect checks a DISCONNECT [MQTT-3.14].
func validateDisconnect(body []byte, v5 bool) error {
	if !v5 {
		if len(body) != 0 {
			return malformed("DISCONNECT with %d bytes [MQTT-3.14.1]", len(body))
		}
		return nil
	}
	r := frameReader{b: body}
	if r.left() == 0 {
		return nil
	}
	r.u8() // reason code
	if r.left() == 0 {
		return nil
	}
	if err := r.props(ctxDisconnect, nil); err != nil {
		return err
	}
	if r.left() != 0 {
		return malformed("%d bytes after the DISCONNECT properties", r.left())
	}
	return nil
}

// validateAuth checks an AUTH [MQTT-3.15].
func validateAuth(body []byte) error {
	r := frameReader{b: body}
	if r.left() == 0 {
		return nil // reason 0x00, no properties [MQTT-3.15.2-1]
	}
	rc, _ := r.u8()
	if rc != 0x00 && rc != 0x18 && rc != 0x19 {
		return malformed("AUTH reason code %#x [MQTT-3.15.2-1]", rc)
	}
	if r.left() == 0 {
		return nil
	}
	if err := r.props(ctxAuth, nil); err != nil {
		return err
	}
	if r.left() != 0 {
		return malformed("%d bytes after the AUTH properties", r.left())
	}
	return nil
}

// checkUTF8 enforces a well-formed UTF-8 string without U+0000 [MQTT-1.5.4-1] [MQTT-1.5.4-2].
func checkUTF8(s []byte, what string) error {
	if bytes.IndexByte(s, 0) >= 0 {
		return malformed("%s contains U+0000 [MQTT-1.5.4-2]", what)
	}
	if !utf8.Valid(s) { // also refuses surrogates and overlong forms
		return malformed("%s is not valid UTF-8 [MQTT-1.5.4-1]", what)
	}
	return nil
}

// checkTopicName checks a topic name a client publishes to (non-empty checked by caller).
func checkTopicName(t []byte, what string) error {
	if len(t) == 0 {
		return malformed("empty %s [MQTT-4.7.3-1]", what)
	}
	if bytes.IndexAny(t, "+#") >= 0 {
		return malformed("wildcard in %s [MQTT-3.3.2-2]", what)
	}
	if bytes.Count(t, slash)+1 > maxTopicLevels {
		return malformed("%s has more than %d levels", what, maxTopicLevels)
	}
	return nil
}

// checkTopicFilter checks what can be checked of a filter without policy: wildcard
// placement is left to mochi, which answers it with a reason code instead of a disconnect.
func checkTopicFilter(f []byte) error {
	if len(f) == 0 {
		return malformed("empty topic filter [MQTT-4.7.3-1]")
	}
	if bytes.Count(f, slash)+1 > maxTopicLevels {
		return malformed("topic filter has more than %d levels", maxTopicLevels)
	}
	return nil
}

var slash = []byte{'/'}

// frameReader walks a frame body. Its methods report false or an error instead of reading
// past the end.
type frameReader struct {
	b   []byte
	off int
}

func (r *frameReader) left() int { return len(r.b) - r.off }

func (r *frameReader) u8() (byte, bool) {
	if r.left() < 1 {
		return 0, false
	}
	c := r.b[r.off]
	r.off++
	return c, true
}

func (r *frameReader) u16() (uint16, bool) {
	if r.left() < 2 {
		return 0, false
	}
	v := binary.BigEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v, true
}

func (r *frameReader) u32() (uint32, bool) {
	if r.left() < 4 {
		return 0, false
	}
	v := binary.BigEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v, true
}

// bin reads Binary Data: a two byte length and that many bytes [MQTT-1.5.6].
func (r *frameReader) bin() ([]byte, bool) {
	n, ok := r.u16()
	if !ok || r.left() < int(n) {
		return nil, false
	}
	b := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return b, true
}

// strBytes reads a UTF-8 Encoded String [MQTT-1.5.4].
func (r *frameReader) strBytes(what string) ([]byte, error) {
	b, ok := r.bin()
	if !ok {
		return nil, malformed("%s length exceeds the packet", what)
	}
	if err := checkUTF8(b, what); err != nil {
		return nil, err
	}
	return b, nil
}

func (r *frameReader) str(what string) error {
	_, err := r.strBytes(what)
	return err
}

// varint decodes a Variable Byte Integer [MQTT-1.5.5]. complete is false when b ends inside
// it; ok is false when it is longer than four bytes or not minimally encoded [MQTT-1.5.5-1].
func varint(b []byte) (v, n int, ok, complete bool) {
	mult := 1
	for n < 4 {
		if n >= len(b) {
			return 0, n, false, false
		}
		c := b[n]
		n++
		v += int(c&0x7f) * mult
		if c&0x80 == 0 {
			if c == 0 && n > 1 {
				return 0, n, false, true // a trailing zero continuation: not minimal
			}
			return v, n, true, true
		}
		mult *= 128
	}
	return 0, n, false, true
}

func (r *frameReader) varint() (int, bool) {
	v, n, ok, complete := varint(r.b[r.off:])
	if !ok || !complete {
		return 0, false
	}
	r.off += n
	return v, true
}

// Property contexts: which packet a property block belongs to.
const (
	ctxConnect = iota
	ctxWill
	ctxPublish
	ctxPubResponse
	ctxSubscribe
	ctxUnsubscribe
	ctxDisconnect
	ctxAuth
)

// Property value types [MQTT-2.2.2.2].
const (
	ptByte = iota + 1
	ptU16
	ptU32
	ptVarint
	ptString
	ptBinary
	ptPair
)

// propSpec is the type of property id and the contexts a client may send it in (a bit per
// ctx). Properties only a server sends (CONNACK's) have no context here.
func propSpec(id byte) (typ int, ctxs uint16) {
	const (
		connect  = 1 << ctxConnect
		will     = 1 << ctxWill
		publish  = 1 << ctxPublish
		pubResp  = 1 << ctxPubResponse
		sub      = 1 << ctxSubscribe
		unsub    = 1 << ctxUnsubscribe
		discon   = 1 << ctxDisconnect
		auth     = 1 << ctxAuth
		allCtxts = connect | will | publish | pubResp | sub | unsub | discon | auth
	)
	switch id {
	case 0x01: // payload format indicator
		return ptByte, publish | will
	case 0x02: // message expiry interval
		return ptU32, publish | will
	case 0x03: // content type
		return ptString, publish | will
	case 0x08: // response topic
		return ptString, publish | will
	case 0x09: // correlation data
		return ptBinary, publish | will
	case 0x0b: // subscription identifier; a client must not send it in PUBLISH [MQTT-3.3.4-6]
		return ptVarint, sub
	case 0x11: // session expiry interval
		return ptU32, connect | discon
	case 0x15: // authentication method
		return ptString, connect | auth
	case 0x16: // authentication data
		return ptBinary, connect | auth
	case 0x17: // request problem information
		return ptByte, connect
	case 0x18: // will delay interval
		return ptU32, will
	case 0x19: // request response information
		return ptByte, connect
	case 0x1c: // server reference
		return ptString, discon
	case 0x1f: // reason string
		return ptString, pubResp | discon | auth
	case 0x21: // receive maximum
		return ptU16, connect
	case 0x22: // topic alias maximum
		return ptU16, connect
	case 0x23: // topic alias
		return ptU16, publish
	case 0x26: // user property
		return ptPair, allCtxts
	case 0x27: // maximum packet size
		return ptU32, connect
	}
	return 0, 0
}

// propInfo reports what a property block held that the packet's own checks need.
type propInfo struct {
	topicAlias bool
}

// props checks a property block: its length fits the frame, each property is allowed in
// ctx, its value fits the block and is in range, no property but User Property repeats,
// and there are at most maxUserProperties user properties.
func (r *frameReader) props(ctx int, info *propInfo) error {
	plen, ok := r.varint()
	if !ok {
		return malformed("property length [MQTT-1.5.5-1]")
	}
	if plen > r.left() {
		return malformed("property length %d exceeds the packet (%d left)", plen, r.left())
	}
	p := frameReader{b: r.b[r.off : r.off+plen]}
	r.off += plen
	var seen uint64
	users := 0
	authData := false
	authMethod := false
	for p.left() > 0 {
		id, _ := p.u8()
		typ, ctxs := propSpec(id)
		if ctxs&(1<<ctx) == 0 {
			return malformed("property %#x not allowed here", id)
		}
		if id == 0x26 {
			users++
			if users > maxUserProperties {
				return malformed("more than %d user properties", maxUserProperties)
			}
		} else {
			if seen&(1<<id) != 0 {
				return malformed("property %#x repeated", id)
			}
			seen |= 1 << id
		}
		switch typ {
		case ptByte:
			v, ok := p.u8()
			if !ok {
				return malformed("property %#x truncated", id)
			}
			if v > 1 { // payload format, request problem/response information [MQTT-3.1.2.11.6]
				return malformed("property %#x value %d", id, v)
			}
		case ptU16:
			v, ok := p.u16()
			if !ok {
				return malformed("property %#x truncated", id)
			}
			if v == 0 && (id == 0x21 || id == 0x23) { // receive maximum, topic alias [MQTT-3.3.2-8]
				return malformed("property %#x is 0", id)
			}
			if id == 0x23 && info != nil {
				info.topicAlias = true
			}
		case ptU32:
			v, ok := p.u32()
			if !ok {
				return malformed("property %#x truncated", id)
			}
			if v == 0 && id == 0x27 { // maximum packet size
				return malformed("maximum packet size 0")
			}
		case ptVarint:
			v, ok := p.varint()
			if !ok || v == 0 { // subscription identifier 1..268,435,455 [MQTT-3.8.2.1.2]
				return malformed("subscription identifier")
			}
		case ptString:
			s, err := p.strBytes("string property")
			if err != nil {
				return err
			}
			if id == 0x08 && (len(s) == 0 || bytes.IndexAny(s, "+#") >= 0) { // [MQTT-3.3.2-14]
				return malformed("response topic %q", s)
			}
			authMethod = authMethod || id == 0x15
		case ptBinary:
			if _, ok := p.bin(); !ok {
				return malformed("property %#x truncated", id)
			}
			authData = authData || id == 0x16
		case ptPair:
			if err := p.str("user property name"); err != nil {
				return err
			}
			if err := p.str("user property value"); err != nil {
				return err
			}
		}
	}
	if authData && !authMethod { // [MQTT-3.1.2.11.10]
		return malformed("authentication data without authentication method")
	}
	return nil
}
