package broker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"github.com/devicehub/devicehub/internal/mqttwire"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// frame builders --------------------------------------------------------------------------

func vbi(n int) []byte                       { return mqttwire.VBI(n) }
func mstr(s string) []byte                   { return mqttwire.Str(s) }
func frame(hdr byte, parts ...[]byte) []byte { return mqttwire.Frame(hdr, parts...) }
func props(p ...[]byte) []byte               { return mqttwire.Props(p...) }
func userProp(k, v string) []byte            { return mqttwire.UserProp(k, v) }

func connectV4(id string) []byte {
	return frame(0x10, mstr("MQTT"), []byte{4, 0x02, 0, 30}, mstr(id))
}

func connectV5(id string) []byte {
	return frame(0x10, mstr("MQTT"), []byte{5, 0x02, 0, 30}, props(), mstr(id))
}

// issue501 is upstream mochi issue #501: a v5 SUBSCRIBE whose filter "a" has no options byte.
var issue501 = []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 0x61}

// splitFrame separates one encoded frame; ok is false unless b is exactly one frame.
func splitFrame(b []byte) (hdr byte, body []byte, ok bool) {
	if len(b) < 2 {
		return 0, nil, false
	}
	rem, n, vok, complete := varint(b[1:])
	if !vok || !complete || len(b) != 1+n+rem {
		return 0, nil, false
	}
	return b[0], b[1+n:], true
}

func validate(version byte, b []byte) error {
	hdr, body, ok := splitFrame(b)
	if !ok {
		return errors.New("not one frame")
	}
	return validateFrame(version, hdr, body)
}

// mochiDecode runs one frame through mochi's decoders the way its client read loop does
// (clients.go ReadFixedHeader and ReadPacket), then the packet's Validate method. A panic
// is left to the caller.
func mochiDecode(version byte, b []byte) error {
	var fh packets.FixedHeader
	if err := fh.Decode(b[0]); err != nil {
		return err
	}
	br := bytes.NewReader(b[1:])
	rem, _, err := packets.DecodeLength(br)
	if err != nil {
		return err
	}
	fh.Remaining = rem
	px := make([]byte, rem)
	if _, err := io.ReadFull(br, px); err != nil {
		return err
	}
	pk := packets.Packet{ProtocolVersion: version, FixedHeader: fh}
	code := packets.CodeSuccess
	switch fh.Type {
	case packets.Connect:
		pk.ProtocolVersion = 0
		if err = pk.ConnectDecode(px); err == nil {
			code = pk.ConnectValidate()
		}
	case packets.Disconnect:
		err = pk.DisconnectDecode(px)
	case packets.Publish:
		if err = pk.PublishDecode(px); err == nil {
			code = pk.PublishValidate(65535)
		}
	case packets.Puback:
		err = pk.PubackDecode(px)
	case packets.Pubrec:
		err = pk.PubrecDecode(px)
	case packets.Pubrel:
		err = pk.PubrelDecode(px)
	case packets.Pubcomp:
		err = pk.PubcompDecode(px)
	case packets.Subscribe:
		if err = pk.SubscribeDecode(px); err == nil {
			code = pk.SubscribeValidate()
		}
	case packets.Unsubscribe:
		if err = pk.UnsubscribeDecode(px); err == nil {
			code = pk.UnsubscribeValidate()
		}
	case packets.Pingreq:
	case packets.Auth:
		if err = pk.AuthDecode(px); err == nil {
			code = pk.AuthValidate()
		}
	default:
		err = fmt.Errorf("type %d", fh.Type)
	}
	if err != nil {
		return err
	}
	if code != packets.CodeSuccess {
		return code
	}
	return nil
}

// mochiDecodeSafe is mochiDecode with the panic turned into an error.
func mochiDecodeSafe(version byte, b []byte) (err error, panicked any) {
	defer func() {
		if r := recover(); r != nil {
			panicked = r
		}
	}()
	return mochiDecode(version, b), nil
}

// mochiMayRefuse lists what the validator accepts per the spec but mochi does not implement:
// AUTH with a remaining length of 0 or 1 [MQTT-3.15.2-1].
func mochiMayRefuse(b []byte) bool { return b[0]>>4 == pktAuth && len(b) <= 3 }

// tables ----------------------------------------------------------------------------------

type frameCase struct {
	name    string
	version byte
	frame   []byte
}

