package relay_test

import (
	"context"
	"encoding/json"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/wire"
)

// badStage is where the sender stands when it sends the bad input. Each
// stage has a valid action (badFixture.prove) that shows afterwards that the
// sender's connection still works and that the watching peer saw nothing.
type badStage int

const (
	// inChat (the zero value): A and B have completed the handshake; the
	// sender is A. Proof: a message each way.
	inChat badStage = iota
	// inLobby: the sender (A) and the watcher (B) are in a room; neither
	// has sent a key. Proof: A and B complete the handshake.
	inLobby
	// outside: the watcher is alone in a room; the sender is connected and
	// in no room. Proof: the sender joins the room.
	outside
	// afterDrop: A's connection dropped and the watcher was told; the sender
	// is a new connection that holds A's peer ID and resume token, within
	// the grace period. Proof: the sender resumes as A.
	afterDrop
	// afterGrace: as afterDrop, after the grace period (set ResumeGrace).
	// Proof: the sender joins the freed seat.
	afterGrace
	// afterLeave: A left after the handshake; the sender is A's connection,
	// in no room. Proof: the sender joins the room again.
	afterLeave
	// thirdPeer: A and B have completed the handshake; the sender is a third
	// connection. Proof: the sender creates a room of its own, and A and B
	// exchange a message.
	thirdPeer
)

// badInputCase is one bad input and what the protocol says it gets.
type badInputCase struct {
	name    string
	stage   badStage
	group   *dh.Group    // the room's group; nil means x25519
	noGroup bool         // inLobby: create the room without a group
	cfg     relay.Config // the relay's knobs; zero means the defaults
	// raw is the frame sent, with placeholders: {room}, {peer} and {token}
	// (A's room, peer ID and resume token), {wpeer} and {wtoken} (B's),
	// {mykey} (A's stored public key). frame, when set, builds it instead.
	raw    string
	frame  func(fx *badFixture) string
	binary bool // send a binary frame
	// code is the error code the sender must get, or "" for no reply at
	// all; id is the id it must carry as raw JSON, or "" for none.
	code wire.Code
	id   string
	// close, when set, is the close code that must end the sender's
	// connection instead of an error frame.
	close websocket.StatusCode
	// run, when set, replaces the send-and-check steps.
	run func(t *testing.T, fx *badFixture)
}

// badFixture is a relay and its connections, set up for one case.
type badFixture struct {
	t        *testing.T
	tr       *testRelay
	stage    badStage
	group    *dh.Group
	noGroup  bool
	room     string
	sender   *peer
	watchers []*peer
	p        *pair // every stage but inLobby and outside
	// A's credentials (inLobby and the stages built on a pair).
	peerID, token string
}

// TestBadInput sends every kind of malformed input to the WebSocket endpoint
// over real connections, each case on a fresh relay with a peer watching in
// the same room. For each it checks the error code (or close code) of
// docs/protocol.md §4, the id echoed as §2 says, that the sender's connection
// survives where the docs say so (it completes a valid action afterwards),
// and that the watching peer saw nothing (the first frame it gets is the one
// that valid action causes).
func TestBadInput(t *testing.T) {
	for _, tc := range badInputCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			runBadInput(t, tc)
		})
	}
}

func runBadInput(t *testing.T, tc badInputCase) {
	fx := newBadFixture(t, tc)
	if tc.run != nil {
		tc.run(t, fx)
		return
	}
	data := fx.expand(tc)
	typ := websocket.MessageText
	if tc.binary {
		typ = websocket.MessageBinary
	}
	if tc.close != 0 {
		// The relay may close before it has read the whole frame: a
		// failed write is no failure here, the close code is what counts.
		ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
		_ = fx.sender.ws.Write(ctx, typ, []byte(data))
		cancel()
		fx.sender.expectClose(tc.close)
		// The watcher learns that the sender's connection ended, and
		// nothing before that.
		for _, w := range fx.watchers {
			if f := w.expect(wire.TypePeerLeft); f.str("reason") != "dropped" {
				t.Fatalf("watcher got %v, want peer_left dropped", f)
			}
		}
		return
	}
	fx.sender.sendRaw(typ, []byte(data))
	if tc.code != "" {
		expectErrorID(t, fx.sender, tc.code, tc.id)
	}
	fx.prove()
}

