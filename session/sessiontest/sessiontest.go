// Package sessiontest is the conformance suite for [session.Store]
// implementations. Every store runs the same suite, from its own test
// file:
//
//	func TestMemoryStore(t *testing.T) {
//		sessiontest.Run(t, func(t *testing.T) session.Store {
//			return session.NewMemoryStore(session.MemoryConfig{})
//		})
//	}
//
// The suite uses real time. Expiry tests give rooms TTLs of a few hundred
// milliseconds and wait, polling, for what must happen; nothing asserts
// that a store is fast. A store with a background sweeper should sweep
// well within a second for the suite to finish quickly.
package sessiontest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/session"
)

// Timing and sizes used by the suite.
const (
	// shortTTL and shortGrace are used where a test waits for expiry.
	shortTTL   = 300 * time.Millisecond
	shortGrace = 200 * time.Millisecond
	// patience bounds every wait for something that must happen.
	patience = 5 * time.Second
	// fewEvents are published to subscribers that read only afterwards;
	// a store must buffer at least that many.
	fewEvents = 32
	// manyEvents are published to a subscriber that never reads; a store
	// must end such a subscriber before it falls that far behind.
	manyEvents = 4096
)

// longCfg is a room that does not expire, nor lose a member, during a test.
var longCfg = session.RoomConfig{TTL: time.Minute, ResumeGrace: time.Minute, MaxPending: 16}

// Run runs the conformance suite. newStore must return a new, empty store
// each time it is called; Run closes every store it gets (a second Close
// returning ErrClosed is fine), and newStore may register its own
// t.Cleanup, which runs after that Close. The suite's subtests call
// t.Parallel, so several stores are open at once.
//
// Requirements beyond the Store documentation: a subscription must buffer
// at least 32 events and must be ended as slow before it falls 4096 events
// behind.
func Run(t *testing.T, newStore func(t *testing.T) session.Store) {
	open := func(t *testing.T) session.Store {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() {
			// A store that deadlocked fails the test instead of hanging it.
			done := make(chan error, 1)
			go func() { done <- s.Close() }()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, session.ErrClosed) {
					t.Errorf("Close: %v", err)
				}
			case <-time.After(patience):
				t.Errorf("Close did not return within %v", patience)
			}
		})
		return s
	}
	for _, tc := range []struct {
		name string
		test func(*testing.T, opener)
	}{
		{"CreateRoom", testCreateRoom},
		{"Room", testRoom},
		{"Join", testJoin},
		{"Reconnect", testReconnect},
		{"Disconnect", testDisconnect},
		{"Leave", testLeave},
		{"SetKey", testSetKey},
		{"Messages", testMessages},
		{"Touch", testTouch},
		{"Activity", testActivity},
		{"Expiry", testExpiry},
		{"PubSub", testPubSub},
		{"Concurrency", testConcurrency},
		{"RoomsAndReady", testRoomsAndReady},
		{"Closed", testClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, open)
		})
	}
}

// opener returns a new store that is closed when the test ends.
type opener func(t *testing.T) session.Store

func testCreateRoom(t *testing.T, open opener) {
	t.Run("new room", func(t *testing.T) {
		s := open(t)
		before := time.Now()
		create(t, s, "r", longCfg)
		after := time.Now()
		r := getRoom(t, s, "r")
		if r.ID != "r" || r.Config != longCfg || r.Group != "" || len(r.Members) != 0 || r.LastSeq != 0 {
			t.Errorf("Room = %+v, want ID r, Config %+v, no group, no members, LastSeq 0", r, longCfg)
		}
		// A second of slack for a backend with its own clock.
		lo, hi := before.Add(longCfg.TTL-time.Second), after.Add(longCfg.TTL+time.Second)
		if r.ExpiresAt.Before(lo) || r.ExpiresAt.After(hi) {
			t.Errorf("ExpiresAt = %v, want between %v and %v", r.ExpiresAt, lo, hi)
		}
	})

	t.Run("preset group", func(t *testing.T) {
		s := open(t)
		cfg := longCfg
		cfg.Group = "x25519"
		create(t, s, "r", cfg)
		if got := getRoom(t, s, "r"); got.Group != "x25519" || got.Config != cfg {
			t.Errorf("Group, Config = %q, %+v; want x25519, %+v", got.Group, got.Config, cfg)
		}
	})

	t.Run("ID taken", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		other := longCfg
		other.Group = "modp14"
		wantErr(t, "second CreateRoom", s.CreateRoom(t.Context(), "r", other, 0), session.ErrRoomExists)
		if got := getRoom(t, s, "r").Config; got != longCfg {
			t.Errorf("Config after refused CreateRoom = %+v, want %+v", got, longCfg)
		}
	})

	t.Run("too many rooms", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		wantErr(t, "CreateRoom(a, max 2)", s.CreateRoom(ctx, "a", longCfg, 2), nil)
		wantErr(t, "CreateRoom(b, max 2)", s.CreateRoom(ctx, "b", longCfg, 2), nil)
		wantErr(t, "CreateRoom(c, max 2)", s.CreateRoom(ctx, "c", longCfg, 2), session.ErrTooManyRooms)
		_, err := s.Room(ctx, "c")
		wantErr(t, "Room(c)", err, session.ErrRoomNotFound)
		wantErr(t, "CreateRoom(c, max 3)", s.CreateRoom(ctx, "c", longCfg, 3), nil)
		wantErr(t, "CreateRoom(d, max 0 = no limit)", s.CreateRoom(ctx, "d", longCfg, 0), nil)
		wantErr(t, "CreateRoom(e, max -1 = no limit)", s.CreateRoom(ctx, "e", longCfg, -1), nil)
		if got, want := countRooms(t, s), 5; got != want {
			t.Errorf("Rooms = %d, want %d", got, want)
		}
	})

	t.Run("invalid config", func(t *testing.T) {
		s := open(t)
		for _, tc := range []struct {
			name string
			edit func(*session.RoomConfig)
		}{
			{"zero TTL", func(c *session.RoomConfig) { c.TTL = 0 }},
			{"negative TTL", func(c *session.RoomConfig) { c.TTL = -time.Second }},
			{"zero ResumeGrace", func(c *session.RoomConfig) { c.ResumeGrace = 0 }},
			{"negative ResumeGrace", func(c *session.RoomConfig) { c.ResumeGrace = -time.Second }},
			{"zero MaxPending", func(c *session.RoomConfig) { c.MaxPending = 0 }},
			{"negative MaxPending", func(c *session.RoomConfig) { c.MaxPending = -1 }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := longCfg
				tc.edit(&cfg)
				if err := s.CreateRoom(t.Context(), tc.name, cfg, 0); err == nil {
					t.Errorf("CreateRoom(%+v) = nil, want an error", cfg)
				}
				_, err := s.Room(t.Context(), tc.name)
				wantErr(t, "Room after invalid CreateRoom", err, session.ErrRoomNotFound)
			})
		}
	})
}