func validFrames() []frameCase {
	long := strings.Repeat("x", 300)
	return []frameCase{
		{"connect v3.1", 0, frame(0x10, mstr("MQIsdp"), []byte{3, 0x02, 0, 30}, mstr("dev"))},
		{"connect v4", 0, connectV4("dev-1")},
		{"connect v4 empty id", 0, connectV4("")},
		{"connect v4 user pass will", 0, frame(0x10, mstr("MQTT"), []byte{4, 0xee, 0, 60}, mstr("id"), mstr("w/t"), mstr("bye"), mstr("user"), mstr("pw"))},
		{"connect v5", 0, connectV5("dev-1")},
		{"connect v5 props will", 0, frame(0x10, mstr("MQTT"), []byte{5, 0xc6, 0, 60},
			props([]byte{0x11, 0, 0, 0, 60}, []byte{0x21, 0, 10}, []byte{0x27, 0, 1, 0, 0}, []byte{0x22, 0, 5}, userProp("k", "v"), []byte{0x17, 1}),
			mstr("id"), props([]byte{0x18, 0, 0, 0, 5}, []byte{0x01, 1}, append([]byte{0x08}, mstr("re/ply")...)), mstr("w/t"), mstr("bye"), mstr("user"), mstr("pw"))},
		{"connect v5 password only", 0, frame(0x10, mstr("MQTT"), []byte{5, 0x42, 0, 60}, props(), mstr("id"), mstr("pw"))},
		{"publish v4 qos0", 4, frame(0x30, mstr("a/b"), []byte("payload"))},
		{"publish v4 qos1 retain", 4, frame(0x33, mstr("a/b"), []byte{0, 7}, []byte("x"))},
		{"publish v4 qos2 dup empty payload", 4, frame(0x3c, mstr("a/ü/b"), []byte{0, 7})},
		{"publish v4 long topic", 4, frame(0x30, mstr(long), []byte("p"))},
		{"publish v5 qos0", 5, frame(0x30, mstr("a/b"), props(), []byte("payload"))},
		{"publish v5 qos1 props", 5, frame(0x32, mstr("a/b"), []byte{0, 9},
			props([]byte{0x01, 1}, []byte{0x02, 0, 0, 0, 9}, append([]byte{0x03}, mstr("text/plain")...), append([]byte{0x09}, mstr("cd")...), []byte{0x23, 0, 1}, userProp("a", "b"), userProp("a", "c")), []byte("x"))},
		{"publish v5 alias only", 5, frame(0x30, mstr(""), props([]byte{0x23, 0, 3}), []byte("x"))},
		{"puback v4", 4, frame(0x40, []byte{0, 1})},
		{"pubrec v4", 4, frame(0x50, []byte{0, 1})},
		{"pubrel v4", 4, frame(0x62, []byte{0, 1})},
		{"pubcomp v4", 4, frame(0x70, []byte{0, 1})},
		{"puback v5 short", 5, frame(0x40, []byte{0, 1})},
		{"puback v5 reason", 5, frame(0x40, []byte{0, 1, 0x10})},
		{"pubrec v5 props", 5, frame(0x50, []byte{0, 1, 0x80}, props(append([]byte{0x1f}, mstr("why")...)))},
		{"pubrel v5 empty props", 5, frame(0x62, []byte{0, 1, 0}, props())},
		{"subscribe v4", 4, frame(0x82, []byte{0, 1}, mstr("a/+/c"), []byte{1}, mstr("#"), []byte{2})},
		{"subscribe v5", 5, frame(0x82, []byte{0, 1}, props([]byte{0x0b, 0x80, 0x01}, userProp("k", "v")), mstr("$share/g/a/#"), []byte{0x2e})},
		{"unsubscribe v4", 4, frame(0xa2, []byte{0, 1}, mstr("a/b"), mstr("c"))},
		{"unsubscribe v5", 5, frame(0xa2, []byte{0, 1}, props(userProp("k", "v")), mstr("a/b"))},
		{"pingreq", 4, []byte{0xc0, 0}},
		{"disconnect v4", 4, []byte{0xe0, 0}},
		{"disconnect v5", 5, []byte{0xe0, 0}},
		{"disconnect v5 reason", 5, []byte{0xe0, 1, 0x04}},
		{"disconnect v5 props", 5, frame(0xe0, []byte{0}, props([]byte{0x11, 0, 0, 0, 0}, append([]byte{0x1f}, mstr("bye")...)))},
		{"auth v5", 5, frame(0xf0, []byte{0x18}, props(append([]byte{0x15}, mstr("SCRAM")...), append([]byte{0x16}, mstr("data")...)))},
	}
}

