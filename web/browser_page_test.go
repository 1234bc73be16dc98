// The page's edge cases of issue 15 (items 11-13), in Chromium: a room
// link pasted into a tab that has left a room, a flapping peer, the "left"
// state, typing while reconnecting, the favicon, the safety number's layout.

package web_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// updateFavicon makes TestBrowserFavicon draw favicon.svg at 16, 32 and 48
// pixels in Chromium and write them to favicon.ico:
//
//	KEYRELAY_REQUIRE_BROWSER=1 go test ./web -run TestBrowserFavicon -update-favicon
var updateFavicon = flag.Bool("update-favicon", false, "make favicon.ico from favicon.svg")

// openRoom has a create a room and b open its link (rewritten to b's
// origin, base), and waits until both chat with the same safety number. It
// returns the share link a showed.
func openRoom(t *testing.T, a, b *page, aBase, bBase string) string {
	t.Helper()
	a.do(chromedp.Navigate(aBase + "/"))
	a.waitState("start")
	a.do(chromedp.Click(chromedp.ID("create")))
	a.waitState("waiting")
	link := a.eval(`document.getElementById("share-link").value`)
	b.do(chromedp.Navigate(bBase + strings.TrimPrefix(link, aBase)))
	a.waitState("chat")
	b.waitState("chat")
	if snA, snB := a.safetyNumber(), b.safetyNumber(); snA != snB {
		t.Fatalf("safety numbers differ: %s %q, %s %q", a.name, snA, b.name, snB)
	}
	return link
}

// paste puts url in the page's address bar, as a user who pastes a link
// into a tab that is already open: for a URL that differs only in its
// fragment the browser does not reload the page.
func (p *page) paste(url string) {
	p.t.Helper()
	p.eval(`location.href = ` + jsString(url) + `; "ok"`)
}

// verifyActive reports whether the page offers an active "Mark as
// verified": the button shown and enabled.
func (p *page) verifyActive() bool {
	p.t.Helper()
	return p.eval(`(b => String(!b.disabled && b.closest("[hidden]") === null && b.offsetParent !== null))(document.getElementById("verify"))`) == "true"
}

// systemLines returns the page's system lines in the history, in order.
func (p *page) systemLines() []string {
	p.t.Helper()
	var lines []string
	if err := json.Unmarshal([]byte(p.eval(`JSON.stringify([...document.querySelectorAll("#messages .msg.system .text")].map(e => e.textContent))`)), &lines); err != nil {
		p.t.Fatal(err)
	}
	return lines
}

// TestBrowserFollowsNewLink checks what a page does with a room link pasted
// into its address bar (issue 15, item 11), and that a page with no peer
// offers no "Mark as verified" (item 13a). After leaving a room, a pasted
// link opens its room at once; in a room, the page asks first, and "Stay"
// puts the room's address back; Back to an earlier room's address opens
// that room once this one is left.
func TestBrowserFollowsNewLink(t *testing.T) {
	browser := newBrowser(t)
	base := startRelay(t).URL
	dir := artifactsDir(t)
	a := newPage(t, browser, "A", 900, 900, false)
	b := newPage(t, browser, "B", 390, 844, true)
	c := newPage(t, browser, "C", 900, 900, false)

	link1 := openRoom(t, a, b, base, base)
	b.do(chromedp.Click(chromedp.ID("leave")))
	b.waitState("left")
	a.waitState("peer-left")
	for _, p := range []*page{a, b} {
		if p.verifyActive() {
			t.Errorf("%s: %q offers an active \"Mark as verified\" with no peer", p.name, p.eval(`document.body.dataset.state`))
		}
	}
	b.screenshot(dir, "left-b-phone.png")

	// B, which left, gets C's new link and pastes it: it joins that room.
	c.do(chromedp.Navigate(base + "/"))
	c.waitState("start")
	c.do(chromedp.Click(chromedp.ID("create")))
	c.waitState("waiting")
	link2 := c.eval(`document.getElementById("share-link").value`)
	b.paste(link2)
	b.waitState("chat")
	c.waitState("chat")
	if snB, snC := b.safetyNumber(), c.safetyNumber(); snB != snC {
		t.Fatalf("safety numbers differ: B %q, C %q", snB, snC)
	}
	if !b.verifyActive() {
		t.Errorf("B: no active \"Mark as verified\" in the new room")
	}

	// In a room, another room's link is not followed without asking.
	b.paste(link1)
	b.waitFor("the question", `!document.getElementById("switch-panel").hidden`)
	b.screenshot(dir, "switch-b-phone.png")
	if s := b.eval(`document.body.dataset.state`); s != "chat" {
		t.Errorf("B: state %q while asking, want chat", s)
	}
	b.do(chromedp.Click(chromedp.ID("switch-stay")))
	b.waitFor("the question gone", `document.getElementById("switch-panel").hidden`)
	if got := b.eval(`location.href`); got != link2 {
		t.Errorf("B: after Stay the address is %q, want this room's %q", got, link2)
	}
	msg := "still in room 2"
	b.do(chromedp.SendKeys(chromedp.ID("message"), msg+kb.Enter))
	c.waitMessage(msg)

	// Asked again, B leaves for room 1, where A waits for someone new.
	b.paste(link1)
	b.waitFor("the question", `!document.getElementById("switch-panel").hidden`)
	b.do(chromedp.Click(chromedp.ID("switch-go")))
	c.waitState("peer-left")
	b.waitState("chat")
	a.waitState("chat")
	if snA, snB := a.safetyNumber(), b.safetyNumber(); snA != snB {
		t.Fatalf("safety numbers differ: A %q, B %q", snA, snB)
	}

	// B leaves room 1 and goes Back, to the address of room 2 (where
	// "Stay" put it): room 2 opens again, with C.
	b.do(chromedp.Click(chromedp.ID("leave")))
	b.waitState("left")
	b.eval(`history.back(); "ok"`)
	b.waitFor("room 2's address", `location.href === `+jsString(link2))
	b.waitState("chat")
	c.waitState("chat")
	for _, p := range []*page{a, b, c} {
		p.checkQuiet(msg)
	}
}

