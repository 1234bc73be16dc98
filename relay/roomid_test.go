package relay_test

import (
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/wire"
)

// TestClientRoomIDs: create may name its room only when the relay allows
// it, with IDs of the configured shape; join and resume then accept them.
func TestClientRoomIDs(t *testing.T) {
	good := "Our-Room_" + strings.Repeat("x", 20) // 29 characters
	tests := []struct {
		name   string
		cfg    relay.Config
		room   string
		create wire.Code // error code; "" means created
		join   wire.Code // join error code for a created or a made-up room
	}{
		{"off: create refused", relay.Config{}, good, wire.CodeBadRequest, wire.CodeBadRequest},
		{"on", relay.Config{ClientRoomIDs: true}, good, "", ""},
		{"on: too short", relay.Config{ClientRoomIDs: true}, "short-room-id", wire.CodeBadRequest, wire.CodeBadRequest},
		{"on: longer minimum", relay.Config{ClientRoomIDs: true, MinRoomIDLength: 40}, good, wire.CodeBadRequest, wire.CodeBadRequest},
		{"on: too long", relay.Config{ClientRoomIDs: true}, strings.Repeat("a", 65), wire.CodeBadRequest, wire.CodeBadRequest},
		{"on: slash", relay.Config{ClientRoomIDs: true}, good + "/x", wire.CodeBadRequest, wire.CodeBadRequest},
		{"on: space", relay.Config{ClientRoomIDs: true}, good + " x", wire.CodeBadRequest, wire.CodeBadRequest},
		{"on: non-ASCII", relay.Config{ClientRoomIDs: true}, good + "é", wire.CodeBadRequest, wire.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newRelay(t, tt.cfg)
			a := tr.dial(t)
			a.send(map[string]any{"type": "create", "id": 1, "room": tt.room})
			if tt.create != "" {
				if f := a.expectError(tt.create); f.num("id") != 1 {
					t.Errorf("error without the create's id: %v", f)
				}
			} else if got := a.expect(wire.TypeRoom).str("room"); got != tt.room {
				t.Fatalf("room %q, want %q", got, tt.room)
			}
			b := tr.dial(t)
			b.send(map[string]any{"type": "join", "room": tt.room})
			if tt.join != "" {
				b.expectError(tt.join)
				// The connection survives: a relay-made room still works.
				b.send(map[string]any{"type": "create"})
				b.expect(wire.TypeRoom)
				return
			}
			b.expect(wire.TypeRoom)
			a.expect(wire.TypePeerJoined)
			// The ID is taken now.
			c := tr.dial(t)
			c.send(map[string]any{"type": "create", "room": tt.room})
			c.expectError(wire.CodeRoomExists)
		})
	}
}
