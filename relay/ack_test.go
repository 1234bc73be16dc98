package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/wire"
)

// pendingFor returns how many messages wait for peer in room.
func pendingFor(t *testing.T, tr *testRelay, room, peer string) int {
	t.Helper()
	msgs, err := tr.Store.Pending(context.Background(), room, peer, 0)
	if err != nil {
		t.Fatalf("Pending(%s): %v", peer, err)
	}
	return len(msgs)
}

// TestAckDelay checks Config.AckDelay: a held ack is stored with the
// client's next message, by its timer, or when its connection ends, and
// never lost.
func TestAckDelay(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
		// then, after b acked a's message: what b does, and whether
		// the ack must be stored by the time it has done it.
		then func(t *testing.T, p *pair)
	}{
		{"with b's next message", time.Hour, func(t *testing.T, p *pair) {
			body, _ := p.bCh.Seal([]byte("reply"))
			p.b.send(map[string]any{"type": "msg", "body": b64(body)})
			p.b.expect(wire.TypeSent)
		}},
		{"by the timer", 50 * time.Millisecond, func(t *testing.T, p *pair) {}},
		{"when b leaves", time.Hour, func(t *testing.T, p *pair) {
			p.b.send(map[string]any{"type": "leave", "id": 9})
			p.b.expect(wire.TypeLeft)
		}},
		{"when b's connection drops", time.Hour, func(t *testing.T, p *pair) {
			p.b.ws.CloseNow()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newRelay(t, relay.Config{AckDelay: tc.delay})
			p := handshake(t, tr, dh.X25519())
			body, _ := p.aCh.Seal([]byte("hello"))
			p.a.send(map[string]any{"type": "msg", "body": b64(body)})
			p.a.expect(wire.TypeSent)
			p.b.expect(wire.TypeMsg)
			p.b.send(map[string]any{"type": "ack", "seq": 1})
			tc.then(t, p)
			waitFor(t, func() bool {
				// Leave removes b's mailbox with b: nothing waits then.
				msgs, err := tr.Store.Pending(context.Background(), p.room, p.bID, 0)
				return err != nil || len(msgs) == 0
			})
		})
	}

	t.Run("held, not stored at once", func(t *testing.T) {
		tr := newRelay(t, relay.Config{AckDelay: time.Hour})
		p := handshake(t, tr, dh.X25519())
		body, _ := p.aCh.Seal([]byte("hello"))
		p.a.send(map[string]any{"type": "msg", "body": b64(body)})
		p.a.expect(wire.TypeSent)
		p.b.expect(wire.TypeMsg)
		p.b.send(map[string]any{"type": "ack", "seq": 1})
		// A frame after the ack, answered: the relay has read the ack.
		p.b.send(map[string]any{"type": "no_such_type", "id": 7})
		p.b.expectError(wire.CodeUnknownType)
		if n := pendingFor(t, tr, p.room, p.bID); n != 1 {
			t.Errorf("%d messages wait for b right after its held ack, want 1 (the ack is held)", n)
		}
		// b's message carries it.
		reply, _ := p.bCh.Seal([]byte("reply"))
		p.b.send(map[string]any{"type": "msg", "body": b64(reply)})
		p.b.expect(wire.TypeSent)
		if n := pendingFor(t, tr, p.room, p.bID); n != 0 {
			t.Errorf("%d messages wait for b after its message carried its ack, want 0", n)
		}
		if n := pendingFor(t, tr, p.room, p.aID); n != 1 {
			t.Errorf("%d messages wait for a, want b's 1", n)
		}
	})
}
