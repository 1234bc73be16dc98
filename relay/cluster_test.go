package relay_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/wire"
)

// twoInstances starts two relays sharing one real Redis, as two processes
// behind a load balancer would.
func twoInstances(t *testing.T, cfg relay.Config) (*redistest.Server, *testRelay, *testRelay) {
	t.Helper()
	if os.Getenv(storeEnv) != "" {
		t.Skip("runs once, in the parent process of TestSuiteOnRedis")
	}
	rs := redistest.StartServer(t)
	prefix := "cluster:" + strings.ReplaceAll(t.Name(), "/", ":") + ":"
	r1 := newRelayOn(t, relaytest.NewRedisStore(t, rs.Addr, prefix), cfg)
	r2 := newRelayOn(t, relaytest.NewRedisStore(t, rs.Addr, prefix), cfg)
	return rs, r1, r2
}

// handshakeAcross runs the handshake of protocol.md §2.3 with A on one
// instance and B on the other.
func handshakeAcross(t *testing.T, ra, rb *testRelay, g *dh.Group) *pair {
	t.Helper()
	p := &pair{a: ra.dial(t), b: rb.dial(t), aKey: newKey(t, g), bKey: newKey(t, g)}
	p.a.send(map[string]any{"type": "create", "group": g.Name()})
	room := p.a.expect(wire.TypeRoom)
	p.room, p.aID, p.aTok = room.str("room"), room.str("peer"), room.str("resume_token")
	p.a.send(map[string]any{"type": "key", "public_key": p.aKey.PublicKey().Hex(), "group": p.aKey.PublicKey().Group().Name()})
	p.a.expect(wire.TypeKeyOK)
	p.b.send(map[string]any{"type": "join", "room": p.room})
	joined := p.b.expect(wire.TypeRoom)
	p.bID, p.bTok = joined.str("peer"), joined.str("resume_token")
	if f := p.b.expect(wire.TypePeerKey); f.str("public_key") != p.aKey.PublicKey().Hex() {
		t.Fatalf("B got %v", f)
	}
	p.a.expect(wire.TypePeerJoined)
	p.b.send(map[string]any{"type": "key", "public_key": p.bKey.PublicKey().Hex(), "group": p.bKey.PublicKey().Group().Name()})
	p.b.expect(wire.TypeKeyOK)
	p.b.expect(wire.TypeHandshakeComplete)
	if f := p.a.expect(wire.TypePeerKey); f.str("public_key") != p.bKey.PublicKey().Hex() {
		t.Fatalf("A got %v", f)
	}
	p.a.expect(wire.TypeHandshakeComplete)
	p.aCh = channel(t, p.aKey, p.bKey.PublicKey())
	p.bCh = channel(t, p.bKey, p.aKey.PublicKey())
	return p
}

func TestCrossInstanceChat(t *testing.T) {
	_, r1, r2 := twoInstances(t, relay.Config{})
	for _, g := range []*dh.Group{dh.X25519(), dh.MODP14()} {
		t.Run(g.Name(), func(t *testing.T) {
			p := handshakeAcross(t, r1, r2, g)
			for i := 0; i < 5; i++ {
				text := fmt.Sprintf("A→B %d", i)
				recvMsg(t, p.b, p.bCh, sendMsg(t, p.a, p.aCh, text), text)
				text = fmt.Sprintf("B→A %d", i)
				recvMsg(t, p.a, p.aCh, sendMsg(t, p.b, p.bCh, text), text)
			}
		})
	}
}

// TestCrossInstanceOrder: many messages sent back to back on one instance
// arrive in order on the other.
func TestCrossInstanceOrder(t *testing.T) {
	_, r1, r2 := twoInstances(t, relay.Config{FramesPerSecond: 1e6, FrameBurst: 1e6})
	p := handshakeAcross(t, r1, r2, dh.X25519())
	const n = 100
	for i := 0; i < n; i++ {
		body, _ := p.aCh.Seal([]byte(fmt.Sprint(i)))
		p.a.send(map[string]any{"type": "msg", "body": b64(body)})
	}
	for i := 0; i < n; i++ {
		recvMsg(t, p.b, p.bCh, uint64(i+1), fmt.Sprint(i))
	}
}