// newBadFixture starts a relay with tc.cfg and brings the connections to
// tc.stage.
func newBadFixture(t *testing.T, tc badInputCase) *badFixture {
	t.Helper()
	g := tc.group
	if g == nil {
		g = dh.X25519()
	}
	tr := newRelay(t, tc.cfg)
	fx := &badFixture{t: t, tr: tr, stage: tc.stage, group: g, noGroup: tc.noGroup}
	switch tc.stage {
	case inLobby:
		a, b := tr.dial(t), tr.dial(t)
		create := map[string]any{"type": "create"}
		if !tc.noGroup {
			create["group"] = g.Name()
		}
		a.send(create)
		f := a.expect(wire.TypeRoom)
		fx.room, fx.peerID, fx.token = f.str("room"), f.str("peer"), f.str("resume_token")
		b.send(map[string]any{"type": "join", "room": fx.room})
		b.expect(wire.TypeRoom)
		a.expect(wire.TypePeerJoined)
		fx.sender, fx.watchers = a, []*peer{b}
	case outside:
		w := tr.dial(t)
		w.send(map[string]any{"type": "create", "group": g.Name()})
		fx.room = w.expect(wire.TypeRoom).str("room")
		fx.sender, fx.watchers = tr.dial(t), []*peer{w}
	default:
		p := handshake(t, tr, g)
		fx.p, fx.room, fx.peerID, fx.token = p, p.room, p.aID, p.aTok
		fx.sender, fx.watchers = p.a, []*peer{p.b}
		switch tc.stage {
		case afterDrop, afterGrace:
			p.a.ws.CloseNow()
			if f := p.b.expect(wire.TypePeerLeft); f.str("reason") != "dropped" {
				t.Fatalf("peer_left %v, want reason dropped", f)
			}
			if tc.stage == afterGrace {
				fx.waitGraceOver(tc.cfg.ResumeGrace)
				// The relay tells the member still there (§3.8).
				if f := p.b.expect(wire.TypePeerLeft); f.str("reason") != string(wire.ReasonExpired) {
					t.Fatalf("peer_left %v, want reason expired", f)
				}
			}
			fx.sender = tr.dial(t)
		case afterLeave:
			p.a.send(map[string]any{"type": "leave"})
			p.a.expect(wire.TypeLeft)
			if f := p.b.expect(wire.TypePeerLeft); f.str("reason") != "left" {
				t.Fatalf("peer_left %v, want reason left", f)
			}
		case thirdPeer:
			fx.sender, fx.watchers = tr.dial(t), []*peer{p.a, p.b}
		}
	}
	return fx
}

// waitGraceOver waits until the store has held A disconnected for longer
// than grace (a wait for a state, not a speed assertion).
func (fx *badFixture) waitGraceOver(grace time.Duration) {
	fx.t.Helper()
	if grace <= 0 {
		fx.t.Fatal("afterGrace needs cfg.ResumeGrace")
	}
	waitFor(fx.t, func() bool {
		r, err := fx.tr.Store.Room(context.Background(), fx.room)
		if err != nil {
			return false
		}
		m, ok := r.Member(fx.peerID)
		return !ok || !m.Connected && !m.DisconnectedAt.IsZero() && time.Since(m.DisconnectedAt) > grace+20*time.Millisecond
	})
}

// expand returns the frame tc sends, placeholders filled in.
func (fx *badFixture) expand(tc badInputCase) string {
	if tc.frame != nil {
		return tc.frame(fx)
	}
	var wpeer, wtoken, mykey string
	if fx.p != nil {
		wpeer, wtoken, mykey = fx.p.bID, fx.p.bTok, fx.p.aKey.PublicKey().Hex()
	}
	return strings.NewReplacer(
		"{room}", fx.room, "{peer}", fx.peerID, "{token}", fx.token,
		"{wpeer}", wpeer, "{wtoken}", wtoken, "{mykey}", mykey, "{group}", fx.group.Name(),
	).Replace(tc.raw)
}

