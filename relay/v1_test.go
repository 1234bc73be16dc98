package relay_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/wire"
)

// The behaviours protocol v1 pins down (docs/protocol.md; issue 12). Each
// test failed on the relay before them.

// TestNewPeerAfterGrace: A drops and its grace ends while B stays. B is
// told (peer_left "expired"); a newcomer C then takes the seat, and B and
// C complete a handshake of their own: B gets C's key and
// handshake_complete, and B's messages are refused until then.
func TestNewPeerAfterGrace(t *testing.T) {
	const grace = 300 * time.Millisecond
	tr := newRelay(t, relay.Config{ResumeGrace: grace})
	p := handshake(t, tr, dh.X25519())
	p.a.ws.CloseNow()
	if f := p.b.expect(wire.TypePeerLeft); f.str("reason") != string(wire.ReasonDropped) {
		t.Fatalf("peer_left %v, want dropped", f)
	}
	if f := p.b.expect(wire.TypePeerLeft); f.str("reason") != string(wire.ReasonExpired) {
		t.Fatalf("after the grace: %v, want peer_left expired", f)
	}
	p.b.send(map[string]any{"type": "msg", "body": b64([]byte("to nobody")), "id": "early"})
	if f := p.b.expectError(wire.CodeHandshakeIncomplete); f.str("id") != "early" {
		t.Fatalf("error %v lacks its id", f)
	}

	c, kc := tr.dial(t), newKey(t, dh.X25519())
	c.send(map[string]any{"type": "join", "room": p.room})
	if f := c.expect(wire.TypeRoom); f.num("peers") != 2 {
		t.Fatalf("C's room frame %v, want 2 peers", f)
	}
	if f := c.expect(wire.TypePeerKey); f.str("public_key") != p.bKey.PublicKey().Hex() {
		t.Fatalf("C got %v, want B's key", f)
	}
	if f := p.b.expect(wire.TypePeerJoined); f["resumed"] != false {
		t.Fatalf("B got %v, want peer_joined for a new peer", f)
	}
	p.b.send(map[string]any{"type": "msg", "body": b64([]byte("before C's key"))})
	p.b.expectError(wire.CodeHandshakeIncomplete)

	c.send(map[string]any{"type": "key", "public_key": kc.PublicKey().Hex(), "group": "x25519"})
	c.expect(wire.TypeKeyOK)
	c.expect(wire.TypeHandshakeComplete)
	if f := p.b.expect(wire.TypePeerKey); f.str("public_key") != kc.PublicKey().Hex() {
		t.Fatalf("B got %v, want C's key", f)
	}
	p.b.expect(wire.TypeHandshakeComplete)
	bc, cb := channel(t, p.bKey, kc.PublicKey()), channel(t, kc, p.bKey.PublicKey())
	recvMsg(t, c, cb, sendMsg(t, p.b, bc, "hello C"), "hello C")
	recvMsg(t, p.b, bc, sendMsg(t, c, cb, "hello B"), "hello B")
}

// TestConcurrentResumes: two connections resume one seat at once (a
// client retrying on two instances). The newest wins; the other is closed
// with 4409; the seat is held by the survivor, whose drop the peer then
// sees, and a newcomer can take the seat after the grace.
func TestConcurrentResumes(t *testing.T) {
	const rounds = 8
	cfg := relay.Config{ResumeGrace: 300 * time.Millisecond}
	for round := range rounds {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			tr := newRelay(t, cfg)
			testConcurrentResumes(t, tr, tr, handshake(t, tr, dh.X25519()))
		})
	}
	// On two instances sharing Redis: the two resumes reach different
	// relays.
	for round := range rounds / 2 {
		t.Run(fmt.Sprint("two instances/", round), func(t *testing.T) {
			_, r1, r2 := twoInstances(t, cfg)
			testConcurrentResumes(t, r1, r2, handshakeAcross(t, r1, r2, dh.X25519()))
		})
	}
}

