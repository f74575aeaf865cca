package hub

import (
	"context"
	"errors"

	"github.com/devicehub/devicehub/devices"
)

// HandleRequest runs one request a device sent on its request topic and returns the result
// to put in the response (nil for none). The transport has authenticated the device; every
// operation here checks what that identity may do.
func (h *Hub) HandleRequest(ctx context.Context, id devices.Identity, req devices.Request) (any, error) {
	switch req.Op {
	case devices.OpBindCode:
		return h.RequestBindCode(ctx, id)
	case devices.OpBind:
		args, err := devices.DecodeArgs[devices.BindArgs](req)
		if err != nil {
			return nil, decodeError(err)
		}
		if err := requireBoundController(id); err != nil {
			return nil, err
		}
		res, err := h.Bind(ctx, id.AccountID, args.DeviceID, args.Code, id.DeviceID)
		if err != nil {
			return nil, err
		}
		return devices.BindResult{DeviceID: res.DeviceID, AccountID: res.AccountID}, nil
	case devices.OpUnbind:
		args, err := devices.DecodeArgs[devices.UnbindArgs](req)
		if err != nil {
			return nil, decodeError(err)
		}
		if !id.Bound() {
			return nil, Errorf(ENotBound, "this device is not bound to an account")
		}
		target := args.DeviceID
		if target == "" {
			target = id.DeviceID
		}
		if target != id.DeviceID && !devices.IsController(id.Type) {
			return nil, Errorf(EForbidden, "only a phone or tablet can unbind another device")
		}
		return nil, h.Unbind(ctx, id.AccountID, target, args.Password, id.DeviceID)
	case devices.OpPair, devices.OpUnpair:
		args, err := devices.DecodeArgs[devices.PairArgs](req)
		if err != nil {
			return nil, decodeError(err)
		}
		if req.Op == devices.OpPair {
			return nil, h.Pair(ctx, id, args.DeviceID)
		}
		return nil, h.Unpair(ctx, id, args.DeviceID)
	case devices.OpSyncAck:
		args, err := devices.DecodeArgs[devices.SyncAckArgs](req)
		if err != nil {
			return nil, decodeError(err)
		}
		return nil, h.SyncAck(ctx, id, args.Cursor)
	case devices.OpSettingsGet, devices.OpSettingsSet, devices.OpSettingsReport:
		return h.handleSettingsRequest(ctx, id, req)
	case devices.OpCommandAck:
		args, err := devices.DecodeArgs[devices.CommandAckArgs](req)
		if err != nil {
			return nil, decodeError(err)
		}
		return nil, h.AckCommand(ctx, id, args)
	case devices.OpUnlock:
		args, err := devices.DecodeArgs[devices.UnlockArgs](req)
		if err != nil {
			return nil, decodeError(err)
		}
		return nil, h.UnlockWithPassword(ctx, id, args.Password)
	case devices.OpCommand:
		args, err := devices.DecodeArgs[devices.CommandArgs](req)
		if err != nil {
			return nil, decodeError(err)
		}
		return h.commandFromDevice(ctx, id, args)
	}
	return nil, FieldError(EInvalid, "op", "operation %q is not available on this hub yet", req.Op)
}

func requireBoundController(id devices.Identity) error {
	if !devices.IsController(id.Type) {
		return Errorf(EForbidden, "only a phone or tablet can do this")
	}
	if !id.Bound() {
		return Errorf(ENotBound, "this device is not bound to an account")
	}
	return nil
}

// decodeError turns a payload decoding error into an invalid-input hub error naming the field.
func decodeError(err error) error {
	var de *devices.DecodeError
	if errors.As(err, &de) {
		return &Error{Code: EInvalid, Field: de.Field, Message: de.Message, Err: err}
	}
	return &Error{Code: EInvalid, Message: err.Error(), Err: err}
}
