package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/relay/client"
)

// testCert is a self-signed certificate for 127.0.0.1 and its PEM files.
type testCert struct {
	cert    *x509.Certificate
	certPEM []byte
	keyPEM  []byte
}

func newTestCert(t *testing.T, serial int64) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "keyrelay test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{
		cert:    cert,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}
}

// writeFile replaces a file at once (write, then rename), as a certificate
// renewal should.
func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

// install writes c's certificate and key to certFile and keyFile.
func (c testCert) install(t *testing.T, certFile, keyFile string) {
	t.Helper()
	writeFile(t, certFile, c.certPEM)
	writeFile(t, keyFile, c.keyPEM)
}

// peerSerial opens a new TLS connection to addr, trusting roots, and
// returns the serial number of the certificate the server presented.
func peerSerial(t *testing.T, addr string, roots *x509.CertPool) string {
	t.Helper()
	d := &tls.Dialer{Config: &tls.Config{RootCAs: roots}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// waitLog waits until the log contains want, or fails after 10 s.
func waitLog(t *testing.T, logs *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log never contained %q:\n%s", want, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTLS serves HTTPS and WSS with a self-signed certificate, reloads a
// new certificate on a reload signal, and keeps it when the next reload
// finds broken files.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first, second := newTestCert(t, 1001), newTestCert(t, 1002)
	first.install(t, certFile, keyFile)
	roots := x509.NewCertPool()
	roots.AddCert(first.cert)
	roots.AddCert(second.cert)

	reload := make(chan os.Signal, 1)
	addr, logs, stop := startWith(t, reload, "--tls-cert", certFile, "--tls-key", keyFile)
	waitLog(t, logs, "serial=1001")
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer httpClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// HTTPS.
	resp, err := httpClient.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz over TLS: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("GET /healthz: %d %q", resp.StatusCode, body)
	}
	if got := resp.TLS.PeerCertificates[0].SerialNumber.Int64(); got != 1001 {
		t.Errorf("HTTPS served serial %d, want 1001", got)
	}

	// WSS through the Go client.
	c, err := client.Dial(ctx, "wss://"+addr+"/v1/ws", &client.Options{HTTPClient: httpClient})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Create(ctx, nil); err != nil {
		t.Fatalf("create over wss: %v", err)
	}

	// HTTP/2 is offered for HTTP; a client whose transport speaks it still
	// opens its WebSocket over HTTP/1.1 (net/http's transport does so for
	// upgrade requests).
	h2 := http.DefaultTransport.(*http.Transport).Clone()
	h2.TLSClientConfig = &tls.Config{RootCAs: roots}
	defer h2.CloseIdleConnections()
	h2Client := &http.Client{Transport: h2}
	resp, err = h2Client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("GET /healthz with an HTTP/2 client: %s, want HTTP/2", resp.Proto)
	}
	c2, err := client.Dial(ctx, "wss://"+addr+"/v1/ws", &client.Options{HTTPClient: h2Client})
	if err != nil {
		t.Fatalf("wss dial with an HTTP/2 client: %v", err)
	}
	if _, err := c2.Create(ctx, nil); err != nil {
		t.Errorf("create over wss with an HTTP/2 client: %v", err)
	}
	c2.Close()

	// Plain HTTP on the TLS port is refused, and so is TLS 1.1.
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP on the TLS port got 200")
		}
	}
	old := &tls.Dialer{Config: &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11}}
	if conn, err := old.DialContext(ctx, "tcp", addr); err == nil {
		conn.Close()
		t.Error("a TLS 1.1 handshake succeeded, want TLS 1.2 at least")
	}

	// A new pair, then a reload: new connections see it.
	second.install(t, certFile, keyFile)
	reload <- syscall.SIGHUP
	waitLog(t, logs, "serial=1002")
	if got := peerSerial(t, addr, roots); got != "1002" {
		t.Errorf("after reload the server presents serial %s, want 1002", got)
	}
	// The WebSocket opened before the reload is still served.
	if err := c.Leave(ctx); err != nil {
		t.Errorf("leave on the WebSocket opened before the reload: %v", err)
	}

	// Broken files: the reload fails, is logged, and serial 1002 stays.
	writeFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))
	reload <- syscall.SIGHUP
	waitLog(t, logs, "tls certificate reload failed")
	if got := peerSerial(t, addr, roots); got != "1002" {
		t.Errorf("after a failed reload the server presents serial %s, want 1002", got)
	}
	// A key that does not match the certificate fails too.
	writeFile(t, certFile, first.certPEM)
	reload <- syscall.SIGHUP
	waitLog(t, logs, "private key does not match public key")
	if got := peerSerial(t, addr, roots); got != "1002" {
		t.Errorf("after a mismatched reload the server presents serial %s, want 1002", got)
	}

	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	out := logs.String()
	for _, secret := range []string{"PRIVATE KEY", strings.Split(string(second.keyPEM), "\n")[1]} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q", secret)
		}
	}
}