func malformedFrames() []frameCase {
	deep := strings.Repeat("a/", 10000) + "a"
	var manyUsers [][]byte
	for range 10000 {
		manyUsers = append(manyUsers, userProp("", ""))
	}
	return []frameCase{
		{"issue 501 v5 subscribe without options byte", 5, issue501},
		{"subscribe v4 without options byte", 4, frame(0x82, []byte{0, 1}, mstr("a"))},
		{"subscribe v5 second filter without options", 5, frame(0x82, []byte{0, 1}, props(), mstr("a"), []byte{0}, mstr("b"))},
		{"subscribe no filters", 4, frame(0x82, []byte{0, 1})},
		{"subscribe v5 no filters", 5, frame(0x82, []byte{0, 1}, props())},
		{"subscribe packet id 0", 4, frame(0x82, []byte{0, 0}, mstr("a"), []byte{0})},
		{"subscribe flags", 4, frame(0x80, []byte{0, 1}, mstr("a"), []byte{0})},
		{"subscribe qos 3", 4, frame(0x82, []byte{0, 1}, mstr("a"), []byte{3})},
		{"subscribe v4 reserved option bits", 4, frame(0x82, []byte{0, 1}, mstr("a"), []byte{0x04})},
		{"subscribe v5 retain handling 3", 5, frame(0x82, []byte{0, 1}, props(), mstr("a"), []byte{0x30})},
		{"subscribe v5 reserved option bits", 5, frame(0x82, []byte{0, 1}, props(), mstr("a"), []byte{0x40})},
		{"subscribe filter length past end", 4, frame(0x82, []byte{0, 1}, []byte{0, 9, 'a'})},
		{"subscribe empty filter", 4, frame(0x82, []byte{0, 1}, mstr(""), []byte{0})},
		{"subscribe filter NUL", 4, frame(0x82, []byte{0, 1}, mstr("a\x00b"), []byte{0})},
		{"subscribe filter bad utf8", 4, frame(0x82, []byte{0, 1}, mstr("a\xffb"), []byte{0})},
		{"subscribe deep filter", 4, frame(0x82, []byte{0, 1}, mstr(deep), []byte{0})},
		{"subscribe v5 sub id twice", 5, frame(0x82, []byte{0, 1}, props([]byte{0x0b, 1}, []byte{0x0b, 2}), mstr("a"), []byte{0})},
		{"subscribe v5 sub id 0", 5, frame(0x82, []byte{0, 1}, props([]byte{0x0b, 0}), mstr("a"), []byte{0})},
		{"subscribe v5 sub id overlong", 5, frame(0x82, []byte{0, 1}, props([]byte{0x0b, 0x81, 0x80, 0x80, 0x80, 0x01}), mstr("a"), []byte{0})},
		{"subscribe v5 property length past end", 5, frame(0x82, []byte{0, 1}, []byte{0x20}, mstr("a"), []byte{0})},
		{"subscribe v5 property value past block", 5, frame(0x82, []byte{0, 1}, []byte{2, 0x26, 0}, []byte{1, 'a', 0}, mstr("a"), []byte{0})},
		{"subscribe v5 publish property", 5, frame(0x82, []byte{0, 1}, props([]byte{0x01, 1}), mstr("a"), []byte{0})},
		{"unsubscribe no filters", 4, frame(0xa2, []byte{0, 1})},
		{"unsubscribe v5 no filters", 5, frame(0xa2, []byte{0, 1}, props())},
		{"unsubscribe flags", 4, frame(0xa0, []byte{0, 1}, mstr("a"))},
		{"unsubscribe truncated filter", 4, frame(0xa2, []byte{0, 1}, []byte{0, 5, 'a'})},
		{"unsubscribe v5 sub id", 5, frame(0xa2, []byte{0, 1}, props([]byte{0x0b, 1}), mstr("a"))},
		{"publish empty topic v4", 4, frame(0x30, mstr(""), []byte("x"))},
		{"publish empty topic v5 without alias", 5, frame(0x30, mstr(""), props(), []byte("x"))},
		{"publish topic NUL", 4, frame(0x30, mstr("a\x00"), []byte("x"))},
		{"publish topic bad utf8", 4, frame(0x30, mstr("a\xc3\x28"), []byte("x"))},
		{"publish topic surrogate", 4, frame(0x30, mstr("a\xed\xa0\x80"), []byte("x"))},
		{"publish wildcard +", 4, frame(0x30, mstr("a/+/b"), []byte("x"))},
		{"publish wildcard #", 5, frame(0x30, mstr("a/#"), props(), []byte("x"))},
		{"publish deep topic", 4, frame(0x30, mstr(deep), []byte("x"))},
		{"publish qos 3", 4, frame(0x36, mstr("a"), []byte{0, 1})},
		{"publish dup qos 0", 4, frame(0x38, mstr("a"), []byte("x"))},
		{"publish qos1 packet id 0", 4, frame(0x32, mstr("a"), []byte{0, 0})},
		{"publish qos1 missing packet id", 4, frame(0x32, mstr("a"))},
		{"publish topic length past end", 4, frame(0x30, []byte{0, 10, 'a'})},
		{"publish v5 missing property length", 5, frame(0x30, mstr("a"))},
		{"publish v5 property length past end", 5, frame(0x30, mstr("a"), []byte{9, 1})},
		{"publish v5 10000 user properties", 5, frame(0x30, mstr("a"), props(manyUsers...), []byte("x"))},
		{"publish v5 65 user properties", 5, frame(0x30, mstr("a"), props(manyUsers[:65]...), []byte("x"))},
		{"publish v5 duplicate content type", 5, frame(0x30, mstr("a"), props(append([]byte{0x03}, mstr("x")...), append([]byte{0x03}, mstr("y")...)))},
		{"publish v5 subscription identifier", 5, frame(0x30, mstr("a"), props([]byte{0x0b, 1}))},
		{"publish v5 topic alias 0", 5, frame(0x30, mstr("a"), props([]byte{0x23, 0, 0}))},
		{"publish v5 payload format 2", 5, frame(0x30, mstr("a"), props([]byte{0x01, 2}))},
		{"publish v5 unknown property", 5, frame(0x30, mstr("a"), props([]byte{0x7f, 0}))},
		{"publish v5 connect property", 5, frame(0x30, mstr("a"), props([]byte{0x21, 0, 1}))},
		{"publish v5 truncated u32 property", 5, frame(0x30, mstr("a"), props([]byte{0x02, 0, 0}))},
		{"publish v5 user property bad utf8", 5, frame(0x30, mstr("a"), props(userProp("\xff", "v")))},
		{"publish v5 response topic wildcard", 5, frame(0x30, mstr("a"), props(append([]byte{0x08}, mstr("r/#")...)))},
		{"publish before connect", 0, frame(0x30, mstr("a"), []byte("x"))},
		{"subscribe before connect", 0, frame(0x82, []byte{0, 1}, mstr("a"), []byte{0})},
		{"connect twice", 4, connectV4("x")},
		{"connect flags", 0, append([]byte{0x11}, connectV4("x")[1:]...)},
		{"connect bad protocol name", 0, frame(0x10, mstr("MQTX"), []byte{4, 0x02, 0, 30}, mstr("x"))},
		{"connect bad level", 0, frame(0x10, mstr("MQTT"), []byte{6, 0x02, 0, 30}, mstr("x"))},
		{"connect reserved flag", 0, frame(0x10, mstr("MQTT"), []byte{4, 0x03, 0, 30}, mstr("x"))},
		{"connect will qos 3", 0, frame(0x10, mstr("MQTT"), []byte{4, 0x1e, 0, 30}, mstr("x"), mstr("w"), mstr("p"))},
		{"connect will qos without will", 0, frame(0x10, mstr("MQTT"), []byte{4, 0x0a, 0, 30}, mstr("x"))},
		{"connect will retain without will", 0, frame(0x10, mstr("MQTT"), []byte{4, 0x22, 0, 30}, mstr("x"))},
		{"connect v4 password without user", 0, frame(0x10, mstr("MQTT"), []byte{4, 0x42, 0, 30}, mstr("x"), mstr("pw"))},
		{"connect truncated keepalive", 0, frame(0x10, mstr("MQTT"), []byte{4, 0x02, 0})},
		{"connect missing client id", 0, frame(0x10, mstr("MQTT"), []byte{4, 0x02, 0, 30})},
		{"connect client id NUL", 0, connectV4("a\x00")},
		{"connect client id bad utf8", 0, connectV4("\xfe")},
		{"connect username flag without username", 0, frame(0x10, mstr("MQTT"), []byte{4, 0x82, 0, 30}, mstr("x"))},
		{"connect password flag without password", 0, frame(0x10, mstr("MQTT"), []byte{4, 0xc2, 0, 30}, mstr("x"), mstr("u"))},
		{"connect will without topic", 0, frame(0x10, mstr("MQTT"), []byte{4, 0x06, 0, 30}, mstr("x"))},
		{"connect will topic wildcard", 0, frame(0x10, mstr("MQTT"), []byte{4, 0x06, 0, 30}, mstr("x"), mstr("w/#"), mstr("p"))},
		{"connect trailing bytes", 0, frame(0x10, mstr("MQTT"), []byte{4, 0x02, 0, 30}, mstr("x"), []byte{1})},
		{"connect v5 missing properties", 0, frame(0x10, mstr("MQTT"), []byte{5, 0x02, 0, 30})},
		{"connect v5 property length past end", 0, frame(0x10, mstr("MQTT"), []byte{5, 0x02, 0, 30}, []byte{0x40}, mstr("x"))},
		{"connect v5 duplicate session expiry", 0, frame(0x10, mstr("MQTT"), []byte{5, 0x02, 0, 30}, props([]byte{0x11, 0, 0, 0, 1}, []byte{0x11, 0, 0, 0, 2}), mstr("x"))},
		{"connect v5 receive maximum 0", 0, frame(0x10, mstr("MQTT"), []byte{5, 0x02, 0, 30}, props([]byte{0x21, 0, 0}), mstr("x"))},
		{"connect v5 auth data without method", 0, frame(0x10, mstr("MQTT"), []byte{5, 0x02, 0, 30}, props(append([]byte{0x16}, mstr("d")...)), mstr("x"))},
		{"connect v5 will properties past end", 0, frame(0x10, mstr("MQTT"), []byte{5, 0x06, 0, 30}, props(), mstr("x"), []byte{0x30})},
		{"connect v5 will property in connect", 0, frame(0x10, mstr("MQTT"), []byte{5, 0x02, 0, 30}, props([]byte{0x18, 0, 0, 0, 1}), mstr("x"))},
		{"connect v5 100 user properties", 0, frame(0x10, mstr("MQTT"), []byte{5, 0x02, 0, 30}, props(manyUsers[:100]...), mstr("x"))},
		{"puback v4 long", 4, frame(0x40, []byte{0, 1, 0})},
		{"puback short", 4, frame(0x40, []byte{0})},
		{"puback packet id 0", 4, frame(0x40, []byte{0, 0})},
		{"puback flags", 4, frame(0x42, []byte{0, 1})},
		{"pubrel flags", 4, frame(0x60, []byte{0, 1})},
		{"pubrec v5 property length past end", 5, frame(0x50, []byte{0, 1, 0x80, 5})},
		{"pubcomp v5 trailing bytes", 5, frame(0x70, []byte{0, 1, 0}, props(), []byte{1})},
		{"puback v5 topic alias", 5, frame(0x40, []byte{0, 1, 0}, props([]byte{0x23, 0, 1}))},
		{"pingreq with body", 4, frame(0xc0, []byte{0})},
		{"pingreq flags", 4, []byte{0xc1, 0}},
		{"disconnect v4 with body", 4, frame(0xe0, []byte{0})},
		{"disconnect flags", 5, []byte{0xe2, 0}},
		{"disconnect v5 properties past end", 5, frame(0xe0, []byte{0, 7})},
		{"disconnect v5 bad property", 5, frame(0xe0, []byte{0}, props([]byte{0x21, 0, 1}))},
		{"auth in v4", 4, frame(0xf0, []byte{0}, props())},
		{"auth bad reason", 5, frame(0xf0, []byte{0x01}, props())},
		{"auth properties past end", 5, frame(0xf0, []byte{0x18, 3})},
		{"connack from client", 4, frame(0x20, []byte{0, 0})},
		{"suback from client", 4, frame(0x90, []byte{0, 1, 0})},
		{"unsuback from client", 4, frame(0xb0, []byte{0, 1})},
		{"pingresp from client", 4, []byte{0xd0, 0}},
		{"reserved type 0", 4, []byte{0x00, 0}},
		{"unknown protocol version", 7, []byte{0xc0, 0}},
	}
}

