package relay_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/wire"
)

// TestPingsInFrameBudget: a client's WebSocket pings spend the frame
// budget; a ping over it gets no pong, and the connection goes on.
func TestPingsInFrameBudget(t *testing.T) {
	tr := newRelay(t, relay.Config{FramesPerSecond: 0.001, FrameBurst: 3})
	p := tr.dial(t)
	ping := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		return p.ws.Ping(ctx)
	}
	for i := range 2 {
		if err := ping(); err != nil {
			t.Fatalf("ping %d within the budget: %v", i+1, err)
		}
	}
	p.send(map[string]any{"type": "create"}) // the budget's third token
	p.expect(wire.TypeRoom)
	if err := ping(); err == nil {
		t.Fatal("a ping over the frame budget got its pong")
	}
	if got := metricValue(t, tr, "keyrelay_throttled_total"); got < 1 {
		t.Errorf("keyrelay_throttled_total = %v, want the unanswered ping counted", got)
	}
	p.send(map[string]any{"type": "leave"}) // over the budget: told so, not closed
	p.expectError(wire.CodeRateLimited)
}

// TestByteBudget: a connection that spends its bytes is not read until it
// has earned them back; its frames are then served, in order.
func TestByteBudget(t *testing.T) {
	tr := newRelay(t, relay.Config{BytesPerSecond: 64 << 10, ByteBurst: 64 << 10, FramesPerSecond: 1e6, FrameBurst: 1e6})
	p := tr.dial(t)
	big := `{"type":"leave","id":"` + strings.Repeat("x", 60) + `","pad":"` + strings.Repeat("p", 40<<10) + `"}`
	for range 3 { // 120 KiB: past the burst
		p.sendRaw(websocket.MessageText, []byte(big))
	}
	for range 3 {
		p.expectError(wire.CodeBadRequest) // pad is no field of leave
	}
	if got := metricValue(t, tr, "keyrelay_throttled_total"); got < 1 {
		t.Errorf("keyrelay_throttled_total = %v, want reading paused at least once", got)
	}
	p.send(map[string]any{"type": "create"})
	p.expect(wire.TypeRoom)
}

// TestNestingBound: a frame nested deeper than any client frame is refused
// as bad_frame before it is decoded.
func TestNestingBound(t *testing.T) {
	tr := newRelay(t, relay.Config{})
	p := tr.dial(t)
	p.sendRaw(websocket.MessageText, []byte(`{"type":"create","id":`+strings.Repeat("[", 9)+strings.Repeat("]", 9)+`}`))
	if f := p.expectError(wire.CodeBadFrame); !strings.Contains(f.str("message"), "nests") {
		t.Fatalf("error %v, want it to say the frame nests too deep", f)
	}
	p.sendRaw(websocket.MessageText, []byte(`{"type":"create","id":[[["x"]]]}`)) // shallow: the field is judged
	p.expectError(wire.CodeBadRequest)
	p.send(map[string]any{"type": "create"})
	p.expect(wire.TypeRoom)
}

// TestPendingBytes: a sender whose messages would take the bytes waiting
// for its peer over MaxPendingBytes gets mailbox_full, though far below
// MaxPending; once the peer acknowledges, it can send again.
func TestPendingBytes(t *testing.T) {
	tr := newRelay(t, relay.Config{MaxPendingBytes: 64 << 10})
	p := handshake(t, tr, dh.X25519())
	big := func(c byte) string { return strings.Repeat(string(c), 30<<10) }
	sendMsg(t, p.a, p.aCh, big('1'))
	sendMsg(t, p.a, p.aCh, big('2')) // about 60 KiB waiting for B
	third, err := p.aCh.Seal([]byte(big('3')))
	if err != nil {
		t.Fatal(err)
	}
	p.a.send(map[string]any{"type": "msg", "body": b64(third)})
	p.a.expectError(wire.CodeMailboxFull)
	recvMsg(t, p.b, p.bCh, 1, big('1'))
	recvMsg(t, p.b, p.bCh, 2, big('2'))
	p.b.send(map[string]any{"type": "ack", "seq": 1})
	// Once B has acknowledged the first, A can send the third (the same
	// sealed body: the refused one was not stored).
	waitFor(t, func() bool {
		p.a.send(map[string]any{"type": "msg", "body": b64(third)})
		f := p.a.read()
		return wire.FrameType(f.str("type")) == wire.TypeSent
	})
	recvMsg(t, p.b, p.bCh, 3, big('3'))
}

// TestUnattendedRoomExpires: when both peers drop, the room and the
// message waiting in it go when the last grace ends (plus the margin),
// not at the end of the 10-minute TTL.
func TestUnattendedRoomExpires(t *testing.T) {
	const grace = 200 * time.Millisecond
	tr := newRelay(t, relay.Config{ResumeGrace: grace})
	p := handshake(t, tr, dh.X25519())
	p.b.ws.CloseNow()
	p.a.expect(wire.TypePeerLeft)
	sendMsg(t, p.a, p.aCh, "never read")
	p.a.ws.CloseNow()
	time.Sleep(grace + session.GraceMargin(grace) + 100*time.Millisecond)
	a2 := tr.dial(t)
	a2.send(map[string]any{"type": "resume", "room": p.room, "peer": p.aID, "resume_token": p.aTok})
	a2.expectError(wire.CodeRoomNotFound)
}