// testConcurrentResumes drops p's B and resumes its seat twice at once, on
// home and on away.
func testConcurrentResumes(t *testing.T, home, away *testRelay, p *pair) {
	p.b.ws.CloseNow()
	p.a.expect(wire.TypePeerLeft)

	b1, b2 := home.dial(t), away.dial(t)
	resume := map[string]any{"type": "resume", "room": p.room, "peer": p.bID, "resume_token": p.bTok}
	var wg sync.WaitGroup
	for _, b := range []*peer{b1, b2} {
		wg.Go(func() { b.send(resume) })
	}
	wg.Wait()

	// Exactly one of the two is closed, with 4409.
	var cutting atomic.Bool // set when the test closes the survivor
	ended := make(chan *peer, 2)
	for _, b := range []*peer{b1, b2} {
		go func() {
			for {
				if _, err := b.tryRead(frameTimeout); err != nil {
					if websocket.CloseStatus(err) == wire.CloseSuperseded {
						ended <- b
					} else if !errors.Is(err, errTimeout) && !cutting.Load() {
						t.Errorf("a resumed connection ended with %v, want 4409 or nothing", err)
					}
					return
				}
			}
		}()
	}
	var survivor *peer
	select {
	case loser := <-ended:
		survivor = b1
		if loser == b1 {
			survivor = b2
		}
	case <-time.After(frameTimeout):
		t.Fatal("neither resumed connection was closed as superseded")
	}
	// The survivor holds the seat: the peer sees it leave.
	cutting.Store(true)
	survivor.ws.CloseNow()
	for {
		f := p.a.read()
		if wire.FrameType(f.str("type")) == wire.TypePeerLeft {
			if f.str("reason") != string(wire.ReasonDropped) {
				t.Fatalf("peer_left %v, want dropped", f)
			}
			break
		}
		if wire.FrameType(f.str("type")) != wire.TypePeerJoined {
			t.Fatalf("A got %v, want peer_joined or peer_left", f)
		}
	}
	if f := p.a.expect(wire.TypePeerLeft); f.str("reason") != string(wire.ReasonExpired) {
		t.Fatalf("A got %v, want peer_left expired", f)
	}
	c := home.dial(t)
	c.send(map[string]any{"type": "join", "room": p.room})
	c.expect(wire.TypeRoom)
}

// TestReflectedKey: a peer that sends the other peer's own key gets
// key_reflected, and nothing is stored or forwarded.
func TestReflectedKey(t *testing.T) {
	tr := newRelay(t, relay.Config{})
	a, b := tr.dial(t), tr.dial(t)
	ka := newKey(t, dh.X25519())
	a.send(map[string]any{"type": "create", "group": "x25519"})
	room := a.expect(wire.TypeRoom).str("room")
	a.send(map[string]any{"type": "key", "public_key": ka.PublicKey().Hex(), "group": "x25519"})
	a.expect(wire.TypeKeyOK)
	b.send(map[string]any{"type": "join", "room": room})
	b.expect(wire.TypeRoom)
	b.expect(wire.TypePeerKey)
	a.expect(wire.TypePeerJoined)
	b.send(map[string]any{"type": "key", "public_key": ka.PublicKey().Hex(), "group": "x25519", "id": 7})
	if f := b.expectError(wire.CodeKeyReflected); f["id"] != float64(7) {
		t.Fatalf("error %v lacks its id", f)
	}
	a.expectQuiet(100 * time.Millisecond)
	kb := newKey(t, dh.X25519())
	b.send(map[string]any{"type": "key", "public_key": kb.PublicKey().Hex(), "group": "x25519"})
	b.expect(wire.TypeKeyOK)
	if f := a.expect(wire.TypePeerKey); f.str("public_key") != kb.PublicKey().Hex() {
		t.Fatalf("A got %v, want B's own key", f)
	}
}

// TestLegacyGroup: modp5 only where the operator allows it.
func TestLegacyGroup(t *testing.T) {
	k5 := newKey(t, dh.MODP5())
	t.Run("refused by default", func(t *testing.T) {
		tr := newRelay(t, relay.Config{})
		a := tr.dial(t)
		a.send(map[string]any{"type": "create", "group": "modp5", "id": "c"})
		if f := a.expectError(wire.CodeGroupNotAllowed); f.str("id") != "c" {
			t.Fatalf("error %v lacks its id", f)
		}
		a.send(map[string]any{"type": "create"})
		a.expect(wire.TypeRoom)
		a.send(map[string]any{"type": "key", "public_key": k5.PublicKey().Hex(), "group": "modp5"})
		a.expectError(wire.CodeGroupNotAllowed)
	})
	t.Run("allowed", func(t *testing.T) {
		tr := newRelay(t, relay.Config{AllowLegacyGroups: true})
		a := tr.dial(t)
		a.send(map[string]any{"type": "create", "group": "modp5"})
		if f := a.expect(wire.TypeRoom); f.str("group") != "modp5" {
			t.Fatalf("room %v", f)
		}
		a.send(map[string]any{"type": "key", "public_key": k5.PublicKey().Hex(), "group": "modp5"})
		a.expect(wire.TypeKeyOK)
	})
}

// TestIDByteForByte: the id comes back exactly as sent, escapes and all.
func TestIDByteForByte(t *testing.T) {
	tr := newRelay(t, relay.Config{})
	p := tr.dial(t)
	for _, id := range []string{`"a<b>&c"`, "\"line\u2028sep\"", `"\u003c"`, `"\/"`, `-42`} {
		p.sendRaw(websocket.MessageText, []byte(`{"type":"leave","id":`+id+`}`))
		f := nextRaw(t, p)
		if f.Code != wire.CodeNotInRoom || !bytes.Contains(f.raw, []byte(`"id":`+id+`,`)) {
			t.Errorf("id %s came back as %s", id, f.raw)
		}
	}
}