func testRoom(t *testing.T, open opener) {
	t.Run("missing room", func(t *testing.T) {
		s := open(t)
		_, err := s.Room(t.Context(), "nope")
		wantErr(t, "Room", err, session.ErrRoomNotFound)
	})

	t.Run("snapshot is a copy", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		r := getRoom(t, s, "r")
		r.Members[0].ID = "mallory"
		r.Members[1].Connected = false
		r.Members = append(r.Members[:0], session.Member{ID: "eve"})
		got := getRoom(t, s, "r")
		if ids := memberIDs(got); !slices.Equal(ids, []string{"a", "b"}) || !got.Members[1].Connected {
			t.Errorf("Room after editing an earlier snapshot = %+v, want members a, b, connected", got.Members)
		}
	})
}

func testJoin(t *testing.T, open opener) {
	t.Run("first and second", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		r, err := s.Join(t.Context(), "r", member("a"))
		wantErr(t, "Join(a)", err, nil)
		if got, want := memberIDs(r), []string{"a"}; !slices.Equal(got, want) {
			t.Errorf("members after Join(a) = %v, want %v", got, want)
		}
		r, err = s.Join(t.Context(), "r", member("b"))
		wantErr(t, "Join(b)", err, nil)
		if got, want := memberIDs(r), []string{"a", "b"}; !slices.Equal(got, want) {
			t.Errorf("members after Join(b) = %v, want %v", got, want)
		}
		for _, r := range []session.Room{r, getRoom(t, s, "r")} {
			for _, m := range r.Members {
				if !m.Connected || !m.DisconnectedAt.IsZero() || m.PublicKey != "" || m.TokenHash != token(m.ID) {
					t.Errorf("member %+v, want connected, no DisconnectedAt, no key, TokenHash %x", m, token(m.ID))
				}
			}
		}
	})

	t.Run("third is refused", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		_, err := s.Join(t.Context(), "r", member("c"))
		wantErr(t, "Join(c)", err, session.ErrRoomFull)
		if got, want := memberIDs(getRoom(t, s, "r")), []string{"a", "b"}; !slices.Equal(got, want) {
			t.Errorf("members = %v, want %v", got, want)
		}
	})

	t.Run("missing room", func(t *testing.T) {
		s := open(t)
		_, err := s.Join(t.Context(), "nope", member("a"))
		wantErr(t, "Join", err, session.ErrRoomNotFound)
	})

	t.Run("disconnected member keeps its seat", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		disconnect(t, s, "r", "b")
		_, err := s.Join(t.Context(), "r", member("c"))
		wantErr(t, "Join(c)", err, session.ErrRoomFull)
	})

	t.Run("member past its grace frees its seat", func(t *testing.T) {
		s := open(t)
		cfg := longCfg
		cfg.ResumeGrace = shortGrace
		setup(t, s, "r", cfg, "a", "b")
		disconnect(t, s, "r", "b")
		time.Sleep(shortGrace)
		var r session.Room
		waitFor(t, patience, "Join(c) to succeed", func() bool {
			var err error
			r, err = s.Join(t.Context(), "r", member("c"))
			if errors.Is(err, session.ErrRoomFull) {
				return false
			}
			wantErr(t, "Join(c)", err, nil)
			return true
		})
		if got, want := memberIDs(r), []string{"a", "c"}; !slices.Equal(got, want) {
			t.Errorf("members = %v, want %v", got, want)
		}
		_, err := s.Reconnect(t.Context(), "r", "b", token("b"))
		wantErr(t, "Reconnect(b)", err, session.ErrNotMember)
	})
}

func testReconnect(t *testing.T, open opener) {
	// Room r has a, connected, and b, disconnected.
	start := func(t *testing.T, grace time.Duration) session.Store {
		t.Helper()
		s := open(t)
		cfg := longCfg
		cfg.ResumeGrace = grace
		setup(t, s, "r", cfg, "a", "b")
		disconnect(t, s, "r", "b")
		return s
	}

	t.Run("good token", func(t *testing.T) {
		s := start(t, longCfg.ResumeGrace)
		r, err := s.Reconnect(t.Context(), "r", "b", token("b"))
		wantErr(t, "Reconnect(b)", err, nil)
		for _, r := range []session.Room{r, getRoom(t, s, "r")} {
			if m, _ := r.Member("b"); !m.Connected || !m.DisconnectedAt.IsZero() {
				t.Errorf("b = %+v, want connected, no DisconnectedAt", m)
			}
		}
	})

	t.Run("connected member", func(t *testing.T) {
		s := start(t, longCfg.ResumeGrace)
		_, err := s.Reconnect(t.Context(), "r", "a", token("a"))
		wantErr(t, "Reconnect(a)", err, nil)
	})

	t.Run("bad token", func(t *testing.T) {
		s := start(t, longCfg.ResumeGrace)
		_, err := s.Reconnect(t.Context(), "r", "b", token("a"))
		wantErr(t, "Reconnect(b, a's token)", err, session.ErrBadToken)
		if m, _ := getRoom(t, s, "r").Member("b"); m.Connected {
			t.Errorf("b = %+v after a bad token, want still disconnected", m)
		}
	})

	t.Run("unknown member", func(t *testing.T) {
		s := start(t, longCfg.ResumeGrace)
		_, err := s.Reconnect(t.Context(), "r", "c", token("c"))
		wantErr(t, "Reconnect(c)", err, session.ErrNotMember)
	})

	t.Run("missing room", func(t *testing.T) {
		s := start(t, longCfg.ResumeGrace)
		_, err := s.Reconnect(t.Context(), "nope", "b", token("b"))
		wantErr(t, "Reconnect", err, session.ErrRoomNotFound)
	})

	t.Run("after grace", func(t *testing.T) {
		s := start(t, shortGrace)
		// Sleeping guarantees the grace is over; polling Reconnect would
		// resume b while it is not.
		time.Sleep(2 * shortGrace)
		_, err := s.Reconnect(t.Context(), "r", "b", token("b"))
		wantErr(t, "Reconnect(b) after grace", err, session.ErrResumeExpired)
		if got, want := memberIDs(getRoom(t, s, "r")), []string{"a"}; !slices.Equal(got, want) {
			t.Errorf("members = %v, want %v", got, want)
		}
		_, err = s.Reconnect(t.Context(), "r", "b", token("b"))
		wantErr(t, "second Reconnect(b)", err, session.ErrNotMember)
		join(t, s, "r", "c")
	})
}

