package deploy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/wire"
)

// RequireNginxEnv is the environment variable that, set to 1, turns a
// missing nginx from a skip into a failure (CI sets it).
const RequireNginxEnv = "KEYRELAY_REQUIRE_NGINX"

// perIP is the relays' --max-conns-per-ip in TestNginx.
const perIP = 3

// waitTimeout bounds each step of the proxy tests.
const waitTimeout = 20 * time.Second

// nginxPath returns the nginx binary, or skips the test (fails it under
// KEYRELAY_REQUIRE_NGINX=1) when there is none.
func nginxPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("nginx")
	if err != nil {
		// Debian puts it in /usr/sbin, which a user's PATH may lack.
		if _, serr := os.Stat("/usr/sbin/nginx"); serr == nil {
			return "/usr/sbin/nginx"
		}
		msg := fmt.Sprintf("nginx is not installed (%v): install it (Debian: apt-get install nginx) to run the proxy tests", err)
		if os.Getenv(RequireNginxEnv) == "1" {
			t.Fatalf("%s; %s=1 requires them", msg, RequireNginxEnv)
		}
		t.Skipf("%s, or set %s=1 to fail instead of skipping", msg, RequireNginxEnv)
	}
	return p
}

// adaptConf returns the shipped nginx.conf with each line marked
// "# test: NAME" replaced by lines[NAME] (for a "server ADDR …;" line,
// lines[NAME] is the address alone, and the line keeps its parameters),
// and temporary-file paths under
// dir added at the top of the http block: the only changes the test makes,
// all mechanical. It fails if a marker or the http block is missing, or
// if a marker has no replacement, so that a changed file cannot silently
// leave the test running something else.
func adaptConf(conf string, lines map[string]string, dir string) (string, error) {
	var out []string
	used := map[string]bool{}
	httpBlock := false
	for _, line := range strings.Split(conf, "\n") {
		if _, name, ok := strings.Cut(line, "# test: "); ok {
			name = strings.TrimSpace(name)
			repl, ok := lines[name]
			if !ok {
				return "", fmt.Errorf("line %q: no replacement for marker %q", line, name)
			}
			if used[name] {
				return "", fmt.Errorf("marker %q appears twice", name)
			}
			used[name] = true
			if fields := strings.Fields(line); len(fields) > 1 && fields[0] == "server" {
				// Only the address: the server's parameters are the
				// shipped file's.
				addr := strings.TrimSuffix(fields[1], ";")
				repl = strings.Replace(line[:strings.Index(line, "# test:")], addr, repl, 1)
			}
			out = append(out, strings.TrimRight(repl, " "))
			continue
		}
		out = append(out, line)
		if strings.TrimSpace(line) == "http {" && !httpBlock {
			httpBlock = true
			for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
				out = append(out, fmt.Sprintf("    %s_temp_path %s;", d, filepath.Join(dir, d)))
			}
		}
	}
	for name := range lines {
		if !used[name] {
			return "", fmt.Errorf("no line marked \"# test: %s\"", name)
		}
	}
	if !httpBlock {
		return "", errors.New(`no line "http {"`)
	}
	return strings.Join(out, "\n"), nil
}

