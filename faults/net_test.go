package faults

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/relay/client"
)

// relayURL is the URL every client dials; a router decides which relay
// process the connection really goes to, as a load balancer would.
const relayURL = "ws://keyrelay.faults.invalid/v1/ws"

// router is one client's load balancer: its HTTP client dials the relay
// the test points it at, and keeps every connection so that the test can
// cut or freeze the live one.
type router struct {
	mu     sync.Mutex // guards the following
	target string     // host:port of the relay new connections go to
	conns  []*faultConn
	tr     *http.Transport
}

// newRouter returns a router pointing at target; its connections are
// closed when the test ends.
func newRouter(t *testing.T, target string) *router {
	r := &router{target: target}
	r.tr = &http.Transport{DialContext: r.dial, Proxy: nil}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range r.conns {
			c.Conn.Close()
		}
		r.tr.CloseIdleConnections()
	})
	return r
}

// point makes new connections go to target.
func (r *router) point(target string) {
	r.mu.Lock()
	r.target = target
	r.mu.Unlock()
}

// options returns client options that dial through r.
func (r *router) options() *client.Options {
	return &client.Options{HTTPClient: &http.Client{Transport: r.tr}}
}

func (r *router) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	r.mu.Lock()
	target := r.target
	r.mu.Unlock()
	var d net.Dialer
	c, err := d.DialContext(ctx, network, target)
	if err != nil {
		return nil, err
	}
	fc := &faultConn{Conn: c, stop: make(chan struct{})}
	r.mu.Lock()
	r.conns = append(r.conns, fc)
	r.mu.Unlock()
	return fc, nil
}

// latest returns the connection dialled last.
func (r *router) latest() *faultConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.conns) == 0 {
		return nil
	}
	return r.conns[len(r.conns)-1]
}

// cutMode is how a test breaks a client's connection, without a WebSocket
// close frame.
type cutMode int

const (
	// cutClose closes the TCP connection (FIN), as the kernel does for a
	// killed process.
	cutClose cutMode = iota
	// cutReset aborts it (RST).
	cutReset
	// cutFreeze makes the client go silent with the connection open: it
	// reads nothing more and writes nothing more (no pong), and the socket
	// stays open until the test ends, like a hung machine or a vanished
	// network. Only the relay's keepalive can notice.
	cutFreeze
)

func (m cutMode) String() string {
	return [...]string{"close", "reset", "freeze"}[m]
}

// faultConn is a client's TCP connection that the test can cut or freeze.
type faultConn struct {
	net.Conn
	frozen   atomic.Bool
	stop     chan struct{} // closed by Close: frozen reads and writes give up
	stopOnce sync.Once
}

// cut breaks the connection as mode says.
func (c *faultConn) cut(mode cutMode) {
	switch mode {
	case cutClose:
		c.Conn.Close()
	case cutReset:
		if tc, ok := c.Conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Conn.Close()
	case cutFreeze:
		c.frozen.Store(true)
	}
}

func (c *faultConn) Read(p []byte) (int, error) {
	if c.frozen.Load() {
		<-c.stop
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if c.frozen.Load() { // what arrived after the freeze is never seen
		<-c.stop
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *faultConn) Write(p []byte) (int, error) {
	if c.frozen.Load() {
		<-c.stop
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// Close closes the connection, except a frozen one, whose socket stays
// open (the relay must notice by itself): Close then only wakes the
// client's blocked reads and writes.
func (c *faultConn) Close() error {
	c.stopOnce.Do(func() { close(c.stop) })
	if c.frozen.Load() {
		c.Conn.SetReadDeadline(time.Unix(1, 0)) // wakes a read blocked in the kernel; sends nothing
		return nil
	}
	return c.Conn.Close()
}