// TestBrowserFlappingPeer has B's connection cut again and again while A
// watches (issue 15, item 12): A's history keeps one line for the episode,
// which counts the drops and says whether B is back, instead of a line per
// return; a single drop says it dropped and came back.
func TestBrowserFlappingPeer(t *testing.T) {
	browser := newBrowser(t)
	base := startRelay(t).URL
	px := startProxy(t, base)
	dir := artifactsDir(t)
	a := newPage(t, browser, "A", 900, 900, false)
	b := newPage(t, browser, "B", 390, 844, true)
	openRoom(t, a, b, base, px.URL)

	episode := `(() => { const l = [...document.querySelectorAll("#messages .msg.system .text")]; return l.length ? l.at(-1).textContent : ""; })()`
	px.cut()
	a.waitFor("one drop and the return", episode+` .match(/^The other person's connection dropped and came back (within a second|after \d+ s)\.$/) !== null`)
	b.waitState("chat")
	const flaps = 8
	for n := 2; n <= flaps; n++ {
		px.cut()
		a.waitFor(fmt.Sprintf("%d drops and the return", n), episode+fmt.Sprintf(` .match(/^The other person's connection is unstable: it dropped %d times in (under a second|\d+ s)\. They are back\.$/) !== null`, n))
	}
	b.waitState("chat")

	// Down for a while: the line says B is away, and the status too.
	px.setDown(true)
	px.cut()
	a.waitState("peer-dropped")
	a.waitFor("the drop recorded", episode+fmt.Sprintf(` .match(/^The other person's connection is unstable: it dropped %d times in (under a second|\d+ s)\. Waiting for them to come back…$/) !== null`, flaps+1))
	a.screenshot(dir, "flapping-a-desktop.png")
	px.setDown(false)
	a.waitState("chat")
	a.waitFor("the return recorded", episode+` .endsWith("They are back.")`)
	if lines := a.systemLines(); len(lines) != 1 {
		t.Errorf("A: history has %d system lines for one episode, want 1: %q", len(lines), lines)
	}

	// The chat goes on, and B's leaving is a line of its own.
	msg := "after the flapping"
	b.waitState("chat")
	b.do(chromedp.SendKeys(chromedp.ID("message"), msg+kb.Enter))
	a.waitMessage(msg)
	b.do(chromedp.Click(chromedp.ID("leave")))
	a.waitState("peer-left")
	lines := a.systemLines()
	if len(lines) != 2 || lines[1] != "The other person left the room." {
		t.Errorf("A: system lines %q, want the episode and \"The other person left the room.\"", lines)
	}
	a.checkQuiet(msg)
	b.checkQuiet(msg)
}

