package relay_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/wire"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// sendMsg seals text on ch, sends it from p and returns the relay's seq.
func sendMsg(t *testing.T, p *peer, ch *dh.Channel, text string) uint64 {
	t.Helper()
	body, err := ch.Seal([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p.send(map[string]any{"type": "msg", "body": b64(body)})
	return p.expect(wire.TypeSent).num("seq")
}

// recvMsg reads a msg frame on p, opens it with ch and checks text and seq.
func recvMsg(t *testing.T, p *peer, ch *dh.Channel, seq uint64, text string) {
	t.Helper()
	f := p.expect(wire.TypeMsg)
	body, err := base64.StdEncoding.DecodeString(f.str("body"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ch.Open(body)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if string(got) != text || f.num("seq") != seq {
		t.Fatalf("got seq %d %q, want seq %d %q", f.num("seq"), got, seq, text)
	}
}

func TestHandshakeAndChat(t *testing.T) {
	for _, g := range []*dh.Group{dh.X25519(), dh.P256(), dh.MODP14()} {
		t.Run(g.Name(), func(t *testing.T) {
			tr := newRelay(t, relay.Config{})
			p := handshake(t, tr, g)
			for i := 1; i <= 3; i++ {
				text := fmt.Sprintf("hello %d from A", i)
				seq := sendMsg(t, p.a, p.aCh, text)
				recvMsg(t, p.b, p.bCh, seq, text)
			}
			seq := sendMsg(t, p.b, p.bCh, "hi from B")
			if seq != 4 {
				t.Errorf("seq = %d, want 4 (per-room sequence)", seq)
			}
			recvMsg(t, p.a, p.aCh, 4, "hi from B")
			if got := metricValue(t, tr, "keyrelay_handshakes_total"); got != 1 {
				t.Errorf("keyrelay_handshakes_total = %v, want 1", got)
			}
			if got := metricValue(t, tr, "keyrelay_messages_relayed_total"); got != 4 {
				t.Errorf("keyrelay_messages_relayed_total = %v, want 4", got)
			}
		})
	}
}

// TestStoresOnlyCiphertext checks what the relay keeps: public keys and the
// sealed bodies, byte for byte, and never the plaintext.
func TestStoresOnlyCiphertext(t *testing.T) {
	tr := newRelay(t, relay.Config{})
	p := handshake(t, tr, dh.X25519())
	secret := "attack at dawn, the password is hunter2"
	body, _ := p.aCh.Seal([]byte(secret))
	p.a.send(map[string]any{"type": "msg", "body": b64(body)})
	p.a.expect(wire.TypeSent)
	p.b.expect(wire.TypeMsg) // not acked: it stays in the store
	ctx := context.Background()
	msgs, err := tr.Store.Pending(ctx, p.room, p.bID, 0)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Pending = %v, %v", msgs, err)
	}
	if !bytes.Equal(msgs[0].Body, body) || bytes.Contains(msgs[0].Body, []byte("hunter2")) {
		t.Fatalf("stored body is not the ciphertext sent")
	}
	room, err := tr.Store.Room(ctx, p.room)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := room.Member(p.aID)
	if a.PublicKey != p.aKey.PublicKey().Hex() {
		t.Errorf("stored key %q", a.PublicKey)
	}
	dump := fmt.Sprintf("%+v %+v", room, msgs)
	for _, k := range []*dh.PrivateKey{p.aKey, p.bKey} {
		if strings.Contains(dump, k.Hex()) {
			t.Fatal("a private key reached the store")
		}
	}
	// Acknowledged messages leave the store.
	p.b.send(map[string]any{"type": "ack", "seq": 1})
	waitFor(t, func() bool {
		msgs, _ := tr.Store.Pending(ctx, p.room, p.bID, 0)
		return len(msgs) == 0
	})
}

func TestLateJoiner(t *testing.T) {
	tr := newRelay(t, relay.Config{})
	a := tr.dial(t)
	ka := newKey(t, dh.MODP14())
	a.send(map[string]any{"type": "create"}) // no group: the first key fixes it
	room := a.expect(wire.TypeRoom)
	if room.str("group") != "" {
		t.Fatalf("group = %q, want unset", room.str("group"))
	}
	// A key with no group is refused (group is required on key), so is a
	// key under the tutorial API's numeric alias; the key with its group's
	// name is accepted.
	a.send(map[string]any{"type": "key", "public_key": ka.PublicKey().Hex()})
	a.expectError(wire.CodeBadRequest)
	a.send(map[string]any{"type": "key", "public_key": ka.PublicKey().Hex(), "group": "14"})
	a.expectError(wire.CodeUnknownGroup)
	a.send(map[string]any{"type": "key", "public_key": ka.PublicKey().Hex(), "group": "modp14"})
	if f := a.expect(wire.TypeKeyOK); f.str("group") != "modp14" {
		t.Fatalf("key_ok %v", f)
	}
	a.expectQuiet(200 * time.Millisecond) // waiting, nobody there

	b := tr.dial(t)
	b.send(map[string]any{"type": "join", "room": room.str("room")})
	if f := b.expect(wire.TypeRoom); f.str("group") != "modp14" {
		t.Fatalf("joiner sees group %q", f.str("group"))
	}
	if f := b.expect(wire.TypePeerKey); f.str("public_key") != ka.PublicKey().Hex() {
		t.Fatalf("late joiner got %v", f)
	}
	a.expect(wire.TypePeerJoined)
	kb := newKey(t, dh.MODP14())
	b.send(map[string]any{"type": "key", "public_key": kb.PublicKey().Hex(), "group": kb.PublicKey().Group().Name()}) // group from the room
	b.expect(wire.TypeKeyOK)
	b.expect(wire.TypeHandshakeComplete)
	a.expect(wire.TypePeerKey)
	a.expect(wire.TypeHandshakeComplete)
}

func TestRoomFull(t *testing.T) {
	tr := newRelay(t, relay.Config{})
	p := handshake(t, tr, dh.X25519())
	c := tr.dial(t)
	c.send(map[string]any{"type": "join", "room": p.room, "id": "third"})
	if f := c.expectError(wire.CodeRoomFull); f["id"] != "third" {
		t.Fatalf("error lacks the frame id: %v", f)
	}
	// The third connection is still usable, and the two peers saw nothing.
	c.send(map[string]any{"type": "create"})
	c.expect(wire.TypeRoom)
	p.a.expectQuiet(100 * time.Millisecond)
	p.b.expectQuiet(100 * time.Millisecond)
}

// TestInvalidKeys sends a bad key at each validation step; each gets its
// code, the peer sees nothing, and the connection completes the handshake
// afterwards.
func TestInvalidKeys(t *testing.T) {
	p14, _ := new(big.Int).SetString(strings.Repeat("f", 16)+"c90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f14374fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7edee386bfb5a899fa5ae9f24117c4b1fe649286651ece45b3dc2007cb8a163bf0598da48361c55d39a69163fa8fd24cf5f83655d23dca3ad961c62f356208552bb9ed529077096966d670c354e4abc9804f1746c08ca18217c32905e462e36ce3be39e772c180e86039b2783a2ec07a28fb5c55df06f4c52c9de2bcbf6955817183995497cea956ae515d2261898fa051015728e5a8aacaa68"+strings.Repeat("f", 16), 16)
	hexOf := func(d int64) string { return new(big.Int).Add(p14, big.NewInt(d)).Text(16) }
	x := newKey(t, dh.X25519())
	tests := []struct {
		name  string
		frame map[string]any
		code  wire.Code
	}{
		{"zero", map[string]any{"public_key": "0", "group": "modp14"}, wire.CodeInvalidPublicKey},
		{"one", map[string]any{"public_key": "1", "group": "modp14"}, wire.CodeInvalidPublicKey},
		{"p-1", map[string]any{"public_key": hexOf(-1), "group": "modp14"}, wire.CodeInvalidPublicKey},
		{"p", map[string]any{"public_key": hexOf(0), "group": "modp14"}, wire.CodeInvalidPublicKey},
		{"p+1", map[string]any{"public_key": hexOf(1), "group": "modp14"}, wire.CodeInvalidPublicKey},
		{"non-residue p-2", map[string]any{"public_key": hexOf(-2), "group": "modp14"}, wire.CodeInvalidPublicKey},
		{"too long", map[string]any{"public_key": strings.Repeat("1", 513), "group": "modp14"}, wire.CodeMalformedKey},
		{"0x prefix", map[string]any{"public_key": "0x1234", "group": "modp14"}, wire.CodeMalformedKey},
		{"sign", map[string]any{"public_key": "-1234", "group": "modp14"}, wire.CodeMalformedKey},
		{"space", map[string]any{"public_key": "12 34", "group": "modp14"}, wire.CodeMalformedKey},
		{"empty", map[string]any{"public_key": "", "group": "modp14"}, wire.CodeMalformedKey},
		{"wrong group", map[string]any{"public_key": x.PublicKey().Hex(), "group": "x25519"}, wire.CodeGroupMismatch},
		{"unknown group", map[string]any{"public_key": "1234", "group": "modp2"}, wire.CodeUnknownGroup},
		{"number", map[string]any{"public_key": 1234, "group": "modp14"}, wire.CodeBadRequest},
		{"numeric alias", map[string]any{"public_key": "1234", "group": "14"}, wire.CodeUnknownGroup},
		{"no group", map[string]any{"public_key": "1234"}, wire.CodeBadRequest},
	}
	tr := newRelay(t, relay.Config{})
	a, b := tr.dial(t), tr.dial(t)
	a.send(map[string]any{"type": "create", "group": "modp14"})
	room := a.expect(wire.TypeRoom).str("room")
	b.send(map[string]any{"type": "join", "room": room})
	b.expect(wire.TypeRoom)
	a.expect(wire.TypePeerJoined)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.frame["type"] = "key"
			tt.frame["id"] = tt.name
			a.send(tt.frame)
			if f := a.expectError(tt.code); f["id"] != tt.name {
				t.Fatalf("error %v lacks id", f)
			}
		})
	}
	b.expectQuiet(200 * time.Millisecond) // nothing was forwarded
	failures := metricValue(t, tr, "keyrelay_key_validation_failures_total")
	if failures < 12 {
		t.Errorf("validation failures counted: %v, want at least 12", failures)
	}
	ka, kb := newKey(t, dh.MODP14()), newKey(t, dh.MODP14())
	a.send(map[string]any{"type": "key", "public_key": ka.PublicKey().Hex(), "group": ka.PublicKey().Group().Name()})
	a.expect(wire.TypeKeyOK)
	a.send(map[string]any{"type": "key", "public_key": ka.PublicKey().Hex(), "group": ka.PublicKey().Group().Name()})
	a.expectError(wire.CodeKeyAlreadySet)
	b.expect(wire.TypePeerKey)
	b.send(map[string]any{"type": "key", "public_key": kb.PublicKey().Hex(), "group": kb.PublicKey().Group().Name()})
	b.expect(wire.TypeKeyOK)
	b.expect(wire.TypeHandshakeComplete)
	a.expect(wire.TypePeerKey)
	a.expect(wire.TypeHandshakeComplete)
}

