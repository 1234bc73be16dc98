package faults

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// redisProxy forwards TCP connections to a Redis server, and can hold the
// next command that publishes a message event: it stops forwarding that
// connection there, as if the relay had died just before the command left
// it. Everything else passes through unchanged.
type redisProxy struct {
	ln     net.Listener
	target string
	hold   atomic.Bool   // hold the next message publish
	held   chan struct{} // closed when a publish was held
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

// holdMessagePublish arms the proxy: the next command that publishes a
// message event is held, never reaching Redis.
func (px *redisProxy) holdMessagePublish() { px.hold.Store(true) }

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

// forward copies commands from the relay to Redis, holding a message
// publish if armed. A publish is the publish script's call, whose
// arguments name the room's event channel ("events:{room}") and carry the
// encoded event, which starts with its type; SUBSCRIBE also names the
// channel, but not "message" in the same write.
func (px *redisProxy) forward(c, up net.Conn) {
	defer up.Close()
	buf := make([]byte, 256<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if px.hold.Load() && bytes.Contains(chunk, []byte("events:{")) &&
				bytes.Contains(chunk, []byte("message")) &&
				!bytes.Contains(bytes.ToLower(chunk), []byte("subscribe")) {
				px.hold.Store(false)
				px.once.Do(func() { close(px.held) })
				<-px.done // the relay dies with the command unsent
				return
			}
			if _, err := up.Write(chunk); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
