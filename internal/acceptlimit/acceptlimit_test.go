package acceptlimit

import (
	"bufio"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// listen returns a limited listener on 127.0.0.1 that accepts in the
// background and keeps what it accepts in the returned channel.
func listen(t *testing.T, cfg Config) (*Limiter, string, <-chan net.Conn) {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := l.Listen(raw)
	accepted := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	})
	return l, raw.Addr().String(), accepted
}

// dialFrom connects to addr from the local address from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedPromptly reports whether the server closes c within a second.
func closedPromptly(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func expectAccepted(t *testing.T, accepted <-chan net.Conn, n int) []net.Conn {
	t.Helper()
	var out []net.Conn
	for range n {
		select {
		case c := <-accepted:
			out = append(out, c)
		case <-time.After(2 * time.Second):
			t.Fatalf("accepted %d connections, want %d", len(out), n)
		}
	}
	return out
}

func TestPerAddr(t *testing.T) {
	reg := prometheus.NewRegistry()
	l, addr, accepted := listen(t, Config{PerAddr: 3, Registerer: reg})
	for range 3 {
		dialFrom(t, "127.0.0.1", addr)
	}
	held := expectAccepted(t, accepted, 3)
	extra := dialFrom(t, "127.0.0.1", addr)
	if !closedPromptly(extra) {
		t.Fatal("a 4th connection from 127.0.0.1 was not closed")
	}
	// Another address is not affected.
	other := dialFrom(t, "127.0.0.2", addr)
	expectAccepted(t, accepted, 1)
	if closedPromptly(other) {
		t.Fatal("a connection from 127.0.0.2 was closed")
	}
	if got, want := l.OpenFrom(netip.MustParseAddr("127.0.0.1")), 3; got != want {
		t.Errorf("OpenFrom(127.0.0.1) = %d, want %d", got, want)
	}
	if got := value(l.refused.WithLabelValues("per_ip")); got != 1 {
		t.Errorf("refused per_ip = %v, want 1", got)
	}
	// Closing one frees a place.
	held[0].Close()
	held[0].Close() // twice: counted once
	dialFrom(t, "127.0.0.1", addr)
	expectAccepted(t, accepted, 1)
	if got, want := l.Open(), 4; got != want {
		t.Errorf("Open() = %d, want %d", got, want)
	}
	if got := value(l.open); got != 4 {
		t.Errorf("open gauge = %v, want 4", got)
	}
}

func TestTotal(t *testing.T) {
	l, addr, accepted := listen(t, Config{PerAddr: 2, Total: 4})
	for _, from := range []string{"127.0.0.3", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		dialFrom(t, from, addr)
	}
	held := expectAccepted(t, accepted, 4)
	extra := dialFrom(t, "127.0.0.6", addr)
	if !closedPromptly(extra) {
		t.Fatal("a 5th connection, from a new address, was not closed")
	}
	if got := value(l.refused.WithLabelValues("total")); got != 1 {
		t.Errorf("refused total = %v, want 1", got)
	}
	held[3].Close()
	dialFrom(t, "127.0.0.6", addr)
	expectAccepted(t, accepted, 1)
}

func TestExempt(t *testing.T) {
	proxy := netip.MustParseAddr("127.0.0.7")
	_, addr, accepted := listen(t, Config{PerAddr: 1, Exempt: func(a netip.Addr) bool { return a == proxy }})
	for range 3 {
		dialFrom(t, "127.0.0.7", addr)
	}
	expectAccepted(t, accepted, 3)
}

func TestKeyIPv6Slash64(t *testing.T) {
	l, err := New(Config{PerAddr: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ addr, want string }{
		{"[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::2%eth0]:443", "2001:db8:1:2::/64"},
		{"[::ffff:10.1.2.3]:80", "10.1.2.3/32"},
		{"10.1.2.3:80", "10.1.2.3/32"},
	} {
		ap := netip.MustParseAddrPort(tt.addr)
		got, limited := l.key(net.TCPAddrFromAddrPort(ap))
		if !limited || got.String() != tt.want {
			t.Errorf("key(%s) = %v, %v; want %s, true", tt.addr, got, limited, tt.want)
		}
	}
}

// TestHijackedReleasedOnClose serves HTTP on a limited listener with a
// handler that hijacks the connection, as the WebSocket upgrade does: the
// connection counts while hijacked and is released when the handler's
// goroutine closes it.
func TestHijackedReleasedOnClose(t *testing.T) {
	l, err := New(Config{PerAddr: 1})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hijacked := make(chan net.Conn, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		hijacked <- c
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l.Listen(raw))
	t.Cleanup(func() { srv.Close() })

	c := dialFrom(t, "127.0.0.1", raw.Addr().String())
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	var hc net.Conn
	select {
	case hc = <-hijacked:
	case <-time.After(2 * time.Second):
		t.Fatal("not hijacked")
	}
	if got := l.Open(); got != 1 {
		t.Fatalf("while hijacked Open() = %d, want 1", got)
	}
	// Over the limit while the hijacked connection is open.
	if !closedPromptly(dialFrom(t, "127.0.0.1", raw.Addr().String())) {
		t.Fatal("a second connection was accepted while the hijacked one is open")
	}
	hc.Close()
	if got := l.Open(); got != 0 {
		t.Fatalf("after the hijacked connection's Close, Open() = %d, want 0", got)
	}
	c2 := dialFrom(t, "127.0.0.1", raw.Addr().String())
	c2.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"))
	if resp, err := http.ReadResponse(bufio.NewReader(c2), nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("after release: %v %v", resp, err)
	}
	(<-hijacked).Close()
}

// value reads a counter's or gauge's value.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	c.Write(&m)
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