// TestBadFrames feeds malformed frames; each gets its code and the
// connection stays usable.
func TestBadFrames(t *testing.T) {
	tr := newRelay(t, relay.Config{})
	tests := []struct {
		name string
		raw  string
		code wire.Code
	}{
		{"not json", `{"type":`, wire.CodeBadFrame},
		{"array", `[1,2]`, wire.CodeBadFrame},
		{"string", `"create"`, wire.CodeBadFrame},
		{"null", `null`, wire.CodeBadFrame},
		{"no type", `{"room":"x"}`, wire.CodeUnknownType},
		{"type number", `{"type":5}`, wire.CodeUnknownType},
		{"unknown type", `{"type":"hello"}`, wire.CodeUnknownType},
		{"extra field", `{"type":"create","colour":"red"}`, wire.CodeBadRequest},
		{"case-folded field", `{"type":"join","Room":"6f1c0e8e-0000-4000-8000-000000000000"}`, wire.CodeBadRequest},
		{"missing field", `{"type":"join"}`, wire.CodeBadRequest},
		{"wrong type", `{"type":"join","room":7}`, wire.CodeBadRequest},
		{"null field", `{"type":"join","room":null}`, wire.CodeBadRequest},
		{"room shape", `{"type":"join","room":"../../etc"}`, wire.CodeBadRequest},
		{"room upper case", `{"type":"join","room":"6F1C0E8E-0000-4000-8000-000000000000"}`, wire.CodeBadRequest},
		{"unknown room", `{"type":"join","room":"6f1c0e8e-0000-4000-8000-000000000000"}`, wire.CodeRoomNotFound},
		{"unknown group", `{"type":"create","group":"rsa"}`, wire.CodeUnknownGroup},
		{"long id", `{"type":"create","id":"` + strings.Repeat("i", 65) + `"}`, wire.CodeBadRequest},
		{"object id", `{"type":"create","id":{}}`, wire.CodeBadRequest},
		{"key outside room", `{"type":"key","public_key":"02","group":"p256"}`, wire.CodeNotInRoom},
		{"msg outside room", `{"type":"msg","body":"AAAA"}`, wire.CodeNotInRoom},
		{"ack outside room", `{"type":"ack","seq":1}`, wire.CodeNotInRoom},
		{"leave outside room", `{"type":"leave"}`, wire.CodeNotInRoom},
		{"negative seq", `{"type":"ack","seq":-1}`, wire.CodeBadRequest},
		{"forged resume", `{"type":"resume","room":"6f1c0e8e-0000-4000-8000-000000000000","peer":"6f1c0e8e-0000-4000-8000-000000000001","resume_token":"` + strings.Repeat("A", 43) + `"}`, wire.CodeRoomNotFound},
		// An unknown room is room_not_found whatever the token's shape.
		{"resume bad token", `{"type":"resume","room":"6f1c0e8e-0000-4000-8000-000000000000","peer":"6f1c0e8e-0000-4000-8000-000000000001","resume_token":"short"}`, wire.CodeRoomNotFound},
	}
	p := tr.dial(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.sendRaw(websocket.MessageText, []byte(tt.raw))
			p.expectError(tt.code)
		})
	}
	t.Run("binary frame", func(t *testing.T) {
		p.sendRaw(websocket.MessageBinary, []byte(`{"type":"create"}`))
		p.expectError(wire.CodeBadFrame)
	})
	// Still usable, and in-room errors.
	p.send(map[string]any{"type": "create", "group": "x25519"})
	room := p.expect(wire.TypeRoom)
	p.send(map[string]any{"type": "create"})
	p.expectError(wire.CodeAlreadyInRoom)
	p.send(map[string]any{"type": "msg", "body": "AAAA"})
	p.expectError(wire.CodeHandshakeIncomplete)
	// A resume token that does not match an existing room's member.
	q := tr.dial(t)
	q.send(map[string]any{"type": "resume", "room": room.str("room"), "peer": room.str("peer"), "resume_token": strings.Repeat("A", 43)})
	q.expectError(wire.CodeInvalidResume)
	q.send(map[string]any{"type": "resume", "room": room.str("room"), "peer": "6f1c0e8e-0000-4000-8000-000000000001", "resume_token": room.str("resume_token")})
	q.expectError(wire.CodeInvalidResume)
	p.send(map[string]any{"type": "leave", "id": 9})
	if f := p.expect(wire.TypeLeft); f["id"] != float64(9) {
		t.Fatalf("left %v", f)
	}
}

