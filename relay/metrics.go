package relay

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyrelay/keyrelay/session"
)

// metrics are the relay's Prometheus collectors.
type metrics struct {
	connections      prometheus.Gauge
	handshakes       prometheus.Counter
	validationErrors *prometheus.CounterVec
	errors           *prometheus.CounterVec
	rejected         *prometheus.CounterVec
	throttled        *prometheus.CounterVec
	messages         prometheus.Counter
	bytes            prometheus.Counter
	handshakeLatency prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, store session.Store, queued *queuedBytes) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyrelay_connections", Help: "Open WebSocket connections.",
		}),
		handshakes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyrelay_handshakes_total", Help: "Handshakes completed (counted once per room, by the peer whose key completed it).",
		}),
		validationErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyrelay_key_validation_failures_total", Help: "Public keys refused, by reason (wire error code).",
		}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyrelay_errors_total", Help: "Error frames sent, by code.",
		}, []string{"code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyrelay_connections_closed_total", Help: "Connections closed by the relay for a limit, by reason.",
		}, []string{"reason"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyrelay_throttled_total", Help: "Times the relay held back a client over its budget, by budget (ping: a ping left unanswered; bytes: reading paused).",
		}, []string{"budget"}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyrelay_messages_relayed_total", Help: "End-to-end encrypted messages accepted for relaying.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyrelay_message_bytes_relayed_total", Help: "Ciphertext bytes accepted for relaying.",
		}),
		handshakeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keyrelay_handshake_duration_seconds",
			Help:    "Time from a peer's create or join to its handshake_complete.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	if reg == nil {
		return m, nil
	}
	rooms := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keyrelay_rooms", Help: "Rooms in the session store.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := store.Rooms(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	})
	queuedBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keyrelay_queued_bytes", Help: "Bytes of the frames waiting to be written to clients, on every connection.",
	}, func() float64 { return float64(queued.n.Load()) })
	for _, c := range []prometheus.Collector{m.connections, m.handshakes, m.validationErrors, m.errors, m.rejected, m.throttled, m.messages, m.bytes, m.handshakeLatency, rooms, queuedBytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
