package sessiontest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/session"
)

func testMessages(t *testing.T, open opener) {
	t.Run("sequence numbers and mailboxes", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		keyAll(t, s, "r", "a", "b")
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
		keyAll(t, s, "r", "a", "b")
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

	t.Run("no message without both keys", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a")
		keyAll(t, s, "r", "a")
		_, err := s.Append(t.Context(), "r", "a", "", []byte("alone"))
		wantErr(t, "Append(a) with no peer", err, session.ErrHandshakeIncomplete)
		join(t, s, "r", "b")
		_, err = s.Append(t.Context(), "r", "a", "", []byte("to a keyless peer"))
		wantErr(t, "Append(a) before b's key", err, session.ErrHandshakeIncomplete)
		_, err = s.Append(t.Context(), "r", "b", "", []byte("from a keyless member"))
		wantErr(t, "Append(b) before b's key", err, session.ErrHandshakeIncomplete)
		if got := getRoom(t, s, "r").LastSeq; got != 0 {
			t.Errorf("LastSeq after refused Appends = %d, want 0", got)
		}
		keyAll(t, s, "r", "b")
		if got := appendMsg(t, s, "r", "a", "now"); got != 1 {
			t.Errorf("Append(a) after both keys = %d, want 1", got)
		}
		checkPending(t, s, "r", "b", 0, msg(1, "a", "now"))
	})

	t.Run("disconnected recipient", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		keyAll(t, s, "r", "a", "b")
		disconnect(t, s, "r", "b")
		appendMsg(t, s, "r", "a", "while away")
		_, err := s.Reconnect(t.Context(), "r", "b", token("b"))
		wantErr(t, "Reconnect(b)", err, nil)
		checkPending(t, s, "r", "b", 0, msg(1, "a", "while away"))
	})

	t.Run("bodies are copied", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		keyAll(t, s, "r", "a", "b")
		buf := []byte("ciphertext")
		if _, err := s.Append(t.Context(), "r", "a", "", buf); err != nil {
			t.Fatalf("Append: %v", err)
		}
		copy(buf, "XXXXXXXXXX")
		if _, err := s.Append(t.Context(), "r", "a", "", nil); err != nil {
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
		_, err := s.Append(ctx, "r", "c", "", []byte("x"))
		wantErr(t, "Append(c)", err, session.ErrNotMember)
		_, err = s.Pending(ctx, "r", "c", 0)
		wantErr(t, "Pending(c)", err, session.ErrNotMember)
		wantErr(t, "Ack(c)", s.Ack(ctx, "r", "c", 1), session.ErrNotMember)
	})

	t.Run("missing room", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		_, err := s.Append(ctx, "nope", "a", "", []byte("x"))
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
			return s.Disconnect(ctx, room, "a", 1)
		}, true},
		{"Leave", nil, func(ctx context.Context, room string) error {
			return s.Leave(ctx, room, "b")
		}, true},
		{"SetKey", func(ctx context.Context, room string) error {
			// A new member takes b's seat, to store a key of its own.
			if err := s.Leave(ctx, room, "b"); err != nil {
				return err
			}
			_, err := s.Join(ctx, room, member("c"))
			return err
		}, func(ctx context.Context, room string) error {
			_, err := s.SetKey(ctx, room, "c", "x25519", "cc")
			return err
		}, true},
		{"Append", nil, func(ctx context.Context, room string) error {
			_, err := s.Append(ctx, room, "b", "", []byte("x"))
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
			keyAll(t, s, room, "a", "b")
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
		keyAll(t, s, "r", "a", "b")
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