// TestBrowserQueueWhileReconnecting cuts B's network while it chats
// (issue 15, item 13b): B can go on typing, each message shows as queued,
// and once the network is back B resumes and they reach A, in order.
func TestBrowserQueueWhileReconnecting(t *testing.T) {
	browser := newBrowser(t)
	base := startRelay(t).URL
	px := startProxy(t, base)
	dir := artifactsDir(t)
	a := newPage(t, browser, "A", 900, 900, false)
	b := newPage(t, browser, "B", 390, 844, true)
	openRoom(t, a, b, base, px.URL)
	before := "before the drop"
	b.do(chromedp.SendKeys(chromedp.ID("message"), before+kb.Enter))
	a.waitMessage(before)
	b.waitSent(1)

	px.setDown(true)
	px.cut()
	b.waitState("reconnecting")
	if got := b.eval(`(m => m.disabled + " " + m.placeholder)(document.getElementById("message"))`); got != "false Sent once reconnected" {
		t.Errorf("B: message field while reconnecting: disabled, placeholder = %q, want enabled, \"Sent once reconnected\"", got)
	}
	queued := []string{"typed while reconnecting", "and a second one"}
	for _, m := range queued {
		b.do(chromedp.SendKeys(chromedp.ID("message"), m+kb.Enter))
	}
	marks := b.eval(`JSON.stringify([...document.querySelectorAll("#messages .msg.mine.queued")].map(e => e.querySelector(".text").textContent + " | " + e.querySelector(".meta").textContent))`)
	want, _ := json.Marshal([]string{queued[0] + " | queued: sent once reconnected", queued[1] + " | queued: sent once reconnected"})
	if marks != string(want) {
		t.Errorf("B: queued messages %s, want %s", marks, want)
	}
	b.screenshot(dir, "queued-b-phone.png")

	px.setDown(false)
	b.waitState("chat")
	for _, m := range queued {
		a.waitMessage(m)
	}
	b.waitSent(3)
	if n := b.eval(`String(document.querySelectorAll("#messages .msg.mine.queued, #messages .msg.mine.pending, #messages .msg.mine.failed").length)`); n != "0" {
		t.Errorf("B: %s messages still marked queued, pending or failed after reconnecting", n)
	}
	got := a.eval(`JSON.stringify([...document.querySelectorAll("#messages .msg.theirs .text")].map(e => e.textContent))`)
	if want, _ := json.Marshal(append([]string{before}, queued...)); got != string(want) {
		t.Errorf("A received %s, want %s, in order, once each", got, want)
	}
	a.checkQuiet(append([]string{before}, queued...)...)
	b.checkQuiet(append([]string{before}, queued...)...)
}

// TestBrowserFavicon checks that the page's icon and /favicon.ico load in
// Chromium under the page's Content-Security-Policy (issue 15, item 13c).
// With -update-favicon it first draws favicon.svg into favicon.ico.
func TestBrowserFavicon(t *testing.T) {
	browser := newBrowser(t)
	base := startRelay(t).URL
	if *updateFavicon {
		writeFaviconICO(t, browser, base)
	}
	p := newPage(t, browser, "A", 900, 900, false)
	p.do(chromedp.Navigate(base + "/"))
	p.waitState("start")
	got := p.evalAwait(`(async () => {
		const violations = [];
		document.addEventListener("securitypolicyviolation", (e) => violations.push(e.violatedDirective));
		const out = [];
		for (const href of [document.querySelector('link[rel="icon"]').href, "/favicon.ico"]) {
			const r = await fetch(href);
			const img = new Image();
			img.src = href;
			await img.decode();
			out.push(new URL(href, location.href).pathname + " " + r.status + " " + r.headers.get("content-type") + " " + (img.naturalWidth > 0 ? "decoded" : "empty"));
		}
		return out.join(", ") + "; violations: " + violations.join(" ");
	})()`)
	if want := "/favicon.svg 200 image/svg+xml decoded, /favicon.ico 200 image/x-icon decoded; violations: "; got != want {
		t.Errorf("icons: %q, want %q", got, want)
	}
	p.checkQuiet()
}

