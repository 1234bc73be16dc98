package session_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/internal/testkit"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/session/sessiontest"
)

func TestMemoryStore(t *testing.T) {
	sessiontest.Run(t, func(t *testing.T) session.Store {
		// A quick sweeper keeps the suite's expiry tests short.
		return session.NewMemoryStore(session.MemoryConfig{SweepInterval: 20 * time.Millisecond})
	})
}

func TestMemoryStoreBudget(t *testing.T) {
	sessiontest.RunBudget(t, func(t *testing.T, b session.Budget) session.Store {
		return session.NewMemoryStore(session.MemoryConfig{SweepInterval: 20 * time.Millisecond, Budget: b})
	})
}

// newFakeStore returns a memory store on a fake clock, closed when the test
// ends. Its sweeper runs every sweep of real time.
func newFakeStore(t *testing.T, sweep time.Duration) (*session.MemoryStore, *testkit.Clock) {
	t.Helper()
	clock := testkit.NewClock(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	s := session.NewMemoryStore(session.MemoryConfig{Now: clock.Now, SweepInterval: sweep})
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, session.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s, clock
}

var cfg = session.RoomConfig{TTL: 10 * time.Second, ResumeGrace: 5 * time.Second, MaxPending: 4}

func member(id string) session.Member {
	return session.Member{ID: id, TokenHash: [32]byte{id[0]}}
}

// mustOK fails the test if err is not nil.
func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantErr reports an error unless errors.Is(got, want).
func wantErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Errorf("%s: got error %v, want %v", what, got, want)
	}
}

// ended reports whether sub has ended, reading any buffered events.
func ended(sub *session.Subscription) bool {
	for {
		select {
		case _, ok := <-sub.C:
			if !ok {
				return true
			}
		default:
			return false
		}
	}
}

func TestMemoryStoreExpiryBoundary(t *testing.T) {
	ctx := t.Context()
	s, clock := newFakeStore(t, time.Hour)
	mustOK(t, "CreateRoom", s.CreateRoom(ctx, "r", cfg, 0))
	clock.Advance(cfg.TTL - time.Nanosecond)
	_, err := s.Room(ctx, "r")
	wantErr(t, "Room just before TTL", err, nil)
	clock.Advance(time.Nanosecond)
	_, err = s.Room(ctx, "r")
	wantErr(t, "Room at TTL", err, session.ErrRoomNotFound)
}

// TestMemoryStoreLazyExpiry checks that a room expired but not yet swept
// (the sweeper runs hourly here) is gone for every method and leaves
// nothing behind.
func TestMemoryStoreLazyExpiry(t *testing.T) {
	ctx := t.Context()

	t.Run("methods", func(t *testing.T) {
		s, clock := newFakeStore(t, time.Hour)
		mustOK(t, "CreateRoom", s.CreateRoom(ctx, "r", cfg, 0))
		_, err := s.Join(ctx, "r", member("a"))
		mustOK(t, "Join", err)
		sub, err := s.Subscribe(ctx, "r")
		mustOK(t, "Subscribe", err)
		clock.Advance(cfg.TTL)
		_, err = s.Append(ctx, "r", "a", "", []byte("x"))
		wantErr(t, "Append", err, session.ErrRoomNotFound)
		if !ended(sub) {
			t.Fatal("subscription still open after its room was found expired")
		}
		wantErr(t, "subscription Err", sub.Err(), session.ErrRoomNotFound)
		wantErr(t, "Touch", s.Touch(ctx, "r"), session.ErrRoomNotFound)
		wantErr(t, "Publish", s.Publish(ctx, session.Event{Type: session.EventJoined, Room: "r"}), nil)
		mustOK(t, "CreateRoom again", s.CreateRoom(ctx, "r", cfg, 0))
		r, err := s.Room(ctx, "r")
		mustOK(t, "Room", err)
		if len(r.Members) != 0 || r.LastSeq != 0 {
			t.Errorf("re-created room = %+v, want it empty", r)
		}
	})

	t.Run("Rooms", func(t *testing.T) {
		s, clock := newFakeStore(t, time.Hour)
		mustOK(t, "CreateRoom(a)", s.CreateRoom(ctx, "a", cfg, 0))
		sub, err := s.Subscribe(ctx, "a")
		mustOK(t, "Subscribe", err)
		clock.Advance(cfg.TTL / 2)
		mustOK(t, "CreateRoom(b)", s.CreateRoom(ctx, "b", cfg, 0))
		clock.Advance(cfg.TTL / 2)
		n, err := s.Rooms(ctx)
		if err != nil || n != 1 {
			t.Errorf("Rooms = %d, %v; want 1, nil", n, err)
		}
		if !ended(sub) {
			t.Error("subscription to an expired room still open after Rooms")
		}
	})

	t.Run("maxRooms", func(t *testing.T) {
		s, clock := newFakeStore(t, time.Hour)
		mustOK(t, "CreateRoom(a, max 1)", s.CreateRoom(ctx, "a", cfg, 1))
		wantErr(t, "CreateRoom(b, max 1)", s.CreateRoom(ctx, "b", cfg, 1), session.ErrTooManyRooms)
		clock.Advance(cfg.TTL)
		wantErr(t, "CreateRoom(b, max 1) after a expired", s.CreateRoom(ctx, "b", cfg, 1), nil)
	})
}