// prove completes the stage's valid action: the sender's connection works,
// and the first frame each watcher gets is the one this action causes.
func (fx *badFixture) prove() {
	t := fx.t
	t.Helper()
	w := fx.watchers[0]
	switch fx.stage {
	case inLobby:
		ka, kb := newKey(t, fx.group), newKey(t, fx.group)
		fx.sender.send(map[string]any{"type": "key", "public_key": ka.PublicKey().Hex(), "group": fx.group.Name(), "id": "proof"})
		if f := fx.sender.expect(wire.TypeKeyOK); f["id"] != "proof" {
			t.Fatalf("key_ok %v lacks the id", f)
		}
		if f := w.expect(wire.TypePeerKey); f.str("public_key") != ka.PublicKey().Hex() {
			t.Fatalf("watcher got %v, want the sender's key", f)
		}
		w.send(map[string]any{"type": "key", "public_key": kb.PublicKey().Hex(), "group": kb.PublicKey().Group().Name()})
		w.expect(wire.TypeKeyOK)
		w.expect(wire.TypeHandshakeComplete)
		if f := fx.sender.expect(wire.TypePeerKey); f.str("public_key") != kb.PublicKey().Hex() {
			t.Fatalf("sender got %v, want the watcher's key", f)
		}
		fx.sender.expect(wire.TypeHandshakeComplete)
	case inChat:
		s := sendMsg(t, fx.sender, fx.p.aCh, "proof from A")
		recvMsg(t, w, fx.p.bCh, s, "proof from A")
		s = sendMsg(t, w, fx.p.bCh, "proof from B")
		recvMsg(t, fx.sender, fx.p.aCh, s, "proof from B")
	case outside, afterGrace, afterLeave:
		fx.sender.send(map[string]any{"type": "join", "room": fx.room, "id": "proof"})
		if f := fx.sender.expect(wire.TypeRoom); f["id"] != "proof" || f.num("peers") != 2 {
			t.Fatalf("join reply %v", f)
		}
		if fx.stage != outside {
			fx.sender.expect(wire.TypePeerKey) // B's key is stored
		}
		if f := w.expect(wire.TypePeerJoined); f["resumed"] != false {
			t.Fatalf("watcher got %v, want peer_joined resumed false", f)
		}
	case afterDrop:
		fx.sender.send(map[string]any{"type": "resume", "room": fx.room, "peer": fx.peerID, "resume_token": fx.token})
		if f := fx.sender.expect(wire.TypeRoom); f["resumed"] != true || f.str("peer") != fx.peerID {
			t.Fatalf("resume reply %v", f)
		}
		fx.sender.expect(wire.TypePeerKey)
		fx.sender.expect(wire.TypeHandshakeComplete)
		if f := w.expect(wire.TypePeerJoined); f["resumed"] != true {
			t.Fatalf("watcher got %v, want peer_joined resumed true", f)
		}
	case thirdPeer:
		fx.sender.send(map[string]any{"type": "create", "id": "proof"})
		if f := fx.sender.expect(wire.TypeRoom); f["id"] != "proof" {
			t.Fatalf("create reply %v", f)
		}
		s := sendMsg(t, fx.p.a, fx.p.aCh, "proof from A")
		recvMsg(t, fx.p.b, fx.p.bCh, s, "proof from A")
	}
}

// rawFrame is a relay frame with its id kept as raw JSON.
type rawFrame struct {
	Type    wire.FrameType  `json:"type"`
	Code    wire.Code       `json:"code"`
	Message string          `json:"message"`
	ID      json.RawMessage `json:"id"`
	Seq     uint64          `json:"seq"`
	Body    string          `json:"body"`
	raw     []byte
}

