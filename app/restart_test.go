package app_test

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/hooks/storage"

	"github.com/devicehub/devicehub/app/apptest"
)

// TestRestartKeepsPersistentSubscription: a persistent session's subscription is stored by
// our storage hook and restored at start: what is published after the restart, while the
// client is still offline, is queued for it, and the client, coming back (CONNACK session
// present), receives it without subscribing again.
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
	pub, err := connect(t, h2.MQTTURL(), "publisher", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, pub.Publish("keep/one", 1, false, "published after the restart"))
	// mochi acknowledges a publish before it queues it for subscribers, so the PUBACK does
	// not mean keeper's session has the message yet; keeper connecting in between would
	// inherit the session without it. The storage hook writes the queued message before
	// mochi goes on, so its row is the sign.
	apptest.Eventually(t, 10*time.Second, func() error {
		rows, err := h2.DB().ListBrokerState(testCtx(t), storage.InflightKey)
		if err != nil || len(rows) == 0 {
			return fmt.Errorf("keep/one not queued for keeper yet (%d in-flight rows, %v)", len(rows), err)
		}
		return nil
	})
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

	select {
	case m := <-got:
		if m != "keep/one published after the restart" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the restored subscription did not receive the message")
	}
}

// TestRestartKeepsRetainedState: a retained message survives a restart through our storage
// hook (clients without credentials, which broker.allow_anonymous lets in on loopback;
// devices cannot leave retained messages), and a hub started without allow_anonymous
// deletes it.
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
	if before != "on" || after != "on" {
		t.Fatalf("retained message on status/lamp: before the restart %q, after %q; want %q both times", before, after, "on")
	}
	h2.Stop(t)

	// Without allow_anonymous every client is a device, and no retained state may outlive
	// an experiment: the stored message is deleted at start.
	h3 := apptest.StartIn(t, dir, nil)
	if rt, err := h3.DB().ListBrokerState(testCtx(t), storage.RetainedKey); err != nil || len(rt) != 0 {
		t.Fatalf("retained messages kept without allow_anonymous: %q %v", rt, err)
	}
}

// retainedFor subscribes a fresh clean session to topic and returns the payload of the
// retained message the broker hands it ("" when none comes). mochi queues retained messages
// for the subscriber before it reads the client's next packet, so a publish sent after the
// SUBACK marks the end of them: whatever arrives before that marker is retained. The client
// hands messages over in the order they arrive (connect's clients do not, and the marker
// could overtake the retained message).
func retainedFor(t *testing.T, url, id, topic string) string {
	t.Helper()
	msgs := make(chan paho.Message, 8)
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(id).SetPassword("x").
		SetCleanSession(true).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetOrderMatters(true)
	sub := paho.NewClient(o)
	wait(t, sub.Connect())
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
