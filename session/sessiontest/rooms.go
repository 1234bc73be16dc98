package sessiontest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/session"
)

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
			{"negative MaxPendingBytes", func(c *session.RoomConfig) { c.MaxPendingBytes = -1 }},
			{"negative EmptyTTL", func(c *session.RoomConfig) { c.EmptyTTL = -time.Second }},
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
		// b, removed, is told that its grace is over, once.
		_, err := s.Reconnect(t.Context(), "r", "b", token("a"))
		wantErr(t, "Reconnect(b) with a wrong token", err, session.ErrNotMember)
		_, err = s.Reconnect(t.Context(), "r", "b", token("b"))
		wantErr(t, "Reconnect(b)", err, session.ErrResumeExpired)
		_, err = s.Reconnect(t.Context(), "r", "b", token("b"))
		wantErr(t, "second Reconnect(b)", err, session.ErrNotMember)
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
		// Whether or not the store's sweeper removed b already.
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
		wantErr(t, "Disconnect(c)", s.Disconnect(t.Context(), "r", "c", 1), session.ErrNotMember)
	})

	t.Run("missing room", func(t *testing.T) {
		s := open(t)
		wantErr(t, "Disconnect", s.Disconnect(t.Context(), "nope", "a", 1), session.ErrRoomNotFound)
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
		keyAll(t, s, "r", "a", "b")
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
