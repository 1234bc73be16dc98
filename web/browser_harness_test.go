// The browser tests' harness: a relay serving the page, a headless
// Chromium, and pages driven through the Chrome DevTools Protocol.

package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/keyrelay/keyrelay/internal/testkit"
	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/web"
	"github.com/keyrelay/keyrelay/wire"
)

// updateScreenshot makes TestBrowserChat copy its side-by-side screenshot to
// docs/screenshot-chat.png, which the README shows:
//
//	KEYRELAY_REQUIRE_BROWSER=1 go test ./web -run TestBrowserChat -update-screenshot
var updateScreenshot = flag.Bool("update-screenshot", false, "copy TestBrowserChat's screenshot to docs/screenshot-chat.png")

// waitTimeout bounds every wait on a page or on the relay.
const waitTimeout = 20 * time.Second

var safetyNumberRE = regexp.MustCompile(`^[0-9]{5}( [0-9]{5}){11}$`)

// recordingStore is a session.Store that records every message body the
// relay stores, to check that the relay carried ciphertext only.
type recordingStore struct {
	session.Store

	mu     sync.Mutex
	bodies [][]byte // guarded by mu
}

func (s *recordingStore) Append(ctx context.Context, room, from, source string, body []byte) (uint64, error) {
	s.mu.Lock()
	s.bodies = append(s.bodies, bytes.Clone(body))
	s.mu.Unlock()
	return s.Store.Append(ctx, room, from, source, body)
}

func (s *recordingStore) Bodies() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.bodies...)
}

// testRelay serves what cmd/keyrelay serves to browsers, the page at / and
// the relay at /v1/ws, on a loopback port, with the memory store.
type testRelay struct {
	URL   string
	store *recordingStore
	lim   *limits.Memory
	relay atomic.Pointer[relay.Server]
}

func startRelay(t *testing.T) *testRelay {
	t.Helper()
	tr := &testRelay{store: &recordingStore{Store: session.NewMemoryStore(session.MemoryConfig{})}, lim: relaytest.NewLimiter(t, relaytest.Limits)}
	tr.restart(t)
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.Handle(wire.Path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.relay.Load().ServeHTTP(w, r)
	}))
	srv := httptest.NewServer(mux) // 127.0.0.1
	tr.URL = srv.URL
	t.Cleanup(func() {
		tr.relay.Load().Close()
		srv.Close()
		tr.store.Close()
	})
	return tr
}

// restart replaces the relay with a new one on the same store, as a
// redeploy does: the old one closes its connections with 1001 (going away).
func (tr *testRelay) restart(t *testing.T) {
	t.Helper()
	rl, err := relay.New(tr.store, relay.Config{Limiter: tr.lim}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if old := tr.relay.Swap(rl); old != nil {
		old.Close()
	}
}

// proxy is a TCP proxy to the test relay whose connections a test can cut,
// as a network failure would, and whose new connections it can refuse for
// a while, as a network that is down. A page loaded from proxy.URL reaches
// the relay through it (its own origin), while pages loaded from the relay's
// URL are undisturbed.
type proxy struct {
	URL    string
	t      *testing.T
	target string

	mu       sync.Mutex
	down     bool                  // guarded by mu: refuse new connections
	upstream map[net.Conn]net.Conn // guarded by mu: each open connection to the relay, and its page side
}

// startProxy starts a proxy to the relay at base (http://127.0.0.1:port),
// stopped when the test ends.
func startProxy(t *testing.T, base string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{URL: "http://" + ln.Addr().String(), t: t, target: strings.TrimPrefix(base, "http://"), upstream: map[net.Conn]net.Conn{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c) })
		}
	})
	return p
}

func (p *proxy) serve(c net.Conn) {
	p.mu.Lock()
	down := p.down
	p.mu.Unlock()
	if down {
		c.Close()
		return
	}
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.upstream[u] = c
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(u, c); done <- struct{}{} }()
	go func() { io.Copy(c, u); done <- struct{}{} }()
	<-done
	u.Close()
	c.Close()
	<-done
	p.mu.Lock()
	delete(p.upstream, u)
	p.mu.Unlock()
}

