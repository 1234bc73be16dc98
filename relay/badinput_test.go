package relay_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
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
		"{wpeer}", wpeer, "{wtoken}", wtoken, "{mykey}", mykey,
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
		w.send(map[string]any{"type": "key", "public_key": kb.PublicKey().Hex()})
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
	writeAll(t, fx.sender, `{"type":"key","public_key":"`+text+`","id":"k"}`)
	if f := nextRaw(t, fx.sender); f.Type != wire.TypeKeyOK || string(f.ID) != `"k"` {
		t.Fatalf("got %s, want key_ok with id \"k\"", clip(f.raw))
	}
	if f := w.expect(wire.TypePeerKey); f.str("public_key") != want {
		t.Fatalf("watcher got key %q, want the canonical %q", f.str("public_key"), want)
	}
	kb := newKey(t, fx.group)
	w.send(map[string]any{"type": "key", "public_key": kb.PublicKey().Hex()})
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

func badInputCases(t *testing.T) []badInputCase {
	p := modp14Prime(t)
	modp := func(d int64) string { return new(big.Int).Add(p, big.NewInt(d)).Text(16) }
	// The smallest quadratic non-residue: in range, outside the
	// prime-order subgroup.
	nonResidue := big.NewInt(2)
	for big.Jacobi(nonResidue, p) != -1 {
		nonResidue.Add(nonResidue, big.NewInt(1))
	}
	const (
		// RFC 7748 test vector keys (dh/testdata/ec_vectors.json).
		x25519Key = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
		p256Key   = "043f9447b7aca1d7b418d022784e66c2ae6d8565e9c1d86ccebea406523bfc5faa79e8c2076f2c29422a92298921be277543f7e3e242fa191803ecc1297ce185fb"
		p256P     = "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"
		unknown   = "6f1c0e8e-0000-4000-8000-000000000000" // a room ID of the right shape that no room has
	)
	p256X, p256Y := p256Key[2:66], p256Key[66:]
	forged := strings.Repeat("A", 43) // a token of the right length, not the one issued
	key := func(k string) string { return `{"type":"key","public_key":"` + k + `","id":"k"}` }
	keyIn := func(k, group string) string {
		return `{"type":"key","public_key":"` + k + `","group":"` + group + `","id":"k"}`
	}
	join := func(room func(string) string) func(fx *badFixture) string {
		return func(fx *badFixture) string {
			b, _ := json.Marshal(map[string]any{"type": "join", "room": room(fx.room), "id": "j"})
			return string(b)
		}
	}
	resume := func(fields string) string {
		return `{"type":"resume",` + fields + `,"id":"r"}`
	}
	modp14, p256 := dh.MODP14(), dh.P256()
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)

	return []badInputCase{
		// Not a JSON object: bad_frame, no id (there is none to read).
		{name: "json/truncated", raw: `{"type":"msg","body":"AAAA`, code: wire.CodeBadFrame},
		{name: "json/truncated with id", raw: `{"type":"create","id":1`, code: wire.CodeBadFrame},
		{name: "json/trailing comma", raw: `{"type":"create","id":1,}`, code: wire.CodeBadFrame},
		{name: "json/single quotes", raw: `{'type':'create'}`, code: wire.CodeBadFrame},
		{name: "json/empty frame", raw: ``, code: wire.CodeBadFrame},
		{name: "json/whitespace", raw: " \n\t ", code: wire.CodeBadFrame},
		{name: "json/empty array", raw: `[]`, code: wire.CodeBadFrame},
		{name: "json/array of frame", raw: `[{"type":"create","id":1}]`, code: wire.CodeBadFrame},
		{name: "json/null", raw: `null`, code: wire.CodeBadFrame},
		{name: "json/string", raw: `"create"`, code: wire.CodeBadFrame},
		{name: "json/number", raw: `42`, code: wire.CodeBadFrame},
		{name: "json/huge number", raw: `1e400`, code: wire.CodeBadFrame},
		{name: "json/true", raw: `true`, code: wire.CodeBadFrame},
		{name: "json/two objects", raw: `{"type":"create"}{"type":"create"}`, code: wire.CodeBadFrame},
		{name: "json/trailing garbage", raw: `{"type":"create"} x`, code: wire.CodeBadFrame},
		{name: "json/NaN", raw: `{"type":"ack","seq":NaN}`, code: wire.CodeBadFrame},
		{name: "json/byte order mark", raw: "\ufeff" + `{"type":"create"}`, code: wire.CodeBadFrame},
		{name: "json/nested 20000 deep", raw: `{"type":"create","id":` + deep + `}`, code: wire.CodeBadFrame},
		// §1: frames are UTF-8 JSON; invalid UTF-8 is not JSON (RFC 8259 §8.1).
		{name: "json/invalid UTF-8", raw: "{\"type\":\"create\",\"id\":\"\xff\xfe\"}", code: wire.CodeBadFrame},

		// Binary frames are refused (§1), whatever they hold.
		{name: "binary/json frame", raw: `{"type":"msg","body":"AAAA","id":1}`, binary: true, code: wire.CodeBadFrame},
		{name: "binary/empty", raw: ``, binary: true, code: wire.CodeBadFrame},
		{name: "binary/bytes", raw: "\x00\x01\x02\xff", binary: true, code: wire.CodeBadFrame},

		// §2: type missing or not one of §2.1.
		{name: "type/unknown", raw: `{"type":"hello","id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/upper case", raw: `{"type":"CREATE","id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/trailing space", raw: `{"type":"msg ","body":"AAAA","id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/empty", raw: `{"type":"","id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/null", raw: `{"type":null,"id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/number", raw: `{"type":5,"id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/missing", raw: `{"id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/empty object", raw: `{}`, code: wire.CodeUnknownType},
		{name: "type/relay's own room", raw: `{"type":"room","room":"{room}","id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/relay's own sent", raw: `{"type":"sent","seq":1,"id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/relay's own error", raw: `{"type":"error","code":"internal","id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},

		// §2: the id, a string of at most 64 characters or an integer, is
		// copied into the reply. (create while in a room: already_in_room.)
		{name: "id/64 ASCII characters", raw: `{"type":"create","id":"` + strings.Repeat("i", 64) + `"}`, code: wire.CodeAlreadyInRoom, id: `"` + strings.Repeat("i", 64) + `"`},
		{name: "id/64 non-ASCII characters", raw: `{"type":"create","id":"` + strings.Repeat("é", 64) + `"}`, code: wire.CodeAlreadyInRoom, id: `"` + strings.Repeat("é", 64) + `"`},
		{name: "id/escaped string", raw: `{"type":"create","id":"a\"b\\c\u0041"}`, code: wire.CodeAlreadyInRoom, id: `"a\"b\\c\u0041"`},
		{name: "id/empty string", raw: `{"type":"create","id":""}`, code: wire.CodeAlreadyInRoom, id: `""`},
		{name: "id/zero", raw: `{"type":"create","id":0}`, code: wire.CodeAlreadyInRoom, id: `0`},
		{name: "id/negative", raw: `{"type":"create","id":-7}`, code: wire.CodeAlreadyInRoom, id: `-7`},
		{name: "id/int64 max", raw: `{"type":"create","id":9223372036854775807}`, code: wire.CodeAlreadyInRoom, id: `9223372036854775807`},
		{name: "id/65 characters", raw: `{"type":"create","id":"` + strings.Repeat("i", 65) + `"}`, code: wire.CodeBadRequest},
		{name: "id/beyond int64", raw: `{"type":"create","id":9223372036854775808}`, code: wire.CodeBadRequest},
		{name: "id/huge number", raw: `{"type":"create","id":1e400}`, code: wire.CodeBadRequest},
		{name: "id/float", raw: `{"type":"create","id":1.5}`, code: wire.CodeBadRequest},
		{name: "id/bool", raw: `{"type":"create","id":true}`, code: wire.CodeBadRequest},
		{name: "id/object", raw: `{"type":"create","id":{}}`, code: wire.CodeBadRequest},
		{name: "id/array", raw: `{"type":"create","id":["a"]}`, code: wire.CodeBadRequest},
		{name: "id/null", raw: `{"type":"create","id":null}`, code: wire.CodeBadRequest},

		// §2: unknown fields are refused (bad_request), not ignored.
		{name: "extra field/msg", raw: `{"type":"msg","body":"AAAA","colour":"red","id":"x"}`, code: wire.CodeBadRequest, id: `"x"`},
		{name: "extra field/leave with room", raw: `{"type":"leave","room":"{room}","id":"x"}`, code: wire.CodeBadRequest, id: `"x"`},
		{name: "extra field/ack with body", raw: `{"type":"ack","seq":1,"body":"AAAA","id":"x"}`, code: wire.CodeBadRequest, id: `"x"`},
		{name: "extra field/case-folded", raw: `{"type":"msg","Body":"AAAA","id":"x"}`, code: wire.CodeBadRequest, id: `"x"`},
		{name: "extra field/case-folded twin", raw: `{"type":"msg","body":"AAAA","BODY":"AAAA","id":"x"}`, code: wire.CodeBadRequest, id: `"x"`},
		{name: "extra field/null", raw: `{"type":"leave","extra":null,"id":"x"}`, code: wire.CodeBadRequest, id: `"x"`},

		// §2.1: missing required fields.
		{name: "missing/join room", raw: `{"type":"join","id":"m"}`, code: wire.CodeBadRequest, id: `"m"`},
		{name: "missing/key public_key", raw: `{"type":"key","group":"x25519","id":"m"}`, code: wire.CodeBadRequest, id: `"m"`},
		{name: "missing/msg body", raw: `{"type":"msg","id":"m"}`, code: wire.CodeBadRequest, id: `"m"`},
		{name: "missing/ack seq", raw: `{"type":"ack","id":"m"}`, code: wire.CodeBadRequest, id: `"m"`},
		{name: "missing/resume token", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}"`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "missing/resume peer", stage: afterDrop, raw: resume(`"room":"{room}","resume_token":"{token}"`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "missing/resume room", stage: afterDrop, raw: resume(`"peer":"{peer}","resume_token":"{token}"`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "missing/group in a room without one", stage: inLobby, noGroup: true, raw: key(x25519Key), code: wire.CodeBadRequest, id: `"k"`},

		// §2.1: wrongly typed fields.
		{name: "type of/room number", stage: outside, raw: `{"type":"join","room":7,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/room array", stage: outside, raw: `{"type":"join","room":["{room}"],"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/room null", stage: outside, raw: `{"type":"join","room":null,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/group number", stage: outside, raw: `{"type":"create","group":14,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/public_key number", stage: inLobby, group: modp14, raw: `{"type":"key","public_key":1234,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/public_key array", stage: inLobby, raw: `{"type":"key","public_key":["` + x25519Key + `"],"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/key group null", stage: inLobby, raw: `{"type":"key","public_key":"` + x25519Key + `","group":null,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/body number", raw: `{"type":"msg","body":1234,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/body object", raw: `{"type":"msg","body":{"a":1},"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/seq string", raw: `{"type":"ack","seq":"1","id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/seq negative", raw: `{"type":"ack","seq":-1,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/seq float", raw: `{"type":"ack","seq":1.5,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/seq 2^64", raw: `{"type":"ack","seq":18446744073709551616,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/seq 1e400", raw: `{"type":"ack","seq":1e400,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/seq bool", raw: `{"type":"ack","seq":true,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/seq null", raw: `{"type":"ack","seq":null,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/last_seq negative", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{token}","last_seq":-1`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "type of/last_seq string", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{token}","last_seq":"0"`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "type of/last_seq float", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{token}","last_seq":0.5`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "type of/peer number", stage: afterDrop, raw: resume(`"room":"{room}","peer":7,"resume_token":"{token}"`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "type of/resume_token number", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":123`), code: wire.CodeBadRequest, id: `"r"`},

		// Oversized frames close the connection with 1009 (§4).
		{name: "size/text over the limit", cfg: relay.Config{MaxFrameBytes: 4096}, frame: func(*badFixture) string { return msgFrameOfSize(4097) }, close: websocket.StatusMessageTooBig},
		{name: "size/binary over the limit", cfg: relay.Config{MaxFrameBytes: 4096}, binary: true, raw: strings.Repeat("x", 4097), close: websocket.StatusMessageTooBig},
		{name: "size/over the default 64 KiB", frame: func(*badFixture) string { return msgFrameOfSize(64<<10 + 1) }, close: websocket.StatusMessageTooBig},
		{name: "size/exactly the limit is accepted", cfg: relay.Config{MaxFrameBytes: 4096}, run: func(t *testing.T, fx *badFixture) {
			frame := msgFrameOfSize(4096)
			writeAll(t, fx.sender, frame)
			if f := nextRaw(t, fx.sender); f.Type != wire.TypeSent {
				t.Fatalf("got %s, want sent", clip(f.raw))
			}
			f := nextRaw(t, fx.watchers[0])
			if f.Type != wire.TypeMsg || !strings.Contains(frame, `"`+f.Body+`"`) {
				t.Fatalf("watcher got %s, want the message", clip(f.raw))
			}
			t.Logf("a %d-byte msg frame reached the peer as a %d-byte frame", len(frame), len(f.raw))
			fx.prove()
		}},

		// Keys (§5.2 and §4): MODP group 14.
		{name: "modp14/0", stage: inLobby, group: modp14, raw: key("0"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "modp14/1", stage: inLobby, group: modp14, raw: key("1"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "modp14/p-1", stage: inLobby, group: modp14, raw: key(modp(-1)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "modp14/p", stage: inLobby, group: modp14, raw: key(modp(0)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "modp14/p+1", stage: inLobby, group: modp14, raw: key(modp(1)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "modp14/non-residue " + nonResidue.String(), stage: inLobby, group: modp14, raw: key(nonResidue.Text(16)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "modp14/non-residue p-2", stage: inLobby, group: modp14, raw: key(modp(-2)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "modp14/too long", stage: inLobby, group: modp14, raw: key(strings.Repeat("0", 510) + "004"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/huge", stage: inLobby, group: modp14, raw: key(strings.Repeat("f", 60000)), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/minus sign", stage: inLobby, group: modp14, raw: key("-" + modp(-3)), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/plus sign", stage: inLobby, group: modp14, raw: key("+4"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/0x prefix", stage: inLobby, group: modp14, raw: key("0x4"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/leading space", stage: inLobby, group: modp14, raw: key(" 4"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/inner space", stage: inLobby, group: modp14, raw: key("1 4"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/trailing newline", stage: inLobby, group: modp14, raw: key(`4\n`), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/empty", stage: inLobby, group: modp14, raw: key(""), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/not hex", stage: inLobby, group: modp14, raw: key("xyz"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/non-ASCII digits", stage: inLobby, group: modp14, raw: key("١٢٣"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/x25519 key with its group", stage: inLobby, group: modp14, raw: keyIn(x25519Key, "x25519"), code: wire.CodeGroupMismatch, id: `"k"`},
		{name: "modp14/other MODP group", stage: inLobby, group: modp14, raw: keyIn("4", "modp15"), code: wire.CodeGroupMismatch, id: `"k"`},
		{name: "modp14/unknown group", stage: inLobby, group: modp14, raw: keyIn("4", "modp2"), code: wire.CodeUnknownGroup, id: `"k"`},
		{name: "modp14/upper-case group name", stage: inLobby, group: modp14, raw: keyIn("4", "MODP14"), code: wire.CodeUnknownGroup, id: `"k"`},
		{name: "modp14/upper-case hex accepted", stage: inLobby, group: modp14, run: func(t *testing.T, fx *badFixture) {
			k := newKey(t, fx.group).PublicKey().Hex()
			acceptKey(t, fx, strings.ToUpper(k), k)
		}},
		{name: "modp14/leading zeros accepted", stage: inLobby, group: modp14, run: func(t *testing.T, fx *badFixture) {
			acceptKey(t, fx, strings.Repeat("0", 511)+"4", "4")
		}},

		// x25519: low-order points, non-canonical encodings, wrong lengths.
		{name: "x25519/zero", stage: inLobby, raw: key(strings.Repeat("00", 32)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/one", stage: inLobby, raw: key("01" + strings.Repeat("00", 31)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/order 8 (a)", stage: inLobby, raw: key("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/order 8 (b)", stage: inLobby, raw: key("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/p-1", stage: inLobby, raw: key("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/p", stage: inLobby, raw: key("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/p+1", stage: inLobby, raw: key("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/top bit set", stage: inLobby, raw: key(x25519Key[:62] + "ea"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/all ones", stage: inLobby, raw: key(strings.Repeat("ff", 32)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/31 bytes", stage: inLobby, raw: key(x25519Key[:62]), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "x25519/odd length", stage: inLobby, raw: key(x25519Key[:63]), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "x25519/33 bytes", stage: inLobby, raw: key(x25519Key + "00"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "x25519/short value", stage: inLobby, raw: key("09"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "x25519/sign", stage: inLobby, raw: key("-" + x25519Key[1:]), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "x25519/0x prefix", stage: inLobby, raw: key("0x" + x25519Key[2:]), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "x25519/p256 key", stage: inLobby, raw: key(p256Key), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "x25519/p256 key with its group", stage: inLobby, raw: keyIn(p256Key, "p256"), code: wire.CodeGroupMismatch, id: `"k"`},
		{name: "x25519/upper-case hex accepted", stage: inLobby, run: func(t *testing.T, fx *badFixture) {
			k := newKey(t, fx.group).PublicKey().Hex()
			acceptKey(t, fx, strings.ToUpper(k), k)
		}},

		// p256: uncompressed points on the curve only.
		{name: "p256/off the curve", stage: inLobby, group: p256, raw: key(p256Key[:129] + "a"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "p256/compressed", stage: inLobby, group: p256, raw: key("03" + p256X), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "p256/compressed tag on 65 bytes", stage: inLobby, group: p256, raw: key("02" + p256X + p256Y), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "p256/infinity as 65 zero bytes", stage: inLobby, group: p256, raw: key(strings.Repeat("00", 65)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "p256/infinity as 00", stage: inLobby, group: p256, raw: key("00"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "p256/x = p", stage: inLobby, group: p256, raw: key("04" + p256P + p256Y), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "p256/no tag", stage: inLobby, group: p256, raw: key(p256X + p256Y), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "p256/x25519 key", stage: inLobby, group: p256, raw: key(x25519Key), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "p256/upper-case hex accepted", stage: inLobby, group: p256, run: func(t *testing.T, fx *badFixture) {
			k := newKey(t, fx.group).PublicKey().Hex()
			acceptKey(t, fx, strings.ToUpper(k), k)
		}},

		// Order of the flow.
		{name: "flow/msg before the handshake", stage: inLobby, raw: `{"type":"msg","body":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","id":"m"}`, code: wire.CodeHandshakeIncomplete, id: `"m"`},
		{name: "flow/same key after the handshake", raw: key("{mykey}"), code: wire.CodeKeyAlreadySet, id: `"k"`},
		{name: "flow/new key after the handshake", raw: key(x25519Key), code: wire.CodeKeyAlreadySet, id: `"k"`},
		{name: "flow/create in a room", raw: `{"type":"create","id":"c"}`, code: wire.CodeAlreadyInRoom, id: `"c"`},
		{name: "flow/join in a room", raw: `{"type":"join","room":"{room}","id":"c"}`, code: wire.CodeAlreadyInRoom, id: `"c"`},
		{name: "flow/resume in a room", raw: `{"type":"resume","room":"{room}","peer":"{peer}","resume_token":"{token}","id":"c"}`, code: wire.CodeAlreadyInRoom, id: `"c"`},
		// ack of a seq never sent: no reply, and later messages still come.
		{name: "flow/ack of a seq never sent", raw: `{"type":"ack","seq":999,"id":"a"}`},
		{name: "flow/ack of seq 0", raw: `{"type":"ack","seq":0,"id":"a"}`},
		{name: "flow/ack of the largest seq", raw: `{"type":"ack","seq":18446744073709551615,"id":"a"}`},
		{name: "flow/key before a room", stage: outside, raw: key(x25519Key), code: wire.CodeNotInRoom, id: `"k"`},
		{name: "flow/msg before a room", stage: outside, raw: `{"type":"msg","body":"AAAA","id":"m"}`, code: wire.CodeNotInRoom, id: `"m"`},
		{name: "flow/ack before a room", stage: outside, raw: `{"type":"ack","seq":1,"id":"a"}`, code: wire.CodeNotInRoom, id: `"a"`},
		{name: "flow/leave before a room", stage: outside, raw: `{"type":"leave","id":"l"}`, code: wire.CodeNotInRoom, id: `"l"`},
		{name: "flow/key after leave", stage: afterLeave, raw: key(x25519Key), code: wire.CodeNotInRoom, id: `"k"`},
		{name: "flow/msg after leave", stage: afterLeave, raw: `{"type":"msg","body":"AAAA","id":"m"}`, code: wire.CodeNotInRoom, id: `"m"`},
		{name: "flow/ack after leave", stage: afterLeave, raw: `{"type":"ack","seq":1,"id":"a"}`, code: wire.CodeNotInRoom, id: `"a"`},
		{name: "flow/leave after leave", stage: afterLeave, raw: `{"type":"leave","id":"l"}`, code: wire.CodeNotInRoom, id: `"l"`},

		// Message bodies: standard base64 with padding, not empty.
		{name: "body/not base64", raw: `{"type":"msg","body":"not base64!","id":"b"}`, code: wire.CodeBadRequest, id: `"b"`},
		{name: "body/URL alphabet", raw: `{"type":"msg","body":"-_-_","id":"b"}`, code: wire.CodeBadRequest, id: `"b"`},
		{name: "body/no padding", raw: `{"type":"msg","body":"AAA","id":"b"}`, code: wire.CodeBadRequest, id: `"b"`},
		{name: "body/empty", raw: `{"type":"msg","body":"","id":"b"}`, code: wire.CodeBadRequest, id: `"b"`},

		// Rooms: IDs exactly as create returns them (lowercase UUIDs).
		{name: "room/upper case", stage: outside, frame: join(strings.ToUpper), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/no dashes", stage: outside, frame: join(func(r string) string { return strings.ReplaceAll(r, "-", "") }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/too long", stage: outside, frame: join(func(r string) string { return r + "0" }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/too short", stage: outside, frame: join(func(r string) string { return r[:35] }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/non-ASCII", stage: outside, frame: join(func(r string) string { return r[:35] + "é" }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/braces", stage: outside, frame: join(func(r string) string { return "{" + r + "}" }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/urn", stage: outside, frame: join(func(r string) string { return "urn:uuid:" + r }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/surrounding space", stage: outside, frame: join(func(r string) string { return " " + r }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/empty", stage: outside, frame: join(func(string) string { return "" }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/path", stage: outside, frame: join(func(string) string { return "../../etc/passwd" }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/10 KB", stage: outside, frame: join(func(string) string { return strings.Repeat("a", 10000) }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/unknown", stage: outside, raw: `{"type":"join","room":"` + unknown + `","id":"j"}`, code: wire.CodeRoomNotFound, id: `"j"`},
		{name: "room/full", stage: thirdPeer, raw: `{"type":"join","room":"{room}","id":"j"}`, code: wire.CodeRoomFull, id: `"j"`},
		{name: "room/seat held for a dropped peer", stage: afterDrop, raw: `{"type":"join","room":"{room}","id":"j"}`, code: wire.CodeRoomFull, id: `"j"`},
		{name: "room/too many rooms", stage: outside, cfg: relay.Config{MaxRooms: 1}, raw: `{"type":"create","id":"c"}`, code: wire.CodeTooManyRooms, id: `"c"`},

		// create's group.
		{name: "group/unknown", stage: outside, raw: `{"type":"create","group":"rsa","id":"g"}`, code: wire.CodeUnknownGroup, id: `"g"`},
		{name: "group/upper case", stage: outside, raw: `{"type":"create","group":"X25519","id":"g"}`, code: wire.CodeUnknownGroup, id: `"g"`},
		{name: "group/number not canonical", stage: outside, raw: `{"type":"create","group":"05","id":"g"}`, code: wire.CodeUnknownGroup, id: `"g"`},
		{name: "group/empty", stage: outside, raw: `{"type":"create","group":"","id":"g"}`, code: wire.CodeUnknownGroup, id: `"g"`},
		{name: "group/RFC 3526 group 2", stage: outside, raw: `{"type":"create","group":"modp2","id":"g"}`, code: wire.CodeUnknownGroup, id: `"g"`},

		// Resume (§3): wrong token, unknown peer, after the grace period.
		{name: "resume/forged token", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"` + forged + `"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/token too short", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"c2hvcnQ"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/token too long", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{token}AAAA"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/token padded", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{token}="`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/token not base64url", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"` + strings.Repeat("!", 43) + `"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/token empty", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":""`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/the other peer's token", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{wtoken}"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/the other peer with a forged token", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{wpeer}","resume_token":"` + forged + `"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/unknown peer", stage: afterDrop, raw: resume(`"room":"{room}","peer":"` + unknown + `","resume_token":"{token}"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/peer ID upper case", stage: afterDrop, frame: func(fx *badFixture) string {
			return resume(`"room":"` + fx.room + `","peer":"` + strings.ToUpper(fx.peerID) + `","resume_token":"` + fx.token + `"`)
		}, code: wire.CodeBadRequest, id: `"r"`},
		{name: "resume/peer ID not a UUID", stage: afterDrop, raw: resume(`"room":"{room}","peer":"alice","resume_token":"{token}"`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "resume/room upper case", stage: afterDrop, frame: func(fx *badFixture) string {
			return resume(`"room":"` + strings.ToUpper(fx.room) + `","peer":"` + fx.peerID + `","resume_token":"` + fx.token + `"`)
		}, code: wire.CodeBadRequest, id: `"r"`},
		{name: "resume/unknown room", stage: afterDrop, raw: resume(`"room":"` + unknown + `","peer":"{peer}","resume_token":"{token}"`), code: wire.CodeRoomNotFound, id: `"r"`},
		{name: "resume/extra field", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{token}","group":"x25519"`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "resume/full room, forged token", stage: thirdPeer, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"` + forged + `"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/after the grace period", stage: afterGrace, cfg: relay.Config{ResumeGrace: 150 * time.Millisecond}, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{token}"`), code: wire.CodeResumeExpired, id: `"r"`},
		{name: "resume/forged token after the grace period", stage: afterGrace, cfg: relay.Config{ResumeGrace: 150 * time.Millisecond}, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"` + forged + `"`), code: wire.CodeInvalidResume, id: `"r"`},

		// Rate limit (§3): flooded frames get rate_limited and are ignored;
		// the connection stays, and works once the bucket refills.
		{name: "rate/flood", cfg: relay.Config{FramesPerSecond: 2, FrameBurst: 10}, run: func(t *testing.T, fx *badFixture) {
			const n = 30
			frames := make([]string, n)
			for i := range frames {
				frames[i] = fmt.Sprintf(`{"type":"create","id":%d}`, i)
			}
			writeAll(t, fx.sender, frames...)
			limited := 0
			for i := 0; i < n; i++ {
				f := nextRaw(t, fx.sender)
				switch {
				case f.Type == wire.TypeError && f.Code == wire.CodeRateLimited:
					limited++
				case f.Type == wire.TypeError && f.Code == wire.CodeAlreadyInRoom:
					if string(f.ID) != fmt.Sprint(i) {
						t.Fatalf("reply %d is %s, for another frame", i, clip(f.raw))
					}
				default:
					t.Fatalf("reply %d: %s, want already_in_room or rate_limited", i, clip(f.raw))
				}
			}
			if limited == 0 {
				t.Fatalf("none of %d frames sent at once was rate-limited (burst 10)", n)
			}
			body, err := fx.p.aCh.Seal([]byte("after the flood"))
			if err != nil {
				t.Fatal(err)
			}
			f := untilNotRateLimited(t, fx.sender, `{"type":"msg","body":"`+b64(body)+`"}`)
			if f.Type != wire.TypeSent {
				t.Fatalf("got %s, want sent", clip(f.raw))
			}
			recvMsg(t, fx.watchers[0], fx.p.bCh, f.Seq, "after the flood")
		}},
		// A frame dropped by the rate limit is not read: its error carries no
		// id (docs/protocol.md §2).
		{name: "rate/rate-limited frame's id", stage: outside, cfg: relay.Config{FramesPerSecond: 0.5, FrameBurst: 1}, run: func(t *testing.T, fx *badFixture) {
			writeAll(t, fx.sender, `{"type":"leave","id":"first"}`, `{"type":"leave","id":"second"}`)
			expectErrorID(t, fx.sender, wire.CodeNotInRoom, `"first"`)
			expectErrorID(t, fx.sender, wire.CodeRateLimited, "")
			f := untilNotRateLimited(t, fx.sender, `{"type":"join","room":"`+fx.room+`"}`)
			if f.Type != wire.TypeRoom {
				t.Fatalf("got %s, want room", clip(f.raw))
			}
			if f := fx.watchers[0].expect(wire.TypePeerJoined); f["resumed"] != false {
				t.Fatalf("watcher got %v", f)
			}
		}},
	}
}

// msgFrameOfSize returns a valid msg frame of exactly n bytes (n > 28): a
// base64 body as long as fits, then JSON whitespace.
func msgFrameOfSize(n int) string {
	const env = len(`{"type":"msg","body":""}`)
	bodyLen := (n - env) / 4 * 4
	body := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, bodyLen/4*3))
	f := `{"type":"msg","body":"` + body + `"}`
	if pad := n - len(f); pad > 0 {
		f = f[:len(f)-1] + strings.Repeat(" ", pad) + "}"
	}
	return f
}