// tests -----------------------------------------------------------------------------------

// TestValidateFrameAccepts: well-formed packets of every type pass, and mochi decodes each
// one without error.
func TestValidateFrameAccepts(t *testing.T) {
	for _, c := range validFrames() {
		t.Run(c.name, func(t *testing.T) {
			if err := validate(c.version, c.frame); err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if err, p := mochiDecodeSafe(c.version, c.frame); p != nil || err != nil {
				t.Fatalf("mochi: err %v, panic %v", err, p)
			}
		})
	}
}

// TestValidateFrameRejects: each malformed packet is refused with ErrFrameMalformed.
func TestValidateFrameRejects(t *testing.T) {
	for _, c := range malformedFrames() {
		t.Run(c.name, func(t *testing.T) {
			err := validate(c.version, c.frame)
			if !errors.Is(err, ErrFrameMalformed) {
				t.Fatalf("got %v, want ErrFrameMalformed", err)
			}
		})
	}
}

// TestMochiPanicsOnIssue501 pins why the validator exists: mochi v2.7.9 itself indexes past
// the end of the #501 frame. If an upgrade fixes it, this test says so (and still passes).
func TestMochiPanicsOnIssue501(t *testing.T) {
	_, p := mochiDecodeSafe(5, issue501)
	if p == nil {
		t.Log("mochi no longer panics on #501; the validator still refuses it")
	} else {
		t.Logf("mochi panics on #501 as expected: %v", p)
	}
	if err := validate(5, issue501); err == nil {
		t.Fatal("validator accepts #501")
	}
}