// cut closes every connection through the proxy: first the relay's side,
// so that the relay sees the drop before the page can come back, then the
// page's.
func (p *proxy) cut() {
	p.mu.Lock()
	conns := p.upstream
	p.upstream = map[net.Conn]net.Conn{}
	p.mu.Unlock()
	for u := range conns {
		u.Close()
	}
	time.Sleep(20 * time.Millisecond)
	for _, c := range conns {
		c.Close()
	}
}

// setDown makes the proxy refuse new connections (true) or accept them again.
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

// newBrowser starts the headless Chromium of the browser tests
// (testkit.NewBrowser).
func newBrowser(t *testing.T) context.Context { return testkit.NewBrowser(t, "the browser tests") }

// page is one tab, in its own browser context (no shared storage).
type page struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu      sync.Mutex
	console []string // guarded by mu: console calls and exceptions
}

// newPage opens a tab in a new browser context with a viewport of width ×
// height CSS pixels (mobile emulation if mobile).
func newPage(t *testing.T, browser context.Context, name string, width, height int64, mobile bool) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	p := &page{t: t, name: name, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // opens the tab, without a timeout
		t.Fatalf("%s: open tab: %v", name, err)
	}
	if err := chromedp.Listen(ctx, p.onEvent); err != nil {
		t.Fatalf("%s: listen: %v", name, err)
	}
	var vopts []chromedp.EmulateViewportOption
	if mobile {
		vopts = append(vopts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait)
	}
	p.do(chromedp.EmulateViewport(width, height, vopts...))
	return p
}

func (p *page) onEvent(ev any) {
	var line string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var args []string
		for _, a := range ev.Args {
			if a.Value != nil {
				args = append(args, string(a.Value))
			} else {
				args = append(args, a.Description)
			}
		}
		line = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
	case *runtime.EventExceptionThrown:
		line = "exception: " + (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error()
	default:
		return
	}
	p.mu.Lock()
	p.console = append(p.console, line)
	p.mu.Unlock()
}

func (p *page) consoleLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.console...)
}

// do runs actions on the page within waitTimeout, failing the test with the
// page's state if they fail.
func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v\n%s", p.name, err, p.describe())
	}
}

// eval evaluates a JavaScript expression that returns a string.
func (p *page) eval(expr string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		p.t.Fatalf("%s: evaluate %s: %v\n%s", p.name, expr, err, p.describe())
	}
	return s
}

// evalAwait evaluates a JavaScript expression that returns a promise of a
// string, and returns the string.
func (p *page) evalAwait(expr string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: evaluate %s: %v\n%s", p.name, expr, err, p.describe())
	}
	return s
}

// waitFor waits until the JavaScript predicate is true. It goes on waiting
// across a reload of the page (which ends a poll with an error).
func (p *page) waitFor(what, predicate string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	for {
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout)))
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			p.t.Fatalf("%s: waiting for %s: %v\n%s", p.name, what, err, p.describe())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitState waits until the page shows state (body[data-state]).
func (p *page) waitState(state string) {
	p.t.Helper()
	p.waitFor("state "+state, "document.body.dataset.state === "+jsString(state))
}

// waitMessage waits until the page shows text as a message from the peer.
func (p *page) waitMessage(text string) {
	p.t.Helper()
	p.waitFor("message "+text, `[...document.querySelectorAll("#messages .msg.theirs .text")].some(e => e.textContent === `+jsString(text)+`)`)
}

// waitSent waits until n of the page's own messages were stored by the relay.
func (p *page) waitSent(n int) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("%d sent messages", n), fmt.Sprintf(`document.querySelectorAll("#messages .msg.mine[data-seq]").length >= %d`, n))
}

