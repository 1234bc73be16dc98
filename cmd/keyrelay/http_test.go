package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/wire"
)

// readUntilClosed reads conn until the server closes it and returns what
// it sent. It fails the test if the connection is still open after 10 s,
// far longer than the timeouts the tests configure.
func readUntilClosed(t *testing.T, conn net.Conn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(conn)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("the server kept the connection open (read %q)", b)
	}
	return string(b)
}

// TestSlowClientsAreCutOff checks the HTTP server's read timeouts with raw
// TCP clients: half a header, and a header whose body never comes.
func TestSlowClientsAreCutOff(t *testing.T) {
	base, _, _ := start(t, "--http-read-header-timeout", "200ms", "--http-read-timeout", "300ms")
	addr := strings.TrimPrefix(base, "http://")
	dial := func() net.Conn {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}

	t.Run("complete request", func(t *testing.T) {
		conn := dial()
		io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
		if got := readUntilClosed(t, conn); !strings.HasPrefix(got, "HTTP/1.1 200 OK") {
			t.Errorf("complete request: %q", got)
		}
	})
	t.Run("half a header", func(t *testing.T) {
		conn := dial()
		io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ")
		if got := readUntilClosed(t, conn); strings.Contains(got, "200 OK") {
			t.Errorf("half a header was answered: %q", got)
		}
	})
	t.Run("body never sent", func(t *testing.T) {
		conn := dial()
		io.WriteString(conn, "POST /generate-shared-key HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"local_")
		if got := readUntilClosed(t, conn); strings.Contains(got, "200 OK") {
			t.Errorf("a truncated body was answered with 200: %q", got)
		}
	})
}

// headStatus sends a request whose head (request line and header fields,
// final CRLF included) is exactly size bytes, over raw TCP, and returns the
// status line.
func headStatus(t *testing.T, addr string, size int) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head, tail := "GET /healthz HTTP/1.1\r\nHost: relay\r\nConnection: close\r\nX-Pad: ", "\r\n\r\n"
	io.WriteString(conn, head+strings.Repeat("a", size-len(head)-len(tail))+tail)
	got := readUntilClosed(t, conn)
	line, _, _ := strings.Cut(got, "\r\n")
	return line
}

// TestHeaderLimitExact checks that --max-header-bytes is the largest
// request head accepted, to the byte (net/http alone would accept 4096
// more).
func TestHeaderLimitExact(t *testing.T) {
	for _, limit := range []int{8192, 16384} {
		base, _, _ := start(t, "--max-header-bytes", strconv.Itoa(limit))
		addr := strings.TrimPrefix(base, "http://")
		if got := headStatus(t, addr, limit); got != "HTTP/1.1 200 OK" {
			t.Errorf("limit %d: a head of %d bytes got %q, want 200", limit, limit, got)
		}
		if got := headStatus(t, addr, limit+1); !strings.HasPrefix(got, "HTTP/1.1 431") {
			t.Errorf("limit %d: a head of %d bytes got %q, want 431", limit, limit+1, got)
		}
	}
}

// TestWebSocketOutlivesHTTPTimeouts opens a WebSocket and uses it only
// after every HTTP timeout has passed several times: net/http clears the
// connection's deadlines when the relay takes the connection over.
func TestWebSocketOutlivesHTTPTimeouts(t *testing.T) {
	const timeout = 200 * time.Millisecond
	d := timeout.String()
	base, _, _ := start(t, "--http-read-header-timeout", d, "--http-read-timeout", d,
		"--http-write-timeout", d, "--http-idle-timeout", d)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/ws",
		&websocket.DialOptions{Subprotocols: []string{wire.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	time.Sleep(5 * timeout)
	// The relay reads this frame and writes its answer after the read and
	// write deadlines of the handshake request would have expired.
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"create","group":"x25519"}`)); err != nil {
		t.Fatal(err)
	}
	_, b, err := ws.Read(ctx)
	if err != nil || !strings.Contains(string(b), `"type":"room"`) {
		t.Fatalf("create after %v: %s, %v", 5*timeout, b, err)
	}
}

// dialAs opens a WebSocket carrying an X-Forwarded-For header and checks
// that it is served (a create gets a room) or closed with want.
func dialAs(t *testing.T, base, xff string, want websocket.StatusCode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/ws", &websocket.DialOptions{
		Subprotocols: []string{wire.Subprotocol},
		HTTPHeader:   http.Header{"X-Forwarded-For": {xff}},
	})
	if err != nil {
		t.Fatalf("dial with X-Forwarded-For %q: %v", xff, err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	err = ws.Write(ctx, websocket.MessageText, []byte(`{"type":"create","group":"x25519"}`))
	var b []byte
	if err == nil {
		_, b, err = ws.Read(ctx)
	}
	if want == -1 {
		var f struct{ Type wire.FrameType }
		if err != nil || json.Unmarshal(b, &f) != nil || f.Type != wire.TypeRoom {
			t.Fatalf("X-Forwarded-For %q: got %s, %v; want a room", xff, b, err)
		}
		return
	}
	if got := websocket.CloseStatus(err); got != want {
		t.Fatalf("X-Forwarded-For %q: got %s, %v; want close %d", xff, b, err, want)
	}
}

// TestTrustedProxies checks that the per-IP limit counts clients by
// X-Forwarded-For when, and only when, the peer is a trusted proxy.
func TestTrustedProxies(t *testing.T) {
	const served = -1
	tests := []struct {
		name       string
		args       []string
		xff1, xff2 string
		want2      websocket.StatusCode
	}{
		{"trusted, two clients", []string{"--trusted-proxies", "127.0.0.1/32"}, "203.0.113.1", "203.0.113.2", served},
		{"trusted, one client twice", []string{"--trusted-proxies", "127.0.0.1/32"}, "203.0.113.1", "203.0.113.1", wire.CloseTooManyConnsPerIP},
		{"trusted, spoofed entries left of the client", []string{"--trusted-proxies", "127.0.0.1/32"}, "198.51.100.1, 203.0.113.1", "198.51.100.2, 203.0.113.1", wire.CloseTooManyConnsPerIP},
		{"trusted, IPv6 client in two spellings", []string{"--trusted-proxies", "127.0.0.1"}, "2001:db8::1", "[2001:DB8:0::1]:4711", wire.CloseTooManyConnsPerIP},
		{"not trusted: header ignored", nil, "203.0.113.1", "203.0.113.2", wire.CloseTooManyConnsPerIP},
		{"other proxies trusted: header ignored", []string{"--trusted-proxies", "10.0.0.0/8"}, "203.0.113.1", "203.0.113.2", wire.CloseTooManyConnsPerIP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, _, _ := start(t, append([]string{"--max-conns-per-ip", "1"}, tt.args...)...)
			dialAs(t, base, tt.xff1, served)
			dialAs(t, base, tt.xff2, tt.want2)
		})
	}
}
