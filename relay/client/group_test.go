package client_test

import (
	"context"
	"crypto/rand"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/wire"
)

// Group pinning, legacy groups, and the relay's other last words (peer
// expired, connection superseded), against a scripted relay that says
// what the real one never should.

const fakeRoomID = "6f1c9a52-3b7e-4d0a-9e57-1b2c3d4e5f60"

func mustGroupKey(t *testing.T, g *dh.Group) *dh.PrivateKey {
	t.Helper()
	k, err := g.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestGroupPinning: a relay (or proxy) that reports another group than the
// one the client asked for, in any of the four frames that carry one, is
// refused, and so is a legacy group the client did not allow. The first
// case is issue 12's downgrade: create x25519 answered with a modp5 room.
func TestGroupPinning(t *testing.T) {
	x := mustKey(t).PublicKey().Hex()
	m5 := mustGroupKey(t, dh.MODP5()).PublicKey().Hex()
	x25519 := dh.X25519()
	tests := []struct {
		name  string
		join  bool      // JoinGroup rather than Create
		group *dh.Group // asked for
		allow bool      // Options.AllowLegacyGroups
		// The groups the relay reports in room, key_ok, peer_key and
		// handshake_complete, and the peer key it forwards.
		room, keyOK, peerKey, hs, peerHex string
		want                              error  // nil: the handshake completes
		at                                string // the step that fails: enter, key or handshake (key or handshake: the frames race with key_ok)
	}{
		{"create x25519, room modp5", false, x25519, false, "modp5", "", "", "", "", client.ErrGroupChanged, "enter"},
		{"create x25519, room p256", false, x25519, false, "p256", "", "", "", "", client.ErrGroupChanged, "enter"},
		{"create x25519, room without group", false, x25519, false, "", "", "", "", "", client.ErrGroupChanged, "enter"},
		{"create x25519, key_ok modp5", false, x25519, false, "x25519", "modp5", "", "", "", client.ErrGroupChanged, "key"},
		{"create x25519, peer_key modp5", false, x25519, false, "x25519", "x25519", "modp5", "modp5", m5, client.ErrGroupChanged, "handshake"},
		{"create x25519, handshake_complete modp5", false, x25519, false, "x25519", "x25519", "x25519", "modp5", x, client.ErrGroupChanged, "handshake"},
		{"create x25519, legacy allowed, room modp5", false, x25519, true, "modp5", "", "", "", "", client.ErrGroupChanged, "enter"},
		{"join x25519, room modp5", true, x25519, false, "modp5", "", "", "", "", client.ErrGroupChanged, "enter"},
		{"join x25519, room not fixed, peer_key modp5", true, x25519, false, "", "x25519", "modp5", "modp5", m5, client.ErrGroupChanged, "handshake"},
		{"join x25519, room x25519", true, x25519, false, "x25519", "x25519", "x25519", "x25519", x, nil, ""},
		{"join, room modp5", true, nil, false, "modp5", "", "", "", "", client.ErrLegacyGroup, "enter"},
		{"join, room 14 (an alias, not a name)", true, nil, false, "14", "", "", "", "", dh.ErrUnknownGroup, "enter"},
		{"join, room p256, peer_key x25519", true, nil, false, "p256", "p256", "x25519", "x25519", x, client.ErrGroupChanged, "handshake"},
		{"join, legacy allowed, room modp5", true, nil, true, "modp5", "modp5", "modp5", "modp5", m5, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := fakeRelay(t, wire.Subprotocol, func(ctx context.Context, r *scripted) {
				f := r.read(ctx)
				if f == nil {
					return
				}
				r.write(ctx, map[string]any{"type": "room", "id": f["id"], "room": fakeRoomID, "peer": "a1",
					"resume_token": "tok", "group": tt.room, "peers": 1, "resumed": false})
				if tt.at == "enter" {
					if f := r.read(ctx); f["type"] != "leave" {
						t.Errorf("after a refused room the client sent %v, want leave", f)
					}
					r.read(ctx)
					return
				}
				f = r.read(ctx)
				if f["type"] != "key" {
					t.Errorf("client sent %v, want key", f)
					return
				}
				want := tt.room
				if tt.group != nil {
					want = tt.group.Name()
				}
				if f["group"] != want {
					t.Errorf("key in group %v, want %s", f["group"], want)
				}
				r.write(ctx, map[string]any{"type": "key_ok", "id": f["id"], "group": tt.keyOK})
				if tt.at != "key" {
					r.write(ctx, map[string]any{"type": "peer_key", "public_key": tt.peerHex, "group": tt.peerKey})
					r.write(ctx, map[string]any{"type": "handshake_complete", "group": tt.hs})
				}
				r.read(ctx) // until the client goes
			})
			ctx := testContext(t)
			c := dial(t, ctx, url, &client.Options{AllowLegacyGroups: tt.allow})
			var err error
			step := "enter"
			if tt.join {
				_, err = c.JoinGroup(ctx, fakeRoomID, tt.group)
			} else {
				_, err = c.Create(ctx, tt.group)
			}
			if err == nil {
				step = "key"
				_, err = c.SendKey(ctx)
			}
			var hs *client.Handshake
			if err == nil {
				step = "handshake"
				hs, err = c.Handshake(ctx)
			}
			if tt.want == nil {
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				if hs.Group.Name() != tt.hs {
					t.Errorf("handshake in %s, want %s", hs.Group, tt.hs)
				}
				return
			}
			if tt.at == "handshake" && step == "key" {
				step = "handshake" // peer_key came before SendKey returned
			}
			if !errors.Is(err, tt.want) || step != tt.at {
				t.Fatalf("%s: %v; want %s to fail with %v", step, err, tt.at, tt.want)
			}
			var ge *client.GroupError
			if !errors.As(err, &ge) {
				t.Fatalf("%v is not a *GroupError", err)
			}
			if tt.want == client.ErrGroupChanged && tt.group != nil && ge.Want != tt.group.Name() {
				t.Errorf("GroupError.Want = %q, want %q", ge.Want, tt.group.Name())
			}
			t.Logf("refused: %v", err)
			if tt.at == "enter" {
				if room, ok := c.Room(); ok {
					t.Errorf("in room %+v after a refused room reply", room)
				}
				return
			}
			// The room is unusable.
			if _, err := c.Send(ctx, []byte("x")); !errors.Is(err, tt.want) {
				t.Errorf("Send after the refusal = %v, want %v", err, tt.want)
			}
			if _, err := c.Handshake(ctx); !errors.Is(err, tt.want) {
				t.Errorf("Handshake after the refusal = %v, want %v", err, tt.want)
			}
			if tt.at == "handshake" { // a frame that answers no request: Next reports it
				for {
					ev, err := c.Next(ctx)
					if err != nil {
						if !errors.Is(err, tt.want) {
							t.Errorf("Next = %v, want %v", err, tt.want)
						}
						break
					}
					if ev.Type != client.EventPeerKey {
						t.Errorf("Next = %v event", ev.Type)
					}
				}
			}
		})
	}
}

