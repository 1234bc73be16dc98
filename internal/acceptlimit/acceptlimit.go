// Package acceptlimit limits a server's open connections at accept time,
// per client address and in total, before any byte of HTTP is read.
//
// The relay's per-IP WebSocket limit (package limits) counts connections
// only once they are upgraded. Until then an HTTP connection costs a file
// descriptor, a goroutine and buffers, and a client that trickles its
// request header holds them until http.Server.ReadHeaderTimeout. Without
// a limit at accept time one address can use up the process's file
// descriptors (accept4: too many open files) and every other client,
// /healthz included, is refused. A Limiter counts each connection from
// Accept until its Close, whatever happens in between: HTTP requests,
// keep-alive, and connections hijacked for WebSocket, which net/http
// hands over as the very net.Conn its listener returned, so that the
// WebSocket's Close releases the count.
//
// A connection over a limit is closed at once, without a response: writing
// an HTTP 429 would mean reading the request first (or answering a
// request that was never read, which the client may see as a reset
// anyway), and what this limit defends against is the cost of reading.
// Clients see a closed connection; honest ones never get there, since the
// limits are sized above what the relay's other limits let one client
// use.
//
// Behind a reverse proxy every connection comes from the proxy's address:
// the per-address limit must not apply to it (Config.Exempt, given the
// trusted proxies), and the limits that remain are the total here and the
// per-client limits of the proxy and of the relay (package limits, which
// sees the client's address in X-Forwarded-For).
package acceptlimit

import (
	"net"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyrelay/keyrelay/realip"
)

// Config configures a Limiter. The zero value limits nothing.
type Config struct {
	// PerAddr is the most connections open at once from one client
	// address: one IPv4 address, or one IPv6 /64 (a host usually has a
	// whole /64). Zero or negative: no limit per address.
	PerAddr int
	// Total is the most connections open at once in all. Zero or
	// negative: no limit in total.
	Total int
	// Exempt reports whether an address is exempt from PerAddr (such as
	// a trusted reverse proxy's, which carries many clients). Its
	// connections still count towards Total. Nil: none is exempt.
	Exempt func(netip.Addr) bool
	// Registerer, if not nil, gets the Limiter's metrics:
	// keyrelay_accept_open_connections (a gauge) and
	// keyrelay_accept_refused_total{limit="per_ip"|"total"}.
	Registerer prometheus.Registerer
}

// Reasons a connection is refused, the values of the metric's limit label.
const (
	refusedPerAddr = "per_ip"
	refusedTotal   = "total"
)

// Limiter counts the connections of one or more listeners (a process's
// file descriptors are one budget, whichever address they were accepted
// on). A Limiter is safe for concurrent use.
type Limiter struct {
	// Static after construction.
	cfg     Config
	open    prometheus.Gauge
	refused *prometheus.CounterVec

	mu     sync.Mutex           // guards the following
	total  int                  // connections open
	byAddr map[netip.Prefix]int // connections open per address (or /64); no zero entries
}

// New returns a Limiter with cfg's limits. It returns an error if the
// metrics cannot be registered.
func New(cfg Config) (*Limiter, error) {
	l := &Limiter{
		cfg:    cfg,
		byAddr: make(map[netip.Prefix]int),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyrelay_accept_open_connections",
			Help: "Connections accepted and not yet closed, HTTP and WebSocket.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyrelay_accept_refused_total",
			Help: "Connections closed as soon as accepted, by the limit they were over (per_ip, total).",
		}, []string{"limit"}),
	}
	l.refused.WithLabelValues(refusedPerAddr)
	l.refused.WithLabelValues(refusedTotal)
	if r := cfg.Registerer; r != nil {
		for _, c := range []prometheus.Collector{l.open, l.refused} {
			if err := r.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// Listen returns ln limited by l. Closing the returned listener closes
// ln; connections it accepted stay open and counted until closed.
func (l *Limiter) Listen(ln net.Listener) net.Listener {
	return &listener{Listener: ln, l: l}
}

// listener is a net.Listener that closes connections over its Limiter's
// limits as soon as they are accepted.
type listener struct {
	net.Listener
	l *Limiter
}

// Accept waits for a connection within the limits and returns it.
// Connections over a limit are closed and counted, and Accept goes on
// waiting. It returns the wrapped listener's errors.
func (ln *listener) Accept() (net.Conn, error) {
	l := ln.l
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, limited := l.key(c.RemoteAddr())
		if reason := l.admit(key, limited); reason != "" {
			l.refused.WithLabelValues(reason).Inc()
			c.Close()
			continue
		}
		l.open.Inc()
		return &conn{Conn: c, l: l, key: key, limited: limited}, nil
	}
}

// key returns the address a connection counts under, and whether the
// per-address limit applies to it.
func (l *Limiter) key(a net.Addr) (netip.Prefix, bool) {
	if l.cfg.PerAddr <= 0 {
		return netip.Prefix{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}, false // not IP (a Unix socket): total only
	}
	addr := ap.Addr().Unmap().WithZone("")
	if l.cfg.Exempt != nil && l.cfg.Exempt(addr) {
		return netip.Prefix{}, false
	}
	return realip.SourcePrefix(addr), true
}

// admit counts a connection under key, or returns the limit it is over.
func (l *Limiter) admit(key netip.Prefix, limited bool) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.Total > 0 && l.total >= l.cfg.Total {
		return refusedTotal
	}
	if limited && l.byAddr[key] >= l.cfg.PerAddr {
		return refusedPerAddr
	}
	l.total++
	if limited {
		l.byAddr[key]++
	}
	return ""
}

func (l *Limiter) release(key netip.Prefix, limited bool) {
	l.mu.Lock()
	l.total--
	if limited {
		if n := l.byAddr[key] - 1; n > 0 {
			l.byAddr[key] = n
		} else {
			delete(l.byAddr, key)
		}
	}
	l.mu.Unlock()
	l.open.Dec()
}

// Open returns the number of connections accepted and not yet closed.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// OpenFrom returns the number of open connections counted under addr's
// address (its /64 for IPv6); 0 for an exempt address.
func (l *Limiter) OpenFrom(addr netip.Addr) int {
	key, limited := l.key(net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, 1)))
	if !limited {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byAddr[key]
}

// conn is an accepted connection; its first Close releases its count.
type conn struct {
	net.Conn
	l       *Limiter
	key     netip.Prefix
	limited bool
	once    sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key, c.limited) })
	return err
}

// NetConn returns the connection it wraps, for code that needs the
// *net.TCPConn; closing that one directly does not release the count.
func (c *conn) NetConn() net.Conn { return c.Conn }
