package relay_test

import (
	"testing"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/wire"
)

// TestResumeAfterMailboxEvicted: Redis loses B's mailbox while B is away
// (modelled by deleting the stream, as an evicting maxmemory-policy
// would); B's resume must say messages_lost, not replay nothing silently,
// and the conversation goes on.
func TestResumeAfterMailboxEvicted(t *testing.T) {
	rs, r1, r2 := twoInstances(t, relay.Config{})
	p := handshakeAcross(t, r1, r2, dh.X25519())
	recvMsg(t, p.b, p.bCh, sendMsg(t, p.a, p.aCh, "one"), "one") // never acknowledged
	r2.Relay.Close()
	p.b.expectClose(websocket.StatusGoingAway)
	p.a.expect(wire.TypePeerLeft)
	sendMsg(t, p.a, p.aCh, "two")

	c := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer c.Close()
	boxes, err := c.Keys(t.Context(), "*mbox:"+p.room+":*").Result()
	if err != nil || len(boxes) != 1 {
		t.Fatalf("mailboxes = %q, %v; want B's", boxes, err)
	}
	if err := c.Del(t.Context(), boxes[0]).Err(); err != nil {
		t.Fatal(err)
	}

	b2 := r1.dial(t)
	b2.send(map[string]any{"type": "resume", "room": p.room, "peer": p.bID, "resume_token": p.bTok, "id": "r"})
	b2.expect(wire.TypeRoom)
	b2.expect(wire.TypePeerKey)
	b2.expect(wire.TypeHandshakeComplete)
	if f := b2.expectError(wire.CodeMessagesLost); f["id"] != nil {
		t.Errorf("messages_lost %v carries an id; the resume itself succeeded", f)
	}
	p.a.expect(wire.TypePeerJoined)
	recvMsg(t, b2, p.bCh, sendMsg(t, p.a, p.aCh, "three"), "three")
}
