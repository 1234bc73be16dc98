package sessiontest

import (
	"testing"

	"github.com/keyrelay/keyrelay/session"
)

// testGenerations checks the seat generations that let the newest of
// several connections of one member hold its seat.
func testGenerations(t *testing.T, open opener) {
	t.Run("Join starts at 1, Reconnect counts up", func(t *testing.T) {
		s := open(t)
		r := func() session.Member {
			m, _ := getRoom(t, s, "r").Member("a")
			return m
		}
		setup(t, s, "r", longCfg, "a")
		if got := r().Generation; got != 1 {
			t.Fatalf("Generation after Join = %d, want 1", got)
		}
		for want := uint64(2); want <= 3; want++ {
			// A connected member may be resumed too: the newest wins.
			room, err := s.Reconnect(t.Context(), "r", "a", token("a"))
			wantErr(t, "Reconnect", err, nil)
			if m, _ := room.Member("a"); m.Generation != want {
				t.Errorf("Reconnect's room: Generation = %d, want %d", m.Generation, want)
			}
			if got := r().Generation; got != want {
				t.Errorf("Generation after Reconnect = %d, want %d", got, want)
			}
		}
	})

	t.Run("a superseded connection's Disconnect changes nothing", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a")
		_, err := s.Reconnect(t.Context(), "r", "a", token("a")) // generation 2 holds the seat
		wantErr(t, "Reconnect", err, nil)
		wantErr(t, "Disconnect(generation 1)", s.Disconnect(t.Context(), "r", "a", 1), session.ErrSuperseded)
		if m, _ := getRoom(t, s, "r").Member("a"); !m.Connected {
			t.Fatal("generation 1's Disconnect disconnected the seat generation 2 holds")
		}
		wantErr(t, "Disconnect(generation 2)", s.Disconnect(t.Context(), "r", "a", 2), nil)
		if m, _ := getRoom(t, s, "r").Member("a"); m.Connected || m.DisconnectedAt.IsZero() {
			t.Fatalf("after the holder's Disconnect: %+v, want disconnected", m)
		}
	})
}

// testReflection checks that a member cannot store the other member's
// public key as its own.
func testReflection(t *testing.T, open opener) {
	s := open(t)
	setup(t, s, "r", longCfg, "a", "b")
	keyAll(t, s, "r", "a")
	_, err := s.SetKey(t.Context(), "r", "b", "x25519", "key of a")
	wantErr(t, "SetKey(b, a's key)", err, session.ErrKeyReflected)
	if m, _ := getRoom(t, s, "r").Member("b"); m.PublicKey != "" {
		t.Fatalf("b's key after a refused SetKey = %q, want none", m.PublicKey)
	}
	_, err = s.SetKey(t.Context(), "r", "b", "x25519", "key of b")
	wantErr(t, "SetKey(b, its own key)", err, nil)
}
