package hub

// DeviceStore keeps devices, bindings, bind codes and the audit log.
type DeviceStore interface{}