// checkGroupShown checks that the page shows group as the room's
// encryption group.
func (p *page) checkGroupShown(group string) {
	p.t.Helper()
	got := p.eval(`(e => e.hidden ? "(hidden)" : e.textContent)(document.getElementById("room-group"))`)
	if want := "Encryption group: " + group; got != want {
		p.t.Errorf("%s: room header says %q, want %q", p.name, got, want)
	}
}

// parseShareLink returns the room ID and group of a share link of the page
// at base (base/#room=<id>&group=<group>).
func parseShareLink(t *testing.T, base, link string) (room, group string) {
	t.Helper()
	fragment, ok := strings.CutPrefix(link, base+"/#")
	if !ok {
		t.Fatalf("share link %q is not %s/#…", link, base)
	}
	q, err := url.ParseQuery(fragment)
	if err != nil {
		t.Fatalf("share link %q: %v", link, err)
	}
	return q.Get("room"), q.Get("group")
}

// safetyNumber returns the safety number the page shows.
func (p *page) safetyNumber() string {
	p.t.Helper()
	sn := p.eval(`document.getElementById("safety-number").textContent`)
	if !safetyNumberRE.MatchString(sn) {
		p.t.Fatalf("%s: safety number %q is not 12 groups of 5 digits", p.name, sn)
	}
	return sn
}

// describe reports the page's state, status line and console, for failures.
func (p *page) describe() string {
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.body && document.body.dataset.state) + ": " + (document.getElementById("status") || {}).textContent`))
	if err != nil {
		s = "(page state unavailable: " + err.Error() + ")"
	}
	return fmt.Sprintf("page %s: %s\nconsole: %q", p.name, s, p.consoleLines())
}

// screenshot saves a PNG of the whole page to dir and returns it.
func (p *page) screenshot(dir, name string) []byte {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot of %s: %s", p.name, path)
	return b
}

// checkQuiet checks that the page logged nothing and that none of secrets
// appears in its URL.
func (p *page) checkQuiet(secrets ...string) {
	p.t.Helper()
	if lines := p.consoleLines(); len(lines) > 0 {
		p.t.Errorf("%s: console output or exceptions (the page must not log): %q", p.name, lines)
	}
	href := p.eval(`location.href`)
	for _, s := range secrets {
		if strings.Contains(href, s) {
			p.t.Errorf("%s: URL %q contains %q", p.name, href, s)
		}
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// artifactsDir is where screenshots go: $KEYRELAY_ARTIFACTS, else a
// temporary directory of the test.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KEYRELAY_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sideBySide joins two PNGs left to right, with a grey divider, on the
// page's background colour.
func sideBySide(left, right []byte) ([]byte, error) {
	a, err := png.Decode(bytes.NewReader(left))
	if err != nil {
		return nil, err
	}
	b, err := png.Decode(bytes.NewReader(right))
	if err != nil {
		return nil, err
	}
	const gap = 24
	w := a.Bounds().Dx() + gap + b.Bounds().Dx()
	h := max(a.Bounds().Dy(), b.Bounds().Dy())
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(out, out.Bounds(), image.NewUniform(color.RGBA{0xf4, 0xf6, 0xf8, 0xff}), image.Point{}, draw.Src) // the page's --bg
	divider := image.Rect(a.Bounds().Dx(), 0, a.Bounds().Dx()+gap, h)
	draw.Draw(out, divider, image.NewUniform(color.RGBA{0x9a, 0xa4, 0xae, 0xff}), image.Point{}, draw.Src)
	draw.Draw(out, a.Bounds().Sub(a.Bounds().Min), a, a.Bounds().Min, draw.Src)
	draw.Draw(out, b.Bounds().Sub(b.Bounds().Min).Add(image.Pt(a.Bounds().Dx()+gap, 0)), b, b.Bounds().Min, draw.Src)
	var buf bytes.Buffer
	if err := png.Encode(&buf, out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