func testDisconnect(t *testing.T, open opener) {
	t.Run("marks the member disconnected", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		before := time.Now()
		disconnect(t, s, "r", "b")
		after := time.Now()
		r := getRoom(t, s, "r")
		b, _ := r.Member("b")
		// A second of slack for a backend with its own clock.
		if b.Connected || b.DisconnectedAt.Before(before.Add(-time.Second)) || b.DisconnectedAt.After(after.Add(time.Second)) {
			t.Errorf("b = %+v, want disconnected between %v and %v", b, before, after)
		}
		if a, _ := r.Member("a"); !a.Connected {
			t.Errorf("a = %+v, want still connected", a)
		}
	})

	t.Run("not a member", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a")
		wantErr(t, "Disconnect(c)", s.Disconnect(t.Context(), "r", "c"), session.ErrNotMember)
	})

	t.Run("missing room", func(t *testing.T) {
		s := open(t)
		wantErr(t, "Disconnect", s.Disconnect(t.Context(), "nope", "a"), session.ErrRoomNotFound)
	})
}

func testLeave(t *testing.T, open opener) {
	t.Run("removes the member and frees its seat", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		wantErr(t, "Leave(b)", s.Leave(t.Context(), "r", "b"), nil)
		if got, want := memberIDs(getRoom(t, s, "r")), []string{"a"}; !slices.Equal(got, want) {
			t.Errorf("members = %v, want %v", got, want)
		}
		wantErr(t, "second Leave(b)", s.Leave(t.Context(), "r", "b"), session.ErrNotMember)
		if got, want := memberIDs(join(t, s, "r", "c")), []string{"a", "c"}; !slices.Equal(got, want) {
			t.Errorf("members after Join(c) = %v, want %v", got, want)
		}
	})

	t.Run("drops only the leaver's messages", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		appendMsg(t, s, "r", "a", "to b 1")
		appendMsg(t, s, "r", "a", "to b 2")
		appendMsg(t, s, "r", "b", "to a")
		wantErr(t, "Leave(b)", s.Leave(t.Context(), "r", "b"), nil)
		checkPending(t, s, "r", "a", 0, msg(3, "b", "to a"))
		join(t, s, "r", "c")
		checkPending(t, s, "r", "c", 0)
	})

	t.Run("not a member", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a")
		wantErr(t, "Leave(c)", s.Leave(t.Context(), "r", "c"), session.ErrNotMember)
	})

	t.Run("missing room", func(t *testing.T) {
		s := open(t)
		wantErr(t, "Leave", s.Leave(t.Context(), "nope", "a"), session.ErrRoomNotFound)
	})
}

func testSetKey(t *testing.T, open opener) {
	t.Run("first key fixes the group", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		ctx := t.Context()
		r, err := s.SetKey(ctx, "r", "a", "modp14", "aa01")
		wantErr(t, "SetKey(a, modp14)", err, nil)
		for _, r := range []session.Room{r, getRoom(t, s, "r")} {
			if a, _ := r.Member("a"); r.Group != "modp14" || a.PublicKey != "aa01" {
				t.Errorf("Group, a's key = %q, %q; want modp14, aa01", r.Group, a.PublicKey)
			}
		}
		_, err = s.SetKey(ctx, "r", "a", "modp14", "aa02")
		wantErr(t, "second SetKey(a)", err, session.ErrKeySet)
		_, err = s.SetKey(ctx, "r", "b", "x25519", "bb01")
		wantErr(t, "SetKey(b, x25519)", err, session.ErrGroupMismatch)
		r, err = s.SetKey(ctx, "r", "b", "modp14", "bb02")
		wantErr(t, "SetKey(b, modp14)", err, nil)
		a, _ := r.Member("a")
		b, _ := r.Member("b")
		if r.Group != "modp14" || a.PublicKey != "aa01" || b.PublicKey != "bb02" {
			t.Errorf("Group, keys = %q, %q, %q; want modp14, aa01, bb02", r.Group, a.PublicKey, b.PublicKey)
		}
	})

	t.Run("preset group", func(t *testing.T) {
		s := open(t)
		cfg := longCfg
		cfg.Group = "p256"
		setup(t, s, "r", cfg, "a")
		_, err := s.SetKey(t.Context(), "r", "a", "x25519", "aa01")
		wantErr(t, "SetKey(a, x25519)", err, session.ErrGroupMismatch)
		if a, _ := getRoom(t, s, "r").Member("a"); a.PublicKey != "" {
			t.Errorf("a's key after a refused SetKey = %q, want none", a.PublicKey)
		}
		r, err := s.SetKey(t.Context(), "r", "a", "p256", "aa02")
		wantErr(t, "SetKey(a, p256)", err, nil)
		if a, _ := r.Member("a"); r.Group != "p256" || a.PublicKey != "aa02" {
			t.Errorf("Group, a's key = %q, %q; want p256, aa02", r.Group, a.PublicKey)
		}
	})

	t.Run("not a member", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a")
		_, err := s.SetKey(t.Context(), "r", "c", "p256", "cc")
		wantErr(t, "SetKey(c)", err, session.ErrNotMember)
		if got := getRoom(t, s, "r").Group; got != "" {
			t.Errorf("Group after a refused SetKey = %q, want none", got)
		}
	})

	t.Run("missing room", func(t *testing.T) {
		s := open(t)
		_, err := s.SetKey(t.Context(), "nope", "a", "p256", "aa")
		wantErr(t, "SetKey", err, session.ErrRoomNotFound)
	})
}

