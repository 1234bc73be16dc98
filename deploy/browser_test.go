package deploy_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/keyrelay/keyrelay/internal/testkit"
)

// newBrowser starts the headless Chromium (testkit.NewBrowser).
func newBrowser(t *testing.T) context.Context {
	return testkit.NewBrowser(t, "the page through nginx")
}

// tab is one page, in a browser context of its own.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context
}

func newTab(t *testing.T, browser context.Context, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s: open tab: %v", name, err)
	}
	return &tab{t: t, name: name, ctx: ctx}
}

// run runs actions within waitTimeout, failing the test with the page's
// state if they fail.
func (p *tab) run(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v (%s)", p.name, err, p.describe())
	}
}

// eval evaluates a JavaScript expression that returns a string.
func (p *tab) eval(expr string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		p.t.Fatalf("%s: evaluate %s: %v (%s)", p.name, expr, err, p.describe())
	}
	return s
}

// waitFor waits until the JavaScript predicate holds.
func (p *tab) waitFor(what, predicate string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil {
		p.t.Fatalf("%s: waiting for %s: %v (%s)", p.name, what, err, p.describe())
	}
}

// waitState waits until the page shows state (body[data-state]).
func (p *tab) waitState(state string) {
	p.t.Helper()
	p.waitFor("state "+state, "document.body.dataset.state === "+jsString(state))
}

// describe says what the page shows, for failures.
func (p *tab) describe() string {
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.body && document.body.dataset.state) + ": " + (document.getElementById("status") || {}).textContent`))
	if err != nil {
		return "page state unavailable: " + err.Error()
	}
	return "page " + s
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// testBrowserPage opens the chat page through nginx in two tabs, as two
// people would: one creates a room, the other opens the share link, and
// they chat. The page's WebSocket goes through nginx with the page's
// Origin; with a Host header that lost its port the relay would refuse it
// and the page would say the relay cannot be reached.
func testBrowserPage(t *testing.T, lb string, relays []*relayProc) {
	browser := newBrowser(t)
	base := "http://" + lb
	a := newTab(t, browser, "A")
	b := newTab(t, browser, "B")

	a.run(chromedp.Navigate(base + "/"))
	a.waitState("start")
	a.run(chromedp.Click(chromedp.ID("create")))
	a.waitState("waiting")
	link := a.eval(`document.getElementById("share-link").value`)
	if !strings.HasPrefix(link, base+"/#room=") {
		t.Fatalf("share link %q, want %s/#room=…", link, base)
	}
	b.run(chromedp.Navigate(link))
	a.waitState("chat")
	b.waitState("chat")
	snA := a.eval(`document.getElementById("safety-number").textContent`)
	snB := b.eval(`document.getElementById("safety-number").textContent`)
	if snA == "" || snA != snB {
		t.Fatalf("safety numbers: A %q, B %q; want the same", snA, snB)
	}
	for _, m := range []struct {
		from, to *tab
		text     string
	}{{a, b, "from A, through nginx"}, {b, a, "from B, through nginx"}} {
		m.from.run(chromedp.SendKeys(chromedp.ID("message"), m.text+kb.Enter))
		m.to.waitFor("message "+m.text, `[...document.querySelectorAll("#messages .msg.theirs .text")].some(e => e.textContent === `+jsString(m.text)+`)`)
	}
	b.run(chromedp.Click(chromedp.ID("leave")))
	a.waitState("peer-left")
}
