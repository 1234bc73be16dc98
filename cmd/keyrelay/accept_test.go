package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/wire"
)

// dialer returns a dialer whose connections come from the loopback
// address from (127.0.0.2 etc. are distinct sources on Linux).
func dialer(from string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 3 * time.Second}
}

// slowHeaders opens n connections from the address from, each sending
// the start of a request and then one header byte every 100 ms until the
// test ends (or the server closes it).
func slowHeaders(t *testing.T, addr, from string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); wg.Wait() })
	for range n {
		c, err := dialer(from).Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial from %s: %v", from, err)
		}
		conns = append(conns, c)
		wg.Go(func() {
			defer c.Close()
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ")
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					if _, err := io.WriteString(c, "a"); err != nil {
						return
					}
				}
			}
		})
	}
	return conns
}

// countClosed reads from every connection for up to wait and returns how
// many the server closed meanwhile.
func countClosed(conns []net.Conn, wait time.Duration) int {
	var mu sync.Mutex
	n := 0
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(wait))
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
				mu.Lock()
				n++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return n
}

// healthzFrom gets /healthz from the address from and returns an error
// unless it answers 200 "ok".
func healthzFrom(base, from string) error {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: dialer(from).DialContext}}
	resp, err := c.Get(base + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		return errors.New("healthz: " + resp.Status + " " + string(body))
	}
	return nil
}