func TestMessageErrors(t *testing.T) {
	tr := newRelay(t, relay.Config{MaxPending: 2})
	p := handshake(t, tr, dh.X25519())
	p.a.send(map[string]any{"type": "msg", "body": "not base64!"})
	p.a.expectError(wire.CodeBadRequest)
	p.a.send(map[string]any{"type": "msg", "body": ""})
	p.a.expectError(wire.CodeBadRequest)
	sendMsg(t, p.a, p.aCh, "one")
	sendMsg(t, p.a, p.aCh, "two")
	body, _ := p.aCh.Seal([]byte("three"))
	p.a.send(map[string]any{"type": "msg", "body": b64(body)})
	p.a.expectError(wire.CodeMailboxFull)
	recvMsg(t, p.b, p.bCh, 1, "one")
	recvMsg(t, p.b, p.bCh, 2, "two")
	p.b.send(map[string]any{"type": "ack", "seq": 2})
	// Once B has acknowledged, A can send again (the same sealed body: the
	// refused one was not stored).
	waitFor(t, func() bool {
		p.a.send(map[string]any{"type": "msg", "body": b64(body)})
		f := p.a.read()
		return wire.FrameType(f.str("type")) == wire.TypeSent
	})
	recvMsg(t, p.b, p.bCh, 3, "three")
}

