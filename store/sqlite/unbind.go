package sqlite

// unbindCleanup returns the statements that end everything a binding carries, run in the
// unbind transaction with the device ID as their only argument. Features that keep
// per-binding rows (pairings, sync cursors, settings) add theirs here.
func unbindCleanup() []string {
	return []string{}
}
