package relay_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/wire"
)

// The attacks of issue 13's findings 2 (rooms per source) and 3 (room
// lockout), at small scale, with the default limits, against real relays:
// one in memory, and two sharing one Redis.

// clientIPHeader carries, in these tests, the client IP the relay counts a
// connection under (relay.Config.ClientIP), so that one test can speak
// from several addresses.
const clientIPHeader = "X-Test-Client-IP"

// abuseConfig is a relay configuration with limiter l (the default limits
// unless a test says otherwise), client IPs from clientIPHeader, and a
// frame rate high enough that every frame an attacker sends reaches the
// limiter.
func abuseConfig(l relay.Limiter) relay.Config {
	return relay.Config{
		Limiter:         l,
		ClientIP:        func(r *http.Request) string { return r.Header.Get(clientIPHeader) },
		FramesPerSecond: 2000,
		FrameBurst:      2000,
	}
}

// dialFrom dials tr as client ip.
func (tr *testRelay) dialFrom(t *testing.T, ip string) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, tr.URL, &websocket.DialOptions{
		Subprotocols: []string{wire.Subprotocol},
		HTTPHeader:   http.Header{clientIPHeader: {ip}},
	})
	if err != nil {
		t.Fatalf("dial from %s: %v", ip, err)
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return newPeer(t, ws)
}

// sharedRelays starts two relays on one redis-server, sharing their store
// and a limits.Redis with the default limits.
func sharedRelays(t *testing.T) (*testRelay, *testRelay) {
	t.Helper()
	if os.Getenv(storeEnv) != "" {
		t.Skip("runs once, in the parent process of TestSuiteOnRedis")
	}
	rs := redistest.StartServer(t)
	prefix := "abuse:" + strings.ReplaceAll(t.Name(), "/", ":") + ":"
	newRelay := func() *testRelay {
		c := redis.NewClient(&redis.Options{Addr: rs.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
		l, err := limits.NewRedis(c, limits.Config{}, limits.RedisOptions{Prefix: prefix})
		if err != nil {
			t.Fatalf("NewRedis: %v", err)
		}
		t.Cleanup(func() { l.Close(); c.Close() })
		return newRelayOn(t, relaytest.NewRedisStore(t, rs.Addr, prefix), abuseConfig(l))
	}
	return newRelay(), newRelay()
}

// TestRoomLockout: a stranger sending joins on a full room as fast as the
// relay reads them, from one IP, cannot make the relay refuse a member's
// resume, however often the member drops; the stranger itself is refused.
func TestRoomLockout(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		tr := newRelay(t, abuseConfig(memoryLimiter(t, limits.Config{})))
		testRoomLockout(t, tr, tr)
	})
	t.Run("redis", func(t *testing.T) {
		home, away := sharedRelays(t)
		testRoomLockout(t, home, away)
	})
}