// TestResume drops B's connection abruptly mid-conversation; A keeps
// sending; B resumes on a new connection and gets every message once, in
// order.
func TestResume(t *testing.T) {
	tr := newRelay(t, relay.Config{})
	p := handshake(t, tr, dh.X25519())
	seq := sendMsg(t, p.a, p.aCh, "before the drop")
	recvMsg(t, p.b, p.bCh, seq, "before the drop")
	// B received seq 1 but its ack is lost with the connection.
	p.b.ws.CloseNow()
	if f := p.a.expect(wire.TypePeerLeft); f.str("reason") != "dropped" {
		t.Fatalf("peer_left %v", f)
	}
	var sent []uint64
	for i := 0; i < 5; i++ {
		sent = append(sent, sendMsg(t, p.a, p.aCh, fmt.Sprintf("while away %d", i)))
	}
	b2 := tr.dial(t)
	b2.send(map[string]any{"type": "resume", "room": p.room, "peer": p.bID, "resume_token": p.bTok, "last_seq": seq, "id": "r"})
	f := b2.expect(wire.TypeRoom)
	if f["resumed"] != true || f.str("peer") != p.bID || f.str("resume_token") != "" || f["id"] != "r" {
		t.Fatalf("resume reply %v", f)
	}
	b2.expect(wire.TypePeerKey)
	b2.expect(wire.TypeHandshakeComplete)
	for i, s := range sent {
		recvMsg(t, b2, p.bCh, s, fmt.Sprintf("while away %d", i))
	}
	if f := p.a.expect(wire.TypePeerJoined); f["resumed"] != true {
		t.Fatalf("peer_joined %v", f)
	}
	// Live messages flow again, both ways, with no duplicate.
	s := sendMsg(t, p.a, p.aCh, "after")
	recvMsg(t, b2, p.bCh, s, "after")
	s = sendMsg(t, b2, p.bCh, "back")
	recvMsg(t, p.a, p.aCh, s, "back")
	b2.expectQuiet(100 * time.Millisecond)
}

