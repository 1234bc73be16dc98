package relay_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/wire"
)

// TestResumeAfterLostWrites simulates what a Redis master that fails over
// before its replica has the last writes leaves: a room whose count of
// messages is below numbers the peers were given. A peer that resumes
// with last_seq (what it received) or sent_seq (what it was confirmed)
// makes the relay number the next messages above them, so that its peer
// does not drop them as duplicates.
func TestResumeAfterLostWrites(t *testing.T) {
	for _, tc := range []struct {
		name string
		// resume makes one peer resume after the rollback, with what it
		// knows, and returns the peer that sends next and its channel.
		resume func(t *testing.T, tr *testRelay, p *pair) (*peer, *dh.Channel, *peer)
	}{
		{"the receiver resumes with last_seq", func(t *testing.T, tr *testRelay, p *pair) (*peer, *dh.Channel, *peer) {
			p.b.ws.CloseNow()
			p.a.expect(wire.TypePeerLeft)
			b2 := tr.dial(t)
			b2.send(map[string]any{"type": "resume", "room": p.room, "peer": p.bID, "resume_token": p.bTok, "last_seq": 3})
			b2.expect(wire.TypeRoom)
			p.a.expect(wire.TypePeerJoined)
			return p.a, p.aCh, b2
		}},
		{"the sender resumes with sent_seq", func(t *testing.T, tr *testRelay, p *pair) (*peer, *dh.Channel, *peer) {
			p.a.ws.CloseNow()
			p.b.expect(wire.TypePeerLeft)
			a2 := tr.dial(t)
			a2.send(map[string]any{"type": "resume", "room": p.room, "peer": p.aID, "resume_token": p.aTok, "sent_seq": 3})
			a2.expect(wire.TypeRoom)
			p.b.expect(wire.TypePeerJoined)
			return a2, p.aCh, p.b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := redistest.Start(t)
			prefix := "lost:" + strings.ReplaceAll(t.Name(), "/", ":") + ":"
			tr := newRelayOn(t, relaytest.NewRedisStore(t, addr, prefix), relay.Config{})
			p := handshake(t, tr, dh.X25519())
			for range 3 {
				sendMsg(t, p.a, p.aCh, "before")
				p.b.expect(wire.TypeMsg)
			}
			// The failover: the room's count goes back to 1, as if the
			// last two messages had never been written.
			c := redis.NewClient(&redis.Options{Addr: addr})
			defer c.Close()
			if err := c.HSet(context.Background(), prefix+"room:"+p.room, "seq", 1).Err(); err != nil {
				t.Fatal(err)
			}
			sender, ch, receiver := tc.resume(t, tr, p)
			body, _ := ch.Seal([]byte("after"))
			sender.send(map[string]any{"type": "msg", "body": b64(body), "id": 1})
			// next returns p's next frame of type typ, skipping what a
			// resume replays first (peer_key, handshake_complete).
			next := func(p *peer, typ wire.FrameType) frame {
				for {
					if f := p.read(); f.str("type") == string(typ) {
						return f
					}
				}
			}
			if seq := next(sender, wire.TypeSent).num("seq"); seq <= 3 {
				t.Errorf("the message after the rollback got seq %d, want above 3 (the peers have seen 1 to 3)", seq)
			}
			// A receiver that stayed connected gets nothing again; the
			// message comes with a number above what it has seen.
			if seq := next(receiver, wire.TypeMsg).num("seq"); seq <= 3 {
				t.Errorf("the receiver got seq %d, want above 3", seq)
			}
		})
	}
}