func testMessages(t *testing.T, open opener) {
	t.Run("sequence numbers and mailboxes", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		for i, tc := range []struct{ from, body string }{
			{"a", "m1"}, {"a", "m2"}, {"b", "m3"}, {"a", "m4"},
		} {
			if got, want := appendMsg(t, s, "r", tc.from, tc.body), uint64(i+1); got != want {
				t.Errorf("Append(%s, %s) = %d, want %d", tc.from, tc.body, got, want)
			}
		}
		if got := getRoom(t, s, "r").LastSeq; got != 4 {
			t.Errorf("LastSeq = %d, want 4", got)
		}
		checkPending(t, s, "r", "b", 0, msg(1, "a", "m1"), msg(2, "a", "m2"), msg(4, "a", "m4"))
		checkPending(t, s, "r", "a", 0, msg(3, "b", "m3"))
	})

	t.Run("Pending after and Ack", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		for _, body := range []string{"m1", "m2", "m3", "m4"} {
			appendMsg(t, s, "r", "a", body)
		}
		checkPending(t, s, "r", "b", 2, msg(3, "a", "m3"), msg(4, "a", "m4"))
		checkPending(t, s, "r", "b", 4)
		// Pending does not consume.
		checkPending(t, s, "r", "b", 0, msg(1, "a", "m1"), msg(2, "a", "m2"), msg(3, "a", "m3"), msg(4, "a", "m4"))
		wantErr(t, "Ack(b, 2)", s.Ack(t.Context(), "r", "b", 2), nil)
		checkPending(t, s, "r", "b", 0, msg(3, "a", "m3"), msg(4, "a", "m4"))
		wantErr(t, "Ack(b, 1) again", s.Ack(t.Context(), "r", "b", 1), nil)
		checkPending(t, s, "r", "b", 0, msg(3, "a", "m3"), msg(4, "a", "m4"))
		wantErr(t, "Ack(a, 100)", s.Ack(t.Context(), "r", "a", 100), nil)
		checkPending(t, s, "r", "b", 0, msg(3, "a", "m3"), msg(4, "a", "m4"))
		wantErr(t, "Ack(b, 100)", s.Ack(t.Context(), "r", "b", 100), nil)
		checkPending(t, s, "r", "b", 0)
	})

	t.Run("messages before the peer joins go to the joiner", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a")
		appendMsg(t, s, "r", "a", "early 1")
		appendMsg(t, s, "r", "a", "early 2")
		checkPending(t, s, "r", "a", 0)
		join(t, s, "r", "b")
		appendMsg(t, s, "r", "a", "late")
		checkPending(t, s, "r", "b", 0, msg(1, "a", "early 1"), msg(2, "a", "early 2"), msg(3, "a", "late"))
		checkPending(t, s, "r", "a", 0)
	})

	t.Run("mailbox full", func(t *testing.T) {
		s := open(t)
		cfg := longCfg
		cfg.MaxPending = 3
		setup(t, s, "r", cfg, "a", "b")
		for range 3 {
			appendMsg(t, s, "r", "a", "x")
		}
		seq, err := s.Append(t.Context(), "r", "a", []byte("one too many"))
		wantErr(t, "fourth Append(a)", err, session.ErrMailboxFull)
		if seq != 0 {
			t.Errorf("fourth Append(a) = %d, want 0", seq)
		}
		if got := getRoom(t, s, "r").LastSeq; got != 3 {
			t.Errorf("LastSeq after a refused Append = %d, want 3", got)
		}
		// b's mailbox is full, not a's.
		if got := appendMsg(t, s, "r", "b", "to a"); got != 4 {
			t.Errorf("Append(b) = %d, want 4", got)
		}
		wantErr(t, "Ack(b, 2)", s.Ack(t.Context(), "r", "b", 2), nil)
		if got := appendMsg(t, s, "r", "a", "y"); got != 5 {
			t.Errorf("Append(a) after Ack = %d, want 5", got)
		}
		checkPending(t, s, "r", "b", 0, msg(3, "a", "x"), msg(5, "a", "y"))
	})

	t.Run("mailbox for the next member is bounded", func(t *testing.T) {
		s := open(t)
		cfg := longCfg
		cfg.MaxPending = 2
		setup(t, s, "r", cfg, "a")
		appendMsg(t, s, "r", "a", "1")
		appendMsg(t, s, "r", "a", "2")
		_, err := s.Append(t.Context(), "r", "a", []byte("3"))
		wantErr(t, "third Append(a) with no peer", err, session.ErrMailboxFull)
		join(t, s, "r", "b")
		checkPending(t, s, "r", "b", 0, msg(1, "a", "1"), msg(2, "a", "2"))
	})

	t.Run("disconnected recipient", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		disconnect(t, s, "r", "b")
		appendMsg(t, s, "r", "a", "while away")
		_, err := s.Reconnect(t.Context(), "r", "b", token("b"))
		wantErr(t, "Reconnect(b)", err, nil)
		checkPending(t, s, "r", "b", 0, msg(1, "a", "while away"))
	})

	t.Run("bodies are copied", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		buf := []byte("ciphertext")
		if _, err := s.Append(t.Context(), "r", "a", buf); err != nil {
			t.Fatalf("Append: %v", err)
		}
		copy(buf, "XXXXXXXXXX")
		if _, err := s.Append(t.Context(), "r", "a", nil); err != nil {
			t.Fatalf("Append(nil): %v", err)
		}
		got, err := s.Pending(t.Context(), "r", "b", 0)
		wantErr(t, "Pending", err, nil)
		if len(got) == 2 {
			got[0].Body[0] = 'Y'
		}
		checkPending(t, s, "r", "b", 0, msg(1, "a", "ciphertext"), msg(2, "a", ""))
	})

	t.Run("not a member", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		ctx := t.Context()
		_, err := s.Append(ctx, "r", "c", []byte("x"))
		wantErr(t, "Append(c)", err, session.ErrNotMember)
		_, err = s.Pending(ctx, "r", "c", 0)
		wantErr(t, "Pending(c)", err, session.ErrNotMember)
		wantErr(t, "Ack(c)", s.Ack(ctx, "r", "c", 1), session.ErrNotMember)
	})

	t.Run("missing room", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		_, err := s.Append(ctx, "nope", "a", []byte("x"))
		wantErr(t, "Append", err, session.ErrRoomNotFound)
		_, err = s.Pending(ctx, "nope", "a", 0)
		wantErr(t, "Pending", err, session.ErrRoomNotFound)
		wantErr(t, "Ack", s.Ack(ctx, "nope", "a", 1), session.ErrRoomNotFound)
	})
}

func testTouch(t *testing.T, open opener) {
	s := open(t)
	create(t, s, "r", longCfg)
	wantErr(t, "Touch(r)", s.Touch(t.Context(), "r"), nil)
	wantErr(t, "Touch(nope)", s.Touch(t.Context(), "nope"), session.ErrRoomNotFound)
}

