package session_test

import (
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/session/redistest"
)

// testLease is the lease of the stores in these tests: short, so that an
// instance's death shows within a second.
const testLease = 600 * time.Millisecond

// leaseStore returns a store on url with prefix, testLease and testSweep,
// and onLost as its OnLeaseLost; closed when the test ends.
func leaseStore(t *testing.T, url, prefix string, onLost func()) *session.RedisStore {
	t.Helper()
	s, err := session.NewRedisStore(t.Context(), session.RedisConfig{URL: url, Prefix: prefix, SweepInterval: testSweep, LeaseTTL: testLease, OnLeaseLost: onLost})
	if err != nil {
		t.Fatalf("NewRedisStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRedisStoreInstanceDies: an instance that stops renewing its lease
// (closed without disconnecting its members, as a killed process would)
// has its seats marked disconnected by another instance, once and
// announced, within the lease and a few sweeps; a seat that was resumed
// through another instance meanwhile is left alone; the room then frees
// the seat when the grace ends, so a newcomer gets in.
func TestRedisStoreInstanceDies(t *testing.T) {
	t.Parallel()
	url := "redis://" + redistest.StartServer(t).Addr
	prefix := uniquePrefix(t, false)
	dying := leaseStore(t, url, prefix, nil)
	survivor := leaseStore(t, url, prefix, nil)
	ctx := t.Context()
	cfg := session.RoomConfig{TTL: time.Minute, ResumeGrace: time.Second, MaxPending: 8}
	for _, room := range []string{"r", "moved"} {
		mustCreate(t, survivor, room, cfg)
		if _, err := dying.Join(ctx, room, member("a")); err != nil {
			t.Fatalf("Join(%s, a) on the dying instance: %v", room, err)
		}
		if _, err := survivor.Join(ctx, room, member("b")); err != nil {
			t.Fatalf("Join(%s, b): %v", room, err)
		}
	}
	// In room "moved", a resumes through the survivor before the death.
	if _, err := survivor.Reconnect(ctx, "moved", "a", member("a").TokenHash); err != nil {
		t.Fatalf("Reconnect(moved, a): %v", err)
	}
	sub, err := survivor.Subscribe(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	moved, err := survivor.Subscribe(ctx, "moved")
	if err != nil {
		t.Fatal(err)
	}

	died := time.Now()
	dying.Close() // no more renewals; a's seat stays "connected" in Redis
	select {
	case ev := <-sub.C:
		if ev == nil || ev.Type != session.EventLeft || ev.Peer != "a" || ev.Reason != session.ReasonDropped {
			t.Fatalf("event %+v, want a's EventLeft (dropped)", ev)
		}
	case <-time.After(testLease + 5*time.Second):
		t.Fatal("no EventLeft for the dead instance's member")
	}
	took := time.Since(died)
	r, err := survivor.Room(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if a := mustMember(t, r, "a"); a.Connected || a.DisconnectedAt.Before(died) {
		t.Errorf("a = %+v after its instance died, want disconnected after %v", a, died)
	}
	if b := mustMember(t, r, "b"); !b.Connected {
		t.Errorf("b = %+v, want connected (its instance lives)", b)
	}
	t.Logf("a's drop was announced %v after its instance's last chance to renew", took)
	// Once only, however many sweeps run.
	select {
	case ev := <-sub.C:
		t.Errorf("a second event %+v", ev)
	case <-time.After(10 * testSweep):
	}
	// The seat resumed elsewhere is not touched.
	if r, err := survivor.Room(ctx, "moved"); err != nil || !mustMember(t, r, "a").Connected {
		t.Errorf("room moved = %+v, %v; want a connected through the survivor", r, err)
	}
	select {
	case ev := <-moved.C:
		t.Errorf("event %+v in room moved, want none", ev)
	default:
	}
	// The grace ends: the seat is free.
	waitUntil(t, 5*time.Second, "a newcomer to get a's seat", func() bool {
		_, err := survivor.Join(ctx, "r", member("c"))
		if err != nil && !errors.Is(err, session.ErrRoomFull) {
			t.Fatalf("Join(c): %v", err)
		}
		return err == nil
	})
}

// TestRedisStoreLeaseLost: an instance whose lease ended before it could
// renew it (a long pause, Redis out of reach) is told, through
// OnLeaseLost, and goes on under a new instance ID whose seats are its
// own: another instance does not reap them.
func TestRedisStoreLeaseLost(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	url := "redis://" + srv.Addr
	prefix := uniquePrefix(t, false)
	lost := make(chan struct{}, 1)
	s := leaseStore(t, url, prefix, func() {
		select {
		case lost <- struct{}{}:
		default:
		}
	})
	other := leaseStore(t, url, prefix, nil)
	ctx := t.Context()
	c := newClient(t, srv.Addr)
	// The pause, as the registry sees it: s's lease ended long ago.
	before, err := c.ZRange(ctx, prefix+"instances", 0, -1).Result()
	if err != nil || len(before) != 2 {
		t.Fatalf("registry %q, %v; want two instances", before, err)
	}
	for _, id := range before {
		if err := c.ZAdd(ctx, prefix+"instances", redis.Z{Score: 1, Member: id}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-lost:
	case <-time.After(testLease + 5*time.Second):
		t.Fatal("OnLeaseLost was not called")
	}
	// Both found their lease lost; each registers anew, under a new ID.
	waitUntil(t, 5*time.Second, "two new instances in the registry", func() bool {
		after, err := c.ZRange(ctx, prefix+"instances", 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		fresh := 0
		for _, id := range after {
			if id != before[0] && id != before[1] {
				fresh++
			}
		}
		return fresh == 2
	})
	mustCreate(t, other, "r", session.RoomConfig{TTL: time.Minute, ResumeGrace: time.Minute, MaxPending: 8})
	if _, err := s.Join(ctx, "r", member("a")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(testLease + 10*testSweep)
	if r, err := other.Room(ctx, "r"); err != nil || !mustMember(t, r, "a").Connected {
		t.Errorf("room %+v, %v; want a connected (its instance lives under its new ID)", r, err)
	}
}

// TestRedisStoreUnwrittenDisconnectHeals: Redis is full when a member
// drops, so its disconnect is not written, and the instance dies before
// it could retry: the member's seat would stay "connected" until the
// room's TTL. The instance's lease ends, and once Redis has room the
// survivor marks the seat disconnected and announces it.
func TestRedisStoreUnwrittenDisconnectHeals(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	url := "redis://" + srv.Addr
	prefix := uniquePrefix(t, false)
	dying := leaseStore(t, url, prefix, nil)
	survivor := leaseStore(t, url, prefix, func() {
		t.Error("the survivor lost its lease while Redis was full")
	})
	ctx := t.Context()
	mustCreate(t, survivor, "r", session.RoomConfig{TTL: time.Minute, ResumeGrace: time.Minute, MaxPending: 8})
	if _, err := dying.Join(ctx, "r", member("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := survivor.Join(ctx, "r", member("b")); err != nil {
		t.Fatal(err)
	}
	sub, err := survivor.Subscribe(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	unfill := fill(t, newClient(t, srv.Addr))
	if err := dying.Disconnect(ctx, "r", "a", 1); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Disconnect with Redis full = %v, want %v", err, session.ErrUnavailable)
	}
	dying.Close()             // dies with the disconnect queued
	time.Sleep(3 * testLease) // the survivor keeps renewing its lease, full or not
	unfill()
	select {
	case ev := <-sub.C:
		if ev == nil || ev.Type != session.EventLeft || ev.Peer != "a" || ev.Reason != session.ReasonDropped {
			t.Fatalf("event %+v, want a's EventLeft (dropped)", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the unwritten disconnect never healed")
	}
	if r, err := survivor.Room(ctx, "r"); err != nil || mustMember(t, r, "a").Connected {
		t.Errorf("room %+v, %v; want a disconnected", r, err)
	}
}
