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
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/client"
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

func (s *recordingStore) Append(ctx context.Context, room, from string, body []byte) (uint64, error) {
	s.mu.Lock()
	s.bodies = append(s.bodies, bytes.Clone(body))
	s.mu.Unlock()
	return s.Store.Append(ctx, room, from, body)
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

// browserPath returns the Chromium to drive, or skips the test (fails it
// under KEYRELAY_REQUIRE_BROWSER=1) when there is none.
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium found in PATH (chromium, chromium-browser, google-chrome): install Debian's chromium to run the browser tests"
	if os.Getenv("KEYRELAY_REQUIRE_BROWSER") == "1" {
		t.Fatal(msg + " (KEYRELAY_REQUIRE_BROWSER=1)")
	}
	t.Skip(msg)
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile that talks to
// 127.0.0.1 only, and returns its context. It stops when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := browserPath(t)
	dir, err := os.MkdirTemp("", "keyrelay-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(dir),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("no-proxy-server", true),
		// Any name resolves nowhere: the only network is 127.0.0.1.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.WindowSize(1000, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		// Chromium's children may write to the profile for a moment
		// after it stops.
		for range 50 {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	// Start the browser, without a timeout: it lives as long as ctx.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

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

// waitFor waits until the JavaScript predicate is true.
func (p *page) waitFor(what, predicate string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil {
		p.t.Fatalf("%s: waiting for %s: %v\n%s", p.name, what, err, p.describe())
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

// TestBrowserChat runs two real browser pages on the relay: A (desktop
// width) creates a room, B (phone width) opens the share link, both show the
// same safety number, and messages typed on each arrive as text on the
// other, while the relay stores ciphertext only.
func TestBrowserChat(t *testing.T) {
	browser := newBrowser(t)
	tr := startRelay(t)
	base, store := tr.URL, tr.store
	a := newPage(t, browser, "A", 900, 900, false)
	b := newPage(t, browser, "B", 390, 844, true)

	a.do(chromedp.Navigate(base + "/"))
	a.waitState("start")
	if g := a.eval(`document.getElementById("group").value`); g != "x25519" {
		t.Errorf("default group %q, want x25519", g)
	}
	a.do(chromedp.Click(chromedp.ID("create")))
	a.waitState("waiting")
	dir := artifactsDir(t)
	a.screenshot(dir, "waiting-a-desktop.png")
	link := a.eval(`document.getElementById("share-link").value`)
	room, ok := strings.CutPrefix(link, base+"/#room=")
	if !ok || len(room) != 36 {
		t.Fatalf("share link %q, want %s/#room=<uuid>", link, base)
	}

	b.do(chromedp.Navigate(link))
	a.waitState("chat")
	b.waitState("chat")
	snA, snB := a.safetyNumber(), b.safetyNumber()
	if snA != snB {
		t.Fatalf("safety numbers differ: A %q, B %q", snA, snB)
	}

	// A uses the mouse and SendKeys; B the keyboard alone: focus is in the
	// message field once the chat starts, and Enter sends.
	fromA := []string{"Hello from A: grüße, ça va?", "second message from A"}
	fromB := []string{"Hi A, this is B", "<b>not html</b> & B's second"}
	a.do(chromedp.SendKeys(chromedp.ID("message"), fromA[0]+kb.Enter))
	b.waitMessage(fromA[0])
	if f := b.eval(`document.activeElement ? document.activeElement.id : ""`); f != "message" {
		t.Errorf("B: focus on %q after the handshake, want the message field", f)
	}
	b.do(chromedp.KeyEvent(fromB[0] + kb.Enter))
	a.waitMessage(fromB[0])
	a.do(chromedp.SendKeys(chromedp.ID("message"), fromA[1]+kb.Enter))
	b.do(chromedp.KeyEvent(fromB[1] + kb.Enter))
	b.waitMessage(fromA[1])
	a.waitMessage(fromB[1])
	a.waitSent(2)
	b.waitSent(2)
	if n := b.eval(`String(document.querySelectorAll("#messages b").length)`); n != "0" {
		t.Errorf("B: a message was rendered as HTML")
	}

	// Mark as verified: A with the mouse, B from the keyboard (Shift+Tab
	// from the message field reaches the button, Space presses it).
	a.do(chromedp.Click(chromedp.ID("verify")))
	b.do(chromedp.KeyEvent(kb.Tab, chromedp.KeyModifiers(chromedp.ModifierShift)), chromedp.KeyEvent(" "))
	for _, p := range []*page{a, b} {
		if got := p.eval(`document.getElementById("verify").getAttribute("aria-pressed")`); got != "true" {
			t.Errorf("%s: verify aria-pressed = %q after pressing it", p.name, got)
		}
	}

	// The relay stored each message once, as ciphertext.
	bodies := store.Bodies()
	if len(bodies) != len(fromA)+len(fromB) {
		t.Errorf("relay stored %d messages, want %d", len(bodies), len(fromA)+len(fromB))
	}
	var gotLens, wantLens []int
	for _, body := range bodies {
		gotLens = append(gotLens, len(body))
		for _, text := range append(fromA, fromB...) {
			for _, word := range strings.Fields(text) {
				if len(word) > 3 && bytes.Contains(body, []byte(word)) {
					t.Errorf("relay stored a body containing plaintext %q: %q", word, body)
				}
			}
		}
	}
	for _, text := range append(fromA, fromB...) {
		wantLens = append(wantLens, len(text)+24) // counter and GCM tag, protocol.md §5.4
	}
	slices.Sort(gotLens)
	slices.Sort(wantLens)
	if !slices.Equal(gotLens, wantLens) {
		t.Errorf("relay stored bodies of %v bytes, want sealed messages of %v bytes", gotLens, wantLens)
	}

	pngA := a.screenshot(dir, "chat-a-desktop.png")
	pngB := b.screenshot(dir, "chat-b-phone.png")
	both, err := sideBySide(pngA, pngB)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "chat-side-by-side.png"), both, 0o644); err != nil {
		t.Fatal(err)
	}
	if *updateScreenshot {
		if err := os.WriteFile(filepath.Join("..", "docs", "screenshot-chat.png"), both, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("updated docs/screenshot-chat.png")
	}

	// The relay restarts: both pages show that they reconnect, resume
	// by themselves, and the chat goes on.
	const recordStates = `window.seenStates = [];
		new MutationObserver(() => window.seenStates.push(document.body.dataset.state))
			.observe(document.body, {attributes: true, attributeFilter: ["data-state"]}); "ok"`
	a.eval(recordStates)
	b.eval(recordStates)
	tr.restart(t)
	for _, p := range []*page{a, b} {
		p.waitFor("reconnecting", `window.seenStates.includes("reconnecting")`)
		p.waitState("chat")
	}
	afterA, afterB := "after the restart, from A", "after the restart, from B"
	a.do(chromedp.SendKeys(chromedp.ID("message"), afterA+kb.Enter))
	b.do(chromedp.SendKeys(chromedp.ID("message"), afterB+kb.Enter))
	b.waitMessage(afterA)
	a.waitMessage(afterB)

	secrets := append(append([]string{afterA, afterB}, fromA...), fromB...)
	a.checkQuiet(secrets...)
	b.checkQuiet(secrets...)

	// B leaves: A says so and stops the composer.
	b.do(chromedp.Click(chromedp.ID("leave")))
	b.waitState("left")
	a.waitState("peer-left")
	if d := a.eval(`String(document.getElementById("message").disabled)`); d != "true" {
		t.Errorf("A: the message field is enabled after the peer left")
	}
}

// TestBrowserAndGoClient puts a Go client (relay/client) and a browser page
// in one room, for each kind of group: same safety number, messages both
// ways.
func TestBrowserAndGoClient(t *testing.T) {
	browser := newBrowser(t)
	tr := startRelay(t)
	base, store := tr.URL, tr.store
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/v1/ws"
	for _, group := range []*dh.Group{dh.X25519(), dh.P256(), dh.MODP14()} {
		t.Run(group.Name(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			c, err := client.Dial(ctx, wsURL, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			room, err := c.Create(ctx, group)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				hs  *client.Handshake
				err error
			}
			hsc := make(chan result, 1)
			go func() {
				hs, err := c.Handshake(ctx)
				hsc <- result{hs, err}
			}()

			p := newPage(t, browser, "browser/"+group.Name(), 900, 900, false)
			p.do(chromedp.Navigate(base + "/#room=" + room.ID))
			p.waitState("chat")
			r := <-hsc
			if r.err != nil {
				t.Fatalf("Go handshake: %v", r.err)
			}
			if sn := p.safetyNumber(); sn != r.hs.SafetyNumber {
				t.Fatalf("safety numbers differ: browser %q, Go %q", sn, r.hs.SafetyNumber)
			}
			if got := p.eval(`document.getElementById("group-used").textContent`); !strings.Contains(got, group.Name()) {
				t.Errorf("page says %q, want the group %s", got, group.Name())
			}

			fromBrowser, fromGo := "typed in the browser: "+group.Name(), "sent by Go: "+group.Name()
			p.do(chromedp.SendKeys(chromedp.ID("message"), fromBrowser+kb.Enter))
			m, err := c.Receive(ctx)
			if err != nil {
				t.Fatalf("Go receive: %v", err)
			}
			if string(m.Plaintext) != fromBrowser {
				t.Errorf("Go received %q, want %q", m.Plaintext, fromBrowser)
			}
			if _, err := c.Send(ctx, []byte(fromGo)); err != nil {
				t.Fatalf("Go send: %v", err)
			}
			p.waitMessage(fromGo)
			for _, body := range store.Bodies() {
				if bytes.Contains(body, []byte("by Go")) || bytes.Contains(body, []byte("in the browser")) {
					t.Errorf("relay stored plaintext: %q", body)
				}
			}

			// The Go client leaves: the page says so.
			if err := c.Leave(ctx); err != nil {
				t.Fatal(err)
			}
			p.waitState("peer-left")
			p.checkQuiet(fromBrowser, fromGo)
		})
	}
}

// TestBrowserStates checks the states a page shows for links it cannot
// use: a full room, a room that does not exist, a malformed link.
func TestBrowserStates(t *testing.T) {
	browser := newBrowser(t)
	base := startRelay(t).URL
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/v1/ws"
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	// Two peers fill a room.
	first, err := client.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	room, err := first.Create(ctx, dh.X25519())
	if err != nil {
		t.Fatal(err)
	}
	second, err := client.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if _, err := second.Join(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, fragment, state string
	}{
		{"room full", "#room=" + room.ID, "room-full"},
		{"no such room", "#room=00000000-0000-4000-8000-000000000000", "expired"},
		{"malformed link", "#room=not-a-room", "bad-link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPage(t, browser, tt.name, 390, 844, true)
			p.do(chromedp.Navigate(base + "/" + tt.fragment))
			p.waitState(tt.state)
			if p.eval(`String(document.getElementById("new-room").hidden)`) != "false" {
				t.Errorf("no link to start a new room")
			}
			p.checkQuiet()
		})
	}

	// A third browser page opening a room that two browser pages share.
	a := newPage(t, browser, "A", 900, 900, false)
	b := newPage(t, browser, "B", 900, 900, false)
	c := newPage(t, browser, "C", 390, 844, true)
	a.do(chromedp.Navigate(base + "/"))
	a.waitState("start")
	a.do(chromedp.Click(chromedp.ID("create")))
	a.waitState("waiting")
	link := a.eval(`document.getElementById("share-link").value`)
	b.do(chromedp.Navigate(link))
	b.waitState("chat")
	c.do(chromedp.Navigate(link))
	c.waitState("room-full")
	a.waitState("chat") // undisturbed
}
