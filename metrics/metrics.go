// Package metrics owns devicehub's Prometheus registry and the collectors every other package
// reports into; the HTTP server exposes it at /metrics.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics is the set of collectors of one hub process.
type Metrics struct {
	Registry *prometheus.Registry

	AuthFailures   *prometheus.CounterVec
	ACLRefusals    *prometheus.CounterVec
	StoreLatency   *prometheus.HistogramVec
	FramesRejected *prometheus.CounterVec
	HTTPRequests   *prometheus.CounterVec
}

// New registers every collector on a fresh registry (never the global one, so two hubs in one
// test process do not collide).
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "devicehub_auth_failures_total", Help: "Refused logins, by transport and reason.",
		}, []string{"transport", "reason"}),
		ACLRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "devicehub_acl_refusals_total", Help: "Refused MQTT publishes and subscriptions, by action and reason.",
		}, []string{"action", "reason"}),
		StoreLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "devicehub_store_operation_seconds",
			Help:    "Time taken by store operations, by operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"op"}),
		FramesRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "devicehub_mqtt_frames_rejected_total", Help: "Connections closed because a frame was malformed or too large, or no CONNECT came in time.",
		}, []string{"reason"}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "devicehub_http_requests_total", Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
	}
	r.MustRegister(m.AuthFailures, m.ACLRefusals,
		m.StoreLatency, m.FramesRejected, m.HTTPRequests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveStore records the duration of one store operation.
func (m *Metrics) ObserveStore(op string, d time.Duration) {
	m.StoreLatency.WithLabelValues(op).Observe(d.Seconds())
}

// BrokerStats reads the embedded broker's own counters.
type BrokerStats interface {
	ClientsConnected() float64
	MessagesIn() float64
	MessagesOut() float64
}

// RegisterBroker exposes the broker's counters, read when /metrics is scraped (the broker
// keeps them anyway; counting again in a hook would cost the publish path).
func (m *Metrics) RegisterBroker(b BrokerStats) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "devicehub_mqtt_clients_connected", Help: "MQTT clients connected now."}, b.ClientsConnected),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "devicehub_mqtt_messages_in_total", Help: "PUBLISH packets received from clients."}, b.MessagesIn),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "devicehub_mqtt_messages_out_total", Help: "PUBLISH packets sent to clients."}, b.MessagesOut),
	)
}
