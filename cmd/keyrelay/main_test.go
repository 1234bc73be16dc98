package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/web"
	"github.com/keyrelay/keyrelay/wire"
)

// syncBuffer is a goroutine-safe log sink that reports the address the
// server logs when it starts listening.
type syncBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	addrc chan string
}

var listenRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m := listenRE.FindSubmatch(p); m != nil {
		b.addrc <- string(m[1])
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start runs the server on a loopback port and returns its base URL, its log
// and a function that stops it and returns run's error.
func start(t *testing.T, args ...string) (string, *syncBuffer, func() error) {
	t.Helper()
	addr, logs, stop := startWith(t, nil, args...)
	return "http://" + addr, logs, stop
}

// startWith is start with a reload channel for run; it returns the
// address the server listens on, not a URL.
func startWith(t *testing.T, reload <-chan os.Signal, args ...string) (string, *syncBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{addrc: make(chan string, 1)}
	done := make(chan struct{})
	var runErr error
	getenv := func(string) string { return "" }
	go func() {
		defer close(done)
		runErr = run(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...), getenv, reload, io.Discard, logs)
	}()
	select {
	case addr := <-logs.addrc:
		stop := func() error { cancel(); <-done; return runErr }
		t.Cleanup(func() { cancel(); <-done })
		return addr, logs, stop
	case <-done:
		cancel()
		t.Fatalf("run returned before listening: %v\n%s", runErr, logs.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("server did not start; log:\n%s", logs.String())
	}
	return "", nil, nil
}

func getJSON(t *testing.T, method, u, body string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	return resp.StatusCode
}

// TestTutorialInteraction does what the tutorial's README does against a
// freshly started server: two key pairs, two shared keys that match. It also
// checks that no private key or query string reaches the log, and that the
// server stops cleanly.
func TestTutorialInteraction(t *testing.T) {
	base, logs, stop := start(t, "--log-level", "debug")

	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("/healthz: %d %q", resp.StatusCode, body)
	}

	type pair struct {
		PrivateKey string `json:"private_key"`
		PublicKey  string `json:"public_key"`
	}
	var alice, bob pair
	if getJSON(t, "GET", base+"/generate-keys", "", &alice) != 200 || getJSON(t, "GET", base+"/generate-keys", "", &bob) != 200 {
		t.Fatal("generate-keys failed")
	}
	var s1, s2 struct {
		SharedKey string `json:"shared_key"`
	}
	q := url.Values{"local_private_key": {alice.PrivateKey}, "remote_public_key": {bob.PublicKey}}
	if code := getJSON(t, "GET", base+"/generate-shared-key?"+q.Encode(), "", &s1); code != 200 {
		t.Fatalf("GET generate-shared-key: %d", code)
	}
	b, _ := json.Marshal(map[string]string{"local_private_key": bob.PrivateKey, "remote_public_key": alice.PublicKey})
	if code := getJSON(t, "POST", base+"/generate-shared-key", string(b), &s2); code != 200 {
		t.Fatalf("POST generate-shared-key: %d", code)
	}
	if s1.SharedKey == "" || s1.SharedKey != s2.SharedKey {
		t.Fatalf("shared keys differ: %q vs %q", s1.SharedKey, s2.SharedKey)
	}

	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, "path=/generate-shared-key") {
		t.Fatalf("request log missing (debug level):\n%s", out)
	}
	for _, secret := range []string{alice.PrivateKey, bob.PrivateKey, "local_private_key", s1.SharedKey} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q", secret)
		}
	}
	if !strings.Contains(out, "msg=stopped") {
		t.Errorf("no clean stop in log:\n%s", out)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad flag", []string{"--nope"}, nil, "flag provided but not defined"},
		{"extra arg", []string{"serve"}, nil, "unexpected argument"},
		{"bad level", []string{"--log-level", "loud"}, nil, "--log-level"},
		{"bad format", []string{"--log-format", "xml"}, nil, "--log-format"},
		{"bad origin", []string{"--cors-origins", "example.com"}, nil, "allowed origin"},
		{"bad env bool", nil, map[string]string{"KEYRELAY_KEY_API_GET": "maybe"}, "KEYRELAY_KEY_API_GET"},
		{"bad addr", []string{"--addr", "127.0.0.1:99999"}, nil, "invalid port"},
		{"bad env addr", nil, map[string]string{"KEYRELAY_ADDR": "256.0.0.1:0"}, "256.0.0.1"},
		{"bad env duration", nil, map[string]string{"KEYRELAY_ROOM_TTL": "soon"}, "KEYRELAY_ROOM_TTL"},
		{"bad env int", nil, map[string]string{"KEYRELAY_MAX_ROOMS": "many"}, "KEYRELAY_MAX_ROOMS"},
		{"zero frames", []string{"--frames-per-second", "0"}, nil, "must be positive"},
		{"small frames", []string{"--max-frame-bytes", "100"}, nil, "MaxFrameBytes"},
		{"bad redis url", []string{"--redis-url", "ftp://127.0.0.1:1"}, nil, "--redis-url"},
		{"cert without key", []string{"--tls-cert", "cert.pem"}, nil, "set both or neither"},
		{"env key without cert", nil, map[string]string{"KEYRELAY_TLS_KEY": "key.pem"}, "set both or neither"},
		{"missing cert files", []string{"--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"}, nil, "/nonexistent/cert.pem"},
		{"bad trusted proxy", []string{"--trusted-proxies", "10.0.0.0/8,nope"}, nil, `--trusted-proxies: realip: trusted proxy "nope"`},
		{"bad env trusted proxy", nil, map[string]string{"KEYRELAY_TRUSTED_PROXIES": "10.0.0.0/99"}, "--trusted-proxies"},
		{"negative timeout", []string{"--http-read-timeout", "-1s"}, nil, "must not be negative"},
		{"bad env timeout", nil, map[string]string{"KEYRELAY_HTTP_IDLE_TIMEOUT": "long"}, "KEYRELAY_HTTP_IDLE_TIMEOUT"},
		{"zero header bytes", []string{"--max-header-bytes", "0"}, nil, "--max-header-bytes must be more than 4096"},
		{"header bytes within the slack", []string{"--max-header-bytes", "4096"}, nil, "--max-header-bytes must be more than 4096"},
		{"negative hsts", []string{"--hsts-max-age", "-1s"}, nil, "--hsts-max-age"},
		{"zero key api slots", []string{"--key-api-slots", "0"}, nil, "--key-api-slots"},
		{"bad env key api rate", nil, map[string]string{"KEYRELAY_KEY_API_RATE": "fast"}, "KEYRELAY_KEY_API_RATE"},
		{"bad env key api", nil, map[string]string{"KEYRELAY_KEY_API": "sometimes"}, "KEYRELAY_KEY_API"},
		{"key api off and apart", []string{"--key-api=false", "--key-api-addr", "127.0.0.1:0"}, nil, "choose one"},
		{"bad key api addr", []string{"--key-api-addr", "127.0.0.1:99999"}, nil, "--key-api-addr"},
		{"bad metrics addr", []string{"--metrics-addr", "127.0.0.1:99999"}, nil, "--metrics-addr"},
		{"ping as long as the TTL", []string{"--ping-interval", "10m", "--room-ttl", "10m"}, nil, "PingInterval 10m0s must be below half of RoomTTL"},
		{"bad env legacy groups", nil, map[string]string{"KEYRELAY_ALLOW_LEGACY_GROUPS": "perhaps"}, "KEYRELAY_ALLOW_LEGACY_GROUPS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			err := run(context.Background(), tt.args, getenv, nil, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestGETDisabled checks --key-api-get=false from the environment.
func TestGETDisabled(t *testing.T) {
	base, _, _ := start(t, "--key-api-get=false")
	var e struct{ Message string }
	if code := getJSON(t, "GET", base+"/generate-shared-key?local_private_key=1&remote_public_key=2", "", &e); code != 405 {
		t.Errorf("GET with --key-api-get=false: %d %q", code, e.Message)
	}
}

// TestRelayEndpoints checks the wiring: the WebSocket endpoint through the
// request logger, metrics and readiness.
func TestRelayEndpoints(t *testing.T) {
	base, _, stop := start(t, "--log-level", "debug")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/ws", &websocket.DialOptions{Subprotocols: []string{wire.Subprotocol}})
	if err != nil {
		t.Fatalf("dial /v1/ws: %v", err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"create","group":"x25519"}`)); err != nil {
		t.Fatal(err)
	}
	_, b, err := ws.Read(ctx)
	if err != nil || !strings.Contains(string(b), `"type":"room"`) {
		t.Fatalf("create: %s, %v", b, err)
	}
	for path, want := range map[string]string{
		"/readyz":  "ready\n",
		"/metrics": "keyrelay_connections 1\n",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
	if !strings.Contains(mustGet(t, base+"/metrics"), "keyrelay_rooms 1\n") {
		t.Error("/metrics does not count the room")
	}
	// Shutdown closes the WebSocket with "going away".
	go stop()
	_, _, err = ws.Read(context.Background())
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("on shutdown the client got %v, want close 1001", err)
	}
}

func mustGet(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestTwoInstancesOnRedis starts two servers on one real Redis, as behind a
// load balancer: a room created on one is joined on the other, and the
// handshake completes across them.
func TestTwoInstancesOnRedis(t *testing.T) {
	addr := redistest.Start(t)
	base1, _, _ := start(t, "--redis-url", "redis://"+addr)
	base2, _, _ := start(t, "--redis-url", "redis://"+addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(base string) *websocket.Conn {
		ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/ws", &websocket.DialOptions{Subprotocols: []string{wire.Subprotocol}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.CloseNow() })
		return ws
	}
	exchange := func(ws *websocket.Conn, frame string, wantType string) map[string]any {
		t.Helper()
		if frame != "" {
			if err := ws.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
				t.Fatal(err)
			}
		}
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("waiting for %s: %v", wantType, err)
			}
			var f map[string]any
			json.Unmarshal(b, &f)
			if f["type"] == "error" {
				t.Fatalf("error frame %s", b)
			}
			if f["type"] == wantType {
				return f
			}
		}
	}
	a, b := dial(base1), dial(base2)
	room := exchange(a, `{"type":"create","group":"x25519"}`, "room")["room"].(string)
	exchange(b, `{"type":"join","room":"`+room+`"}`, "room")
	ka, _ := dh.X25519().GenerateKey(rand.Reader)
	kb, _ := dh.X25519().GenerateKey(rand.Reader)
	exchange(a, `{"type":"key","public_key":"`+ka.PublicKey().Hex()+`","group":"`+ka.PublicKey().Group().Name()+`"}`, "key_ok")
	if f := exchange(b, `{"type":"key","public_key":"`+kb.PublicKey().Hex()+`","group":"`+kb.PublicKey().Group().Name()+`"}`, "handshake_complete"); f["group"] != "x25519" {
		t.Fatalf("handshake_complete %v", f)
	}
	if f := exchange(a, "", "peer_key"); f["public_key"] != kb.PublicKey().Hex() {
		t.Fatalf("A got %v", f)
	}
	exchange(a, "", "handshake_complete")
	if got := mustGet(t, base1+"/readyz"); got != "ready\n" {
		t.Errorf("/readyz = %q", got)
	}
}

// TestChatPage checks that the server serves the chat page at / with its
// security headers and MIME types, and that / shadows none of the other
// routes.
func TestChatPage(t *testing.T) {
	base, _, _ := start(t)
	pages := []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script type="module" src="app.js">`},
		{"/app.js", "text/javascript; charset=utf-8", `from "./keyrelay.js"`},
		{"/keyrelay.js", "text/javascript; charset=utf-8", "export class Client"},
		{"/style.css", "text/css; charset=utf-8", ":focus-visible"},
	}
	for _, p := range pages {
		resp, err := http.Get(base + p.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), p.contains) {
			t.Errorf("GET %s: %d, body lacks %q", p.path, resp.StatusCode, p.contains)
		}
		for name, want := range map[string]string{
			"Content-Type":            p.contentType,
			"Content-Security-Policy": web.ContentSecurityPolicy,
			"Referrer-Policy":         "no-referrer",
			"X-Content-Type-Options":  "nosniff",
		} {
			if got := resp.Header.Get(name); got != want {
				t.Errorf("GET %s: %s = %q, want %q", p.path, name, got, want)
			}
		}
	}
	csp := web.ContentSecurityPolicy
	for _, want := range []string{"default-src 'self'", "script-src 'self';", "connect-src 'self' ws: wss:"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("Content-Security-Policy %q allows inline script or eval", csp)
	}

	// The other routes keep their handlers.
	for path, want := range map[string]string{
		"/healthz":       "ok\n",
		"/readyz":        "ready\n",
		"/metrics":       "keyrelay_connections",
		"/generate-keys": "private_key",
	} {
		if got := mustGet(t, base+path); !strings.Contains(got, want) {
			t.Errorf("GET %s = %q, want it to contain %q", path, got, want)
		}
	}
	// /v1/ws is still the relay: without the subprotocol a plain GET is
	// refused by the WebSocket handshake, not answered with the page.
	resp, err := http.Get(base + "/v1/ws")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 || strings.Contains(string(body), "<html") {
		t.Errorf("GET /v1/ws: %d %q, want the relay's refusal", resp.StatusCode, body)
	}
	// Unknown paths and methods.
	resp, err = http.Get(base + "/nope.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope.js: %d, want 404", resp.StatusCode)
	}
	resp, err = http.Post(base+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", resp.StatusCode)
	}
}

