package sqlite

import (
	"context"
	"testing"
	"time"
)

// TestAckOfOtherCommandsTakesNoWrite: a device's command_ack of a command that is not a pairing
// notice (most acks) is answered without the writer: it still answers while another
// connection holds the write lock, where a write would wait out the busy timeout and fail.
func TestAckOfOtherCommandsTakesNoWrite(t *testing.T) {
	db := openTemp(t, 200*time.Millisecond)
	s, err := db.SyncLog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	release := holdWriteLock(t, db)
	defer release()
	found, err := s.DeletePairingNotice(context.Background(), "dev_a", "cmd_not_a_notice")
	if err != nil {
		t.Fatalf("ack of a command that is no pairing notice, with the write lock held elsewhere: %v", err)
	}
	if found {
		t.Fatal("reported a pairing notice deleted where there was none")
	}
}

// TestAckOfUnstoredCommandTakesNoWrite: an ack of something the hub never stored as a command
// (a settings event, a pairing notice) changes nothing and is answered from a read, while
// another connection holds the write lock.
func TestAckOfUnstoredCommandTakesNoWrite(t *testing.T) {
	db := openTemp(t, 200*time.Millisecond)
	release := holdWriteLock(t, db)
	defer release()
	changed, err := db.FinishCommand(context.Background(), "dev_a", "settings", "acknowledged", "", time.Now())
	if err != nil {
		t.Fatalf("ack of an unstored command, with the write lock held elsewhere: %v", err)
	}
	if changed {
		t.Fatal("reported a command finished where there was none")
	}
}