// startNginx runs nginx in the foreground with deploy/nginx.conf in front
// of the relays, on a free loopback port, and returns its address once it
// proxies /healthz.
func startNginx(t *testing.T, relay1, relay2 string) string {
	t.Helper()
	bin := nginxPath(t)
	shipped, err := os.ReadFile("nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: when the test runs as root, nginx's workers run as
	// nobody and must reach the temporary-file directories.
	dir, err := os.MkdirTemp("", "keyrelay-nginx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // after nginx stops (cleanups run last first)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var errs []error
	for range 5 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
		conf, err := adaptConf(string(shipped), map[string]string{
			"relay 1": relay1,
			"relay 2": relay2,
			"listen":  "        listen " + addr + ";",
		}, dir)
		if err != nil {
			t.Fatalf("deploy/nginx.conf: %v", err)
		}
		path := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		p := startProc(t, "nginx", bin, "-p", dir+"/", "-c", path, "-e", "stderr",
			"-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+";")
		if err := awaitOK(p, "http://"+addr+"/healthz"); err != nil {
			p.stop()
			errs = append(errs, fmt.Errorf("%w\n%s", err, p.out.String()))
			if strings.Contains(p.out.String(), "Address already in use") {
				continue // the port was taken meanwhile
			}
			break
		}
		return addr
	}
	t.Fatalf("nginx did not start: %v", errors.Join(errs...))
	return ""
}

// TestNginx puts Debian's nginx, configured by the shipped
// deploy/nginx.conf, in front of two relays sharing one redis-server, as
// docker-compose.yml does, and uses the relays through it as clients
// would.
func TestNginx(t *testing.T) {
	nginxPath(t) // skip early
	rs := redistest.StartServer(t)
	flags := []string{
		"--trusted-proxies", "127.0.0.1", // nginx connects from 127.0.0.1
		"--max-conns-per-ip", strconv.Itoa(perIP),
		"--metrics-addr", "", // /metrics on the main address: nginx must hide it
		"--log-level", "info", // startRelay reads the "listening" line
	}
	relays := []*relayProc{
		startRelay(t, "relay1", rs.URL(), flags...),
		startRelay(t, "relay2", rs.URL(), flags...),
	}
	lb := startNginx(t, relays[0].addr, relays[1].addr)

	t.Run("metrics", func(t *testing.T) { testMetricsHidden(t, lb, relays) })
	t.Run("origin", func(t *testing.T) { testBrowserOrigin(t, lb, relays) })
	t.Run("clients", func(t *testing.T) { testClientPair(t, lb, relays) })
	t.Run("client-address", func(t *testing.T) { testClientAddress(t, lb, relays) })
	t.Run("browser", func(t *testing.T) { testBrowserPage(t, lb, relays) })
}

// testMetricsHidden checks that /metrics, which each relay serves on its
// own address, is not served through nginx under any spelling of its
// path, while the rest is.
func testMetricsHidden(t *testing.T, lb string, relays []*relayProc) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, r := range relays {
		code, body, err := get(ctx, "http://"+r.addr+"/metrics")
		if err != nil || code != http.StatusOK || !strings.Contains(body, "keyrelay_connections") {
			t.Fatalf("%s serves no /metrics directly (%d, %v): the test would prove nothing", r.name, code, err)
		}
	}
	for _, target := range []string{"/healthz", "/readyz", "/"} {
		if code, _, err := rawGet(lb, target); err != nil || code != http.StatusOK {
			t.Errorf("GET %s through nginx: %d, %v; want 200", target, code, err)
		}
	}
	for _, target := range []string{
		"/metrics", "/metrics?format=text", "/metrics/", "//metrics",
		"/%6Detrics", "/%6detrics", "/metric%73", "/./metrics", "/x/../metrics", "/v1/../metrics",
	} {
		code, body, err := rawGet(lb, target)
		if err != nil {
			t.Errorf("GET %s through nginx: %v", target, err)
			continue
		}
		if code == http.StatusOK || strings.Contains(body, "keyrelay_") {
			t.Errorf("GET %s through nginx: %d with %d bytes (%.60q…); want no metrics", target, code, len(body), body)
		}
	}
}

// rawGet sends GET target exactly as written (no client-side cleaning
// of the path) and returns the status and body. A redirect is followed,
// at most 3 times.
func rawGet(addr, target string) (int, string, error) {
	for range 4 {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return 0, "", err
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, addr)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			return 0, "", err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		conn.Close()
		if err != nil {
			return 0, "", err
		}
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			return resp.StatusCode, string(body), nil
		}
		if u, err := http.NewRequest(http.MethodGet, loc, nil); err == nil && u.URL.IsAbs() {
			loc = u.URL.RequestURI()
		}
		target = loc
	}
	return 0, "", errors.New("too many redirects")
}

