package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/wire"
)

// TestSomeoneNew: after the other person left, a new person takes the
// seat: keyrelay-chat says so at once, as the page does, before the new
// key exchange and its new safety number, and the chat goes on with the
// newcomer.
func TestSomeoneNew(t *testing.T) {
	url := newRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	a := start(t, ctx, []string{"--url", url}, config{}, nil)
	id := a.screen.waitFor(t, ctx, roomRE)[1]
	b := start(t, ctx, []string{"--url", url, "--room", id}, config{}, nil)
	first := a.screen.waitFor(t, ctx, safetyRE)[1]
	b.screen.waitFor(t, ctx, safetyRE)
	if !strings.Contains(a.screen.String(), "\n"+linePeerJoined) {
		t.Errorf("the first person's arrival is not %q:\n%s", linePeerJoined, a.screen)
	}

	b.stdin.Close() // b leaves
	if err := b.wait(t, ctx); err != nil {
		t.Fatalf("b: %v", err)
	}
	a.screen.waitFor(t, ctx, regexp.QuoteMeta(linePeerLeft))

	c := start(t, ctx, []string{"--url", url, "--room", id}, config{}, nil)
	snC := c.screen.waitFor(t, ctx, safetyRE)[1]
	m := a.screen.waitFor(t, ctx, `(?s)`+regexp.QuoteMeta(lineSomeoneNew)+`.*`+safetyRE)
	if m[1] != snC || m[1] == first {
		t.Errorf("after someone new joined, a shows %s; want the newcomer's %s (not the first %s)", m[1], snC, first)
	}
	if n := strings.Count(a.screen.String(), lineSomeoneNew); n != 1 {
		t.Errorf("%q shown %d times, want 1:\n%s", lineSomeoneNew, n, a.screen)
	}
	if strings.Contains(c.screen.String(), lineSomeoneNew) {
		t.Errorf("the newcomer was told someone new joined:\n%s", c.screen)
	}
	a.typeLine(t, "hello, newcomer")
	c.screen.waitFor(t, ctx, `(?m)^peer: hello, newcomer$`)
}

// TestKeyChangedOnResume: a relay that hands over another key for the
// other person after a reconnection gets a warning at once, in words, with
// the safety number of the new key; keyrelay-chat does not exit, sends
// nothing more, and leaves at end of input.
func TestKeyChangedOnResume(t *testing.T) {
	peer1, err := dh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	peer2, err := dh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	drop := make(chan struct{})
	chatKey := make(chan string, 1)
	leaves := make(chan struct{}, 1)
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{wire.Subprotocol}})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ctx := r.Context()
		read := func() map[string]any {
			_, data, err := ws.Read(ctx)
			if err != nil {
				return nil
			}
			var f map[string]any
			json.Unmarshal(data, &f)
			return f
		}
		write := func(f map[string]any) {
			data, _ := json.Marshal(f)
			ws.Write(ctx, websocket.MessageText, data)
		}
		room := map[string]any{"type": "room", "room": "6f1c9a52-3b7e-4d0a-9e57-1b2c3d4e5f60",
			"peer": "a1", "resume_token": "tok", "group": "x25519", "peers": 1, "resumed": false}
		if conns.Add(1) == 1 {
			// The first connection: create, key, the peer's key, then a drop.
			f := read()
			if f["type"] != "create" {
				t.Errorf("first frame %v, want create", f)
				return
			}
			room["id"] = f["id"]
			write(room)
			write(map[string]any{"type": "peer_joined", "resumed": false})
			f = read()
			if f["type"] != "key" {
				t.Errorf("second frame %v, want key", f)
				return
			}
			chatKey <- f["public_key"].(string)
			write(map[string]any{"type": "key_ok", "id": f["id"], "group": "x25519"})
			write(map[string]any{"type": "peer_key", "public_key": peer1.PublicKey().Hex(), "group": "x25519"})
			write(map[string]any{"type": "handshake_complete", "group": "x25519"})
			select {
			case <-drop:
			case <-ctx.Done():
			}
			return // CloseNow: no close frame, as a network failure
		}
		// The resume: the seat back, and another key for the same peer.
		f := read()
		if f["type"] != "resume" {
			t.Errorf("first frame after the drop %v, want resume", f)
			return
		}
		room["id"], room["peers"], room["resumed"] = f["id"], 2, true
		write(room)
		write(map[string]any{"type": "peer_key", "public_key": peer2.PublicKey().Hex(), "group": "x25519"})
		write(map[string]any{"type": "handshake_complete", "group": "x25519"})
		for {
			f := read()
			if f == nil {
				return
			}
			switch f["type"] {
			case "leave":
				write(map[string]any{"type": "left", "id": f["id"]})
				leaves <- struct{}{}
			case "msg":
				t.Errorf("the chat sent a message after the key changed: %v", f)
			}
		}
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + wire.Path

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := start(t, ctx, []string{"--url", url}, config{}, nil)
	before := a.screen.waitFor(t, ctx, safetyRE)[1]
	close(drop)
	a.screen.waitFor(t, ctx, `(?m)^\* reconnected to `)

	mine, err := dh.X25519().ParsePublicKey(<-chatKey)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := dh.SafetyNumber(mine, peer2.PublicKey())
	warning := regexp.QuoteMeta(lineKeyChanged) +
		regexp.QuoteMeta(strings.Replace(lineChangedNumber, "%s", want, 1)) +
		regexp.QuoteMeta(lineChangedHint)
	a.screen.waitFor(t, ctx, warning)
	if want == before {
		t.Fatal("the new key gives the same safety number")
	}

	a.typeLine(t, "are you still there?")
	a.screen.waitFor(t, ctx, regexp.QuoteMeta(strings.Replace(lineNotSent, "%s", notSafe, 1)))
	select {
	case <-a.done:
		t.Fatalf("keyrelay-chat exited on the changed key: %v\n%s", a.err, a.screen)
	default:
	}

	a.stdin.Close()
	if err := a.wait(t, ctx); err != nil {
		t.Errorf("after end of input: %v", err)
	}
	a.screen.waitFor(t, ctx, `\* left the room\n\* bye\n$`)
	select {
	case <-leaves:
	default:
		t.Error("the relay got no leave")
	}
	if strings.Contains(a.screen.String(), "key exchange failed") {
		t.Errorf("the change was also reported as a failed key exchange:\n%s", a.screen)
	}
}
