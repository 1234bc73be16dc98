package web_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay/client"
)

// TestBrowserChat runs two real browser pages on the relay: A (desktop
// width) creates a room, B (phone width) opens the share link, which
// carries the group, both show the group and the same safety number, and
// messages typed on each arrive as text on the other, while the relay
// stores ciphertext only.
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
	if room, group := parseShareLink(t, base, link); len(room) != 36 || group != "x25519" {
		t.Fatalf("share link %q, want %s/#room=<uuid>&group=x25519", link, base)
	}
	a.checkGroupShown("x25519") // before the handshake

	b.do(chromedp.Navigate(link))
	a.waitState("chat")
	b.waitState("chat")
	snA, snB := a.safetyNumber(), b.safetyNumber()
	if snA != snB {
		t.Fatalf("safety numbers differ: A %q, B %q", snA, snB)
	}
	a.checkGroupShown("x25519") // after it
	b.checkGroupShown("x25519")

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

	// The relay restarts: both pages show that they reconnect, which
	// relay they try and how long it keeps their place, resume by
	// themselves, and the chat goes on.
	const recordStates = `window.seenStates = []; window.seenStatus = [];
		new MutationObserver(() => {
			window.seenStates.push(document.body.dataset.state);
			window.seenStatus.push(document.getElementById("status").textContent);
		}).observe(document.body, {attributes: true, attributeFilter: ["data-state"]}); "ok"`
	a.eval(recordStates)
	b.eval(recordStates)
	tr.restart(t)
	host := strings.TrimPrefix(base, "http://")
	for _, p := range []*page{a, b} {
		p.waitFor("reconnecting", `window.seenStates.includes("reconnecting")`)
		p.waitFor("the relay tried and the time left", `window.seenStatus.some((s) => /^Connection lost\. Reconnecting through `+regexp.QuoteMeta(host)+`… \(the relay keeps your place (2 min 0|1 min \d+) s more\)$/.test(s))`)
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
// ways. The page opens a link of the old form, without a group: it takes
// the room's group, and shows it.
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
			p.checkGroupShown(group.Name())

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
// use: a full room, a room that does not exist, a malformed link, a link
// whose group the relay does not confirm, a legacy group.
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
	// A modp14 room, opened with a link that says x25519: to the page, the
	// relay reports another group than the one it insists on.
	third, err := client.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	modpRoom, err := third.Create(ctx, dh.MODP14())
	if err != nil {
		t.Fatal(err)
	}
	const noRoom = "00000000-0000-4000-8000-000000000000"
	tests := []struct {
		name, fragment, state string
		status                string // the status line, if it matters
	}{
		{"room full", "#room=" + room.ID, "room-full", ""},
		{"no such room", "#room=" + noRoom, "expired", ""},
		{"malformed link", "#room=not-a-room", "bad-link", ""},
		{"unknown group in link", "#room=" + noRoom + "&group=14", "bad-link", ""},
		{"group changed", "#room=" + modpRoom.ID + "&group=x25519", "group-changed",
			"The relay changed the encryption group from x25519 to modp14; this room is not safe."},
		{"legacy group in link", "#room=" + noRoom + "&group=modp5", "weak-group",
			"This room uses modp5, a legacy encryption group too weak for this page; this room is not safe."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPage(t, browser, tt.name, 390, 844, true)
			p.do(chromedp.Navigate(base + "/" + tt.fragment))
			p.waitState(tt.state)
			if p.eval(`String(document.getElementById("new-room").hidden)`) != "false" {
				t.Errorf("no link to start a new room")
			}
			if got := p.eval(`document.getElementById("status").textContent`); tt.status != "" && got != tt.status {
				t.Errorf("status %q, want %q", got, tt.status)
			}
			if tt.state == "group-changed" {
				p.checkGroupShown("x25519") // the group it insisted on
				p.screenshot(artifactsDir(t), "group-changed-phone.png")
			}
			p.checkQuiet()
		})
	}
	// The page that refused the modp14 room left it: its seat is free.
	jctx, jcancel := context.WithTimeout(context.Background(), waitTimeout)
	defer jcancel()
	joiner, err := client.Dial(jctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer joiner.Close()
	if _, err := joiner.Join(jctx, modpRoom.ID); err != nil {
		t.Errorf("join the room the page refused: %v (the page did not leave it)", err)
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