// testBrowserOrigin opens the relay's WebSocket through nginx as the
// chat page does: with the Origin of the page, which nginx served from
// its own host and port. It must upgrade (101), so nginx must forward the
// Host with its port. Another origin must still be refused (403), so the
// relay's origin check is on.
func testBrowserOrigin(t *testing.T, lb string, relays []*relayProc) {
	_, port, _ := net.SplitHostPort(lb)
	for _, tc := range []struct {
		name, host, origin string
		want               int
	}{
		{"same origin", lb, "http://" + lb, http.StatusSwitchingProtocols},
		{"same origin by name", "localhost:" + port, "http://localhost:" + port, http.StatusSwitchingProtocols},
		{"other port", lb, "http://127.0.0.1:1", http.StatusForbidden},
		{"other host", lb, "http://attacker.example", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, "ws://"+tc.host+wire.Path, &websocket.DialOptions{
				Subprotocols: []string{wire.Subprotocol},
				HTTPHeader:   http.Header{"Origin": {tc.origin}},
			})
			if c != nil {
				defer c.CloseNow()
			}
			got := 0
			if resp != nil {
				got = resp.StatusCode
			}
			if got != tc.want {
				t.Fatalf("WebSocket to %s with Origin %s: status %d (%v), want %d", tc.host, tc.origin, got, err, tc.want)
			}
			if tc.want == http.StatusSwitchingProtocols {
				if err != nil {
					t.Fatal(err)
				}
				if p := c.Subprotocol(); p != wire.Subprotocol {
					t.Errorf("subprotocol %q through nginx, want %q", p, wire.Subprotocol)
				}
				c.Close(websocket.StatusNormalClosure, "")
			}
		})
	}
	waitConns(t, relays, 0)
}

// fromAddr returns an HTTP client whose connections come from the
// loopback address ip, so that each test client has an address of its
// own.
func fromAddr(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// dialFrom connects a Go client to the relay through nginx from ip, with
// extra handshake headers.
func dialFrom(ctx context.Context, lb, ip string, header http.Header) (*client.Client, error) {
	return client.Dial(ctx, "ws://"+lb+wire.Path, &client.Options{HTTPClient: fromAddr(ip), HTTPHeader: header})
}

// connections returns each relay's keyrelay_connections gauge, read from
// the relay directly.
func connections(ctx context.Context, relays []*relayProc) ([]int, error) {
	var counts []int
	for _, r := range relays {
		_, body, err := get(ctx, "http://"+r.addr+"/metrics")
		if err != nil {
			return nil, err
		}
		n := -1
		for line := range strings.Lines(body) {
			if v, ok := strings.CutPrefix(line, "keyrelay_connections "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					return nil, err
				}
				n = int(f)
			}
		}
		if n < 0 {
			return nil, fmt.Errorf("%s: no keyrelay_connections", r.name)
		}
		counts = append(counts, n)
	}
	return counts, nil
}

