package sqlite

// unbindCleanup returns the statements that end everything a binding carries, run in the
// unbind transaction with the device ID as their only argument. Features that keep
// per-binding rows (pairings, sync cursors, settings) add theirs here.
func unbindCleanup() []string {
	return []string{
		// Pairings end with the binding on either side; a new owner starts unpaired.
		`DELETE FROM pairings WHERE controller_id = ?1 OR gadget_id = ?1`,
		// A controller's place in the old account's log means nothing in a new one.
		`DELETE FROM sync_cursors WHERE controller_id = ?1`,
		// The owner's alarm times and display choices are not the next owner's business.
		`DELETE FROM settings WHERE owner = ?1`,
	}
}
