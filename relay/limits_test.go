package relay_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/wire"
)

// memoryLimiter returns a limits.Memory closed when the test ends.
func memoryLimiter(t *testing.T, cfg limits.Config) *limits.Memory {
	t.Helper()
	l := limits.NewMemory(cfg)
	t.Cleanup(func() { l.Close() })
	return l
}

// TestJoinLimits: creates, joins and resumes over the per-IP rate get
// join_rate_limited, join attempts over a room's budget get
// too_many_attempts; the connection survives both, and the peer in the
// room sees nothing.
func TestJoinLimits(t *testing.T) {
	t.Run("per IP", func(t *testing.T) {
		tr := newRelay(t, relay.Config{Limiter: memoryLimiter(t, limits.Config{JoinsPerIP: 2, JoinsPerRoom: -1})})
		a := tr.dial(t)
		a.send(map[string]any{"type": "create"})
		room := a.expect(wire.TypeRoom).str("room")
		b := tr.dial(t)
		b.send(map[string]any{"type": "join", "room": room})
		b.expect(wire.TypeRoom)
		a.expect(wire.TypePeerJoined)
		c := tr.dial(t)
		c.send(map[string]any{"type": "create", "id": 7})
		if f := c.expectError(wire.CodeJoinRateLimited); f.num("id") != 7 {
			t.Errorf("error without the id: %v", f)
		}
		c.send(map[string]any{"type": "join", "room": room})
		c.expectError(wire.CodeJoinRateLimited)
		// c is still connected; a and b still talk.
		c.send(map[string]any{"type": "leave"})
		c.expectError(wire.CodeNotInRoom)
		a.send(map[string]any{"type": "leave"})
		a.expect(wire.TypeLeft)
		if f := b.expect(wire.TypePeerLeft); f.str("reason") != "left" {
			t.Errorf("b got %v", f)
		}
	})
	t.Run("per room", func(t *testing.T) {
		tr := newRelay(t, relay.Config{Limiter: memoryLimiter(t, limits.Config{JoinsPerIP: -1, JoinsPerRoom: 2})})
		a := tr.dial(t)
		a.send(map[string]any{"type": "create"})
		room := a.expect(wire.TypeRoom).str("room")
		b := tr.dial(t)
		b.send(map[string]any{"type": "join", "room": room})
		b.expect(wire.TypeRoom)
		a.expect(wire.TypePeerJoined)
		c := tr.dial(t)
		c.send(map[string]any{"type": "join", "room": room})
		c.expectError(wire.CodeRoomFull) // the second attempt: within budget
		c.send(map[string]any{"type": "join", "room": room})
		c.expectError(wire.CodeTooManyAttempts)
		// Other rooms are not affected, and neither is c.
		c.send(map[string]any{"type": "create"})
		c.expect(wire.TypeRoom)
		a.expectQuiet(100 * time.Millisecond)
	})
}

// TestKeyReused: with a key-reuse window, a public key already used in
// another room is refused with key_reused; the peer sees nothing and a
// fresh key completes the handshake.
func TestKeyReused(t *testing.T) {
	tr := newRelay(t, relay.Config{Limiter: memoryLimiter(t, limits.Config{KeyReuseWindow: time.Minute})})
	g := dh.X25519()
	p := handshake(t, tr, g)
	q := tr.dial(t)
	q.send(map[string]any{"type": "create", "group": g.Name()})
	room := q.expect(wire.TypeRoom).str("room")
	r := tr.dial(t)
	r.send(map[string]any{"type": "join", "room": room})
	r.expect(wire.TypeRoom)
	q.expect(wire.TypePeerJoined)
	q.send(map[string]any{"type": "key", "public_key": p.aKey.PublicKey().Hex(), "group": p.aKey.PublicKey().Group().Name(), "id": "reuse"})
	if f := q.expectError(wire.CodeKeyReused); f.str("id") != "reuse" {
		t.Errorf("error %v", f)
	}
	r.expectQuiet(100 * time.Millisecond)
	q.send(map[string]any{"type": "key", "public_key": newKey(t, g).PublicKey().Hex(), "group": g.Name()})
	q.expect(wire.TypeKeyOK)
	r.expect(wire.TypePeerKey)
	// The same key again in its own room is not a reuse: it is already
	// set there.
	p.a.send(map[string]any{"type": "key", "public_key": p.aKey.PublicKey().Hex(), "group": p.aKey.PublicKey().Group().Name()})
	p.a.expectError(wire.CodeKeyAlreadySet)
}