func TestMemoryStoreSweeper(t *testing.T) {
	ctx := t.Context()
	s, clock := newFakeStore(t, 5*time.Millisecond)
	mustOK(t, "CreateRoom", s.CreateRoom(ctx, "r", cfg, 0))
	sub, err := s.Subscribe(ctx, "r")
	mustOK(t, "Subscribe", err)
	clock.Advance(cfg.TTL)
	// No method call: only the sweeper can end the subscription.
	select {
	case _, ok := <-sub.C:
		if ok {
			t.Fatal("got an event, want the subscription ended")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sweeper did not end the subscription within 5s")
	}
	wantErr(t, "subscription Err", sub.Err(), session.ErrRoomNotFound)
}

// TestMemoryStoreActivity checks ExpiresAt exactly, for every method,
// including Publish and Subscribe, which the suite leaves out.
func TestMemoryStoreActivity(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name    string
		call    func(s *session.MemoryStore) error
		extends bool
	}{
		{"Touch", func(s *session.MemoryStore) error { return s.Touch(ctx, "r") }, true},
		{"Join", func(s *session.MemoryStore) error { _, err := s.Join(ctx, "r", member("c")); return err }, true},
		{"Disconnect", func(s *session.MemoryStore) error { return s.Disconnect(ctx, "r", "a", 1) }, true},
		{"Reconnect", func(s *session.MemoryStore) error {
			_, err := s.Reconnect(ctx, "r", "a", member("a").TokenHash)
			return err
		}, true},
		{"Leave", func(s *session.MemoryStore) error { return s.Leave(ctx, "r", "a") }, true},
		{"SetKey", func(s *session.MemoryStore) error { _, err := s.SetKey(ctx, "r", "a", "g", "k"); return err }, true},
		{"Append", func(s *session.MemoryStore) error {
			// A message needs a peer and both keys; the setup steps are
			// activity too, so the clock moves again before the Append.
			for _, id := range []string{"a", "b"} {
				if _, err := s.Join(ctx, "r", member(id)); err != nil && id == "b" {
					return err
				}
				if _, err := s.SetKey(ctx, "r", id, "x25519", "key of "+id); err != nil {
					return err
				}
			}
			_, err := s.Append(ctx, "r", "a", "", nil)
			return err
		}, true},
		{"Ack", func(s *session.MemoryStore) error { return s.Ack(ctx, "r", "a", 1) }, true},
		{"Publish", func(s *session.MemoryStore) error {
			return s.Publish(ctx, session.Event{Type: session.EventJoined, Room: "r"})
		}, true},
		{"Subscribe", func(s *session.MemoryStore) error { _, err := s.Subscribe(ctx, "r"); return err }, true},
		{"Room", func(s *session.MemoryStore) error { _, err := s.Room(ctx, "r"); return err }, false},
		{"Pending", func(s *session.MemoryStore) error { _, err := s.Pending(ctx, "r", "a", 0); return err }, false},
		{"failed Join", func(s *session.MemoryStore) error {
			if _, err := s.Join(ctx, "r", member("a")); err == nil {
				return errors.New("duplicate Join succeeded")
			}
			return nil
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, clock := newFakeStore(t, time.Hour)
			created := clock.Now()
			mustOK(t, "CreateRoom", s.CreateRoom(ctx, "r", cfg, 0))
			_, err := s.Join(ctx, "r", member("a"))
			mustOK(t, "Join", err)
			r, err := s.Room(ctx, "r")
			mustOK(t, "Room", err)
			if want := created.Add(cfg.TTL); !r.ExpiresAt.Equal(want) {
				t.Fatalf("ExpiresAt after create = %v, want %v", r.ExpiresAt, want)
			}
			clock.Advance(time.Second)
			mustOK(t, tc.name, tc.call(s))
			r, err = s.Room(ctx, "r")
			mustOK(t, "Room", err)
			want := created.Add(cfg.TTL)
			if tc.extends {
				want = clock.Now().Add(cfg.TTL)
			}
			if !r.ExpiresAt.Equal(want) {
				t.Errorf("ExpiresAt after %s = %v, want %v", tc.name, r.ExpiresAt, want)
			}
		})
	}
}