// TestValidatedFramesNeverPanicMochi feeds every frame of both tables, every prefix of them
// with its remaining length rewritten, and every single-byte corruption, to the validator;
// whatever it accepts must decode in mochi without a panic (and, but for mochiMayRefuse,
// without an error). FuzzFrameValidator explores further from the same seeds.
func TestValidatedFramesNeverPanicMochi(t *testing.T) {
	cases := append(validFrames(), malformedFrames()...)
	accepted := 0
	for _, c := range cases {
		_, body, ok := splitFrame(c.frame)
		if !ok || len(body) > 2048 {
			continue
		}
		variants := [][]byte{c.frame}
		for i := range len(body) { // truncations: what #501 is
			variants = append(variants, frame(c.frame[0], body[:i]))
		}
		for i := range len(body) { // corruptions
			for _, x := range []byte{0x00, 0x01, 0x80, 0xff} {
				b := bytes.Clone(body)
				b[i] = x
				variants = append(variants, frame(c.frame[0], b))
			}
		}
		for _, v := range variants {
			for _, version := range []byte{0, 3, 4, 5} {
				if checkAcceptedDecodes(t, version, v) {
					accepted++
				}
			}
		}
	}
	t.Logf("%d accepted variants decoded without panic", accepted)
}

// checkAcceptedDecodes is the fuzz property: if the validator accepts, mochi must not panic.
func checkAcceptedDecodes(t *testing.T, version byte, b []byte) bool {
	t.Helper()
	if validate(version, b) != nil {
		return false
	}
	err, p := mochiDecodeSafe(version, b)
	if p != nil {
		t.Fatalf("validator accepted v%d frame % x, mochi panics: %v", version, b, p)
	}
	if err != nil && !mochiMayRefuse(b) {
		t.Fatalf("validator accepted v%d frame % x, mochi refuses it: %v", version, b, err)
	}
	return true
}