// TestLimitsAcrossInstances: two relays sharing one limits.Redis give a
// client one budget, not two: its connections and its joins are counted
// together.
func TestLimitsAcrossInstances(t *testing.T) {
	if os.Getenv(storeEnv) != "" {
		t.Skip("runs once, in the parent process of TestSuiteOnRedis")
	}
	rs := redistest.StartServer(t)
	prefix := "limits:" + strings.ReplaceAll(t.Name(), "/", ":") + ":"
	newLimiter := func() *limits.Redis {
		c := redis.NewClient(&redis.Options{Addr: rs.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
		l, err := limits.NewRedis(c, limits.Config{MaxConnsPerIP: 2, JoinsPerIP: 3, JoinsPerRoom: -1}, limits.RedisOptions{Prefix: prefix})
		if err != nil {
			t.Fatalf("NewRedis: %v", err)
		}
		t.Cleanup(func() { l.Close(); c.Close() })
		return l
	}
	r1 := newRelayOn(t, relaytest.NewRedisStore(t, rs.Addr, prefix), relay.Config{Limiter: newLimiter()})
	r2 := newRelayOn(t, relaytest.NewRedisStore(t, rs.Addr, prefix), relay.Config{Limiter: newLimiter()})

	a := r1.dial(t)
	b := r2.dial(t)
	c := r1.dial(t) // the third from this address, on either instance
	c.expectClose(wire.CloseTooManyConnsPerIP)
	d := r2.dial(t)
	d.expectClose(wire.CloseTooManyConnsPerIP)

	// Joins: 3 in all, whichever instance they reach.
	a.send(map[string]any{"type": "create"})
	room := a.expect(wire.TypeRoom).str("room")
	b.send(map[string]any{"type": "join", "room": room})
	b.expect(wire.TypeRoom)
	a.expect(wire.TypePeerJoined)
	b.send(map[string]any{"type": "leave"})
	b.expect(wire.TypeLeft)
	a.expect(wire.TypePeerLeft)
	b.send(map[string]any{"type": "join", "room": room})
	b.expect(wire.TypeRoom)
	a.expect(wire.TypePeerJoined)
	b.send(map[string]any{"type": "leave"})
	b.expect(wire.TypeLeft)
	b.send(map[string]any{"type": "join", "room": room})
	b.expectError(wire.CodeJoinRateLimited)

	// A closed connection frees its slot on the other instance too.
	a.ws.Close(websocket.StatusNormalClosure, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		e := r2.dial(t)
		if f, err := e.tryRead(200 * time.Millisecond); err != nil && websocket.CloseStatus(err) == wire.CloseTooManyConnsPerIP {
			if ctx.Err() != nil {
				t.Fatal("the closed connection's slot was not freed within 5s")
			}
			continue
		} else if err == nil {
			t.Fatalf("unexpected frame %v", f)
		}
		break
	}
}

// TestLimiterUnavailable: when the shared limiter's Redis is down, a
// connection is admitted uncounted (SECURITY.md: what it asks of a store
// that is down fails with unavailable anyway), and joins, which the
// limiter must count, get unavailable; the connection survives both.
func TestLimiterUnavailable(t *testing.T) {
	if os.Getenv(storeEnv) != "" {
		t.Skip("runs once, in the parent process of TestSuiteOnRedis")
	}
	rs := redistest.StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: rs.Addr, ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	l, err := limits.NewRedis(c, limits.Config{MaxConnsPerIP: 1}, limits.RedisOptions{Prefix: "limits:unavailable:"})
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { l.Close(); c.Close() })
	tr := newRelay(t, relay.Config{Limiter: l, StoreTimeout: time.Second})
	rs.Stop()
	a := tr.dial(t)
	b := tr.dial(t) // over the limit of 1, but nothing can be counted
	a.send(map[string]any{"type": "create", "id": 1})
	a.expectError(wire.CodeUnavailable)
	b.send(map[string]any{"type": "leave"})
	b.expectError(wire.CodeNotInRoom)
}