// wsFrom opens a WebSocket to the relay from the address from.
func wsFrom(ctx context.Context, t *testing.T, base, from string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/ws", &websocket.DialOptions{
		Subprotocols: []string{wire.Subprotocol},
		HTTPClient:   &http.Client{Transport: &http.Transport{DialContext: dialer(from).DialContext}},
	})
	if err != nil {
		t.Fatalf("WebSocket from %s: %v", from, err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

// readType reads frames until one of type want.
func readType(ctx context.Context, t *testing.T, ws *websocket.Conn, want wire.FrameType) map[string]any {
	t.Helper()
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		var f map[string]any
		json.Unmarshal(b, &f)
		if f["type"] == string(want) {
			return f
		}
	}
}

// pairFrom sets up a room from the address from: A creates it, B joins,
// A sees B join.
func pairFrom(t *testing.T, base, from string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := wsFrom(ctx, t, base, from)
	a.Write(ctx, websocket.MessageText, []byte(`{"type":"create","group":"x25519"}`))
	room, _ := readType(ctx, t, a, wire.TypeRoom)["room"].(string)
	if room == "" {
		t.Fatal("create: no room ID")
	}
	b := wsFrom(ctx, t, base, from)
	b.Write(ctx, websocket.MessageText, []byte(`{"type":"join","room":"`+room+`"}`))
	readType(ctx, t, b, wire.TypeRoom)
	readType(ctx, t, a, wire.TypePeerJoined)
	a.Close(websocket.StatusNormalClosure, "")
	b.Close(websocket.StatusNormalClosure, "")
}

// TestAcceptLimitPerIP is finding 5 of issue 13 at small scale: one
// address holds more slow-header connections than --max-accept-per-ip;
// the extra ones are closed at once, and another address is served
// meanwhile (/healthz and a WebSocket pair).
func TestAcceptLimitPerIP(t *testing.T) {
	base, _, _ := start(t, "--max-accept-per-ip", "8", "--max-conns-per-ip", "4")
	addr := strings.TrimPrefix(base, "http://")
	conns := slowHeaders(t, addr, "127.0.0.1", 20)
	if got, want := countClosed(conns, time.Second), 12; got != want {
		t.Errorf("the relay closed %d of 20 slow connections from one IP within 1 s, want %d (20 - --max-accept-per-ip)", got, want)
	}
	if err := healthzFrom(base, "127.0.0.2"); err != nil {
		t.Errorf("/healthz from 127.0.0.2 during the attack: %v", err)
	}
	pairFrom(t, base, "127.0.0.2")
	if m := mustGetFrom(t, base+"/metrics", "127.0.0.3"); !strings.Contains(m, `keyrelay_accept_refused_total{limit="per_ip"} 12`) {
		t.Errorf("/metrics does not count 12 refused per IP:\n%s", grepLines(m, "keyrelay_accept"))
	}
}

// TestAcceptLimitTotal fills --max-conns-total from several addresses:
// connections from a new address are closed at once, and served again
// once some close.
func TestAcceptLimitTotal(t *testing.T) {
	base, _, _ := start(t, "--max-conns-total", "12", "--max-accept-per-ip", "4", "--max-conns-per-ip", "2")
	addr := strings.TrimPrefix(base, "http://")
	var held [][]net.Conn
	for _, from := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		held = append(held, slowHeaders(t, addr, from, 4))
	}
	extra := slowHeaders(t, addr, "127.0.0.6", 3)
	if got := countClosed(extra, time.Second); got != 3 {
		t.Errorf("with --max-conns-total held, %d of 3 connections from a new address were closed, want 3", got)
	}
	for _, cs := range held {
		if got := countClosed(cs, 100*time.Millisecond); got != 0 {
			t.Errorf("%d connections within the limits were closed early", got)
		}
	}
	if err := healthzFrom(base, "127.0.0.2"); err == nil {
		t.Error("/healthz was served over --max-conns-total")
	}
	for _, c := range held[0] {
		c.Close()
	}
	deadline := time.Now().Add(3 * time.Second)
	for err := healthzFrom(base, "127.0.0.2"); err != nil; err = healthzFrom(base, "127.0.0.2") {
		if time.Now().After(deadline) {
			t.Fatalf("/healthz after 4 connections closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHijackedConnReleased checks that a WebSocket (a connection net/http
// hijacked) counts under --max-accept-per-ip while open, and that its
// place is released when it closes.
func TestHijackedConnReleased(t *testing.T) {
	base, _, _ := start(t, "--max-accept-per-ip", "2")
	addr := strings.TrimPrefix(base, "http://")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws := wsFrom(ctx, t, base, "127.0.0.2")
	ws.Write(ctx, websocket.MessageText, []byte(`{"type":"create","group":"x25519"}`))
	readType(ctx, t, ws, wire.TypeRoom)
	if m := mustGetFrom(t, base+"/metrics", "127.0.0.3"); !strings.Contains(m, "keyrelay_accept_open_connections 2\n") {
		t.Errorf("with a WebSocket open, /metrics lacks keyrelay_accept_open_connections 2 (the WebSocket and the scrape):\n%s", grepLines(m, "keyrelay_accept"))
	}
	if got := countClosed(slowHeaders(t, addr, "127.0.0.2", 2), time.Second); got != 1 {
		t.Errorf("beside an open WebSocket, %d of 2 connections from its address were closed, want 1", got)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	// Wait for the relay to close its side (the connection with a
	// trickling header times out after --http-read-header-timeout, 5 s:
	// later than this).
	deadline := time.Now().Add(3 * time.Second)
	for {
		m := mustGetFrom(t, base+"/metrics", "127.0.0.3")
		if strings.Contains(m, "keyrelay_accept_open_connections 2\n") { // the slow one and the scrape
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the WebSocket closed, open connections did not fall to 2:\n%s", grepLines(m, "keyrelay_accept"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := countClosed(slowHeaders(t, addr, "127.0.0.2", 1), 500*time.Millisecond); got != 0 {
		t.Error("after the WebSocket closed, a connection from its address was still refused")
	}
}

// TestFileLimitRaised lowers the process's soft RLIMIT_NOFILE, starts the
// relay and checks that the soft limit is back at the hard limit and
// logged; the limit is restored afterwards.
func TestFileLimitRaised(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Skip(err)
	}
	if orig.Max < 2048 {
		t.Skipf("hard limit %d too low for the test", orig.Max)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 1024, Max: orig.Max}); err != nil {
		t.Skip(err)
	}
	_, logs, _ := start(t)
	var now syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now)
	if now.Cur != orig.Max {
		t.Errorf("soft limit %d after start, want the hard limit %d", now.Cur, orig.Max)
	}
	if want := "soft_before=1024"; !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}
}

// TestMaxConnsTotalOverFileLimit checks that the relay refuses to start
// when --max-conns-total cannot be held within the open files limit.
func TestMaxConnsTotalOverFileLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Skip(err)
	}
	total := "1000000000"
	err := run(context.Background(), []string{"--addr", "127.0.0.1:0", "--max-conns-total", total}, func(string) string { return "" }, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "RLIMIT_NOFILE") {
		t.Fatalf("run with --max-conns-total %s: %v, want an error naming RLIMIT_NOFILE", total, err)
	}
}

// mustGetFrom gets u from the address from and returns the body.
func mustGetFrom(t *testing.T, u, from string) string {
	t.Helper()
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: dialer(from).DialContext, DisableKeepAlives: true}}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