// FuzzFrameValidator: input is one frame and the protocol version of the connection (0 for
// the first frame). Property: whatever the validator accepts, mochi decodes without panic.
// Seeds: testdata/fuzz/FuzzFrameValidator (including #501) and the tables above.
func FuzzFrameValidator(f *testing.F) {
	for _, c := range append(validFrames(), malformedFrames()...) {
		if len(c.frame) <= 4096 {
			f.Add(c.version, c.frame)
		}
	}
	f.Fuzz(func(t *testing.T, version byte, b []byte) {
		if _, _, ok := splitFrame(b); !ok {
			return
		}
		checkAcceptedDecodes(t, version, b)
	})
}

// guard tests ------------------------------------------------------------------------------

// scriptConn hands out its chunks one Read at a time, then io.EOF.
type scriptConn struct {
	net.Conn
	chunks [][]byte
	closed bool
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func (c *scriptConn) Close() error { c.closed = true; return nil }

func chunked(b []byte, size int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		k := min(size, len(b))
		out = append(out, b[:k])
		b = b[k:]
	}
	return out
}

type rejects []string

func (r *rejects) add(reason string) { *r = append(*r, reason) }

// readAll reads the guarded stream with a small buffer, as mochi's bufio reader does.
func readAll(c net.Conn, bufSize int) ([]byte, error) {
	var out []byte
	p := make([]byte, bufSize)
	for {
		n, err := c.Read(p)
		out = append(out, p[:n]...)
		if err != nil {
			return out, err
		}
	}
}

