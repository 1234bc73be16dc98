package keyapi_test

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/keyapi"
)

// clientFrom returns an HTTP client whose connections come from the
// loopback address ip (127.0.0.2 is as much loopback as 127.0.0.1 on
// Linux), so that a test has two client IPs. It skips the test where the
// system cannot bind ip.
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("cannot use loopback address %s: %v", ip, err)
	}
	ln.Close()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

type reply struct {
	status     int
	retryAfter string
	message    string
	took       time.Duration
}

func call(t *testing.T, c *http.Client, method, u, body string) reply {
	t.Helper()
	start := time.Now()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return reply{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct{ Message string }
	json.Unmarshal(b, &e)
	return reply{resp.StatusCode, resp.Header.Get("Retry-After"), e.Message, time.Since(start)}
}

// TestRateLimitPerIP: a client over its rate gets 429 with Retry-After and
// a JSON message, and a client from another IP is still served.
func TestRateLimitPerIP(t *testing.T) {
	// x25519 costs the minimum, 1 ms: a burst of 3 ms is three requests,
	// and at 1 ms per second the fourth is a second away.
	srv := newServer(t, keyapi.Config{RatePerIP: time.Millisecond, BurstPerIP: 3 * time.Millisecond})
	one, two := clientFrom(t, "127.0.0.1"), clientFrom(t, "127.0.0.2")
	u := srv.URL + "/generate-keys?group=x25519"
	for i := range 3 {
		if r := call(t, one, "GET", u, ""); r.status != 200 {
			t.Fatalf("request %d within the burst: %d %q", i+1, r.status, r.message)
		}
	}
	r := call(t, one, "GET", u, "")
	if r.status != http.StatusTooManyRequests || r.retryAfter != "1" || !strings.HasPrefix(r.message, "Too many requests") {
		t.Errorf("over the rate: %d Retry-After %q %q, want 429, Retry-After 1, Too many requests…", r.status, r.retryAfter, r.message)
	}
	// Until it could afford what it was refused for, the client is
	// refused before its request is read: a malformed body gets 429, not
	// the 400 that reading it would give.
	if r := call(t, one, "POST", srv.URL+"/generate-shared-key", "not json"); r.status != http.StatusTooManyRequests || r.retryAfter != "1" {
		t.Errorf("refused client, unread body: %d Retry-After %q %q, want 429", r.status, r.retryAfter, r.message)
	}
	if r := call(t, two, "GET", u, ""); r.status != 200 {
		t.Errorf("another IP: %d %q, want 200", r.status, r.message)
	}
}

// fullLengthModp18 returns a private exponent as long as q and a valid
// public key of modp18: the costliest shared key there is (about 1.3 s of
// CPU).
func fullLengthModp18(t *testing.T) string {
	t.Helper()
	g := dh.MODP18()
	b := make([]byte, g.Size())
	rand.Read(b)
	b[0] = 0x3f // below q, whose top byte is 0x7f
	peer, err := g.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{
		"local_private_key": new(big.Int).SetBytes(b).Text(16),
		"remote_public_key": peer.PublicKey().Hex(),
		"group":             18,
	})
	return string(body)
}

// TestFloodFromOneIP is finding 4 at small scale, with the default limits:
// eight concurrent modp18 shared keys with full-length exponents from one
// IP. At most two are computed (the bucket holds two), the rest are refused
// at once with 429 or 503, and a request from another IP is served while
// the flood runs.
func TestFloodFromOneIP(t *testing.T) {
	srv := newServer(t, keyapi.Config{})
	attacker, honest := clientFrom(t, "127.0.0.1"), clientFrom(t, "127.0.0.2")
	body := fullLengthModp18(t)

	const n = 8
	replies := make(chan reply, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { replies <- call(t, attacker, "POST", srv.URL+"/generate-shared-key", body) })
	}
	// While the flood is admitted and computing, the honest client's
	// requests are served, within the time of a request of their own.
	time.Sleep(100 * time.Millisecond)
	for _, path := range []string{"/generate-keys", "/generate-keys?group=x25519"} {
		if r := call(t, honest, "GET", srv.URL+path, ""); r.status != 200 || r.took > 2*time.Second {
			t.Errorf("honest GET %s during the flood: %d %q after %v", path, r.status, r.message, r.took)
		}
	}
	wg.Wait()
	close(replies)
	var ok, refused int
	for r := range replies {
		switch {
		case r.status == 200:
			ok++
		case r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable:
			refused++
			if n, err := strconv.Atoi(r.retryAfter); err != nil || n < 1 {
				t.Errorf("%d without a valid Retry-After (%q)", r.status, r.retryAfter)
			}
			if r.took > time.Second && r.status == http.StatusTooManyRequests {
				t.Errorf("a 429 took %v", r.took)
			}
		default:
			t.Errorf("flood request: %d %q", r.status, r.message)
		}
	}
	if ok > 2 || refused < n-2 {
		t.Errorf("flood of %d from one IP: %d computed, %d refused; want at most 2 computed", n, ok, refused)
	}
}

// TestWaitIsBounded: requests beyond the slots wait at most SlotWait, then
// get 503 with Retry-After.
func TestWaitIsBounded(t *testing.T) {
	srv := newServer(t, keyapi.Config{MaxConcurrent: 1, SlotWait: 100 * time.Millisecond, RatePerIP: -1})
	c := clientFrom(t, "127.0.0.1")
	body := fullLengthModp18(t)
	first := make(chan reply, 1)
	go func() { first <- call(t, c, "POST", srv.URL+"/generate-shared-key", body) }()
	time.Sleep(50 * time.Millisecond)
	r := call(t, c, "GET", srv.URL+"/generate-keys", "")
	if r.status != http.StatusServiceUnavailable || r.retryAfter != "1" || !strings.HasPrefix(r.message, "Server busy") || r.took > 2*time.Second {
		t.Errorf("while the one slot is taken: %d Retry-After %q %q after %v, want 503 Server busy within 2 s", r.status, r.retryAfter, r.message, r.took)
	}
	if r := <-first; r.status != 200 {
		t.Errorf("the heavy request: %d %q", r.status, r.message)
	}
}