// testActivity checks which calls extend a room's life, by how they move
// its ExpiresAt. Rooms live a minute here, so no speed is assumed.
func testActivity(t *testing.T, open opener) {
	const pause, moved = 60 * time.Millisecond, 30 * time.Millisecond
	s := open(t)
	for _, tc := range []struct {
		name    string
		prep    func(ctx context.Context, room string) error // before the first ExpiresAt
		call    func(ctx context.Context, room string) error
		extends bool
	}{
		{"Touch", nil, func(ctx context.Context, room string) error {
			return s.Touch(ctx, room)
		}, true},
		{"Join", func(ctx context.Context, room string) error {
			return s.Leave(ctx, room, "b")
		}, func(ctx context.Context, room string) error {
			_, err := s.Join(ctx, room, member("c"))
			return err
		}, true},
		{"Reconnect", nil, func(ctx context.Context, room string) error {
			_, err := s.Reconnect(ctx, room, "b", token("b"))
			return err
		}, true},
		{"Disconnect", nil, func(ctx context.Context, room string) error {
			return s.Disconnect(ctx, room, "a")
		}, true},
		{"Leave", nil, func(ctx context.Context, room string) error {
			return s.Leave(ctx, room, "b")
		}, true},
		{"SetKey", nil, func(ctx context.Context, room string) error {
			_, err := s.SetKey(ctx, room, "a", "x25519", "aa")
			return err
		}, true},
		{"Append", nil, func(ctx context.Context, room string) error {
			_, err := s.Append(ctx, room, "b", []byte("x"))
			return err
		}, true},
		{"Ack", nil, func(ctx context.Context, room string) error {
			return s.Ack(ctx, room, "b", 1)
		}, true},
		{"Room", nil, func(ctx context.Context, room string) error {
			_, err := s.Room(ctx, room)
			return err
		}, false},
		{"Pending", nil, func(ctx context.Context, room string) error {
			_, err := s.Pending(ctx, room, "b", 0)
			return err
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			room := tc.name
			// a connected, b disconnected with one message waiting.
			setup(t, s, room, longCfg, "a", "b")
			disconnect(t, s, room, "b")
			appendMsg(t, s, room, "a", "m1")
			if tc.prep != nil {
				wantErr(t, "prep", tc.prep(t.Context(), room), nil)
			}
			before := getRoom(t, s, room).ExpiresAt
			time.Sleep(pause)
			wantErr(t, tc.name, tc.call(t.Context(), room), nil)
			after := getRoom(t, s, room).ExpiresAt
			if d := after.Sub(before); (d >= moved) != tc.extends {
				t.Errorf("%s moved ExpiresAt by %v after a %v pause; extends = %v, want %v", tc.name, d, pause, d >= moved, tc.extends)
			}
		})
	}
}

func testExpiry(t *testing.T, open opener) {
	short := longCfg
	short.TTL = shortTTL

	t.Run("idle room expires", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		create(t, s, "long", longCfg)
		setup(t, s, "r", short, "a", "b")
		appendMsg(t, s, "r", "a", "m1")
		sub, err := s.Subscribe(t.Context(), "r")
		wantErr(t, "Subscribe", err, nil)

		waitFor(t, patience, "room r to expire", func() bool {
			_, err := s.Room(t.Context(), "r")
			return errors.Is(err, session.ErrRoomNotFound)
		})
		if _, err := drain(t, sub); !errors.Is(err, session.ErrRoomNotFound) {
			t.Errorf("subscription Err = %v, want %v", err, session.ErrRoomNotFound)
		}
		waitFor(t, patience, "Rooms to drop to 1", func() bool { return countRooms(t, s) == 1 })
		for _, c := range roomCalls("r") {
			wantErr(t, c.name+" on an expired room", c.call(t.Context(), s), session.ErrRoomNotFound)
		}
		getRoom(t, s, "long")

		// The ID can be used again, for a new room.
		create(t, s, "r", longCfg)
		if r := getRoom(t, s, "r"); len(r.Members) != 0 || r.LastSeq != 0 || r.Config != longCfg {
			t.Errorf("re-created room = %+v, want a new empty room", r)
		}
		_, err = s.Pending(t.Context(), "r", "b", 0)
		wantErr(t, "Pending(b) in the re-created room", err, session.ErrNotMember)
	})

	t.Run("activity keeps a room alive", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		last := time.Now() // start of the latest successful activity
		create(t, s, "r", short)
		for end := last.Add(3 * shortTTL); time.Now().Before(end); {
			time.Sleep(shortTTL / 5)
			start := time.Now()
			err := s.Touch(t.Context(), "r")
			if errors.Is(err, session.ErrRoomNotFound) {
				// Fail only if the room expired less than a TTL after
				// the previous Touch began; a stalled test proves
				// nothing.
				if idle := time.Since(last); idle < shortTTL {
					t.Fatalf("room expired %v after the last activity, TTL %v", idle, shortTTL)
				}
				t.Skipf("too slow to check: %v between activities, TTL %v", time.Since(last), shortTTL)
			}
			wantErr(t, "Touch", err, nil)
			last = start
		}
	})

	t.Run("expired room frees its slot", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		wantErr(t, "CreateRoom(a, max 1)", s.CreateRoom(t.Context(), "a", short, 1), nil)
		waitFor(t, patience, "CreateRoom(b, max 1) to succeed", func() bool {
			err := s.CreateRoom(t.Context(), "b", longCfg, 1)
			if errors.Is(err, session.ErrTooManyRooms) {
				return false
			}
			wantErr(t, "CreateRoom(b, max 1)", err, nil)
			return true
		})
	})
}