// TestGuardPassesValidStream: a valid session goes through byte for byte however the
// network splits it and however the reader sizes its reads.
func TestGuardPassesValidStream(t *testing.T) {
	for _, version := range []byte{4, 5} {
		var stream []byte
		if version == 5 {
			stream = connectV5("dev")
		} else {
			stream = connectV4("dev")
		}
		for _, c := range validFrames() {
			if c.version == version {
				stream = append(stream, c.frame...)
			}
		}
		big := bytes.Repeat([]byte("p"), 100_000)
		if version == 5 {
			stream = append(stream, frame(0x32, mstr("big/one"), []byte{0, 5}, props(userProp("k", "v")), big)...)
		} else {
			stream = append(stream, frame(0x32, mstr("big/one"), []byte{0, 5}, big)...)
		}
		stream = append(stream, 0xc0, 0)
		for _, split := range []int{1, 2, 7, 100, 4096, len(stream)} {
			for _, rd := range []int{1, 5, 2048, 1 << 20} {
				var rj rejects
				sc := &scriptConn{chunks: chunked(bytes.Clone(stream), split)}
				g := newGuard(4096, 256*1024, rj.add)(sc)
				out, err := readAll(g, rd)
				if !errors.Is(err, io.EOF) || len(rj) != 0 {
					t.Fatalf("v%d split %d read %d: err %v, rejects %v", version, split, rd, err, rj)
				}
				if !bytes.Equal(out, stream) {
					t.Fatalf("v%d split %d read %d: stream changed (%d of %d bytes)", version, split, rd, len(out), len(stream))
				}
			}
		}
	}
}

// TestGuardRejectsIssue501: the frames before #501 reach mochi, #501 does not; the read
// fails, the connection is closed and counted as malformed.
func TestGuardRejectsIssue501(t *testing.T) {
	ok := append(connectV5("dev"), frame(0x82, []byte{0, 1}, props(), mstr("a"), []byte{0})...)
	for _, split := range []int{1, 3, 1000} {
		var rj rejects
		sc := &scriptConn{chunks: chunked(append(bytes.Clone(ok), issue501...), split)}
		g := newGuard(4096, 256*1024, rj.add)(sc)
		out, err := readAll(g, 2048)
		if !errors.Is(err, ErrFrameMalformed) {
			t.Fatalf("split %d: err %v", split, err)
		}
		if !bytes.Equal(out, ok) {
			t.Fatalf("split %d: released % x, want the frames before #501", split, out)
		}
		if !sc.closed || len(rj) != 1 || rj[0] != "malformed" {
			t.Fatalf("split %d: closed %v, rejects %v", split, sc.closed, rj)
		}
		if _, err := g.Read(make([]byte, 10)); !errors.Is(err, ErrFrameMalformed) {
			t.Fatalf("read after reject: %v", err)
		}
	}
}

// TestGuardRejectsBeforeBuffering: oversized frames are refused from their declared length,
// before their body is read; malformed framing is refused at once.
func TestGuardRejectsBeforeBuffering(t *testing.T) {
	huge := append([]byte{0x10}, vbi(256<<20-1)...) // the largest remaining length there is
	cases := []struct {
		name   string
		stream []byte
		reason string
	}{
		{"256 MiB connect", append(huge, make([]byte, 8192)...), "too_large"},
		{"connect over first limit", frame(0x10, mstr("MQTT"), []byte{4, 2, 0, 30}, mstr(strings.Repeat("x", 5000))), "too_large"},
		{"publish over limit", append(connectV4("x"), append([]byte{0x30}, vbi(300*1024)...)...), "too_large"},
		{"publish header over limit", append(connectV5("x"), append([]byte{0x30}, vbi(300*1024)...)...), "too_large"},
		{"five length bytes", append(connectV4("x"), 0x30, 0xff, 0xff, 0xff, 0xff, 0x7f), "malformed"},
		{"overlong length", append(connectV4("x"), 0xc0, 0x80, 0x00), "malformed"},
		{"reserved type", append(connectV4("x"), 0x00, 0x00), "malformed"},
		{"publish first", frame(0x30, mstr("a"), []byte("x")), "malformed"},
		{"http request", []byte("GET / HTTP/1.1\r\n\r\n"), "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var rj rejects
			sc := &scriptConn{chunks: [][]byte{c.stream}}
			g := newGuard(4096, 256*1024, rj.add)(sc).(*guardedConn)
			_, err := readAll(g, 2048)
			if err == nil || errors.Is(err, io.EOF) || len(rj) != 1 || rj[0] != c.reason || !sc.closed {
				t.Fatalf("err %v, rejects %v, closed %v", err, rj, sc.closed)
			}
			if g.buf != nil {
				t.Fatalf("buffer kept after reject")
			}
		})
	}
}