func TestMemoryStoreGraceBoundary(t *testing.T) {
	ctx := t.Context()
	s, clock := newFakeStore(t, time.Hour)
	mustOK(t, "CreateRoom", s.CreateRoom(ctx, "r", cfg, 0))
	for _, id := range []string{"a", "b"} {
		_, err := s.Join(ctx, "r", member(id))
		mustOK(t, "Join", err)
	}

	// Exactly the grace period is not longer than it.
	mustOK(t, "Disconnect(b)", s.Disconnect(ctx, "r", "b", 1))
	clock.Advance(cfg.ResumeGrace)
	_, err := s.Join(ctx, "r", member("c"))
	wantErr(t, "Join(c) at the end of b's grace", err, session.ErrRoomFull)
	_, err = s.Reconnect(ctx, "r", "b", member("b").TokenHash)
	wantErr(t, "Reconnect(b) at the end of its grace", err, nil)

	mustOK(t, "Disconnect(b) again", s.Disconnect(ctx, "r", "b", 2))
	clock.Advance(cfg.ResumeGrace + time.Nanosecond)
	// A wrong token learns nothing and removes nothing.
	_, err = s.Reconnect(ctx, "r", "b", member("x").TokenHash)
	wantErr(t, "Reconnect(b, wrong token) after its grace", err, session.ErrBadToken)
	_, err = s.Join(ctx, "r", member("c"))
	wantErr(t, "Join(c) after b's grace", err, nil)
}

func TestMemoryStoreDisconnectKeepsFirstTime(t *testing.T) {
	ctx := t.Context()
	s, clock := newFakeStore(t, time.Hour)
	mustOK(t, "CreateRoom", s.CreateRoom(ctx, "r", cfg, 0))
	_, err := s.Join(ctx, "r", member("a"))
	mustOK(t, "Join", err)
	first := clock.Now()
	mustOK(t, "Disconnect", s.Disconnect(ctx, "r", "a", 1))
	clock.Advance(time.Second)
	mustOK(t, "second Disconnect", s.Disconnect(ctx, "r", "a", 1))
	r, err := s.Room(ctx, "r")
	mustOK(t, "Room", err)
	if a, _ := r.Member("a"); !a.DisconnectedAt.Equal(first) {
		t.Errorf("DisconnectedAt = %v, want the first Disconnect's %v", a.DisconnectedAt, first)
	}
}

func TestMemoryStoreJoin(t *testing.T) {
	ctx := t.Context()
	s, _ := newFakeStore(t, time.Hour)
	mustOK(t, "CreateRoom", s.CreateRoom(ctx, "r", cfg, 0))
	m := member("a")
	m.PublicKey = "aa"
	m.Connected = false
	m.DisconnectedAt = time.Unix(1, 0)
	r, err := s.Join(ctx, "r", m)
	mustOK(t, "Join", err)
	if got := r.Members[0]; got.PublicKey != "" || !got.Connected || !got.DisconnectedAt.IsZero() {
		t.Errorf("joined member = %+v, want no key, connected, no DisconnectedAt", got)
	}
	_, err = s.Join(ctx, "r", member("a"))
	if err == nil {
		t.Fatal("second Join(a) succeeded, want an error")
	}
	for _, sentinel := range []error{session.ErrRoomFull, session.ErrRoomNotFound} {
		if errors.Is(err, sentinel) {
			t.Errorf("second Join(a) = %v, want no sentinel", err)
		}
	}
	if r, _ := s.Room(ctx, "r"); len(r.Members) != 1 {
		t.Errorf("members after duplicate Join = %+v, want one", r.Members)
	}
}