// TestLegacyGroupRefusedLocally: the client does not even ask for modp5
// unless the options allow it.
func TestLegacyGroupRefusedLocally(t *testing.T) {
	url := fakeRelay(t, wire.Subprotocol, func(ctx context.Context, r *scripted) {
		if f := r.read(ctx); f != nil {
			t.Errorf("the client sent %v", f)
		}
	})
	ctx := testContext(t)
	c := dial(t, ctx, url, nil)
	if _, err := c.Create(ctx, dh.MODP5()); !errors.Is(err, client.ErrLegacyGroup) {
		t.Errorf("Create(modp5) = %v, want ErrLegacyGroup", err)
	}
	if _, err := c.JoinGroup(ctx, fakeRoomID, dh.MODP5()); !errors.Is(err, client.ErrLegacyGroup) {
		t.Errorf("JoinGroup(modp5) = %v, want ErrLegacyGroup", err)
	}
}

// TestResumeGroupChanged: a room reply to resume in another group makes
// the room unusable.
func TestResumeGroupChanged(t *testing.T) {
	peer := mustKey(t)
	var conns atomic.Int32
	url := fakeRelay(t, wire.Subprotocol, func(ctx context.Context, r *scripted) {
		if conns.Add(1) == 1 {
			r.handshake(ctx, peer.PublicKey().Hex())
			r.ws.CloseNow()
			return
		}
		f := r.read(ctx)
		if f["type"] != "resume" {
			t.Errorf("client sent %v, want resume", f)
			return
		}
		r.write(ctx, map[string]any{"type": "room", "id": f["id"], "room": fakeRoomID, "peer": "a1",
			"resume_token": "tok", "group": "modp5", "peers": 2, "resumed": true})
		r.read(ctx)
	})
	ctx := testContext(t)
	c := dial(t, ctx, url, nil)
	if _, err := c.Create(ctx, dh.X25519()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	waitDisconnected(t, ctx, c)
	if err := c.Resume(ctx); !errors.Is(err, client.ErrGroupChanged) {
		t.Fatalf("Resume = %v, want ErrGroupChanged", err)
	}
	if _, err := c.Send(ctx, []byte("x")); !errors.Is(err, client.ErrGroupChanged) {
		t.Errorf("Send = %v, want ErrGroupChanged", err)
	}
}

// waitDisconnected reads events until Next reports ErrDisconnected, and
// returns that error.
func waitDisconnected(t *testing.T, ctx context.Context, c *client.Client) error {
	t.Helper()
	for {
		_, err := c.Next(ctx)
		if errors.Is(err, client.ErrDisconnected) {
			return err
		}
		if err != nil {
			t.Fatalf("Next = %v, want ErrDisconnected", err)
		}
	}
}

// TestSuperseded: close 4409 means another connection holds the place:
// the client reports it and does not resume.
func TestSuperseded(t *testing.T) {
	peer := mustKey(t)
	var conns atomic.Int32
	url := fakeRelay(t, wire.Subprotocol, func(ctx context.Context, r *scripted) {
		if conns.Add(1) > 1 {
			t.Errorf("the client connected again after close 4409: %v", r.read(ctx))
			return
		}
		r.handshake(ctx, peer.PublicKey().Hex())
		r.ws.Close(wire.CloseSuperseded, "superseded")
	})
	ctx := testContext(t)
	c := dial(t, ctx, url, nil)
	if _, err := c.Create(ctx, dh.X25519()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waitDisconnected(t, ctx, c); !errors.Is(err, client.ErrSuperseded) {
		t.Errorf("Next = %v, want ErrSuperseded too", err)
	}
	if err := c.Resume(ctx); !errors.Is(err, client.ErrSuperseded) {
		t.Errorf("Resume = %v, want ErrSuperseded", err)
	}
	if _, err := c.Send(ctx, []byte("x")); !errors.Is(err, client.ErrSuperseded) {
		t.Errorf("Send = %v, want ErrSuperseded", err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// TestPeerExpired: peer_left "expired" ends the exchange with the peer as
// "left" does: nothing more is sealed for the old peer, a new peer's key
// is accepted (not ErrPeerKeyChanged), and messages go to the new peer.
func TestPeerExpired(t *testing.T) {
	peer1, peer2 := mustKey(t), mustKey(t)
	got := make(chan string, 1)
	newPeer := make(chan struct{})
	url := fakeRelay(t, wire.Subprotocol, func(ctx context.Context, r *scripted) {
		clientKey := r.handshake(ctx, peer1.PublicKey().Hex())
		if clientKey == nil {
			return
		}
		r.write(ctx, map[string]any{"type": "peer_left", "reason": "expired"})
		select {
		case <-newPeer:
		case <-ctx.Done():
			return
		}
		r.write(ctx, map[string]any{"type": "peer_joined", "resumed": false})
		r.write(ctx, map[string]any{"type": "peer_key", "public_key": peer2.PublicKey().Hex(), "group": "x25519"})
		r.write(ctx, map[string]any{"type": "handshake_complete", "group": "x25519"})
		for {
			f := r.read(ctx)
			if f == nil {
				return
			}
			if f["type"] != "msg" {
				continue
			}
			r.write(ctx, map[string]any{"type": "sent", "id": f["id"], "seq": 1})
			body, _ := decodeBody(f["body"])
			pt, err := peerChannel(t, peer2, clientKey).Open(body)
			if err != nil {
				got <- "error: " + err.Error()
			} else {
				got <- string(pt)
			}
		}
	})
	ctx := testContext(t)
	c := dial(t, ctx, url, nil)
	if _, err := c.Create(ctx, dh.X25519()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendKey(ctx); err != nil {
		t.Fatal(err)
	}
	var events []string
	for {
		ev, err := c.Next(ctx)
		if err == nil && ev.Type == client.EventPeerLeft {
			if ev.Reason != wire.ReasonExpired {
				t.Errorf("peer_left reason %q, want expired", ev.Reason)
			}
			sendCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := c.Send(sendCtx, []byte("to nobody"))
			cancel()
			if !errors.Is(err, client.ErrHandshakeIncomplete) {
				t.Errorf("Send after the peer expired = %v, want ErrHandshakeIncomplete", err)
			}
			close(newPeer)
		}
		if err != nil {
			t.Fatalf("Next after %v: %v", events, err)
		}
		events = append(events, ev.Type.String()+" "+string(ev.Reason))
		if ev.Type == client.EventPeerKey && ev.PeerKey.Equal(peer2.PublicKey()) {
			break
		}
	}
	t.Logf("events: %q", events)
	hs, err := c.Handshake(ctx)
	if err != nil || !hs.PeerKey.Equal(peer2.PublicKey()) {
		t.Fatalf("Handshake with the new peer = %v, %v", hs, err)
	}
	if _, err := c.Send(ctx, []byte("to the new peer")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "to the new peer" {
		t.Errorf("the new peer read %q", s)
	}
}
