package devices

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

var (
	phone    = Identity{DeviceID: "d1", AccountID: "acc1", Type: Phone}
	band     = Identity{DeviceID: "d1", AccountID: "acc1", Type: Band}
	unbound  = Identity{DeviceID: "d1", Type: Phone}
	unboundB = Identity{DeviceID: "d1", Type: Band}
)

func TestAuthorizeSubscribe(t *testing.T) {
	tests := []struct {
		name   string
		id     Identity
		filter string
		reason string // "" means allowed
	}{
		{"own res", phone, "devices/d1/res", ""},
		{"own commands", phone, "devices/d1/commands", ""},
		{"own tree", unboundB, "devices/d1/#", ""},
		{"own telemetry wildcard", band, "devices/d1/telemetry/+", ""},
		{"own one level wildcard", band, "devices/d1/+", ""},
		{"shared own", phone, "$share/g1/devices/d1/res", ""},
		{"account sync for bound controller", phone, "accounts/acc1/sync/#", ""},
		{"account tree for bound controller", phone, "accounts/acc1/#", ""},
		{"one sync source", phone, "accounts/acc1/sync/d7/+", ""},

		{"everything", phone, "#", ReasonNotOwnTopic},
		{"plus plus hash", phone, "+/+/#", ReasonNotOwnTopic},
		{"plus", phone, "+", ReasonNotOwnTopic},
		{"any device res", phone, "devices/+/res", ReasonNotOwnTopic},
		{"any device telemetry", phone, "devices/+/telemetry/#", ReasonNotOwnTopic},
		{"all devices", phone, "devices/#", ReasonNotOwnTopic},
		{"devices parent", phone, "devices", ReasonNotOwnTopic},
		{"own parent only", phone, "devices/d1", ""},
		{"victim tree", phone, "devices/d2/#", ReasonNotOwnTopic},
		{"victim commands", phone, "devices/d2/commands", ReasonNotOwnTopic},
		{"prefix of victim id", phone, "devices/d1x/res", ReasonNotOwnTopic},
		{"id as prefix level", phone, "devices/d/res", ReasonNotOwnTopic},
		{"shared victim", phone, "$share/x/devices/d2/#", ReasonSharedSubscription},
		{"shared everything", phone, "$share/x/#", ReasonSharedSubscription},
		{"shared bad group", phone, "$share/+/devices/d1/res", ReasonInvalidTopic},
		{"shared empty group", phone, "$share//devices/d1/res", ReasonInvalidTopic},
		{"shared no filter", phone, "$share/g", ReasonInvalidTopic},
		{"sys", phone, "$SYS/#", ReasonNotOwnTopic},
		{"other account", phone, "accounts/acc2/sync/#", ReasonNotOwnTopic},
		{"any account", phone, "accounts/+/sync/#", ReasonNotOwnTopic},
		{"all accounts", phone, "accounts/#", ReasonNotOwnTopic},
		{"account unbound", unbound, "accounts/acc1/sync/#", ReasonNotBound},
		{"account gadget", band, "accounts/acc1/sync/#", ReasonNotController},
		{"hash then more", phone, "devices/d1/#/x", ReasonInvalidTopic},
		{"hash inside level", phone, "devices/d1/res#", ReasonInvalidTopic},
		{"plus inside level", phone, "devices/d1+/res", ReasonInvalidTopic},
		{"empty", phone, "", ReasonInvalidTopic},
		{"nul", phone, "devices/d1/\x00", ReasonInvalidTopic},
		{"control", phone, "devices/d1/\x1b[2J", ReasonInvalidTopic},
		{"c1 control", phone, "devices/d1/\u0085", ReasonInvalidTopic},
		{"invalid utf8", phone, "devices/d1/\xff", ReasonInvalidTopic},
		{"too long", phone, "devices/d1/" + strings.Repeat("a", 250), ReasonInvalidTopic},
		{"too deep", phone, "devices/d1" + strings.Repeat("/a", 15), ReasonInvalidTopic},
		{"invalid identity", Identity{DeviceID: "+", Type: Phone}, "devices/+/res", ReasonInvalidIdentity},
		{"identity with slash", Identity{DeviceID: "d1/#", Type: Phone}, "devices/d1/#", ReasonInvalidIdentity},
		{"unknown type", Identity{DeviceID: "d1", Type: "toaster"}, "devices/d1/res", ReasonInvalidIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := AuthorizeSubscribe(tt.id, tt.filter)
			if got := RefusalReason(err); got != tt.reason {
				t.Fatalf("AuthorizeSubscribe(%+v, %q) = %v, want reason %q", tt.id, tt.filter, err, tt.reason)
			}
			if tt.reason != "" && !errors.Is(err, &Refusal{Reason: tt.reason}) {
				t.Fatalf("errors.Is does not match reason %q: %v", tt.reason, err)
			}
		})
	}
}

