package faults

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// redisProxy forwards TCP connections to a Redis server, and can freeze a
// connection right after the next command that names a given member: that
// command reaches Redis, nothing after it does, as if the relay had died
// just after it. Everything else passes through unchanged.
type redisProxy struct {
	ln     net.Listener
	target string
	after  atomic.Pointer[freezeRule] // freeze after the next command it matches
	held   chan struct{}              // closed when a connection froze
	once   sync.Once
	done   chan struct{} // closed when the test ends
	mu     sync.Mutex    // guards conns
	conns  []net.Conn
}

// startRedisProxy listens on a free loopback port and forwards to target
// until the test ends.
func startRedisProxy(t *testing.T, target string) *redisProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &redisProxy{ln: ln, target: target, held: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() {
		close(px.done)
		ln.Close()
		px.mu.Lock()
		defer px.mu.Unlock()
		for _, c := range px.conns {
			c.Close()
		}
	})
	go px.serve()
	return px
}

func (px *redisProxy) addr() string { return px.ln.Addr().String() }

// freezeRule picks a command: one carrying member and at least size bytes.
type freezeRule struct {
	member string
	size   int
}

// freezeAfter arms the proxy: the next command that carries member (a peer
// ID) and is at least size bytes long (a message's store command, which
// carries the ciphertext, not an ack) is forwarded, and nothing the same
// connection sends after it.
func (px *redisProxy) freezeAfter(member string, size int) {
	px.after.Store(&freezeRule{member, size})
}

func (px *redisProxy) serve() {
	for {
		c, err := px.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", px.target)
		if err != nil {
			c.Close()
			continue
		}
		px.mu.Lock()
		px.conns = append(px.conns, c, up)
		px.mu.Unlock()
		go func() {
			io.Copy(c, up)
			c.Close()
		}()
		go px.forward(c, up)
	}
}

// forward copies commands from the relay to Redis, freezing after the
// armed member's next command.
func (px *redisProxy) forward(c, up net.Conn) {
	defer up.Close()
	buf := make([]byte, 256<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			freeze := false
			if m := px.after.Load(); m != nil && len(chunk) >= m.size && bytes.Contains(chunk, []byte(m.member)) && px.after.CompareAndSwap(m, nil) {
				freeze = true
			}
			if _, err := up.Write(chunk); err != nil {
				return
			}
			if freeze {
				px.once.Do(func() { close(px.held) })
				<-px.done // the relay dies with nothing more sent
				return
			}
		}
		if err != nil {
			return
		}
	}
}