func testPubSub(t *testing.T, open opener) {
	t.Run("events reach every subscriber in order", func(t *testing.T) {
		s := open(t)
		create(t, s, "x", longCfg)
		create(t, s, "y", longCfg)
		x1, x2, y1 := subscribe(t, s, "x"), subscribe(t, s, "x"), subscribe(t, s, "y")
		var want []session.Event
		for i := range uint64(fewEvents) {
			ev := session.Event{Type: session.EventMessage, Room: "x", Peer: "a", Seq: i + 1, Body: []byte{byte(i), 1, 2}, Conn: "c1"}
			want = append(want, ev)
			wantErr(t, "Publish", s.Publish(t.Context(), ev), nil)
		}
		for name, sub := range map[string]*session.Subscription{"x1": x1, "x2": x2} {
			for i, w := range want {
				if got := recv(t, sub); !eventEqual(got, w) {
					t.Fatalf("%s: event %d = %+v, want %+v", name, i, got, w)
				}
			}
		}
		left := session.Event{Type: session.EventLeft, Room: "y", Peer: "b", Reason: session.ReasonDropped}
		wantErr(t, "Publish(y)", s.Publish(t.Context(), left), nil)
		if got := recv(t, y1); !eventEqual(got, left) {
			t.Errorf("y1's first event = %+v, want %+v (nothing from room x)", got, left)
		}
	})

	t.Run("from now on", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		early := session.Event{Type: session.EventJoined, Room: "r", Peer: "a"}
		wantErr(t, "Publish before Subscribe", s.Publish(t.Context(), early), nil)
		sub := subscribe(t, s, "r")
		key := session.Event{Type: session.EventKey, Room: "r", Peer: "a", Key: "aa01", Group: "x25519", Conn: "c7"}
		wantErr(t, "Publish", s.Publish(t.Context(), key), nil)
		if got := recv(t, sub); !eventEqual(got, key) {
			t.Errorf("first event = %+v, want %+v", got, key)
		}
	})

	t.Run("Append announces the message", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		join(t, s, "r", "a")
		join(t, s, "r", "b")
		sub := subscribe(t, s, "r")
		seq, err := s.Append(t.Context(), "r", "a", []byte("ciphertext"))
		wantErr(t, "Append", err, nil)
		want := session.Event{Type: session.EventMessage, Room: "r", Peer: "a", Seq: seq, Body: []byte("ciphertext")}
		if got := recv(t, sub); !eventEqual(got, want) {
			t.Errorf("event after Append = %+v, want %+v", got, want)
		}
	})

	t.Run("bodies are copied", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		sub1, sub2 := subscribe(t, s, "r"), subscribe(t, s, "r")
		body := []byte("ciphertext")
		wantErr(t, "Publish", s.Publish(t.Context(), session.Event{Type: session.EventMessage, Room: "r", Seq: 1, Body: body}), nil)
		copy(body, "XXXXXXXXXX")
		got1 := recv(t, sub1)
		if string(got1.Body) != "ciphertext" {
			t.Errorf("sub1 body = %q, want %q", got1.Body, "ciphertext")
		}
		if len(got1.Body) > 0 {
			got1.Body[0] = 'Y'
		}
		if got2 := recv(t, sub2); string(got2.Body) != "ciphertext" {
			t.Errorf("sub2 body = %q, want %q", got2.Body, "ciphertext")
		}
	})

	t.Run("slow subscriber is ended without blocking Publish", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		slow := subscribe(t, s, "r")
		done := make(chan error, 1)
		go func() {
			for i := range uint64(manyEvents) {
				ev := session.Event{Type: session.EventMessage, Room: "r", Seq: i + 1}
				if err := s.Publish(context.Background(), ev); err != nil {
					done <- fmt.Errorf("event %d: %w", i+1, err)
					return
				}
			}
			done <- nil
		}()
		select {
		case err := <-done:
			wantErr(t, "publishing", err, nil)
		case <-time.After(2 * patience):
			t.Fatalf("%d Publish calls to a room with a stuck subscriber did not return within %v", manyEvents, 2*patience)
		}
		got, err := drain(t, slow)
		wantErr(t, "slow subscription's Err", err, session.ErrSlowSubscriber)
		if len(got) >= manyEvents {
			t.Errorf("stuck subscriber received all %d events, want it ended before", len(got))
		}
		for i, ev := range got {
			if ev.Seq != uint64(i+1) {
				t.Fatalf("stuck subscriber's event %d has Seq %d, want %d (in order, no gaps)", i, ev.Seq, i+1)
			}
		}
		// The room still works for new subscribers.
		sub := subscribe(t, s, "r")
		ev := session.Event{Type: session.EventJoined, Room: "r", Peer: "b"}
		wantErr(t, "Publish", s.Publish(t.Context(), ev), nil)
		if got := recv(t, sub); !eventEqual(got, ev) {
			t.Errorf("new subscriber's event = %+v, want %+v", got, ev)
		}
	})

	t.Run("context cancel ends a subscription", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		ctx, cancel := context.WithCancel(t.Context())
		sub, err := s.Subscribe(ctx, "r")
		wantErr(t, "Subscribe", err, nil)
		other := subscribe(t, s, "r")
		cancel()
		if _, err := drain(t, sub); err != nil {
			t.Errorf("Err after cancel = %v, want nil", err)
		}
		ev := session.Event{Type: session.EventJoined, Room: "r", Peer: "a"}
		wantErr(t, "Publish", s.Publish(t.Context(), ev), nil)
		if got := recv(t, other); !eventEqual(got, ev) {
			t.Errorf("other subscriber's event = %+v, want %+v", got, ev)
		}
	})

	t.Run("Close ends subscriptions", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		sub := subscribe(t, s, "r")
		wantErr(t, "Close", s.Close(), nil)
		if _, err := drain(t, sub); !errors.Is(err, session.ErrClosed) {
			t.Errorf("Err after Close = %v, want %v", err, session.ErrClosed)
		}
	})

	t.Run("missing room", func(t *testing.T) {
		s := open(t)
		_, err := s.Subscribe(t.Context(), "nope")
		wantErr(t, "Subscribe", err, session.ErrRoomNotFound)
	})

	t.Run("publish with no subscriber", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		wantErr(t, "Publish", s.Publish(t.Context(), session.Event{Type: session.EventJoined, Room: "r", Peer: "a"}), nil)
	})
}