func TestAuthorizePublish(t *testing.T) {
	tests := []struct {
		name   string
		id     Identity
		topic  string
		reason string
	}{
		{"own request", unbound, "devices/d1/req", ""},
		{"band steps", band, "devices/d1/telemetry/steps", ""},
		{"phone location", phone, "devices/d1/telemetry/location", ""},

		{"telemetry unbound", unboundB, "devices/d1/telemetry/steps", ReasonNotBound},
		{"stream of another type", band, "devices/d1/telemetry/weight", ReasonStreamNotAllowed},
		{"unknown stream", phone, "devices/d1/telemetry/x", ReasonStreamNotAllowed},
		{"telemetry too deep", phone, "devices/d1/telemetry/location/x", ReasonUnknownTopic},
		{"own res", phone, "devices/d1/res", ReasonHubOnlyTopic},
		{"own commands", phone, "devices/d1/commands", ReasonHubOnlyTopic},
		{"own unknown", phone, "devices/d1/other", ReasonUnknownTopic},
		{"own parent", phone, "devices/d1", ReasonUnknownTopic},
		{"victim request", phone, "devices/d2/req", ReasonNotOwnTopic},
		{"victim commands", phone, "devices/d2/commands", ReasonNotOwnTopic},
		{"victim res", phone, "devices/d2/res", ReasonNotOwnTopic},
		{"victim telemetry", phone, "devices/d2/telemetry/location", ReasonNotOwnTopic},
		{"sync injection", phone, "accounts/acc1/sync/d2/location", ReasonNotOwnTopic},
		{"own sync topic", phone, "devices/d1/sync", ReasonHubOnlyTopic},
		{"sys", phone, "$SYS/broker/clients", ReasonNotOwnTopic},
		{"plus", phone, "devices/+/req", ReasonWildcardInPublish},
		{"hash", phone, "#", ReasonWildcardInPublish},
		{"empty", phone, "", ReasonInvalidTopic},
		{"nul", phone, "devices/d1/req\x00", ReasonInvalidTopic},
		{"del", phone, "devices/d1/req\x7f", ReasonInvalidTopic},
		{"invalid utf8", phone, "devices/d1/\xc3", ReasonInvalidTopic},
		{"too long", phone, "devices/d1/" + strings.Repeat("r", 300), ReasonInvalidTopic},
		{"invalid identity", Identity{DeviceID: "", Type: Phone}, "devices//req", ReasonInvalidIdentity},
		{"invalid account", Identity{DeviceID: "d1", AccountID: "a/#", Type: Phone}, "devices/d1/req", ReasonInvalidIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := AuthorizePublish(tt.id, tt.topic)
			if got := RefusalReason(err); got != tt.reason {
				t.Fatalf("AuthorizePublish(%+v, %q) = %v, want reason %q", tt.id, tt.topic, err, tt.reason)
			}
		})
	}
}

func TestPermissionsFor(t *testing.T) {
	tests := []struct {
		name string
		id   Identity
		want Permissions
	}{
		{"unbound phone", unbound, Permissions{
			Publish:   []string{"devices/d1/req"},
			Subscribe: []string{"devices/d1/res", "devices/d1/commands", "devices/d1/#"},
		}},
		{"bound band", band, Permissions{
			Publish: []string{"devices/d1/req", "devices/d1/telemetry/steps", "devices/d1/telemetry/heart_rate",
				"devices/d1/telemetry/sleep", "devices/d1/telemetry/battery"},
			Subscribe: []string{"devices/d1/res", "devices/d1/commands", "devices/d1/#"},
		}},
		{"bound phone", phone, Permissions{
			Publish:   []string{"devices/d1/req", "devices/d1/telemetry/location", "devices/d1/telemetry/battery"},
			Subscribe: []string{"devices/d1/res", "devices/d1/commands", "devices/d1/#", "accounts/acc1/sync/#", "accounts/acc1/#"},
		}},
		{"invalid", Identity{DeviceID: "#", Type: Phone}, Permissions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PermissionsFor(tt.id)
			if !slices.Equal(got.Publish, tt.want.Publish) || !slices.Equal(got.Subscribe, tt.want.Subscribe) {
				t.Fatalf("PermissionsFor(%+v) =\n%+v\nwant\n%+v", tt.id, got, tt.want)
			}
			// The data and the checker must agree: every publish pattern is a topic the
			// checker accepts, every subscribe pattern a filter it accepts.
			for _, p := range got.Publish {
				if err := AuthorizePublish(tt.id, p); err != nil {
					t.Errorf("publish pattern %q refused by AuthorizePublish: %v", p, err)
				}
			}
			for _, s := range got.Subscribe {
				if err := AuthorizeSubscribe(tt.id, s); err != nil {
					t.Errorf("subscribe pattern %q refused by AuthorizeSubscribe: %v", s, err)
				}
			}
		})
	}
}

