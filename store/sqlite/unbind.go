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
		// The old owner's commands still waiting must not reach the device under a new owner
		// (lost mode itself cannot be on here: unbinding is refused while it is).
		`UPDATE commands SET state = 'failed', detail = 'cancelled: the device was unbound' WHERE device_id = ?1 AND state IN ('queued', 'delivered')`,
	}
}
