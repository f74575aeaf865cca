// Package devices is the contract between devicehub and the things that connect to it: the
// device types and what each may do (types.go), the MQTT topic scheme (topics.go), who may
// publish and subscribe where, expressed as data plus a checker (acl.go), and the JSON payloads
// exchanged on those topics (messages.go, telemetry.go).
//
// It is transport-free and imports only the standard library, so the hub, the embedded broker's
// hook, a future NATS or EMQX adapter, the simulator and device firmware written in Go can all
// share one definition. The device-side MQTT client lives in the client subpackage.
//
// docs/protocol.md describes the same protocol for people who do not read Go.
package devices