// TestDuplicateFields: a frame that names a field twice is refused, however
// the names are written.
func TestDuplicateFields(t *testing.T) {
	tr := newRelay(t, relay.Config{})
	p := tr.dial(t)
	for _, raw := range []string{
		`{"type":"join","type":"create"}`,
		`{"type":"create","id":1,"id":2}`,
		`{"type":"create","group":"x25519","gro\u0075p":"p256"}`,
	} {
		p.sendRaw(websocket.MessageText, []byte(raw))
		p.expectError(wire.CodeBadRequest)
	}
	p.send(map[string]any{"type": "create"})
	p.expect(wire.TypeRoom)
}

// TestCanonicalBody: only canonical base64 is accepted, and the peer gets
// the body byte for byte as sent.
func TestCanonicalBody(t *testing.T) {
	tr := newRelay(t, relay.Config{})
	p := handshake(t, tr, dh.X25519())
	for _, body := range []string{"AAAA\nAAAA", "AAAA\r\n", "AB==", "AAA", "AA AA"} {
		p.a.send(map[string]any{"type": "msg", "body": body})
		p.a.expectError(wire.CodeBadRequest)
	}
	sealed, err := p.aCh.Seal([]byte("exact"))
	if err != nil {
		t.Fatal(err)
	}
	body := base64.StdEncoding.EncodeToString(sealed)
	p.a.send(map[string]any{"type": "msg", "body": body})
	p.a.expect(wire.TypeSent)
	f := nextRaw(t, p.b)
	if f.Type != wire.TypeMsg || f.Body != body {
		t.Fatalf("B got %s, want the body as sent", f.raw)
	}
}

// TestResumeCodes: an unknown room is room_not_found whatever the token;
// a known room with a malformed token is invalid_resume.
func TestResumeCodes(t *testing.T) {
	tr := newRelay(t, relay.Config{})
	p := handshake(t, tr, dh.X25519())
	q := tr.dial(t)
	for _, tc := range []struct {
		room, token string
		code        wire.Code
	}{
		{"6f1c0e8e-0000-4000-8000-000000000000", "short", wire.CodeRoomNotFound},
		{"6f1c0e8e-0000-4000-8000-000000000000", p.bTok, wire.CodeRoomNotFound},
		{p.room, "short", wire.CodeInvalidResume},
		{p.room, p.aTok, wire.CodeInvalidResume},
	} {
		q.send(map[string]any{"type": "resume", "room": tc.room, "peer": p.bID, "resume_token": tc.token})
		q.expectError(tc.code)
	}
}

// storedButUnavailable is a store whose Append stores the message and then
// reports the store unavailable, as when Redis answered after the relay's
// deadline.
type storedButUnavailable struct {
	session.Store
	once sync.Once
}

func (s *storedButUnavailable) Append(ctx context.Context, room, from, source string, body []byte) (uint64, error) {
	seq, err := s.Store.Append(ctx, room, from, source, body)
	failed := false
	s.once.Do(func() { failed = true })
	if err == nil && failed {
		return 0, fmt.Errorf("append: %w: deadline exceeded", session.ErrUnavailable)
	}
	return seq, err
}

// TestUnavailableMsgKeepsID: a msg whose store call fails gets
// unavailable with its id (the message may have been stored, as here: the
// peer gets it, and a sender that sends the same body again makes a copy
// that the receiver drops by its counter).
func TestUnavailableMsgKeepsID(t *testing.T) {
	tr := newRelayOn(t, &storedButUnavailable{Store: newStore(t)}, relay.Config{})
	p := handshake(t, tr, dh.X25519())
	raw, err := p.aCh.Seal([]byte("maybe stored"))
	if err != nil {
		t.Fatal(err)
	}
	sealed := b64(raw)
	p.a.send(map[string]any{"type": "msg", "body": sealed, "id": "m1"})
	if f := p.a.expectError(wire.CodeUnavailable); f.str("id") != "m1" {
		t.Fatalf("error %v lacks the msg's id", f)
	}
	if f := p.b.expect(wire.TypeMsg); f.str("body") != sealed {
		t.Fatalf("B got %v", f)
	}
}

// TestSizeLimitOverFragments: the size limit applies to a whole message,
// whatever its fragments: two 35 KB fragments of one message exceed the
// 64 KiB limit and close the connection with 1009.
func TestSizeLimitOverFragments(t *testing.T) {
	tr := newRelay(t, relay.Config{})
	p := tr.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
	defer cancel()
	w, err := p.ws.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("x"), 35_000)
	for range 2 {
		if _, err := w.Write(chunk); err != nil {
			break // the relay may close before the second fragment is written
		}
	}
	w.Close()
	p.expectClose(wire.CloseTooBig)
}