// TestSIGHUP reloads the certificate on a real SIGHUP sent to the test
// process, through the handler main installs.
func TestSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first, second := newTestCert(t, 2001), newTestCert(t, 2002)
	first.install(t, certFile, keyFile)
	roots := x509.NewCertPool()
	roots.AddCert(first.cert)
	roots.AddCert(second.cert)

	// Installed before the signal is sent, so SIGHUP cannot terminate
	// the test binary.
	reload, stopReload := notifyReload()
	defer stopReload()
	addr, logs, _ := startWith(t, reload, "--tls-cert", certFile, "--tls-key", keyFile)
	if got := peerSerial(t, addr, roots); got != "2001" {
		t.Fatalf("serial %s, want 2001", got)
	}
	second.install(t, certFile, keyFile)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "serial=2002")
	if got := peerSerial(t, addr, roots); got != "2002" {
		t.Errorf("after SIGHUP the server presents serial %s, want 2002", got)
	}
}

// TestReloadWithoutTLS checks that a reload signal without TLS is logged
// and harmless.
func TestReloadWithoutTLS(t *testing.T) {
	reload := make(chan os.Signal, 1)
	addr, logs, _ := startWith(t, reload)
	reload <- syscall.SIGHUP
	waitLog(t, logs, "no TLS certificate to reload")
	if got := mustGet(t, "http://"+addr+"/healthz"); got != "ok\n" {
		t.Errorf("/healthz after SIGHUP = %q", got)
	}
}

// TestCertificateReload tests the certificate store alone: each failed
// reload keeps the pair in use, and no error carries file contents.
func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	a, b := newTestCert(t, 1), newTestCert(t, 2)
	a.install(t, certFile, keyFile)
	c, err := loadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	serial := func() int64 {
		got, err := c.getCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return got.Leaf.SerialNumber.Int64()
	}
	if got := serial(); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	if cfg := c.tlsConfig(); cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x, want TLS 1.2", cfg.MinVersion)
	}
	b.install(t, certFile, keyFile)
	if err := c.reload(); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != 2 {
		t.Fatalf("after reload serial %d, want 2", got)
	}

	broken := []struct {
		name       string
		cert, key  []byte
		removeCert bool
	}{
		{"garbage certificate", []byte("not PEM"), b.keyPEM, false},
		{"garbage key", b.certPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), false},
		{"key of another certificate", b.certPEM, a.keyPEM, false},
		{"empty files", nil, nil, false},
		{"missing certificate", nil, b.keyPEM, true},
	}
	for _, tt := range broken {
		t.Run(tt.name, func(t *testing.T) {
			writeFile(t, certFile, tt.cert)
			writeFile(t, keyFile, tt.key)
			if tt.removeCert {
				os.Remove(certFile)
			}
			err := c.reload()
			if err == nil {
				t.Fatal("reload succeeded")
			}
			if !strings.Contains(err.Error(), certFile) {
				t.Errorf("error %q does not name %s", err, certFile)
			}
			for _, secret := range [][]byte{a.keyPEM, b.keyPEM} {
				if strings.Contains(err.Error(), strings.Split(string(secret), "\n")[1]) {
					t.Errorf("error %q carries key material", err)
				}
			}
			if got := serial(); got != 2 {
				t.Errorf("after a failed reload serial %d, want 2", got)
			}
		})
	}
}