func testConcurrency(t *testing.T, open opener) {
	const rooms = 200

	t.Run("racing joins admit two", func(t *testing.T) {
		t.Parallel()
		const racers = 8
		s := open(t)
		var errs [rooms][racers]error
		race(t, s, rooms, nil, func(ctx context.Context, i int, room string) []func() {
			var fns []func()
			for j := range racers {
				fns = append(fns, func() { _, errs[i][j] = s.Join(ctx, room, member(fmt.Sprint("p", j))) })
			}
			return fns
		})
		for i := range rooms {
			var won []string
			for j, err := range errs[i] {
				if err == nil {
					won = append(won, fmt.Sprint("p", j))
				} else if !errors.Is(err, session.ErrRoomFull) {
					t.Errorf("room %d: Join(p%d) = %v, want nil or %v", i, j, err, session.ErrRoomFull)
				}
			}
			got := memberIDs(getRoom(t, s, fmt.Sprint("r", i)))
			slices.Sort(got)
			if len(won) != 2 || !slices.Equal(got, won) {
				t.Fatalf("room %d: %d Joins succeeded (%v), members %v; want 2, the same", i, len(won), won, got)
			}
		}
	})

	t.Run("racing SetKeys fix one group", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var errs [rooms][2]error
		race(t, s, rooms, []string{"a", "b"}, func(ctx context.Context, i int, room string) []func() {
			return []func(){
				func() { _, errs[i][0] = s.SetKey(ctx, room, "a", "modp14", "aa") },
				func() { _, errs[i][1] = s.SetKey(ctx, room, "b", "x25519", "bb") },
			}
		})
		for i := range rooms {
			r := getRoom(t, s, fmt.Sprint("r", i))
			a, _ := r.Member("a")
			b, _ := r.Member("b")
			ea, eb := errs[i][0], errs[i][1]
			switch {
			case ea == nil && errors.Is(eb, session.ErrGroupMismatch):
				if r.Group != "modp14" || a.PublicKey != "aa" || b.PublicKey != "" {
					t.Fatalf("room %d: a won, but Group, keys = %q, %q, %q", i, r.Group, a.PublicKey, b.PublicKey)
				}
			case eb == nil && errors.Is(ea, session.ErrGroupMismatch):
				if r.Group != "x25519" || b.PublicKey != "bb" || a.PublicKey != "" {
					t.Fatalf("room %d: b won, but Group, keys = %q, %q, %q", i, r.Group, a.PublicKey, b.PublicKey)
				}
			default:
				t.Fatalf("room %d: SetKey(a), SetKey(b) = %v, %v; want one nil and one %v", i, ea, eb, session.ErrGroupMismatch)
			}
		}
	})

	t.Run("racing SetKeys by one member store one key", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var errs [rooms][2]error
		race(t, s, rooms, []string{"a"}, func(ctx context.Context, i int, room string) []func() {
			return []func(){
				func() { _, errs[i][0] = s.SetKey(ctx, room, "a", "p256", "k0") },
				func() { _, errs[i][1] = s.SetKey(ctx, room, "a", "p256", "k1") },
			}
		})
		for i := range rooms {
			a, _ := getRoom(t, s, fmt.Sprint("r", i)).Member("a")
			e0, e1 := errs[i][0], errs[i][1]
			switch {
			case e0 == nil && errors.Is(e1, session.ErrKeySet) && a.PublicKey == "k0":
			case e1 == nil && errors.Is(e0, session.ErrKeySet) && a.PublicKey == "k1":
			default:
				t.Fatalf("room %d: SetKey(k0), SetKey(k1) = %v, %v with key %q; want one nil, one %v, and its key", i, e0, e1, a.PublicKey, session.ErrKeySet)
			}
		}
	})

	t.Run("racing appends get distinct sequence numbers", func(t *testing.T) {
		t.Parallel()
		const appendRooms, each = 50, 10
		s := open(t)
		var seqs [appendRooms][2][each]uint64
		var errs [appendRooms][2]error
		race(t, s, appendRooms, []string{"a", "b"}, func(ctx context.Context, i int, room string) []func() {
			var fns []func()
			for k, from := range []string{"a", "b"} {
				fns = append(fns, func() {
					for n := range each {
						seqs[i][k][n], errs[i][k] = s.Append(ctx, room, from, []byte(fmt.Sprint(from, n)))
						if errs[i][k] != nil {
							return
						}
					}
				})
			}
			return fns
		})
		for i := range appendRooms {
			room := fmt.Sprint("r", i)
			var all []uint64
			for k, from := range []string{"a", "b"} {
				wantErr(t, fmt.Sprintf("room %d: Append(%s)", i, from), errs[i][k], nil)
				all = append(all, seqs[i][k][:]...)
				to := []string{"b", "a"}[k]
				var want []session.Message
				for n, seq := range seqs[i][k] {
					want = append(want, session.Message{Seq: seq, From: from, Body: []byte(fmt.Sprint(from, n))})
				}
				checkPending(t, s, room, to, 0, want...)
			}
			slices.Sort(all)
			for n, seq := range all {
				if seq != uint64(n+1) {
					t.Fatalf("room %d: sequence numbers %v, want 1 to %d", i, all, 2*each)
				}
			}
		}
	})
}

func testRoomsAndReady(t *testing.T, open opener) {
	s := open(t)
	wantErr(t, "Ready", s.Ready(t.Context()), nil)
	if got := countRooms(t, s); got != 0 {
		t.Errorf("Rooms of a new store = %d, want 0", got)
	}
	for _, id := range []string{"a", "b", "c"} {
		create(t, s, id, longCfg)
	}
	if got := countRooms(t, s); got != 3 {
		t.Errorf("Rooms = %d, want 3", got)
	}
}

func testClosed(t *testing.T, open opener) {
	s := open(t)
	setup(t, s, "r", longCfg, "a", "b")
	sub := subscribe(t, s, "r")
	wantErr(t, "Close", s.Close(), nil)
	if _, err := drain(t, sub); !errors.Is(err, session.ErrClosed) {
		t.Errorf("subscription Err after Close = %v, want %v", err, session.ErrClosed)
	}
	calls := append(roomCalls("r"), []call{
		{"CreateRoom", func(ctx context.Context, s session.Store) error {
			return s.CreateRoom(ctx, "new", longCfg, 0)
		}},
		{"Publish", func(ctx context.Context, s session.Store) error {
			return s.Publish(ctx, session.Event{Type: session.EventJoined, Room: "r", Peer: "a"})
		}},
		{"Rooms", func(ctx context.Context, s session.Store) error {
			_, err := s.Rooms(ctx)
			return err
		}},
		{"Ready", func(ctx context.Context, s session.Store) error { return s.Ready(ctx) }},
		{"Close", func(context.Context, session.Store) error { return s.Close() }},
	}...)
	for _, c := range calls {
		wantErr(t, c.name+" after Close", c.call(t.Context(), s), session.ErrClosed)
	}
}

// call is a Store method call, for tests that try them all.
type call struct {
	name string
	call func(context.Context, session.Store) error
}

// roomCalls returns a call of every method that names a room, except
// CreateRoom, on room.
func roomCalls(room string) []call {
	return []call{
		{"Room", func(ctx context.Context, s session.Store) error {
			_, err := s.Room(ctx, room)
			return err
		}},
		{"Join", func(ctx context.Context, s session.Store) error {
			_, err := s.Join(ctx, room, member("c"))
			return err
		}},
		{"Reconnect", func(ctx context.Context, s session.Store) error {
			_, err := s.Reconnect(ctx, room, "a", token("a"))
			return err
		}},
		{"Disconnect", func(ctx context.Context, s session.Store) error { return s.Disconnect(ctx, room, "a") }},
		{"Leave", func(ctx context.Context, s session.Store) error { return s.Leave(ctx, room, "a") }},
		{"SetKey", func(ctx context.Context, s session.Store) error {
			_, err := s.SetKey(ctx, room, "a", "x25519", "aa")
			return err
		}},
		{"Append", func(ctx context.Context, s session.Store) error {
			_, err := s.Append(ctx, room, "a", []byte("x"))
			return err
		}},
		{"Pending", func(ctx context.Context, s session.Store) error {
			_, err := s.Pending(ctx, room, "b", 0)
			return err
		}},
		{"Ack", func(ctx context.Context, s session.Store) error { return s.Ack(ctx, room, "b", 1) }},
		{"Touch", func(ctx context.Context, s session.Store) error { return s.Touch(ctx, room) }},
		{"Subscribe", func(ctx context.Context, s session.Store) error {
			_, err := s.Subscribe(ctx, room)
			return err
		}},
	}
}

