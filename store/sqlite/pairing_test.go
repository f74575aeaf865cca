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
	s, err := db.SyncLog()
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