// TestDebugAddr: --debug-addr serves Go's profiles on a listener of its
// own; the public address does not.
func TestDebugAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	debug := ln.Addr().String()
	ln.Close()
	base, logs, _ := start(t, "--debug-addr", debug)
	if !strings.Contains(logs.String(), "debug listener") {
		t.Errorf("no log line for the debug listener:\n%s", logs)
	}
	if body := mustGet(t, "http://"+debug+"/debug/pprof/goroutine?debug=1"); !strings.Contains(body, "goroutine profile:") {
		t.Errorf("goroutine profile: %.200s", body)
	}
	resp, err := http.Get(base + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Error("the public listener serves /debug/pprof/")
	}
}

// TestLimitsSharedOnRedis: two servers on one Redis count a client's
// connections together (the limits live in Redis beside the rooms).
func TestLimitsSharedOnRedis(t *testing.T) {
	addr := redistest.Start(t)
	base1, _, _ := start(t, "--redis-url", "redis://"+addr, "--max-conns-per-ip", "1")
	base2, _, _ := start(t, "--redis-url", "redis://"+addr, "--max-conns-per-ip", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(base string) *websocket.Conn {
		ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/ws", &websocket.DialOptions{Subprotocols: []string{wire.Subprotocol}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.CloseNow() })
		return ws
	}
	first := dial(base1)
	if err := first.Write(ctx, websocket.MessageText, []byte(`{"type":"create"}`)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := first.Read(ctx); err != nil || !strings.Contains(string(b), `"type":"room"`) {
		t.Fatalf("first connection: %s, %v", b, err)
	}
	second := dial(base2)
	_, _, err := second.Read(ctx)
	if got := websocket.CloseStatus(err); got != wire.CloseTooManyConnsPerIP {
		t.Fatalf("second connection, on the other server: %v, want close %d", err, wire.CloseTooManyConnsPerIP)
	}
}

// TestRedisEvictionPolicy: a Redis that may evict is refused at start, with
// how to fix it, unless --redis-allow-eviction, which only warns.
func TestRedisEvictionPolicy(t *testing.T) {
	srv := redistest.StartServerArgs(t, "--maxmemory-policy", "allkeys-lru")
	logs := &syncBuffer{addrc: make(chan string, 1)}
	err := run(t.Context(), []string{"--addr", "127.0.0.1:0", "--redis-url", srv.URL()}, func(string) string { return "" }, nil, io.Discard, logs)
	if err == nil {
		t.Fatal("run on an allkeys-lru Redis succeeded, want an error")
	}
	for _, want := range []string{`"allkeys-lru"`, "CONFIG SET maxmemory-policy noeviction", "--redis-allow-eviction"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("run's error %q does not say %q", err, want)
		}
	}

	base, out, stop := start(t, "--redis-url", srv.URL(), "--redis-allow-eviction")
	if !strings.Contains(out.String(), "level=WARN") || !strings.Contains(out.String(), "allkeys-lru") {
		t.Errorf("log with --redis-allow-eviction = %q, want a warning naming allkeys-lru", out)
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz with --redis-allow-eviction = %d, want 200", resp.StatusCode)
	}
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
}