// race creates rooms r0, r1, … with members, then runs every function
// that racers returns for each room at once, and waits for them.
func race(t *testing.T, s session.Store, rooms int, members []string, racers func(ctx context.Context, i int, room string) []func()) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range rooms {
		room := fmt.Sprint("r", i)
		setup(t, s, room, longCfg, members...)
		for _, fn := range racers(t.Context(), i, room) {
			wg.Go(func() {
				<-start
				fn()
			})
		}
	}
	close(start)
	wg.Wait()
}

// token returns the resume-token hash of member id.
func token(id string) [32]byte { return sha256.Sum256([]byte("resume token of " + id)) }

// member returns member id, with its token hash.
func member(id string) session.Member { return session.Member{ID: id, TokenHash: token(id)} }

// msg returns the message seq from from with body.
func msg(seq uint64, from, body string) session.Message {
	return session.Message{Seq: seq, From: from, Body: []byte(body)}
}

// create creates room id with cfg.
func create(t *testing.T, s session.Store, id string, cfg session.RoomConfig) {
	t.Helper()
	if err := s.CreateRoom(t.Context(), id, cfg, 0); err != nil {
		t.Fatalf("CreateRoom(%q): %v", id, err)
	}
}

// setup creates room id with cfg and joins members to it, in order.
func setup(t *testing.T, s session.Store, id string, cfg session.RoomConfig, members ...string) {
	t.Helper()
	create(t, s, id, cfg)
	for _, m := range members {
		join(t, s, id, m)
	}
}

// join joins member id to room.
func join(t *testing.T, s session.Store, room, id string) session.Room {
	t.Helper()
	r, err := s.Join(t.Context(), room, member(id))
	if err != nil {
		t.Fatalf("Join(%q, %q): %v", room, id, err)
	}
	return r
}

// disconnect disconnects member id from room.
func disconnect(t *testing.T, s session.Store, room, id string) {
	t.Helper()
	if err := s.Disconnect(t.Context(), room, id); err != nil {
		t.Fatalf("Disconnect(%q, %q): %v", room, id, err)
	}
}

// appendMsg appends body from member from and returns its sequence number.
func appendMsg(t *testing.T, s session.Store, room, from, body string) uint64 {
	t.Helper()
	seq, err := s.Append(t.Context(), room, from, []byte(body))
	if err != nil {
		t.Fatalf("Append(%q, %q): %v", room, from, err)
	}
	return seq
}

// getRoom returns a snapshot of room id.
func getRoom(t *testing.T, s session.Store, id string) session.Room {
	t.Helper()
	r, err := s.Room(t.Context(), id)
	if err != nil {
		t.Fatalf("Room(%q): %v", id, err)
	}
	return r
}

// countRooms returns s.Rooms.
func countRooms(t *testing.T, s session.Store) int {
	t.Helper()
	n, err := s.Rooms(t.Context())
	if err != nil {
		t.Fatalf("Rooms: %v", err)
	}
	return n
}

// memberIDs returns the IDs of r's members, in order.
func memberIDs(r session.Room) []string {
	var ids []string
	for _, m := range r.Members {
		ids = append(ids, m.ID)
	}
	return ids
}

// checkPending checks that member id's messages after after are want.
func checkPending(t *testing.T, s session.Store, room, id string, after uint64, want ...session.Message) {
	t.Helper()
	got, err := s.Pending(t.Context(), room, id, after)
	if err != nil {
		t.Fatalf("Pending(%q, %q, %d): %v", room, id, after, err)
	}
	if !slices.EqualFunc(got, want, func(a, b session.Message) bool {
		return a.Seq == b.Seq && a.From == b.From && bytes.Equal(a.Body, b.Body)
	}) {
		t.Errorf("Pending(%q, %q, %d) = %s, want %s", room, id, after, fmtMessages(got), fmtMessages(want))
	}
}

func fmtMessages(ms []session.Message) string {
	var b bytes.Buffer
	b.WriteString("[")
	for i, m := range ms {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%d:%s:%q", m.Seq, m.From, m.Body)
	}
	b.WriteString("]")
	return b.String()
}

// subscribe subscribes to room until the test ends.
func subscribe(t *testing.T, s session.Store, room string) *session.Subscription {
	t.Helper()
	sub, err := s.Subscribe(t.Context(), room)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", room, err)
	}
	return sub
}

// recv returns sub's next event, failing if none comes within patience.
func recv(t *testing.T, sub *session.Subscription) session.Event {
	t.Helper()
	select {
	case ev, ok := <-sub.C:
		if !ok {
			t.Fatalf("subscription ended (Err %v), want an event", sub.Err())
		}
		return *ev
	case <-time.After(patience):
		t.Fatalf("no event within %v", patience)
		panic("unreachable")
	}
}

// drain reads sub until it ends and returns its events and Err, failing if
// it does not end within patience.
func drain(t *testing.T, sub *session.Subscription) ([]session.Event, error) {
	t.Helper()
	timeout := time.After(patience)
	var evs []session.Event
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				return evs, sub.Err()
			}
			evs = append(evs, *ev)
		case <-timeout:
			t.Fatalf("subscription did not end within %v (%d events read)", patience, len(evs))
		}
	}
}

// eventEqual reports whether a and b are the same event.
func eventEqual(a, b session.Event) bool {
	return a.Type == b.Type && a.Room == b.Room && a.Peer == b.Peer && a.Key == b.Key &&
		a.Group == b.Group && a.Seq == b.Seq && bytes.Equal(a.Body, b.Body) && a.Reason == b.Reason &&
		a.Conn == b.Conn
}

// waitFor polls cond until it holds, failing the test if it does not within
// timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantErr reports an error unless errors.Is(got, want); want nil means no
// error.
func wantErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Errorf("%s: got error %v, want %v", what, got, want)
	}
}
