package hub

// AccountStore keeps accounts, verification codes, sessions and the outbox.
type AccountStore interface{}

// Notifier delivers verification codes and notices to people (through the durable outbox).
type Notifier interface{}
