// Package simulator drives simulated people, phones, bands and scales against a devicehub hub
// over real MQTT (the devices/client library, on paho) and the real HTTP API (apiclient).
// Every simulated phone is a devices.PhoneModel run by devices/phonesim, which applies and
// acknowledges the hub's commands as the phone app does, so what the story checks about a
// phone (lost mode, calls, signing out) is the device-side code itself.
//
// RunScenario plays one story, step by step, from registration to selling a band (see
// StepNames); a step whose hub feature has not landed yet reports "not implemented" instead of
// being skipped. RunLoad provisions accounts and gadgets through the admin fast path, connects
// them all, pairs them and measures telemetry from send to receipt at the phones. Both run
// against a Target: a hub elsewhere, or one StartEmbedded runs in this process.
//
// `devicehub sim scenario` and `devicehub sim load` are the command-line front ends
// (docs/simulator.md).
package simulator
