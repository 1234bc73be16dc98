package session_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/session/sessiontest"
)

// testSweep is the sweep interval of the stores under test: short, so that
// subscriptions to expired rooms end quickly.
const testSweep = 50 * time.Millisecond

// uniquePrefix returns a key prefix that no other test uses, wrapped in
// braces (a hash tag) if tagged.
func uniquePrefix(t *testing.T, tagged bool) string {
	var b [4]byte
	rand.Read(b[:])
	name := strings.NewReplacer(" ", "_", "{", "(", "}", ")").Replace(t.Name())
	p := "kr-test:" + name + ":" + hex.EncodeToString(b[:])
	if tagged {
		return "{" + p + "}:"
	}
	return p + ":"
}

// newRedisStore returns a store on Redis at url with prefix and a short
// sweep interval, closed when the test ends.
func newRedisStore(t *testing.T, url, prefix string) *session.RedisStore {
	t.Helper()
	s, err := session.NewRedisStore(t.Context(), session.RedisConfig{URL: url, Prefix: prefix, SweepInterval: testSweep})
	if err != nil {
		t.Fatalf("NewRedisStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newClient returns a go-redis client for addr, closed when the test ends.
func newClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisStore(t *testing.T) {
	t.Parallel()
	url := redistest.StartServer(t).URL()
	sessiontest.Run(t, func(t *testing.T) session.Store {
		return newRedisStore(t, url, uniquePrefix(t, false))
	})
}

// TestRedisStoreCluster runs the suite on a one-node Redis Cluster, which
// refuses scripts whose keys lie in different hash slots.
func TestRedisStoreCluster(t *testing.T) {
	t.Parallel()
	url := redistest.StartCluster(t).URL() + "?cluster=true"

	t.Run("prefix with a hash tag", func(t *testing.T) {
		s, err := session.NewRedisStore(t.Context(), session.RedisConfig{URL: url, Prefix: "{keyrelay}:"})
		if err == nil {
			s.Close()
			t.Fatal("NewRedisStore on a Cluster with Prefix {keyrelay}: succeeded, want an error")
		}
	})

	t.Run("default prefix", func(t *testing.T) {
		s := newRedisStore(t, url, "")
		if err := s.CreateRoom(t.Context(), "r", session.RoomConfig{TTL: time.Second, ResumeGrace: time.Second, MaxPending: 1}, 0); err != nil {
			t.Fatalf("CreateRoom: %v", err)
		}
	})

	sessiontest.Run(t, func(t *testing.T) session.Store {
		return newRedisStore(t, url, uniquePrefix(t, false))
	})
}

// roomKeys returns the keys in c's database but the instance's own
// (prefix+"instances" and prefix+"inst:…").
func roomKeys(t *testing.T, c *redis.Client, prefix string) []string {
	t.Helper()
	var keys []string
	for _, k := range scanKeys(t, c) {
		if !strings.HasPrefix(k, prefix+"inst") {
			keys = append(keys, k)
		}
	}
	return keys
}

// scanKeys returns every key in c's database.
func scanKeys(t *testing.T, c *redis.Client) []string {
	t.Helper()
	keys, err := c.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	var scanned []string
	iter := c.Scan(t.Context(), 0, "*", 100).Iterator()
	for iter.Next(t.Context()) {
		scanned = append(scanned, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	slices.Sort(keys)
	slices.Sort(scanned)
	scanned = slices.Compact(scanned)
	if !slices.Equal(keys, scanned) {
		t.Fatalf("SCAN found %q, KEYS %q", scanned, keys)
	}
	return scanned
}

// ledgerLife is lib.lua's ledger_life: the budget's keys outlive the
// rooms that fill them by at least that, and at most twice that.
const ledgerLife = 24 * time.Hour

// TestRedisStoreLeavesNothing checks, on a server of its own, that every
// key the store writes starts with its prefix and expires with its room
// (the budget's keys at most 2*ledgerLife later), that the budget's keys go
// as soon as nothing is waiting, and that nothing is left once the rooms
// have expired but the instance's own keys (its lease in the registry and
// its set of seats), which live at most a day past its lease.
func TestRedisStoreLeavesNothing(t *testing.T) {
	t.Parallel()
	addr := redistest.Start(t)
	prefix := uniquePrefix(t, false)
	s := newRedisStore(t, "redis://"+addr, prefix)
	c := newClient(t, addr)
	ctx := t.Context()
	const ttl = 400 * time.Millisecond
	cfg := session.RoomConfig{TTL: ttl, ResumeGrace: time.Minute, MaxPending: 8}

	// checkKeys checks that there are want keys, each with the prefix and
	// a TTL of at most the rooms' (plus 2*ledgerLife for the budget's).
	checkKeys := func(step string, want int) {
		t.Helper()
		keys := roomKeys(t, c, prefix)
		if len(keys) != want {
			t.Errorf("%s: %d keys %q, want %d", step, len(keys), keys, want)
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, prefix) {
				t.Errorf("%s: key %q lacks the prefix %q", step, k, prefix)
			}
			pttl, err := c.PTTL(ctx, k).Result()
			if err != nil {
				t.Fatalf("PTTL(%q): %v", k, err)
			}
			max := ttl
			if strings.HasPrefix(k, prefix+"budget:") {
				max += 2 * ledgerLife
			}
			// PTTL is -2 for a key that expired since SCAN, -1 for none.
			if pttl == -1 || pttl > max {
				t.Errorf("%s: key %q has TTL %v, want at most %v", step, k, pttl, max)
			}
		}
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	must("CreateRoom(a)", s.CreateRoom(ctx, "a", cfg, 0))
	checkKeys("one empty room", 2) // room hash, index
	_, err := s.Join(ctx, "a", member("x"))
	must("Join(a, x)", err)
	_, err = s.Join(ctx, "a", member("y"))
	must("Join(a, y)", err)
	_, err = s.SetKey(ctx, "a", "x", "x25519", "aa")
	must("SetKey(a, x)", err)
	_, err = s.SetKey(ctx, "a", "y", "x25519", "bb")
	must("SetKey(a, y)", err)
	checkKeys("two members, no mail", 2)
	_, err = s.Append(ctx, "a", "y", "192.0.2.1", []byte("to x"))
	must("Append(a, y)", err)
	// + x's mailbox, and the budget's: total, the source's count, a's
	// ledger and the ledger index.
	checkKeys("mail for x", 7)
	_, err = s.Append(ctx, "a", "x", "", []byte("to y"))
	must("Append(a, x)", err)
	must("Disconnect(a, y)", s.Disconnect(ctx, "a", "y", 1))
	checkKeys("two members with mail", 8) // + y's mailbox
	must("Leave(a, y)", s.Leave(ctx, "a", "y"))
	checkKeys("after y left", 7)
	// Nothing waits: no counter, but a's (empty) ledger stays, in its
	// index, while a lives.
	must("Ack(a, x)", s.Ack(ctx, "a", "x", 100))
	must("CreateRoom(b)", s.CreateRoom(ctx, "b", cfg, 0))
	sub, err := s.Subscribe(ctx, "b")
	must("Subscribe(b)", err)
	must("Publish(b)", s.Publish(ctx, session.Event{Type: session.EventJoined, Room: "b", Peer: "p"}))
	checkKeys("two rooms", 6) // a's hash, x's (empty) mailbox and a's ledger, b's hash, the two indexes

	deadline := time.Now().Add(5 * time.Second)
	for len(roomKeys(t, c, prefix)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("keys left 5s after the rooms' TTL: %q", roomKeys(t, c, prefix))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, k := range scanKeys(t, c) {
		if !strings.HasPrefix(k, prefix+"inst") {
			t.Errorf("key %q left", k)
			continue
		}
		if pttl, err := c.PTTL(ctx, k).Result(); err != nil || pttl < 0 || pttl > 24*time.Hour+time.Minute {
			t.Errorf("instance key %q has TTL %v, %v; want at most a day and the lease", k, pttl, err)
		}
	}
	if n, err := s.Rooms(ctx); err != nil || n != 0 {
		t.Errorf("Rooms = %d, %v; want 0", n, err)
	}
	if _, err := drainSub(t, sub); !errors.Is(err, session.ErrRoomNotFound) {
		t.Errorf("subscription to the expired room b: Err %v, want %v", err, session.ErrRoomNotFound)
	}
}

// instances returns two stores sharing one Redis and prefix, as two relay
// instances do.
func instances(t *testing.T, url string) (a, b *session.RedisStore) {
	t.Helper()
	prefix := uniquePrefix(t, false)
	return newRedisStore(t, url, prefix), newRedisStore(t, url, prefix)
}

var longCfg = session.RoomConfig{TTL: time.Minute, ResumeGrace: time.Minute, MaxPending: 16}

// TestRedisStoreRacingInstances races two instances on the same rooms.
func TestRedisStoreRacingInstances(t *testing.T) {
	t.Parallel()
	url := redistest.StartServer(t).URL()
	const rooms = 100

	// race runs every function at once and waits for them.
	race := func(fns []func()) {
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, fn := range fns {
			wg.Go(func() {
				<-start
				fn()
			})
		}
		close(start)
		wg.Wait()
	}

	t.Run("joins admit two", func(t *testing.T) {
		t.Parallel()
		const each = 3 // racers per instance and room
		a, b := instances(t, url)
		ctx := t.Context()
		var errs [rooms][2 * each]error
		var fns []func()
		for i := range rooms {
			room := fmt.Sprint("r", i)
			mustCreate(t, a, room, longCfg)
			for j := range 2 * each {
				s := []*session.RedisStore{a, b}[j%2]
				fns = append(fns, func() { _, errs[i][j] = s.Join(ctx, room, member(fmt.Sprint("p", j))) })
			}
		}
		race(fns)
		for i := range rooms {
			var won []string
			for j, err := range errs[i] {
				if err == nil {
					won = append(won, fmt.Sprint("p", j))
				} else if !errors.Is(err, session.ErrRoomFull) {
					t.Errorf("room %d: Join(p%d) = %v, want nil or %v", i, j, err, session.ErrRoomFull)
				}
			}
			r, err := b.Room(ctx, fmt.Sprint("r", i))
			if err != nil {
				t.Fatalf("Room: %v", err)
			}
			var got []string
			for _, m := range r.Members {
				got = append(got, m.ID)
			}
			slices.Sort(got)
			if len(won) != 2 || !slices.Equal(got, won) {
				t.Fatalf("room %d: %d Joins succeeded (%v), members %v; want 2, the same", i, len(won), won, got)
			}
		}
	})

	t.Run("SetKeys fix one group", func(t *testing.T) {
		t.Parallel()
		a, b := instances(t, url)
		ctx := t.Context()
		var errs [rooms][2]error
		var fns []func()
		for i := range rooms {
			room := fmt.Sprint("r", i)
			mustCreate(t, a, room, longCfg)
			for _, id := range []string{"a", "b"} {
				if _, err := a.Join(ctx, room, member(id)); err != nil {
					t.Fatalf("Join: %v", err)
				}
			}
			fns = append(fns,
				func() { _, errs[i][0] = a.SetKey(ctx, room, "a", "modp14", "aa") },
				func() { _, errs[i][1] = b.SetKey(ctx, room, "b", "x25519", "bb") })
		}
		race(fns)
		for i := range rooms {
			r, err := a.Room(ctx, fmt.Sprint("r", i))
			if err != nil {
				t.Fatalf("Room: %v", err)
			}
			ma, _ := r.Member("a")
			mb, _ := r.Member("b")
			ea, eb := errs[i][0], errs[i][1]
			switch {
			case ea == nil && errors.Is(eb, session.ErrGroupMismatch) && r.Group == "modp14" && ma.PublicKey == "aa" && mb.PublicKey == "":
			case eb == nil && errors.Is(ea, session.ErrGroupMismatch) && r.Group == "x25519" && mb.PublicKey == "bb" && ma.PublicKey == "":
			default:
				t.Fatalf("room %d: SetKey on a, on b = %v, %v; Group %q, keys %q, %q; want one to win", i, ea, eb, r.Group, ma.PublicKey, mb.PublicKey)
			}
		}
	})

	t.Run("creates respect maxRooms", func(t *testing.T) {
		t.Parallel()
		const max, tries = 10, 30
		a, b := instances(t, url)
		ctx := t.Context()
		var errs [tries]error
		var fns []func()
		for i := range tries {
			s := []*session.RedisStore{a, b}[i%2]
			fns = append(fns, func() { errs[i] = s.CreateRoom(ctx, fmt.Sprint("r", i), longCfg, max) })
		}
		race(fns)
		created := 0
		for i, err := range errs {
			switch {
			case err == nil:
				created++
			case !errors.Is(err, session.ErrTooManyRooms):
				t.Errorf("CreateRoom(r%d) = %v, want nil or %v", i, err, session.ErrTooManyRooms)
			}
		}
		n, err := b.Rooms(ctx)
		if created != max || n != max || err != nil {
			t.Errorf("%d CreateRooms succeeded, Rooms = %d, %v; want %d, %d, nil", created, n, err, max, max)
		}
	})
}

// TestRedisStoreCrossInstance checks that what one instance stores and
// publishes, the other sees.
func TestRedisStoreCrossInstance(t *testing.T) {
	t.Parallel()
	url := redistest.StartServer(t).URL()

	t.Run("events in order", func(t *testing.T) {
		t.Parallel()
		a, b := instances(t, url)
		ctx := t.Context()
		mustCreate(t, a, "r", longCfg)
		sub, err := b.Subscribe(ctx, "r")
		if err != nil {
			t.Fatalf("Subscribe on b: %v", err)
		}
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		want := []session.Event{
			{Type: session.EventKey, Room: "r", Peer: "alice", Key: "aa01", Group: "x25519", Conn: "c1"},
			{Type: session.EventLeft, Room: "r", Peer: "bob", Reason: session.ReasonDropped, Conn: "c2"},
			{Type: session.EventJoined, Room: "r"},
			{Type: session.EventMessage, Room: "r", Peer: "alice", Seq: 1<<64 - 1, Body: all, Conn: "c1"},
		}
		for i := range 100 {
			want = append(want, session.Event{Type: session.EventMessage, Room: "r", Peer: "alice", Seq: uint64(i + 1), Body: []byte(fmt.Sprint("ciphertext ", i))})
		}
		for _, ev := range want {
			if err := a.Publish(ctx, ev); err != nil {
				t.Fatalf("Publish on a: %v", err)
			}
		}
		for i, w := range want {
			select {
			case got, ok := <-sub.C:
				if !ok {
					t.Fatalf("subscription ended after %d events: %v", i, sub.Err())
				}
				if got.Type != w.Type || got.Room != w.Room || got.Peer != w.Peer || got.Key != w.Key || got.Group != w.Group ||
					got.Seq != w.Seq || !bytes.Equal(got.Body, w.Body) || got.Reason != w.Reason || got.Conn != w.Conn {
					t.Fatalf("event %d on b = %+v, want %+v", i, got, w)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("event %d did not reach b within 5s", i)
			}
		}
	})

	t.Run("messages and members", func(t *testing.T) {
		t.Parallel()
		a, b := instances(t, url)
		ctx := t.Context()
		mustCreate(t, a, "r", longCfg)
		if _, err := a.Join(ctx, "r", member("x")); err != nil {
			t.Fatalf("Join on a: %v", err)
		}
		if _, err := b.Join(ctx, "r", member("y")); err != nil {
			t.Fatalf("Join on b: %v", err)
		}
		if _, err := a.SetKey(ctx, "r", "x", "x25519", "aa"); err != nil {
			t.Fatalf("SetKey on a: %v", err)
		}
		if _, err := b.SetKey(ctx, "r", "y", "x25519", "bb"); err != nil {
			t.Fatalf("SetKey on b: %v", err)
		}

		for _, body := range []string{"m1", "m2", "m3"} {
			if _, err := a.Append(ctx, "r", "x", "", []byte(body)); err != nil {
				t.Fatalf("Append on a: %v", err)
			}
		}
		// y's instance dies; y resumes on the other.
		if err := b.Disconnect(ctx, "r", "y", 1); err != nil {
			t.Fatalf("Disconnect on b: %v", err)
		}
		if _, err := a.Reconnect(ctx, "r", "y", member("y").TokenHash); err != nil {
			t.Fatalf("Reconnect on a: %v", err)
		}
		got, err := b.Pending(ctx, "r", "y", 1)
		if err != nil {
			t.Fatalf("Pending on b: %v", err)
		}
		if len(got) != 2 || got[0].Seq != 2 || string(got[0].Body) != "m2" || got[1].Seq != 3 || got[1].From != "x" {
			t.Errorf("Pending(y, after 1) on b = %+v, want m2 (2) and m3 (3) from x", got)
		}
		if err := b.Ack(ctx, "r", "y", 2); err != nil {
			t.Fatalf("Ack on b: %v", err)
		}
		got, err = a.Pending(ctx, "r", "y", 0)
		if err != nil || len(got) != 1 || got[0].Seq != 3 {
			t.Errorf("Pending(y) on a after Ack on b = %+v, %v; want m3 alone", got, err)
		}
	})
}

// mustCreate creates room id with cfg.
func mustCreate(t *testing.T, s session.Store, id string, cfg session.RoomConfig) {
	t.Helper()
	if err := s.CreateRoom(t.Context(), id, cfg, 0); err != nil {
		t.Fatalf("CreateRoom(%q): %v", id, err)
	}
}

// drainSub reads sub until it ends, failing if it does not within 10s, and
// returns its events and Err.
func drainSub(t *testing.T, sub *session.Subscription) ([]session.Event, error) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	var evs []session.Event
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				return evs, sub.Err()
			}
			evs = append(evs, *ev)
		case <-timeout:
			t.Fatalf("subscription did not end within 10s (%d events read)", len(evs))
		}
	}
}

// waitUntil polls cond until it holds, failing if it does not in time.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRedisStoreJoinDuplicate(t *testing.T) {
	t.Parallel()
	s := newRedisStore(t, redistest.StartServer(t).URL(), uniquePrefix(t, false))
	ctx := t.Context()
	mustCreate(t, s, "r", longCfg)
	if _, err := s.Join(ctx, "r", member("a")); err != nil {
		t.Fatalf("Join: %v", err)
	}
	_, err := s.Join(ctx, "r", member("a"))
	if err == nil {
		t.Fatal("second Join(a) succeeded, want an error")
	}
	for _, sentinel := range []error{session.ErrRoomFull, session.ErrRoomNotFound, session.ErrUnavailable} {
		if errors.Is(err, sentinel) {
			t.Errorf("second Join(a) = %v, want no sentinel", err)
		}
	}
	if r, err := s.Room(ctx, "r"); err != nil || len(r.Members) != 1 {
		t.Errorf("Room after a duplicate Join = %+v, %v; want one member", r, err)
	}
}

// TestRedisStoreGraceEndsWithoutCalls: nothing calls the store after b
// drops, yet b's mailbox is gone from Redis when b's grace ends (its key
// expires then), and the whole room when a's ends too.
func TestRedisStoreGraceEndsWithoutCalls(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	c := newClient(t, srv.Addr)
	s := newRedisStore(t, srv.URL(), uniquePrefix(t, false))
	ctx := t.Context()
	cfg := longCfg
	cfg.ResumeGrace = 300 * time.Millisecond
	mustCreate(t, s, "r", cfg)
	for _, id := range []string{"a", "b"} {
		if _, err := s.Join(ctx, "r", member(id)); err != nil {
			t.Fatalf("Join(%s): %v", id, err)
		}
		if _, err := s.SetKey(ctx, "r", id, "g", "key-"+id); err != nil {
			t.Fatalf("SetKey(%s): %v", id, err)
		}
	}
	if _, err := s.Append(ctx, "r", "a", "", bytes.Repeat([]byte("m"), 1000)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := s.Disconnect(ctx, "r", "b", 1); err != nil {
		t.Fatalf("Disconnect(b): %v", err)
	}
	keys := func(pattern string) int {
		t.Helper()
		k, err := c.Keys(ctx, pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(k)
	}
	if n := keys("*mbox:r:*"); n != 1 {
		t.Fatalf("%d mailbox keys after b dropped, want b's", n)
	}
	end := cfg.ResumeGrace + session.GraceMargin(cfg.ResumeGrace)
	time.Sleep(end + 100*time.Millisecond)
	if n := keys("*mbox:r:*"); n != 0 {
		t.Errorf("%d mailbox keys after b's grace ended, want 0", n)
	}
	if n := keys("*room:r"); n != 1 {
		t.Errorf("%d room keys while a is connected, want 1", n)
	}
	if err := s.Disconnect(ctx, "r", "a", 1); err != nil {
		t.Fatalf("Disconnect(a): %v", err)
	}
	time.Sleep(end + 100*time.Millisecond)
	if n := keys("*{r}*"); n != 0 {
		t.Errorf("%d keys of room r after a's grace ended, want 0", n)
	}
}

// TestRedisStoreAppendAck checks AppendAck: the sender's acknowledgement
// is applied with its message, in one step, and not at all when the
// message is refused.
func TestRedisStoreAppendAck(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	ctx := t.Context()
	s := newRedisStore(t, srv.URL(), uniquePrefix(t, false))
	keyedRoom(t, s)
	for i := range 3 {
		if _, err := s.Append(ctx, "r", "a", "", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	pending := func(id string) int {
		t.Helper()
		msgs, err := s.Pending(ctx, "r", id, 0)
		if err != nil {
			t.Fatalf("Pending(%s): %v", id, err)
		}
		return len(msgs)
	}
	// b answers, acknowledging the first two of a's three.
	seq, err := s.AppendAck(ctx, "r", "b", "", []byte("reply"), 2)
	if err != nil || seq != 4 {
		t.Fatalf("AppendAck = %d, %v; want 4, nil", seq, err)
	}
	if n := pending("b"); n != 1 {
		t.Errorf("%d messages wait for b after it acknowledged 2 of 3, want 1", n)
	}
	if n := pending("a"); n != 1 {
		t.Errorf("%d messages wait for a, want b's reply", n)
	}
	// A refused message acknowledges nothing: a is not a member.
	if _, err := s.AppendAck(ctx, "r", "nobody", "", []byte("x"), 3); !errors.Is(err, session.ErrNotMember) {
		t.Errorf("AppendAck from a stranger: %v, want ErrNotMember", err)
	}
	// Nor does one over the mailbox's bound (longCfg's MaxPending).
	room, err := s.Room(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	for range room.Config.MaxPending - 1 {
		if _, err := s.Append(ctx, "r", "b", "", []byte("fill")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AppendAck(ctx, "r", "b", "", []byte("over"), 3); !errors.Is(err, session.ErrMailboxFull) {
		t.Fatalf("AppendAck over MaxPending: %v, want ErrMailboxFull", err)
	}
	if n := pending("b"); n != 1 {
		t.Errorf("%d messages wait for b after a refused AppendAck, want 1 (nothing acknowledged)", n)
	}
}

// TestRedisStoreWaitPause checks WaitReplicas on a master without the
// replicas asked for: the first Append waits for them, in vain; the next
// ones, within the pause, do not wait (INFO commandstats counts the
// WAITs).
func TestRedisStoreWaitPause(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	c := newClient(t, srv.Addr)
	s, err := session.NewRedisStore(t.Context(), session.RedisConfig{URL: srv.URL(), Prefix: uniquePrefix(t, false), WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	keyedRoom(t, s)
	waits := func() int64 {
		t.Helper()
		info, err := c.Info(t.Context(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(info) {
			if rest, ok := strings.CutPrefix(line, "cmdstat_wait:calls="); ok {
				var n int64
				fmt.Sscanf(rest, "%d", &n)
				return n
			}
		}
		return 0
	}
	if _, err := s.Append(t.Context(), "r", "a", "", []byte("first")); err != nil {
		t.Fatal(err)
	}
	if n := waits(); n < 1 {
		t.Fatalf("%d WAITs for the first Append, want at least 1", n)
	}
	if err := c.ConfigResetStat(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := s.Append(t.Context(), "r", "a", "", []byte{byte(i)}); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	if n := waits(); n != 0 {
		t.Errorf("%d WAITs for 2 Appends right after a WAIT ended short, want 0 (the pause)", n)
	}
	msgs, err := s.Pending(t.Context(), "r", "b", 0)
	if err != nil || len(msgs) != 3 {
		t.Errorf("Pending = %d messages, %v; want all 3 stored", len(msgs), err)
	}
}