// nextRaw reads p's next frame, checks that it is valid UTF-8 (a text
// frame must be, RFC 6455 §5.6) and decodes it.
func nextRaw(t *testing.T, p *peer) rawFrame {
	t.Helper()
	var b []byte
	select {
	case fb, ok := <-p.frames:
		if !ok {
			err := <-p.err
			p.err <- err
			t.Fatalf("connection ended: %v", err)
		}
		b = fb
	case <-time.After(frameTimeout):
		t.Fatal("no frame in time")
	}
	if !utf8.Valid(b) {
		t.Errorf("the relay sent a text frame that is not valid UTF-8: %q", clip(b))
	}
	f := rawFrame{raw: b}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("relay sent invalid JSON %q: %v", clip(b), err)
	}
	return f
}

// expectErrorID reads p's next frame and checks that it is an error with
// code and a message, carrying id (raw JSON; "" means no id).
func expectErrorID(t *testing.T, p *peer, code wire.Code, id string) rawFrame {
	t.Helper()
	f := nextRaw(t, p)
	if f.Type != wire.TypeError || f.Code != code || f.Message == "" {
		t.Fatalf("got %s, want an error %q with a message", clip(f.raw), code)
	}
	if string(f.ID) != id {
		t.Errorf("error %s: id %s, want %s", clip(f.raw), orNone(string(f.ID)), orNone(id))
	}
	return f
}

func orNone(id string) string {
	if id == "" {
		return "none"
	}
	return id
}

func clip(b []byte) []byte {
	if len(b) > 300 {
		return append(b[:300:300], "…"...)
	}
	return b
}

// writeAll sends frames back to back.
func writeAll(t *testing.T, p *peer, frames ...string) {
	t.Helper()
	for _, f := range frames {
		p.sendRaw(websocket.MessageText, []byte(f))
	}
}

// untilNotRateLimited sends frame until a reply other than rate_limited
// comes back (a token has come back to the bucket), and returns that reply.
func untilNotRateLimited(t *testing.T, p *peer, frame string) rawFrame {
	t.Helper()
	deadline := time.Now().Add(3 * frameTimeout)
	for {
		writeAll(t, p, frame)
		f := nextRaw(t, p)
		if f.Type != wire.TypeError || f.Code != wire.CodeRateLimited {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatal("still rate-limited")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// acceptKey sends key text (a valid key for the room's group, written in
// another accepted form) and checks that it is stored and forwarded in its
// canonical form want, then completes the handshake.
func acceptKey(t *testing.T, fx *badFixture, text, want string) {
	t.Helper()
	w := fx.watchers[0]
	writeAll(t, fx.sender, `{"type":"key","public_key":"`+text+`","group":"`+fx.group.Name()+`","id":"k"}`)
	if f := nextRaw(t, fx.sender); f.Type != wire.TypeKeyOK || string(f.ID) != `"k"` {
		t.Fatalf("got %s, want key_ok with id \"k\"", clip(f.raw))
	}
	if f := w.expect(wire.TypePeerKey); f.str("public_key") != want {
		t.Fatalf("watcher got key %q, want the canonical %q", f.str("public_key"), want)
	}
	kb := newKey(t, fx.group)
	w.send(map[string]any{"type": "key", "public_key": kb.PublicKey().Hex(), "group": kb.PublicKey().Group().Name()})
	w.expect(wire.TypeKeyOK)
	w.expect(wire.TypeHandshakeComplete)
	fx.sender.expect(wire.TypePeerKey)
	fx.sender.expect(wire.TypeHandshakeComplete)
}

// modp14Prime reads the group 14 prime from the test vectors.
func modp14Prime(t *testing.T) *big.Int {
	t.Helper()
	raw, err := os.ReadFile("../dh/testdata/rfc3526-node.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Primes map[string]string `json:"primes"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	p, ok := new(big.Int).SetString(v.Primes["modp14"], 16)
	if !ok {
		t.Fatal("no modp14 prime in the vectors")
	}
	return p
}
