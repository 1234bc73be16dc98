package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/session/redistest"
)

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	// A random loopback address of its own: between this Close and the
	// relay's Listen, another test's listener on 127.0.0.1:0 cannot take
	// the port (the race that made TestKeyAPIAddr fail once in CI).
	ip := fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// get returns the status, the body and the header of GET u (with header h).
func get(t *testing.T, c *http.Client, u string, h http.Header) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestKeyAPIRatePerClient: the key API counts clients as the relay does
// (behind a trusted proxy, by X-Forwarded-For): a client over its rate
// gets 429 with Retry-After, another client is served.
func TestKeyAPIRatePerClient(t *testing.T) {
	base, _, _ := start(t, "--trusted-proxies", "127.0.0.1", "--key-api-rate", "1ms", "--key-api-burst", "2ms")
	u := base + "/generate-keys?group=x25519"
	one := http.Header{"X-Forwarded-For": {"203.0.113.1"}}
	for i := range 2 {
		if code, body, _ := get(t, http.DefaultClient, u, one); code != 200 {
			t.Fatalf("request %d within the burst: %d %s", i+1, code, body)
		}
	}
	code, body, hdr := get(t, http.DefaultClient, u, one)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") != "1" || !strings.Contains(body, `"message":"Too many requests`) {
		t.Errorf("over the rate: %d Retry-After %q %s, want 429, Retry-After 1, Too many requests", code, hdr.Get("Retry-After"), body)
	}
	if code, body, _ := get(t, http.DefaultClient, u, http.Header{"X-Forwarded-For": {"203.0.113.2"}}); code != 200 {
		t.Errorf("another client: %d %s, want 200", code, body)
	}
}

// TestKeyAPIAddr: --key-api-addr serves the key API apart and takes it off
// --addr; --key-api=false serves it nowhere.
func TestKeyAPIAddr(t *testing.T) {
	keyAddr := freeAddr(t)
	base, logs, _ := start(t, "--key-api-addr", keyAddr)
	if code, body, _ := get(t, http.DefaultClient, "http://"+keyAddr+"/generate-keys", nil); code != 200 || !strings.Contains(body, "private_key") {
		t.Errorf("key API on --key-api-addr: %d %s", code, body)
	}
	if code, _, _ := get(t, http.DefaultClient, base+"/generate-keys", nil); code != http.StatusNotFound {
		t.Errorf("key API on --addr with --key-api-addr: %d, want 404", code)
	}
	if code, _, _ := get(t, http.DefaultClient, "http://"+keyAddr+"/healthz", nil); code != http.StatusNotFound {
		t.Errorf("/healthz on --key-api-addr: %d, want 404 (the key API only)", code)
	}
	if !strings.Contains(logs.String(), `msg="key api listening" addr=`+keyAddr) {
		t.Errorf("no log line for the key API's listener:\n%s", logs)
	}

	base, logs, _ = start(t, "--key-api=false")
	for _, path := range []string{"/generate-keys", "/generate-shared-key"} {
		if code, _, _ := get(t, http.DefaultClient, base+path, nil); code != http.StatusNotFound {
			t.Errorf("%s with --key-api=false: %d, want 404", path, code)
		}
	}
	if !strings.Contains(logs.String(), "key api off") {
		t.Errorf("no log line saying the key API is off:\n%s", logs)
	}
}

// TestHSTS: Strict-Transport-Security on every response under TLS (key API
// apart included), never over plain HTTP.
func TestHSTS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	tc := newTestCert(t, 1)
	tc.install(t, certFile, keyFile)
	roots := x509.NewCertPool()
	roots.AddCert(tc.cert)
	// ServerName: the certificate names 127.0.0.1, and freeAddr gives the
	// key API another loopback address.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}}}

	keyAddr := freeAddr(t)
	addr, _, _ := startWith(t, nil, "--tls-cert", certFile, "--tls-key", keyFile, "--key-api-addr", keyAddr)
	for _, u := range []string{
		"https://" + addr + "/healthz",
		"https://" + addr + "/",
		"https://" + addr + "/no-such-page",
		"https://" + keyAddr + "/generate-keys",
	} {
		if _, _, hdr := get(t, client, u, nil); hdr.Get("Strict-Transport-Security") != "max-age=31536000" {
			t.Errorf("GET %s: Strict-Transport-Security %q, want max-age=31536000", u, hdr.Get("Strict-Transport-Security"))
		}
	}
	addr, _, _ = startWith(t, nil, "--tls-cert", certFile, "--tls-key", keyFile, "--hsts-max-age", "48h")
	if _, _, hdr := get(t, client, "https://"+addr+"/healthz", nil); hdr.Get("Strict-Transport-Security") != "max-age=172800" {
		t.Errorf("--hsts-max-age 48h: %q", hdr.Get("Strict-Transport-Security"))
	}
	addr, _, _ = startWith(t, nil, "--tls-cert", certFile, "--tls-key", keyFile, "--hsts-max-age", "0")
	if _, _, hdr := get(t, client, "https://"+addr+"/healthz", nil); hdr.Get("Strict-Transport-Security") != "" {
		t.Errorf("--hsts-max-age 0: %q", hdr.Get("Strict-Transport-Security"))
	}
	base, _, _ := start(t)
	if _, _, hdr := get(t, http.DefaultClient, base+"/healthz", nil); hdr.Get("Strict-Transport-Security") != "" {
		t.Errorf("plain HTTP sent Strict-Transport-Security %q", hdr.Get("Strict-Transport-Security"))
	}
}

// TestCORSPreflight: by default the key API lets any page read a GET but
// refuses preflights; an origin listed in --cors-origins gets them.
func TestCORSPreflight(t *testing.T) {
	pre := http.Header{"Origin": {"https://app.example"}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"content-type"}}
	preflight := func(base string) (int, http.Header) {
		req, _ := http.NewRequest("OPTIONS", base+"/generate-shared-key", nil)
		req.Header = pre.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	base, _, _ := start(t)
	if _, _, hdr := get(t, http.DefaultClient, base+"/generate-keys", http.Header{"Origin": {"https://app.example"}}); hdr.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("default GET: Allow-Origin %q, want *", hdr.Get("Access-Control-Allow-Origin"))
	}
	if code, hdr := preflight(base); code != http.StatusForbidden || hdr.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("default preflight: %d %v, want 403 without Allow-Methods", code, hdr)
	}
	base, _, _ = start(t, "--cors-origins", "https://app.example")
	if code, hdr := preflight(base); code != http.StatusNoContent || hdr.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(hdr.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("preflight from a listed origin: %d %v, want 204 allowing POST", code, hdr)
	}
}

// TestMetricsAddr: --metrics-addr serves /metrics apart and takes it off
// --addr; "off" serves it nowhere.
func TestMetricsAddr(t *testing.T) {
	metricsAddr := freeAddr(t)
	base, _, _ := start(t, "--metrics-addr", metricsAddr)
	if code, body, _ := get(t, http.DefaultClient, "http://"+metricsAddr+"/metrics", nil); code != 200 || !strings.Contains(body, "keyrelay_connections") {
		t.Errorf("/metrics on --metrics-addr: %d %.200s", code, body)
	}
	if code, _, _ := get(t, http.DefaultClient, base+"/metrics", nil); code != http.StatusNotFound {
		t.Errorf("/metrics on --addr with --metrics-addr: %d, want 404", code)
	}
	base, _, _ = start(t, "--metrics-addr", "off")
	if code, _, _ := get(t, http.DefaultClient, base+"/metrics", nil); code != http.StatusNotFound {
		t.Errorf("/metrics with --metrics-addr off: %d, want 404", code)
	}
	// The default keeps /metrics on --addr, and says so when that is public.
	base, logs, _ := start(t)
	if code, _, _ := get(t, http.DefaultClient, base+"/metrics", nil); code != 200 {
		t.Errorf("/metrics by default: %d, want 200", code)
	}
	if strings.Contains(logs.String(), "/metrics is served on the public address") {
		t.Errorf("warned about a loopback address:\n%s", logs)
	}
	for addr, want := range map[string]bool{"127.0.0.1:80": true, "[::1]:80": true, "0.0.0.0:80": false, "[::]:80": false, "192.0.2.1:80": false} {
		a, _ := net.ResolveTCPAddr("tcp", addr)
		if got := isLoopback(a); got != want {
			t.Errorf("isLoopback(%s) = %v, want %v", addr, got, want)
		}
	}
}

// TestReadyzGeneric: with the store down, /readyz answers 503 "not ready"
// and nothing about why; the log has the reason, once.
func TestReadyzGeneric(t *testing.T) {
	redis := redistest.StartServer(t)
	base, logs, _ := start(t, "--redis-url", redis.URL())
	if got := mustGet(t, base+"/readyz"); got != "ready\n" {
		t.Fatalf("/readyz with Redis up: %q", got)
	}
	redis.Stop()
	for range 3 {
		code, body, _ := get(t, http.DefaultClient, base+"/readyz", nil)
		if code != http.StatusServiceUnavailable || body != "not ready\n" {
			t.Errorf("/readyz with Redis down: %d %q, want 503 \"not ready\\n\"", code, body)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "msg=\"not ready\"") || !strings.Contains(out, "err=") {
		t.Errorf("the log does not say why:\n%s", out)
	}
	if n := strings.Count(out, "msg=\"not ready\""); n != 1 {
		t.Errorf("logged %d times for three probes with one reason, want once", n)
	}
}