// foreignTopics are topics of another device, another account or the broker: no allowed
// filter of phone/band d1 in acc1 may match any of them.
func foreignTopics() []string {
	var out []string
	for _, dev := range []string{"d2", "d1x", "d", "D1", "+", "#"} {
		out = append(out, RequestTopic(dev), ResponseTopic(dev), CommandTopic(dev), TelemetryTopic(dev, "location"), "devices/"+dev)
	}
	for _, acc := range []string{"acc2", "acc", "acc1x"} {
		out = append(out, SyncTopic(acc, "d1", "location"), SyncTopic(acc, "d2", "steps"), "accounts/"+acc)
	}
	return append(out, "$SYS/broker/clients", "devices", "accounts", "x", "devices/d2/telemetry")
}

// assertConfined checks the fuzz property for one allowed filter.
func assertConfined(t *testing.T, id Identity, filter string) {
	t.Helper()
	_, inner, _, _ := splitShared(filter)
	for _, topic := range foreignTopics() {
		if Match(inner, topic) {
			t.Fatalf("allowed filter %q for %+v matches foreign topic %q", filter, id, topic)
		}
	}
	if !id.Bound() || !IsController(id.Type) {
		if Match(inner, SyncTopic(id.AccountID+"acc1", "d2", "location")) || Match(inner, SyncTopic("acc1", "d2", "location")) {
			t.Fatalf("allowed filter %q for %+v reaches account topics", filter, id)
		}
	}
	// Fill every wildcard with another device's ID: the result must stay in d1's or acc1's tree.
	concrete := strings.NewReplacer("+", "d2", "#", "d2/x").Replace(inner)
	l := strings.Split(concrete, "/")
	ownDevice := len(l) >= 2 && l[0] == DevicesPrefix && l[1] == id.DeviceID
	ownAccount := len(l) >= 2 && l[0] == AccountsPrefix && l[1] == id.AccountID && id.Bound() && IsController(id.Type)
	if !ownDevice && !ownAccount {
		t.Fatalf("allowed filter %q for %+v reaches %q", filter, id, concrete)
	}
}

func FuzzAuthorizeSubscribe(f *testing.F) {
	for _, s := range []string{"#", "+/+/#", "devices/+/telemetry/#", "$share/x/devices/d2/#", "$SYS/#",
		"devices/d1/#", "devices/d1/res", "accounts/acc1/sync/#", "accounts/+/sync/#", "$share/g/devices/d1/+",
		"devices/d1", "devices/d1/+/+", "devices/d1\x00/#", "devices/d1/#/x"} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(3))
	}
	ids := []Identity{phone, band, unbound, unboundB}
	f.Fuzz(func(t *testing.T, filter string, which uint8) {
		id := ids[int(which)%len(ids)]
		err := AuthorizeSubscribe(id, filter)
		if err != nil {
			if RefusalReason(err) == "" {
				t.Fatalf("refusal is not a *Refusal: %v", err)
			}
			return
		}
		if ValidFilter(filter) != nil {
			t.Fatalf("allowed an invalid filter %q", filter)
		}
		assertConfined(t, id, filter)
	})
}

func FuzzAuthorizePublish(f *testing.F) {
	for _, s := range []string{"devices/d1/req", "devices/d2/req", "devices/d1/telemetry/steps", "devices/d1/telemetry/location",
		"devices/d1/res", "devices/d2/commands", "accounts/acc1/sync/d2/location", "$SYS/x", "#", "devices/d1/req\x00", ""} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
	}
	ids := []Identity{phone, band, unbound, unboundB}
	f.Fuzz(func(t *testing.T, topic string, which uint8) {
		id := ids[int(which)%len(ids)]
		err := AuthorizePublish(id, topic)
		if err != nil {
			if RefusalReason(err) == "" {
				t.Fatalf("refusal is not a *Refusal: %v", err)
			}
			return
		}
		dev, kind, stream, ok := ParseDeviceTopic(topic)
		if !ok || dev != id.DeviceID {
			t.Fatalf("allowed publish to %q, not a topic of %s", topic, id.DeviceID)
		}
		switch kind {
		case KindRequest:
		case KindTelemetry:
			if !id.Bound() || !StreamAllowed(id.Type, stream) {
				t.Fatalf("allowed telemetry %q for %+v", topic, id)
			}
		default:
			t.Fatalf("allowed publish to %s topic %q", kind, topic)
		}
		allowed := false
		for _, p := range PermissionsFor(id).Publish {
			allowed = allowed || Match(p, topic)
		}
		if !allowed {
			t.Fatalf("AuthorizePublish allowed %q but PermissionsFor does not list it", topic)
		}
	})
}

// BenchmarkAuthorizePublishTelemetry: the ACL runs on every publish (twice for a 3.1.1 QoS 1
// one: broker/auth.go's OnPacketRead and mochi's OnACLCheck), so it should not allocate.
func BenchmarkAuthorizePublishTelemetry(b *testing.B) {
	id := Identity{DeviceID: "dev_ytyixorydcmmxk37wwoqq7hgoe", AccountID: "acc_lvqgk3eya6qhhnzz7rv4ri5t6y", Type: Band}
	topic := TelemetryTopic(id.DeviceID, StreamSteps)
	for b.Loop() {
		if err := AuthorizePublish(id, topic); err != nil {
			b.Fatal(err)
		}
	}
}