func TestResumeExpired(t *testing.T) {
	tr := newRelay(t, relay.Config{ResumeGrace: 100 * time.Millisecond})
	p := handshake(t, tr, dh.X25519())
	p.b.ws.CloseNow()
	p.a.expect(wire.TypePeerLeft)
	time.Sleep(150 * time.Millisecond) // past the grace period (not a speed assertion)
	b2 := tr.dial(t)
	b2.send(map[string]any{"type": "resume", "room": p.room, "peer": p.bID, "resume_token": p.bTok})
	b2.expectError(wire.CodeResumeExpired)
	// The seat is free again.
	c := tr.dial(t)
	c.send(map[string]any{"type": "join", "room": p.room})
	c.expect(wire.TypeRoom)
}

// TestRoomFrameResumeGrace: the room frame says how long the relay keeps
// a dropped member's seat (resume_grace_ms), in the replies to create,
// join and resume alike: the configured grace, 2 minutes by default.
func TestRoomFrameResumeGrace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		want  uint64
	}{
		{"default", 0, 120000},
		{"configured", 1500 * time.Millisecond, 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newRelay(t, relay.Config{ResumeGrace: tc.grace})
			a, b := tr.dial(t), tr.dial(t)
			a.send(map[string]any{"type": "create", "group": "x25519"})
			created := a.expect(wire.TypeRoom)
			b.send(map[string]any{"type": "join", "room": created.str("room")})
			joined := b.expect(wire.TypeRoom)
			a.expect(wire.TypePeerJoined)
			b.ws.CloseNow()
			a.expect(wire.TypePeerLeft)
			b2 := tr.dial(t)
			b2.send(map[string]any{"type": "resume", "room": created.str("room"), "peer": joined.str("peer"), "resume_token": joined.str("resume_token")})
			resumed := b2.expect(wire.TypeRoom)
			for _, f := range []frame{created, joined, resumed} {
				if got := f.num("resume_grace_ms"); got != tc.want {
					t.Errorf("room frame %v: resume_grace_ms %d, want %d", f, got, tc.want)
				}
			}
		})
	}
}