// TestCrossInstanceRacingJoins: joiners racing for the last seat of many
// rooms through two instances; each room admits exactly one.
func TestCrossInstanceRacingJoins(t *testing.T) {
	_, r1, r2 := twoInstances(t, relay.Config{})
	const rooms, racers = 10, 4
	for i := 0; i < rooms; i++ {
		a := r1.dial(t)
		a.send(map[string]any{"type": "create"})
		room := a.expect(wire.TypeRoom).str("room")
		var wg sync.WaitGroup
		results := make(chan string, racers)
		for j := 0; j < racers; j++ {
			p := []*testRelay{r1, r2}[j%2].dial(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.send(map[string]any{"type": "join", "room": room})
				f, err := p.tryRead(frameTimeout)
				if err != nil {
					results <- "read error: " + err.Error()
					return
				}
				if wire.FrameType(f.str("type")) == wire.TypeError {
					results <- f.str("code")
				} else {
					results <- f.str("type")
				}
			}()
		}
		wg.Wait()
		close(results)
		count := map[string]int{}
		for r := range results {
			count[r]++
		}
		if count[string(wire.TypeRoom)] != 1 || count[string(wire.CodeRoomFull)] != racers-1 {
			t.Fatalf("room %d: outcomes %v, want 1 room and %d room_full", i, count, racers-1)
		}
	}
}

// TestInstanceStoppedMidConversation: B's instance shuts down (1001); A,
// on the other instance, keeps sending; B resumes on A's instance and gets
// every message once, in order.
func TestInstanceStoppedMidConversation(t *testing.T) {
	_, r1, r2 := twoInstances(t, relay.Config{})
	p := handshakeAcross(t, r1, r2, dh.X25519())
	recvMsg(t, p.b, p.bCh, sendMsg(t, p.a, p.aCh, "before"), "before")
	p.b.send(map[string]any{"type": "ack", "seq": 1})
	r2.Relay.Close()
	p.b.expectClose(websocket.StatusGoingAway)
	if f := p.a.expect(wire.TypePeerLeft); f.str("reason") != "dropped" {
		t.Fatalf("peer_left %v", f)
	}
	var seqs []uint64
	for i := 0; i < 4; i++ {
		seqs = append(seqs, sendMsg(t, p.a, p.aCh, fmt.Sprint("while away ", i)))
	}
	b2 := r1.dial(t)
	b2.send(map[string]any{"type": "resume", "room": p.room, "peer": p.bID, "resume_token": p.bTok, "last_seq": 1})
	b2.expect(wire.TypeRoom)
	b2.expect(wire.TypePeerKey)
	b2.expect(wire.TypeHandshakeComplete)
	for i, s := range seqs {
		recvMsg(t, b2, p.bCh, s, fmt.Sprint("while away ", i))
	}
	p.a.expect(wire.TypePeerJoined)
	recvMsg(t, b2, p.bCh, sendMsg(t, p.a, p.aCh, "after"), "after")
	b2.expectQuiet(100 * time.Millisecond)
}

// TestInstanceCrashMidConversation: B's instance dies without telling
// anyone (its store is gone before its connections are cut, so nothing is
// recorded); B resumes on the surviving instance and loses nothing.
func TestInstanceCrashMidConversation(t *testing.T) {
	_, r1, r2 := twoInstances(t, relay.Config{})
	p := handshakeAcross(t, r1, r2, dh.X25519())
	s1 := sendMsg(t, p.a, p.aCh, "one") // B never acks it
	recvMsg(t, p.b, p.bCh, s1, "one")
	r2.Store.Close() // the instance's state is gone: nothing it does now reaches Redis
	for {            // B's connection ends (its instance can no longer serve it)
		if _, err := p.b.tryRead(frameTimeout); err != nil {
			break
		}
	}
	s2 := sendMsg(t, p.a, p.aCh, "two")
	b2 := r1.dial(t)
	b2.send(map[string]any{"type": "resume", "room": p.room, "peer": p.bID, "resume_token": p.bTok}) // last_seq 0: B lost track
	b2.expect(wire.TypeRoom)
	b2.expect(wire.TypePeerKey)
	b2.expect(wire.TypeHandshakeComplete)
	// "one" comes again because it was never acknowledged; the client's
	// channel refuses it as a replay, so the application sees it once.
	f := b2.expect(wire.TypeMsg)
	if f.num("seq") != s1 {
		t.Fatalf("first replayed seq %d, want %d", f.num("seq"), s1)
	}
	recvMsg(t, b2, p.bCh, s2, "two")
	if f := p.a.expect(wire.TypePeerJoined); f["resumed"] != true {
		t.Fatalf("peer_joined %v", f)
	}
}

