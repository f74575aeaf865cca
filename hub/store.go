package hub

// Store is everything the hub keeps. Each part lives in the file of its feature; the SQLite
// implementation is store/sqlite. Methods speak domain types, take a context first, and put
// writes that belong together in one transaction. Missing rows come back as an *Error with
// code not_found.
type Store interface {
	AccountStore
	DeviceStore
	ProfileStore
}