// TestRoomKeptAliveWhileConnected: a connected member keeps its room alive
// through pings even when nobody sends a frame.
func TestRoomKeptAliveWhileConnected(t *testing.T) {
	tr := newRelay(t, relay.Config{RoomTTL: time.Second, PingInterval: 50 * time.Millisecond})
	a := tr.dial(t)
	a.send(map[string]any{"type": "create"})
	room := a.expect(wire.TypeRoom).str("room")
	a.expectQuiet(2500 * time.Millisecond) // well past the TTL
	b := tr.dial(t)
	b.send(map[string]any{"type": "join", "room": room})
	b.expect(wire.TypeRoom)
}

// untouchable is a store whose Touch does nothing: the keepalive no longer
// keeps a connected member's room alive, as when the store lost it.
type untouchable struct{ session.Store }

func (untouchable) Touch(context.Context, string) error { return nil }

// TestExpiry: a room expires after RoomTTL without activity (here the
// keepalive's touches are lost); its member is told and stays connected.
func TestExpiry(t *testing.T) {
	tr := newRelayOn(t, untouchable{newStore(t)}, relay.Config{RoomTTL: 300 * time.Millisecond, PingInterval: 50 * time.Millisecond})
	a := tr.dial(t)
	a.send(map[string]any{"type": "create"})
	room := a.expect(wire.TypeRoom).str("room")
	a.expectError(wire.CodeRoomExpired)
	if n, _ := tr.Store.Rooms(context.Background()); n != 0 {
		t.Fatalf("%d rooms left after expiry", n)
	}
	// Out of the room, still connected: a new room works; the old one is gone.
	b := tr.dial(t)
	b.send(map[string]any{"type": "join", "room": room})
	b.expectError(wire.CodeRoomNotFound)
	a.send(map[string]any{"type": "create"})
	a.expect(wire.TypeRoom)
}

