package relaytest

import (
	"context"
	"net"
	"net/http"
	"sync"
)

// Cutter makes HTTP clients whose connections a test can cut, as a network
// failure would: the client's socket closes with no close frame. The zero
// value is ready to use.
type Cutter struct {
	mu    sync.Mutex
	conns []net.Conn // guarded by mu
}

// HTTPClient returns an http.Client (for websocket.DialOptions or
// client.Options) whose connections Cut closes.
func (c *Cutter) HTTPClient() *http.Client {
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := d.DialContext(ctx, network, addr)
			if err == nil {
				c.mu.Lock()
				c.conns = append(c.conns, nc)
				c.mu.Unlock()
			}
			return nc, err
		},
	}}
}

// Cut closes every connection made so far.
func (c *Cutter) Cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, nc := range c.conns {
		nc.Close()
	}
	c.conns = nil
}