// waitConns waits until the relays hold total WebSocket connections
// between them, and returns how many each holds.
func waitConns(t *testing.T, relays []*relayProc, total int) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var last []int
	for {
		counts, err := connections(ctx, relays)
		if err == nil {
			sum := 0
			for _, n := range counts {
				sum += n
			}
			if sum == total {
				return counts
			}
			last = counts
		}
		select {
		case <-ctx.Done():
			t.Fatalf("relays hold %v connections, want %d in all (%v)", last, total, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// testClientPair runs two Go clients through nginx, one on each relay:
// they meet in a room, agree on a key and exchange messages both ways.
func testClientPair(t *testing.T, lb string, relays []*relayProc) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	alice, err := dialFrom(ctx, lb, "127.0.0.4", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	first := waitConns(t, relays, 1)

	// nginx takes the relays in turn; make sure Bob is on the other one.
	var bob *client.Client
	for try := 0; bob == nil; try++ {
		c, err := dialFrom(ctx, lb, "127.0.0.5", nil)
		if err != nil {
			t.Fatal(err)
		}
		counts := waitConns(t, relays, 2)
		if counts[0] == 1 && counts[1] == 1 {
			bob = c
			break
		}
		c.Close()
		waitConns(t, relays, 1)
		if try == 3 {
			t.Fatalf("nginx put every connection on one relay (%v, then %v)", first, counts)
		}
	}
	defer bob.Close()

	room, err := alice.Create(ctx, dh.X25519())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Join(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	type result struct {
		hs  *client.Handshake
		err error
	}
	done := make(chan result, 1)
	go func() {
		hs, err := alice.Handshake(ctx)
		done <- result{hs, err}
	}()
	hsBob, err := bob.Handshake(ctx)
	if err != nil {
		t.Fatalf("Bob's handshake: %v", err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("Alice's handshake: %v", r.err)
	}
	if r.hs.SafetyNumber != hsBob.SafetyNumber {
		t.Fatalf("safety numbers differ: %q, %q", r.hs.SafetyNumber, hsBob.SafetyNumber)
	}
	for i := range 3 {
		for _, dir := range []struct {
			name     string
			from, to *client.Client
		}{{"Alice to Bob", alice, bob}, {"Bob to Alice", bob, alice}} {
			text := fmt.Sprintf("%s, message %d", dir.name, i)
			if _, err := dir.from.Send(ctx, []byte(text)); err != nil {
				t.Fatalf("%s: send: %v", dir.name, err)
			}
			m, err := dir.to.Receive(ctx)
			if err != nil {
				t.Fatalf("%s: receive: %v", dir.name, err)
			}
			if string(m.Plaintext) != text {
				t.Fatalf("%s: got %q, want %q", dir.name, m.Plaintext, text)
			}
		}
	}
	alice.Close()
	bob.Close()
	waitConns(t, relays, 0)
}

// testClientAddress checks that the relays count connections under the
// address of the client that connected to nginx, which they read from
// X-Forwarded-For, across both relays: one address gets perIP
// connections and no more, whatever X-Forwarded-For it sends itself,
// while another address is still served.
func testClientAddress(t *testing.T, lb string, relays []*relayProc) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	// connect dials and creates a room, which only an admitted connection
	// can do.
	connect := func(ip string, header http.Header) (*client.Client, error) {
		c, err := dialFrom(ctx, lb, ip, header)
		if err != nil {
			return nil, err
		}
		if _, err := c.Create(ctx, dh.X25519()); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	for i := range perIP {
		c, err := connect("127.0.0.2", nil)
		if err != nil {
			t.Fatalf("connection %d of %d from 127.0.0.2: %v", i+1, perIP, err)
		}
		defer c.Close()
	}
	counts := waitConns(t, relays, perIP)
	if counts[0] == 0 || counts[1] == 0 {
		t.Errorf("connections per relay %v: the limit was not tested across relays", counts)
	}
	// One more from 127.0.0.2, also when it claims another address: the
	// relay upgrades it to say why it is refused (close 4429). A raw
	// WebSocket, since a client's first write may race that close.
	for _, h := range []http.Header{nil, {"X-Forwarded-For": {"127.0.0.9"}}} {
		h = h.Clone()
		if h == nil {
			h = http.Header{}
		}
		c, _, err := websocket.Dial(ctx, "ws://"+lb+wire.Path, &websocket.DialOptions{
			HTTPClient:   fromAddr("127.0.0.2"),
			HTTPHeader:   h,
			Subprotocols: []string{wire.Subprotocol},
		})
		if err != nil {
			t.Fatalf("connection %d from 127.0.0.2 (X-Forwarded-For %q): %v", perIP+1, h.Get("X-Forwarded-For"), err)
		}
		_, _, err = c.Read(ctx)
		c.CloseNow()
		if code := websocket.CloseStatus(err); code != wire.CloseTooManyConnsPerIP {
			t.Fatalf("connection %d from 127.0.0.2 (X-Forwarded-For %q): %v (close %d), want close %d", perIP+1, h.Get("X-Forwarded-For"), err, code, wire.CloseTooManyConnsPerIP)
		}
	}
	c, err := connect("127.0.0.3", nil)
	if err != nil {
		t.Fatalf("a connection from 127.0.0.3 while 127.0.0.2 is at its limit: %v", err)
	}
	c.Close()
}

// TestAdaptConfKeepsServerParameters: the test's changes to the shipped
// file are mechanical: a server line gets the test's address and keeps
// the shipped parameters (max_fails=0, which a rolling restart needs).
func TestAdaptConfKeepsServerParameters(t *testing.T) {
	shipped, err := os.ReadFile("nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := adaptConf(string(shipped), map[string]string{
		"relay 1": "127.0.0.1:1001", "relay 2": "127.0.0.1:1002", "listen": "        listen 127.0.0.1:1000;",
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"server 127.0.0.1:1001 max_fails=0;", "server 127.0.0.1:1002 max_fails=0;", "listen 127.0.0.1:1000;"} {
		if !strings.Contains(conf, want) {
			t.Errorf("the adapted nginx.conf lacks %q", want)
		}
	}
	if strings.Contains(conf, "relay1:8080") || strings.Contains(conf, "# test: ") {
		t.Error("the adapted nginx.conf still has a shipped address or a marker")
	}
}