func TestLeave(t *testing.T) {
	tr := newRelay(t, relay.Config{})
	p := handshake(t, tr, dh.X25519())
	p.b.send(map[string]any{"type": "leave"})
	p.b.expect(wire.TypeLeft)
	if f := p.a.expect(wire.TypePeerLeft); f.str("reason") != "left" {
		t.Fatalf("peer_left %v", f)
	}
	p.a.send(map[string]any{"type": "msg", "body": "AAAA"})
	p.a.expectError(wire.CodeHandshakeIncomplete)
	// The seat is free.
	c := tr.dial(t)
	c.send(map[string]any{"type": "join", "room": p.room})
	c.expect(wire.TypeRoom)
	c.expect(wire.TypePeerKey)
}

func TestLimits(t *testing.T) {
	t.Run("frame too large", func(t *testing.T) {
		tr := newRelay(t, relay.Config{MaxFrameBytes: 4096})
		p := tr.dial(t)
		p.send(map[string]any{"type": "create", "id": strings.Repeat("x", 5000)})
		p.expectClose(websocket.StatusMessageTooBig)
	})
	t.Run("rate limited", func(t *testing.T) {
		tr := newRelay(t, relay.Config{FramesPerSecond: 0.001, FrameBurst: 3})
		p := tr.dial(t)
		for i := 0; i < 4; i++ {
			p.send(map[string]any{"type": "leave"})
		}
		for i := 0; i < 3; i++ {
			p.expectError(wire.CodeNotInRoom)
		}
		p.expectError(wire.CodeRateLimited)
	})
	t.Run("connections per IP", func(t *testing.T) {
		tr := newRelay(t, relay.Config{Limiter: relaytest.NewLimiter(t, limits.Config{MaxConnsPerIP: 2})})
		tr.dial(t)
		tr.dial(t)
		tr.dial(t).expectClose(wire.CloseTooManyConnsPerIP)
	})
	t.Run("rooms in total", func(t *testing.T) {
		tr := newRelay(t, relay.Config{MaxRooms: 1})
		a, b := tr.dial(t), tr.dial(t)
		a.send(map[string]any{"type": "create"})
		a.expect(wire.TypeRoom)
		b.send(map[string]any{"type": "create"})
		b.expectError(wire.CodeTooManyRooms)
	})
	t.Run("no subprotocol", func(t *testing.T) {
		tr := newRelay(t, relay.Config{})
		ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, tr.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		newPeer(t, ws).expectClose(wire.CloseNoSubprotocol)
	})
	t.Run("foreign origin", func(t *testing.T) {
		tr := newRelay(t, relay.Config{})
		ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
		defer cancel()
		_, resp, err := websocket.Dial(ctx, tr.URL, &websocket.DialOptions{
			Subprotocols: []string{wire.Subprotocol},
			HTTPHeader:   http.Header{"Origin": {"https://evil.example"}},
		})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("foreign origin: %v, %v; want 403", resp, err)
		}
		tr2 := newRelay(t, relay.Config{AllowedOrigins: []string{"evil.example"}})
		ws, _, err := websocket.Dial(ctx, tr2.URL, &websocket.DialOptions{
			Subprotocols: []string{wire.Subprotocol},
			HTTPHeader:   http.Header{"Origin": {"https://evil.example"}},
		})
		if err != nil {
			t.Fatalf("allowed origin refused: %v", err)
		}
		ws.CloseNow()
	})
	t.Run("keepalive", func(t *testing.T) {
		// A client that stops reading stops answering pings; the relay
		// closes it after PingInterval + PingTimeout.
		tr := newRelay(t, relay.Config{PingInterval: 50 * time.Millisecond, PingTimeout: 100 * time.Millisecond})
		live := tr.dial(t)
		// The dead client never calls Read, so nothing answers the
		// relay's pings (a peer's reader, even paused, may be inside a
		// Read that answers them).
		ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
		defer cancel()
		dead, _, err := websocket.Dial(ctx, tr.URL, &websocket.DialOptions{Subprotocols: []string{wire.Subprotocol}})
		if err != nil {
			t.Fatal(err)
		}
		defer dead.CloseNow()
		waitFor(t, func() bool { return metricValue(t, tr, "keyrelay_connections_closed_total") >= 1 })
		// The client that reads answers pings and stays.
		live.send(map[string]any{"type": "create"})
		live.expect(wire.TypeRoom)
		waitFor(t, func() bool { return metricValue(t, tr, "keyrelay_connections") == 1 })
	})
	t.Run("slow reader", func(t *testing.T) {
		tr := newRelay(t, relay.Config{SendQueue: 2, FramesPerSecond: 1e6, FrameBurst: 1e6, BytesPerSecond: 1e9, ByteBurst: 1 << 30, MaxPending: 100000, MaxPendingBytes: 1 << 30, SlowReaderTimeout: 200 * time.Millisecond, WriteTimeout: time.Minute})
		p := handshake(t, tr, dh.X25519())
		p.b.stopReading()
		// B stops reading; A sends until the relay gives up on B. Bounded:
		// at most 2000 frames of 32 KiB (64 MiB), far past socket buffers.
		body := b64(bytes.Repeat([]byte{1}, 32<<10))
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-done:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
				err := p.a.ws.Write(ctx, websocket.MessageText, []byte(`{"type":"msg","body":"`+body+`"}`))
				cancel()
				if err != nil {
					return
				}
			}
		}()
		// Drain A's replies so that A is not the slow one.
		go func() {
			for {
				if _, err := p.a.tryRead(frameTimeout); err != nil {
					return
				}
			}
		}()
		waitFor(t, func() bool {
			return metricValue(t, tr, "keyrelay_connections_closed_total") >= 1
		})
		close(done)
		wg.Wait()
		p.b.resumeReading()
		p.b.expectClose(wire.CloseSlowReader)
	})
}