func TestMemoryStoreSubscriberBuffer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		buffer int // MemoryConfig.SubscriberBuffer
		want   int // events buffered before the subscriber is ended
	}{
		{"default", 0, 256},
		{"two", 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			s := session.NewMemoryStore(session.MemoryConfig{SubscriberBuffer: tc.buffer})
			defer s.Close()
			mustOK(t, "CreateRoom", s.CreateRoom(ctx, "r", cfg, 0))
			slow, err := s.Subscribe(ctx, "r")
			mustOK(t, "Subscribe", err)
			for i := range tc.want + 1 {
				mustOK(t, "Publish", s.Publish(ctx, session.Event{Type: session.EventMessage, Room: "r", Seq: uint64(i + 1)}))
			}
			n := 0
			for range slow.C {
				n++
			}
			if n != tc.want {
				t.Errorf("slow subscriber got %d events, want %d", n, tc.want)
			}
			wantErr(t, "Err", slow.Err(), session.ErrSlowSubscriber)
		})
	}
}

func TestMemoryStoreErrBeforeEnd(t *testing.T) {
	s, _ := newFakeStore(t, time.Hour)
	mustOK(t, "CreateRoom", s.CreateRoom(t.Context(), "r", cfg, 0))
	sub, err := s.Subscribe(t.Context(), "r")
	mustOK(t, "Subscribe", err)
	if err := sub.Err(); err != nil {
		t.Errorf("Err of a live subscription = %v, want nil", err)
	}
}

// TestMemoryStoreCloseLeavesNoGoroutines checks that Close stops the
// sweepers and that subscriptions, ended or not, leave no goroutine.
func TestMemoryStoreCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	var stores []*session.MemoryStore
	for i := range 20 {
		s := session.NewMemoryStore(session.MemoryConfig{SweepInterval: time.Millisecond})
		stores = append(stores, s)
		ctx, cancel := context.WithCancel(context.Background())
		for j := range 5 {
			room := fmt.Sprint("r", j)
			mustOK(t, "CreateRoom", s.CreateRoom(ctx, room, cfg, 0))
			_, err := s.Subscribe(context.Background(), room)
			mustOK(t, "Subscribe", err)
			_, err = s.Subscribe(ctx, room)
			mustOK(t, "Subscribe", err)
		}
		if i%2 == 0 {
			cancel() // ends half the subscriptions before Close
		}
		defer cancel()
	}
	for _, s := range stores {
		mustOK(t, "Close", s.Close())
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, want at most %d as before", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ExampleMemoryStore() {
	ctx := context.Background()
	s := session.NewMemoryStore(session.MemoryConfig{})
	defer s.Close()

	cfg := session.RoomConfig{TTL: time.Hour, ResumeGrace: time.Minute, MaxPending: 64}
	if err := s.CreateRoom(ctx, "room-1", cfg, 0); err != nil {
		fmt.Println(err)
		return
	}
	s.Join(ctx, "room-1", session.Member{ID: "alice"})
	s.SetKey(ctx, "room-1", "alice", "x25519", "8520f0…")
	// Bob has not joined yet: a message has no one to go to.
	_, err := s.Append(ctx, "room-1", "alice", "", []byte("ciphertext"))
	fmt.Println(err)
	s.Join(ctx, "room-1", session.Member{ID: "bob"})
	s.SetKey(ctx, "room-1", "bob", "x25519", "de9edb…")
	seq, _ := s.Append(ctx, "room-1", "alice", "", []byte("ciphertext"))
	msgs, _ := s.Pending(ctx, "room-1", "bob", 0)
	fmt.Println(seq, msgs[0].From, string(msgs[0].Body))

	_, err = s.Join(ctx, "room-1", session.Member{ID: "carol"})
	fmt.Println(err)
	// Output:
	// session: handshake incomplete
	// 1 alice ciphertext
	// session: room full
}
