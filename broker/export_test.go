package broker

// CloseServer lets the external benchmarks close their bare mochi as the broker does.
var CloseServer = closeServer