func TestShutdown(t *testing.T) {
	tr := newRelay(t, relay.Config{})
	p := handshake(t, tr, dh.X25519())
	if err := tr.Relay.Close(); err != nil {
		t.Fatal(err)
	}
	p.a.expectClose(websocket.StatusGoingAway)
	p.b.expectClose(websocket.StatusGoingAway)
	if err := tr.Relay.Ready(context.Background()); err == nil {
		t.Error("Ready after Close")
	}
}

// TestConfigErrors checks that New refuses a nil store or limiter and each
// invalid Config field, with an error that names the problem.
func TestConfigErrors(t *testing.T) {
	store := relaytest.NewMemoryStore()
	t.Cleanup(func() { store.Close() })
	lim := relaytest.NewLimiter(t, relaytest.Limits)
	tests := []struct {
		name  string
		store session.Store
		cfg   relay.Config
		want  string // in the error
	}{
		{"nil store", nil, relay.Config{Limiter: lim}, "store"},
		{"nil limiter", store, relay.Config{}, "Limiter"},
		{"frame size", store, relay.Config{Limiter: lim, MaxFrameBytes: 10}, "MaxFrameBytes"},
		{"frame rate", store, relay.Config{Limiter: lim, FramesPerSecond: -1}, "FramesPerSecond"},
		{"negative TTL", store, relay.Config{Limiter: lim, RoomTTL: -time.Second}, "negative"},
		{"negative ack delay", store, relay.Config{Limiter: lim, AckDelay: -time.Millisecond}, "negative"},
		{"room ID length", store, relay.Config{Limiter: lim, MinRoomIDLength: 65}, "MinRoomIDLength"},
		{"ping at half the TTL", store, relay.Config{Limiter: lim, PingInterval: 5 * time.Minute}, "PingInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := relay.New(tt.store, tt.cfg, nil)
			if err == nil {
				r.Close()
				t.Fatalf("New(%+v) succeeded", tt.cfg)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v; want an error about %s", err, tt.want)
			}
		})
	}
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * frameTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