// writeFaviconICO draws favicon.svg in Chromium at 16, 32 and 48 pixels, on
// a transparent background, and writes them to favicon.ico as PNG images.
func writeFaviconICO(t *testing.T, browser context.Context, base string) {
	t.Helper()
	// Emulation.setDefaultBackgroundColorOverride with alpha 0, which
	// cdp.RGBA omits (its zero means opaque).
	type transparent struct {
		Color struct {
			R int64   `json:"r"`
			G int64   `json:"g"`
			B int64   `json:"b"`
			A float64 `json:"a"`
		} `json:"color"`
	}
	setBackground := cdp.Command[transparent, cdp.Empty]{Method: emulation.CommandSetDefaultBackgroundColorOverride}
	var images [][]byte
	sizes := []int{16, 32, 48}
	for _, n := range sizes {
		p := newPage(t, browser, fmt.Sprintf("icon %d", n), int64(n), int64(n), false)
		p.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, setBackground, transparent{})
			return err
		}), chromedp.Navigate(base+"/favicon.svg"))
		ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
		img, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(img))
		if err != nil || cfg.Width != n || cfg.Height != n {
			t.Fatalf("icon %d: %dx%d, %v", n, cfg.Width, cfg.Height, err)
		}
		images = append(images, img)
	}
	// ICONDIR, one ICONDIRENTRY per image, then the images (PNG in ICO,
	// read by every browser since 2007).
	var ico bytes.Buffer
	le := binary.LittleEndian
	ico.Write(le.AppendUint16(le.AppendUint16(le.AppendUint16(nil, 0), 1), uint16(len(images))))
	offset := 6 + 16*len(images)
	for i, img := range images {
		e := []byte{byte(sizes[i]), byte(sizes[i]), 0, 0}
		e = le.AppendUint16(le.AppendUint16(e, 1), 32)
		e = le.AppendUint32(le.AppendUint32(e, uint32(len(img))), uint32(offset))
		ico.Write(e)
		offset += len(img)
	}
	for _, img := range images {
		ico.Write(img)
	}
	if err := os.WriteFile("favicon.ico", ico.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote favicon.ico (%d bytes): run the tests again to serve it", ico.Len())
}

// safetyGrid is how the page lays out its safety number: the groups per
// row, and whether any group goes past the panel or the page scrolls
// sideways.
const safetyGrid = `(() => {
	const spans = [...document.querySelectorAll("#safety-number span")];
	const rows = [];
	for (const s of spans) {
		const top = Math.round(s.getBoundingClientRect().top);
		let r = rows.find((r) => Math.abs(r.top - top) < 3);
		if (!r) rows.push((r = { top, n: 0 }));
		r.n++;
	}
	const panel = document.getElementById("verify-panel").getBoundingClientRect();
	const clipped = spans.some((s) => s.getBoundingClientRect().right > panel.right);
	const scrolls = document.documentElement.scrollWidth > window.innerWidth;
	return rows.map((r) => r.n).join("+") + (clipped ? " clipped" : "") + (scrolls ? " scrolls" : "");
})()`

var safetyLayoutRE = regexp.MustCompile(`^4\+4\+4$`)

// TestBrowserSafetyNumberLayout checks that the safety number has one
// layout at every width (issue 15, item 13d): 3 rows of 4 groups on a
// desktop, a phone and a small phone, never clipped, so that two screens
// side by side show the same rows.
func TestBrowserSafetyNumberLayout(t *testing.T) {
	browser := newBrowser(t)
	base := startRelay(t).URL
	dir := artifactsDir(t)
	a := newPage(t, browser, "A", 1000, 900, false)
	b := newPage(t, browser, "B", 390, 844, true)
	openRoom(t, a, b, base, base)
	shot := func(p *page) []byte {
		ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
		defer cancel()
		img, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.ID("verify-panel")))
		if err != nil {
			t.Fatalf("%s: screenshot: %v", p.name, err)
		}
		return img
	}
	check := func(p *page, width int64) {
		t.Helper()
		if got := p.eval(safetyGrid); !safetyLayoutRE.MatchString(got) {
			t.Errorf("%s at %d px: safety number laid out %q, want 4+4+4 (3 rows of 4 groups), unclipped", p.name, width, got)
		}
	}
	check(a, 1000)
	check(b, 390)
	both, err := sideBySide(shot(a), shot(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "safety-number-desktop-phone.png"), both, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, w := range []int64{320, 360, 600} {
		b.do(chromedp.EmulateViewport(w, 700, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait))
		check(b, w)
	}
	a.do(chromedp.EmulateViewport(1400, 900))
	check(a, 1400)
	a.checkQuiet()
	b.checkQuiet()
}