// TestRedisOutage stops Redis under a live conversation and starts it again:
// clients are told (error unavailable, close 1013), new rooms are refused
// with unavailable while it is down, readiness fails, and the relay recovers
// by itself.
func TestRedisOutage(t *testing.T) {
	rs, r1, r2 := twoInstances(t, relay.Config{StoreTimeout: 500 * time.Millisecond})
	p := handshakeAcross(t, r1, r2, dh.X25519())
	recvMsg(t, p.b, p.bCh, sendMsg(t, p.a, p.aCh, "before"), "before")

	rs.Stop()
	for _, c := range []*peer{p.a, p.b} {
		c.expectError(wire.CodeUnavailable)
		c.expectClose(websocket.StatusTryAgainLater)
	}
	ctx := context.Background()
	if err := r1.Relay.Ready(ctx); err == nil {
		t.Fatal("Ready with Redis down")
	}
	c := r1.dial(t)
	c.send(map[string]any{"type": "create", "id": 1})
	c.expectError(wire.CodeUnavailable)

	rs.Restart()
	waitFor(t, func() bool { return r1.Relay.Ready(ctx) == nil && r2.Relay.Ready(ctx) == nil })
	// This redis-server keeps nothing on disk, so the old room is gone;
	// new rooms work at once, across instances.
	c.send(map[string]any{"type": "create"})
	c.expect(wire.TypeRoom)
	q := handshakeAcross(t, r1, r2, dh.X25519())
	recvMsg(t, q.b, q.bCh, sendMsg(t, q.a, q.aCh, "after"), "after")
}

// TestCrossInstanceConcurrentHandshakes: many pairs, split over two
// instances, send their keys at the same moment. Every peer must get
// handshake_complete, whichever order the relay sees the keys and the
// events in (a regression test: a key event that overtook the sender's own
// SetKey reply once left a peer waiting forever).
func TestCrossInstanceConcurrentHandshakes(t *testing.T) {
	_, r1, r2 := twoInstances(t, relay.Config{Limiter: relaytest.NoLimits()})
	const pairs = 30
	var wg sync.WaitGroup
	errs := make(chan error, 2*pairs)
	for i := 0; i < pairs; i++ {
		a, b := r1.dial(t), r2.dial(t)
		a.send(map[string]any{"type": "create", "group": "x25519"})
		room := a.expect(wire.TypeRoom).str("room")
		b.send(map[string]any{"type": "join", "room": room})
		b.expect(wire.TypeRoom)
		for _, p := range []*peer{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k, _ := dh.X25519().GenerateKey(rand.Reader)
				b, _ := json.Marshal(map[string]any{"type": "key", "public_key": k.PublicKey().Hex(), "group": k.PublicKey().Group().Name()})
				ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
				defer cancel()
				if err := p.ws.Write(ctx, websocket.MessageText, b); err != nil {
					errs <- err
					return
				}
				for {
					f, err := p.tryRead(frameTimeout)
					if err != nil {
						errs <- fmt.Errorf("waiting for handshake_complete: %w", err)
						return
					}
					if wire.FrameType(f.str("type")) == wire.TypeHandshakeComplete {
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestResumeGraceIsTheRoomsAcrossInstances: the grace a room frame gives
// is the room's, fixed when it was created, not the configuration of the
// instance that answers: a peer resuming on an instance configured
// otherwise is told the seat's real deadline.
func TestResumeGraceIsTheRoomsAcrossInstances(t *testing.T) {
	if os.Getenv(storeEnv) != "" {
		t.Skip("runs once, in the parent process of TestSuiteOnRedis")
	}
	rs := redistest.StartServer(t)
	prefix := "cluster:" + strings.ReplaceAll(t.Name(), "/", ":") + ":"
	r1 := newRelayOn(t, relaytest.NewRedisStore(t, rs.Addr, prefix), relay.Config{ResumeGrace: 1500 * time.Millisecond})
	r2 := newRelayOn(t, relaytest.NewRedisStore(t, rs.Addr, prefix), relay.Config{ResumeGrace: time.Minute})
	a := r1.dial(t)
	a.send(map[string]any{"type": "create", "group": "x25519"})
	created := a.expect(wire.TypeRoom)
	a.ws.CloseNow()
	a2 := r2.dial(t)
	a2.send(map[string]any{"type": "resume", "room": created.str("room"), "peer": created.str("peer"), "resume_token": created.str("resume_token")})
	if got := a2.expect(wire.TypeRoom).num("resume_grace_ms"); got != 1500 {
		t.Errorf("resume on the other instance: resume_grace_ms %d, want the room's 1500", got)
	}
}