// testRoomLockout runs the lockout attack: the room is made on home, the
// stranger knocks on away, and the member resumes on each in turn.
func testRoomLockout(t *testing.T, home, away *testRelay) {
	const memberIP, peerIP, strangerIP = "192.0.2.10", "198.51.100.20", "203.0.113.66"
	a := home.dialFrom(t, memberIP)
	a.send(map[string]any{"type": "create"})
	rf := a.expect(wire.TypeRoom)
	room, peerID, token := rf.str("room"), rf.str("peer"), rf.str("resume_token")
	b := home.dialFrom(t, peerIP)
	b.send(map[string]any{"type": "join", "room": room})
	b.expect(wire.TypeRoom)
	a.expect(wire.TypePeerJoined)

	// The stranger: joins the full room every millisecond or so until the
	// test ends, tallying the error codes it gets.
	s := away.dialFrom(t, strangerIP)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{} // guarded by mu; by code, or "frame type" for a non-error
	join, _ := json.Marshal(map[string]any{"type": "join", "room": room})
	wg.Go(func() {
		for ctx.Err() == nil {
			if err := s.ws.Write(ctx, websocket.MessageText, join); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	wg.Go(func() {
		for b := range s.frames {
			var f frame
			if err := json.Unmarshal(b, &f); err != nil {
				continue
			}
			k := f.str("code")
			if k == "" {
				k = "frame " + f.str("type")
			}
			mu.Lock()
			codes[k]++
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		stop()
		s.ws.CloseNow()
		wg.Wait()
	})
	tally := func(k string) int {
		mu.Lock()
		defer mu.Unlock()
		return codes[k]
	}
	snapshot := func() string {
		mu.Lock()
		defer mu.Unlock()
		b, _ := json.Marshal(codes)
		return string(b)
	}
	// Let the stranger spend all it may of the room's attempts.
	deadline := time.Now().Add(10 * time.Second)
	for tally(string(wire.CodeTooManyAttempts)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the stranger got no too_many_attempts within 10 s: %s", snapshot())
		}
		time.Sleep(5 * time.Millisecond)
	}

	for i := range 4 {
		a.ws.CloseNow()
		if f := b.expect(wire.TypePeerLeft); f.str("reason") != "dropped" {
			t.Fatalf("drop %d: b got %v", i+1, f)
		}
		on := home
		if i%2 == 1 {
			on = away
		}
		a = on.dialFrom(t, memberIP)
		a.send(map[string]any{"type": "resume", "room": room, "peer": peerID, "resume_token": token, "id": i})
		if f := a.read(); f.str("type") != string(wire.TypeRoom) || f["resumed"] != true {
			t.Fatalf("drop %d: the member's resume got %v, want room (resumed); the stranger got %s", i+1, f, snapshot())
		}
		if f := b.expect(wire.TypePeerJoined); f["resumed"] != true {
			t.Fatalf("drop %d: b got %v", i+1, f)
		}
	}
	stop()
	if n := tally("frame " + string(wire.TypeRoom)); n != 0 {
		t.Errorf("the stranger was let in %d times", n)
	}

	// Another pair, from other addresses, still sets up.
	c := away.dialFrom(t, "192.0.2.30")
	c.send(map[string]any{"type": "create"})
	other := c.expect(wire.TypeRoom).str("room")
	d := home.dialFrom(t, "192.0.2.31")
	d.send(map[string]any{"type": "join", "room": other})
	d.expect(wire.TypeRoom)
	c.expect(wire.TypePeerJoined)
}

// TestRoomsPerIP: with the default limits, one IP (or one IPv6 /64) that
// creates rooms is refused with too_many_rooms after 20, whichever relay
// sharing the limiter it asks, while other addresses still create and
// join rooms.
func TestRoomsPerIP(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		tr := newRelay(t, abuseConfig(memoryLimiter(t, limits.Config{})))
		testRoomsPerIP(t, tr, tr)
	})
	t.Run("redis", func(t *testing.T) {
		r1, r2 := sharedRelays(t)
		testRoomsPerIP(t, r1, r2)
	})
}

func testRoomsPerIP(t *testing.T, r1, r2 *testRelay) {
	const perIP = limits.DefaultRoomsPerIP
	for _, attacker := range []struct{ name, first, second string }{
		{"IPv4", "203.0.113.7", "203.0.113.7"},
		{"IPv6 /64", "2001:db8:1:2::1", "2001:db8:1:2::ffff"},
	} {
		t.Run(attacker.name, func(t *testing.T) {
			conns := []*peer{r1.dialFrom(t, attacker.first), r2.dialFrom(t, attacker.second)}
			for i := range perIP + 5 {
				p := conns[i%2]
				p.send(map[string]any{"type": "create", "id": i})
				f := p.read()
				if i < perIP {
					if f.str("type") != string(wire.TypeRoom) {
						t.Fatalf("create #%d got %v, want room", i+1, f)
					}
					p.send(map[string]any{"type": "leave"})
					p.expect(wire.TypeLeft)
					continue
				}
				if f.str("type") != string(wire.TypeError) || f.str("code") != string(wire.CodeTooManyRooms) {
					t.Fatalf("create #%d (over %d per IP) got %v, want error too_many_rooms", i+1, perIP, f)
				}
			}
			// Another address still creates, and a third joins.
			c := r2.dialFrom(t, "192.0.2.40")
			c.send(map[string]any{"type": "create"})
			room := c.expect(wire.TypeRoom).str("room")
			d := r1.dialFrom(t, "192.0.2.41")
			d.send(map[string]any{"type": "join", "room": room})
			d.expect(wire.TypeRoom)
			c.expect(wire.TypePeerJoined)
		})
	}
}