// TestGuardBufferBounded: the guard's buffer never grows past the frame in progress, and a
// drained big buffer is let go.
func TestGuardBufferBounded(t *testing.T) {
	big := frame(0x30, mstr("t"), bytes.Repeat([]byte("x"), 200_000))
	sub := frame(0x82, []byte{0, 1}, mstr(strings.Repeat("f", 60_000)), []byte{0}, mstr(strings.Repeat("g", 60_000)), []byte{0})
	stream := append(append(connectV4("x"), big...), sub...)
	sc := &scriptConn{chunks: chunked(stream, 1500)}
	g := newGuard(4096, 256*1024, nil)(sc).(*guardedConn)
	p := make([]byte, 2048)
	peak := 0
	var out []byte
	for {
		n, err := g.Read(p)
		out = append(out, p[:n]...)
		peak = max(peak, len(g.buf))
		if err != nil {
			break
		}
	}
	if !bytes.Equal(out, stream) {
		t.Fatalf("stream changed")
	}
	if peak > len(sub)+guardInitialBuf {
		t.Fatalf("buffer peaked at %d bytes; largest buffered frame is %d", peak, len(sub))
	}
	if len(g.buf) > guardKeepBuf {
		t.Fatalf("drained buffer of %d bytes kept", len(g.buf))
	}
}

// loopConn replays prefix once, then block forever, for the benchmark.
type loopConn struct {
	net.Conn
	prefix []byte
	block  []byte
	off    int
}

func (c *loopConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	n := copy(p, c.block[c.off:])
	c.off = (c.off + n) % len(c.block)
	return n, nil
}

// BenchmarkGuardPublish measures the guard per PUBLISH, read the way mochi reads (a 2 KiB
// bufio.Reader, fixed header, then io.ReadFull of the body), against the same read with no
// guard. ns/op is per PUBLISH.
func BenchmarkGuardPublish(b *testing.B) {
	for _, size := range []int{64, 1024, 64 * 1024} {
		for _, version := range []byte{4, 5} {
			var connect, pub []byte
			if version == 5 {
				connect = connectV5("bench")
				pub = frame(0x32, mstr("devices/abc123/telemetry"), []byte{0, 1}, props(userProp("k", "v")), bytes.Repeat([]byte("x"), size))
			} else {
				connect = connectV4("bench")
				pub = frame(0x32, mstr("devices/abc123/telemetry"), []byte{0, 1}, bytes.Repeat([]byte("x"), size))
			}
			block := bytes.Repeat(pub, max(1, 65536/len(pub)))
			for _, guarded := range []bool{false, true} {
				name := fmt.Sprintf("v%d/payload=%d/guard=%v", version, size, guarded)
				b.Run(name, func(b *testing.B) {
					var c net.Conn = &loopConn{prefix: bytes.Clone(connect), block: block}
					if guarded {
						c = newGuard(4096, 256*1024, nil)(c)
					}
					br := bufio.NewReaderSize(c, 2048)
					body := make([]byte, 0, 128*1024)
					readFrame := func() {
						if _, err := br.ReadByte(); err != nil {
							b.Fatal(err)
						}
						n, _, err := packets.DecodeLength(br)
						if err != nil {
							b.Fatal(err)
						}
						if _, err := io.ReadFull(br, body[:n]); err != nil {
							b.Fatal(err)
						}
					}
					readFrame() // CONNECT
					b.SetBytes(int64(len(pub)))
					b.ReportAllocs()
					b.ResetTimer()
					for range b.N {
						readFrame()
					}
				})
			}
		}
	}
}
