package sessiontest

import (
	"context"
	"errors"
	"testing"

	"github.com/keyrelay/keyrelay/session"
)

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
		{"Disconnect", func(ctx context.Context, s session.Store) error { return s.Disconnect(ctx, room, "a", 1) }},
		{"Leave", func(ctx context.Context, s session.Store) error { return s.Leave(ctx, room, "a") }},
		{"SetKey", func(ctx context.Context, s session.Store) error {
			_, err := s.SetKey(ctx, room, "a", "x25519", "aa")
			return err
		}},
		{"Append", func(ctx context.Context, s session.Store) error {
			_, err := s.Append(ctx, room, "a", "", []byte("x"))
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
