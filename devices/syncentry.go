package devices

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// MarshalJSON encodes the entry as encoding/json would encode its fields, without
// reflection: the relay encodes one entry per sample it delivers, and the reflective encoder
// was a visible share of the relay's CPU. The one difference: <, > and & inside data are
// left as they are, where encoding/json writes \u003c, \u003e and \u0026 (for JSON pasted
// into HTML); both are the same JSON. data is compacted (and so checked) on the way.
func (e SyncEntry) MarshalJSON() ([]byte, error) {
	if y := e.TS.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("sync entry %d: ts year %d outside [0,9999]", e.Cursor, y)
	}
	b := make([]byte, 0, 128+len(e.Device)+len(e.Data))
	b = append(b, `{"cursor":`...)
	b = strconv.AppendInt(b, e.Cursor, 10)
	b = append(b, `,"device":`...)
	b = appendJSONString(b, e.Device)
	b = append(b, `,"stream":`...)
	b = appendJSONString(b, e.Stream)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"ts":"`...)
	b = e.TS.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","data":`...)
	if len(e.Data) == 0 {
		b = append(b, "null"...)
	} else {
		buf := bytes.NewBuffer(b)
		if err := json.Compact(buf, e.Data); err != nil {
			return nil, fmt.Errorf("sync entry %d: data: %w", e.Cursor, err)
		}
		b = buf.Bytes()
	}
	if e.Gap != nil {
		b = append(b, `,"gap":{"from":`...)
		b = strconv.AppendInt(b, e.Gap.From, 10)
		b = append(b, `,"to":`...)
		b = strconv.AppendInt(b, e.Gap.To, 10)
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

// appendJSONString appends s as encoding/json encodes a string. Device IDs and stream names
// are plain ASCII and take the fast path; anything else goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
