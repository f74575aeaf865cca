package devices

import (
	"errors"
	"fmt"
	"strings"
)

// Authorization is expressed twice, on purpose from one source: PermissionsFor returns the
// topic patterns a device may use as plain data (what an external broker's auth callout or ACL
// table needs), and AuthorizePublish/AuthorizeSubscribe check one topic or filter against that
// same data (what the embedded broker's hook calls). Checks compare topic levels with the
// patterns; nothing a client sends is ever turned into a regular expression or glob.

// Identity is who is on the other end of a connection, as the hub knows it after
// authentication.
type Identity struct {
	// DeviceID is the authenticated device; it is also the MQTT client ID and username.
	DeviceID string
	// AccountID is the account the device is bound to, "" while it is unbound.
	AccountID string
	// Type is the device's type.
	Type Type
}

// Bound reports whether the device belongs to an account.
func (id Identity) Bound() bool { return id.AccountID != "" }

func (id Identity) valid() error {
	if err := ValidIdentifier(id.DeviceID); err != nil {
		return fmt.Errorf("device id: %w", err)
	}
	if id.AccountID != "" {
		if err := ValidIdentifier(id.AccountID); err != nil {
			return fmt.Errorf("account id: %w", err)
		}
	}
	if _, ok := Info(id.Type); !ok {
		return fmt.Errorf("unknown device type %q", id.Type)
	}
	return nil
}

// Permissions are the MQTT topic patterns (filters, '+' and '#' as in MQTT) a device may
// publish to and subscribe to. A topic may be published when it matches a Publish pattern; a
// filter may be subscribed when every topic it could match is matched by a Subscribe pattern.
type Permissions struct {
	Publish   []string
	Subscribe []string
}

// PermissionsFor returns what id may do. Every device may publish requests and subscribe to its
// own topics; a bound device may also publish telemetry, on the streams its type allows only
// (listed one by one rather than as telemetry/+, so an external broker enforces the stream
// list too); a bound controller may also subscribe to its account's topics. An invalid
// identity gets no permissions at all.
func PermissionsFor(id Identity) Permissions {
	if id.valid() != nil {
		return Permissions{}
	}
	p := Permissions{
		Publish:   []string{RequestTopic(id.DeviceID)},
		Subscribe: []string{ResponseTopic(id.DeviceID), CommandTopic(id.DeviceID), DeviceFilter(id.DeviceID)},
	}
	if id.Bound() {
		info, _ := Info(id.Type)
		for _, s := range info.Streams {
			p.Publish = append(p.Publish, TelemetryTopic(id.DeviceID, s))
		}
		if info.Controller {
			p.Subscribe = append(p.Subscribe, SyncFilter(id.AccountID), AccountsPrefix+"/"+id.AccountID+"/#")
		}
	}
	return p
}

// Refusal reasons. They go to logs and metrics labels, and back to clients where the
// transport can carry them, so they are stable API.
const (
	ReasonInvalidIdentity    = "invalid_identity"
	ReasonInvalidTopic       = "invalid_topic"
	ReasonWildcardInPublish  = "wildcard_in_publish"
	ReasonNotOwnTopic        = "not_own_topic"
	ReasonHubOnlyTopic       = "hub_only_topic" // a device publishing where only the hub publishes
	ReasonUnknownTopic       = "unknown_topic"  // inside the device's tree, but not in the scheme
	ReasonNotBound           = "not_bound"
	ReasonNotController      = "not_controller"
	ReasonStreamNotAllowed   = "stream_not_allowed"
	ReasonSharedSubscription = "shared_subscription_not_allowed_outside_own_topics"
)

// Refusal is why a publish or subscription was refused.
type Refusal struct {
	Reason  string // one of the Reason constants
	Message string // for people and logs
}

func (r *Refusal) Error() string { return r.Reason + ": " + r.Message }

// Is makes errors.Is(err, &Refusal{Reason: ReasonNotBound}) match any refusal with that reason.
func (r *Refusal) Is(target error) bool {
	t, ok := target.(*Refusal)
	return ok && t.Reason == r.Reason && (t.Message == "" || t.Message == r.Message)
}

// RefusalReason returns the reason of err's Refusal, or "" when err is not one.
func RefusalReason(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

func refuse(reason, format string, args ...any) *Refusal {
	return &Refusal{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// AuthorizePublish returns nil when id may publish to topic, or a *Refusal.
func AuthorizePublish(id Identity, topic string) error {
	if err := id.valid(); err != nil {
		return refuse(ReasonInvalidIdentity, "%v", err)
	}
	if err := ValidTopicName(topic); err != nil {
		if errors.Is(err, ErrWildcard) {
			return refuse(ReasonWildcardInPublish, "a topic name cannot contain '+' or '#'")
		}
		return refuse(ReasonInvalidTopic, "%v", err)
	}
	// The first two levels must be "devices" and the device's own ID.
	rest, under := strings.CutPrefix(topic, DevicesPrefix+"/")
	if own, _, _ := strings.Cut(rest, "/"); !under || own != id.DeviceID {
		return refuse(ReasonNotOwnTopic, "devices publish only under %s/%s/", DevicesPrefix, id.DeviceID)
	}
	_, kind, stream, ok := ParseDeviceTopic(topic)
	if !ok {
		return refuse(ReasonUnknownTopic, "not a topic of the devicehub scheme")
	}
	switch kind {
	case KindRequest:
		return nil
	case KindResponse, KindCommands, KindSync:
		return refuse(ReasonHubOnlyTopic, "only the hub publishes to %s", kind)
	case KindTelemetry:
		if !id.Bound() {
			return refuse(ReasonNotBound, "telemetry is accepted only from devices bound to an account")
		}
		if !StreamAllowed(id.Type, stream) {
			return refuse(ReasonStreamNotAllowed, "a %s does not publish stream %q", id.Type, stream)
		}
		return nil
	}
	return refuse(ReasonUnknownTopic, "not a topic of the devicehub scheme")
}

// AuthorizeSubscribe returns nil when id may subscribe to filter, or a *Refusal. The filter is
// allowed only if every topic it could match lies within id's Subscribe patterns; a shared
// subscription is judged on its inner filter.
func AuthorizeSubscribe(id Identity, filter string) error {
	if err := id.valid(); err != nil {
		return refuse(ReasonInvalidIdentity, "%v", err)
	}
	if err := ValidFilter(filter); err != nil {
		return refuse(ReasonInvalidTopic, "%v", err)
	}
	_, inner, shared, err := splitShared(filter)
	if err != nil {
		return refuse(ReasonInvalidTopic, "%v", err) // unreachable: ValidFilter checked it
	}
	for _, p := range PermissionsFor(id).Subscribe {
		if covers(p, inner) {
			return nil
		}
	}
	if shared {
		return refuse(ReasonSharedSubscription, "a shared subscription must stay within the device's own topics")
	}
	levels := strings.Split(inner, "/")
	if levels[0] == AccountsPrefix && len(levels) > 1 && levels[1] != "+" && levels[1] != "#" {
		switch {
		case !id.Bound():
			return refuse(ReasonNotBound, "account topics are for devices bound to that account")
		case !IsController(id.Type):
			return refuse(ReasonNotController, "only phones and tablets receive the account's sync stream")
		}
	}
	return refuse(ReasonNotOwnTopic, "filter %q reaches topics of other devices or accounts", inner)
}
