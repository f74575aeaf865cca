package hub

import (
	"context"
	"time"

	"github.com/devicehub/devicehub/devices"
)

// ENotPaired refuses telemetry of a pairable gadget (band, scale) that is not paired with a
// controller: nobody would be entitled to receive it.
const ENotPaired = "not_paired"

// IngestTelemetry validates one telemetry sample from an authenticated device and commits it
// to the sync log; it returns after the commit, so the transport may acknowledge the publish
// then. Duplicates (a redelivery, a repeated seq) are accepted and stored once. It does no
// per-message read of device state: the identity comes from the connection and the pairing
// state from an in-memory view the hub keeps current.
func (h *Hub) IngestTelemetry(ctx context.Context, id devices.Identity, stream string, payload []byte) error {
	wait, err := h.StartTelemetry(ctx, id, stream, payload)
	if err != nil {
		return err
	}
	return wait(ctx)
}

// StartTelemetry is IngestTelemetry in two halves, for a transport that pipelines one
// connection's publishes: it validates the sample and queues it for the next shared commit
// (a refusal is returned here, at once), and the returned function waits for that commit.
// Samples queued one after another are committed, and so relayed, in that order; calling
// the wait functions in the same order gives their acknowledgements in order too.
func (h *Hub) StartTelemetry(ctx context.Context, id devices.Identity, stream string, payload []byte) (wait func(context.Context) error, err error) {
	if h.sync == nil {
		return nil, Errorf(EInternal, "telemetry is not configured")
	}
	if !id.Bound() {
		return nil, Errorf(ENotBound, "telemetry is accepted only from devices bound to an account")
	}
	now := h.clock.Now()
	t, err := devices.ValidateTelemetry(id.Type, stream, payload, now)
	if err != nil {
		return nil, decodeError(err)
	}
	info, _ := devices.Info(id.Type)
	if info.Pairable {
		paired, err := h.isPaired(ctx, id.DeviceID)
		if err != nil {
			return nil, err
		}
		if !paired {
			return nil, Errorf(ENotPaired, "a %s sends telemetry only while paired with a phone or tablet", id.Type)
		}
	}
	committed, err := h.sync.store.AppendSyncAsync(ctx, SyncRecord{
		AccountID: id.AccountID, DeviceID: id.DeviceID, Stream: t.Stream, Seq: t.Seq, TS: t.TS,
		Wide: devices.AccountWideFor(id.Type, t.Stream), Data: t.Body, CreatedAt: now,
	})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		stored, err := committed(ctx)
		if err != nil {
			return err
		}
		// A store that hands commits to the relays itself (SyncCommitNotifier) has woken
		// them already.
		if stored && !h.sync.notified {
			h.sync.notifyAccount(id.AccountID)
		}
		return nil
	}, nil
}

// TelemetryPage is a page of a device's stored samples.
type TelemetryPage struct {
	Samples []TelemetrySample `json:"samples"`
	// Next is the cursor to pass as "after" for the next page (0 when this page was the last).
	Next int64 `json:"next,omitempty"`
}

// TelemetrySample is one stored sample as the HTTP API shows it.
type TelemetrySample struct {
	Cursor int64     `json:"cursor"`
	Stream string    `json:"stream"`
	Seq    uint64    `json:"seq"`
	TS     time.Time `json:"ts"`
	Data   any       `json:"data"`
}

// Telemetry returns a page of one of the account's devices' samples.
func (h *Hub) Telemetry(ctx context.Context, accountID, deviceID, stream string, from, to time.Time, after int64, limit int) (TelemetryPage, error) {
	if h.sync == nil {
		return TelemetryPage{}, Errorf(EInternal, "telemetry is not configured")
	}
	if _, err := h.ownedDevice(ctx, accountID, deviceID); err != nil {
		return TelemetryPage{}, err
	}
	if stream != "" && devices.ValidIdentifier(stream) != nil {
		return TelemetryPage{}, FieldError(EInvalid, "stream", "stream is not a valid stream name")
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rs, err := h.sync.store.Telemetry(ctx, TelemetryQuery{AccountID: accountID, DeviceID: deviceID, Stream: stream, From: from, To: to, After: after, Limit: limit})
	if err != nil {
		return TelemetryPage{}, err
	}
	p := TelemetryPage{Samples: make([]TelemetrySample, len(rs))}
	for i, r := range rs {
		p.Samples[i] = TelemetrySample{Cursor: r.Cursor, Stream: r.Stream, Seq: r.Seq, TS: r.TS, Data: r.Data}
	}
	if len(rs) == limit {
		p.Next = rs[len(rs)-1].Cursor
	}
	return p, nil
}
