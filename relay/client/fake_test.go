package client_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/wire"
)

// The tests in this file run the client against a scripted relay, to check
// how it handles what the real relay never does: a relay that swaps keys,
// repeats or forges messages, or speaks another subprotocol.

// fakeRelay serves one WebSocket connection at a time with script, which
// plays the relay (and the other peer) frame by frame.
func fakeRelay(t *testing.T, subprotocol string, script func(ctx context.Context, r *scripted)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		opts := &websocket.AcceptOptions{}
		if subprotocol != "" {
			opts.Subprotocols = []string{subprotocol}
		}
		ws, err := websocket.Accept(w, req, opts)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer ws.CloseNow()
		script(req.Context(), &scripted{t: t, ws: ws})
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// scripted is the relay's end of a connection. Its methods report failures
// with t.Error (they run outside the test goroutine) and return zero values.
type scripted struct {
	t  *testing.T
	ws *websocket.Conn
}

func (r *scripted) read(ctx context.Context) map[string]any {
	_, data, err := r.ws.Read(ctx)
	if err != nil {
		return nil
	}
	var f map[string]any
	if err := json.Unmarshal(data, &f); err != nil {
		r.t.Errorf("client sent %s: %v", data, err)
	}
	return f
}

func (r *scripted) write(ctx context.Context, f map[string]any) {
	data, _ := json.Marshal(f)
	r.writeRaw(ctx, websocket.MessageText, data)
}

func (r *scripted) writeRaw(ctx context.Context, typ websocket.MessageType, data []byte) {
	if err := r.ws.Write(ctx, typ, data); err != nil {
		r.t.Errorf("write: %v", err)
	}
}

// handshake plays create, key and the peer's key: it answers the client's
// create and key, sends peerKey (the other peer's, or whatever the script
// wants the client to see) and handshake_complete, and returns the
// client's public key.
func (r *scripted) handshake(ctx context.Context, peerKey string) *dh.PublicKey {
	f := r.read(ctx)
	if f["type"] != "create" {
		r.t.Errorf("first frame %v, want create", f)
		return nil
	}
	r.write(ctx, map[string]any{"type": "room", "id": f["id"], "room": "6f1c9a52-3b7e-4d0a-9e57-1b2c3d4e5f60",
		"peer": "a1", "resume_token": "tok", "group": "x25519", "peers": 1, "resumed": false})
	f = r.read(ctx)
	if f["type"] != "key" || f["group"] != "x25519" {
		r.t.Errorf("second frame %v, want key with group x25519", f)
		return nil
	}
	r.write(ctx, map[string]any{"type": "key_ok", "id": f["id"], "group": "x25519"})
	pub, err := dh.X25519().ParsePublicKey(f["public_key"].(string))
	if err != nil {
		r.t.Errorf("client key: %v", err)
		return nil
	}
	if peerKey == "" {
		peerKey = pub.Hex() // reflect the client's own key
	}
	r.write(ctx, map[string]any{"type": "peer_key", "public_key": peerKey, "group": "x25519"})
	r.write(ctx, map[string]any{"type": "handshake_complete", "group": "x25519"})
	return pub
}

// peerChannel returns the other peer's Channel for a client key.
func peerChannel(t *testing.T, priv *dh.PrivateKey, clientKey *dh.PublicKey) *dh.Channel {
	z, err := priv.SharedSecret(clientKey)
	if err != nil {
		t.Error(err)
		return nil
	}
	ch, err := dh.NewChannel(z, priv.PublicKey(), clientKey)
	if err != nil {
		t.Error(err)
	}
	return ch
}

func mustKey(t *testing.T) *dh.PrivateKey {
	t.Helper()
	k, err := dh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDialRequiresSubprotocol(t *testing.T) {
	for _, proto := range []string{"", "keyrelay.v0"} {
		url := fakeRelay(t, proto, func(ctx context.Context, r *scripted) { r.read(ctx) })
		ctx := testContext(t)
		if c, err := client.Dial(ctx, url, nil); err == nil {
			c.Close()
			t.Errorf("Dial to a relay selecting %q succeeded", proto)
		}
	}
}

// TestHostileRelay: keys the client must refuse whatever the relay says.
func TestHostileRelay(t *testing.T) {
	tests := []struct {
		name    string
		peerKey string // "" reflects the client's key
		want    error
	}{
		{"reflected key", "", dh.ErrSameKey},
		{"low-order key", strings.Repeat("00", 32), dh.ErrInvalidPublicKey},
		{"malformed key", "zz", dh.ErrMalformedKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := fakeRelay(t, wire.Subprotocol, func(ctx context.Context, r *scripted) {
				r.handshake(ctx, tt.peerKey)
				r.read(ctx) // until the client goes
			})
			ctx := testContext(t)
			c := dial(t, ctx, url, nil)
			if _, err := c.Create(ctx, dh.X25519()); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Handshake(ctx); !errors.Is(err, tt.want) {
				t.Errorf("Handshake = %v, want %v", err, tt.want)
			}
			if _, err := c.Send(ctx, []byte("x")); !errors.Is(err, tt.want) {
				t.Errorf("Send = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestKeySwap: a relay that sends another key for the same peer after the
// handshake makes the room unusable rather than silently re-keying, and
// Next reports it at once, with the safety number the swapped key gives.
func TestKeySwap(t *testing.T) {
	peer, other := mustKey(t), mustKey(t)
	clientKey := make(chan *dh.PublicKey, 1)
	url := fakeRelay(t, wire.Subprotocol, func(ctx context.Context, r *scripted) {
		clientKey <- r.handshake(ctx, peer.PublicKey().Hex())
		r.write(ctx, map[string]any{"type": "peer_key", "public_key": other.PublicKey().Hex(), "group": "x25519"})
		r.write(ctx, map[string]any{"type": "peer_key", "public_key": peer.PublicKey().Hex(), "group": "x25519"})
		// A stray error frame marks, through Next, that the frames were read.
		r.write(ctx, map[string]any{"type": "error", "code": "internal", "message": "marker"})
		r.read(ctx)
	})
	ctx := testContext(t)
	c := dial(t, ctx, url, nil)
	if _, err := c.Create(ctx, dh.X25519()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Handshake(ctx); err != nil && !errors.Is(err, client.ErrPeerKeyChanged) {
		t.Fatal(err)
	}
	if ev, err := c.Next(ctx); err != nil || ev.Type != client.EventPeerKey || !ev.PeerKey.Equal(peer.PublicKey()) {
		t.Fatalf("first Next = %v, %v; want the peer's key", ev.Type, err)
	}
	_, err := c.Next(ctx)
	var kerr *client.KeyChangeError
	if !errors.As(err, &kerr) || !errors.Is(err, client.ErrPeerKeyChanged) {
		t.Fatalf("second Next = %v, want a *KeyChangeError", err)
	}
	if !kerr.Old.Equal(peer.PublicKey()) || !kerr.New.Equal(other.PublicKey()) || kerr.Err != nil {
		t.Errorf("KeyChangeError = %+v, want the old and the new key", kerr)
	}
	mine := <-clientKey
	want, _ := dh.SafetyNumber(mine, other.PublicKey())
	before, _ := dh.SafetyNumber(mine, peer.PublicKey())
	if kerr.SafetyNumber != want || want == before {
		t.Errorf("SafetyNumber %q, want %q (not the exchange's %q)", kerr.SafetyNumber, want, before)
	}
	// Reported once: the key going back is not a new event.
	var e *client.Error
	if _, err := c.Next(ctx); !errors.As(err, &e) || e.Message != "marker" {
		t.Fatalf("third Next = %v, want the marker", err)
	}
	if _, err := c.Send(ctx, []byte("x")); !errors.Is(err, client.ErrPeerKeyChanged) {
		t.Errorf("Send after the swap = %v, want ErrPeerKeyChanged", err)
	}
	if _, err := c.Handshake(ctx); !errors.Is(err, client.ErrPeerKeyChanged) {
		t.Errorf("Handshake after the swap = %v, want ErrPeerKeyChanged", err)
	}
}

// TestForgedMessages: repeated seqs are dropped, a body whose counter was
// already accepted (a copy sent again after a resume) is dropped silently,
// altered bodies are refused with ErrBadMessage, all of them are
// acknowledged, and the messages after them still arrive.
func TestForgedMessages(t *testing.T) {
	peer := mustKey(t)
	acked := make(chan struct{})
	url := fakeRelay(t, wire.Subprotocol, func(ctx context.Context, r *scripted) {
		clientKey := r.handshake(ctx, peer.PublicKey().Hex())
		if clientKey == nil {
			return
		}
		ch := peerChannel(t, peer, clientKey)
		seal := func(s string) string {
			b, _ := ch.Seal([]byte(s))
			return base64.StdEncoding.EncodeToString(b)
		}
		one := seal("one")
		tampered := []byte(seal("two"))
		tampered[20] ^= 1
		r.write(ctx, map[string]any{"type": "msg", "seq": 1, "body": one})
		r.write(ctx, map[string]any{"type": "msg", "seq": 1, "body": one})              // repeated seq: dropped
		r.write(ctx, map[string]any{"type": "msg", "seq": 2, "body": one})              // copy: dropped silently
		r.write(ctx, map[string]any{"type": "msg", "seq": 3, "body": string(tampered)}) // altered
		r.write(ctx, map[string]any{"type": "msg", "seq": 4, "body": "not base64!"})
		r.writeRaw(ctx, websocket.MessageBinary, []byte{1, 2, 3}) // ignored
		r.writeRaw(ctx, websocket.MessageText, []byte(`{"no":"type"}`))
		r.write(ctx, map[string]any{"type": "future_frame", "x": 1})
		r.write(ctx, map[string]any{"type": "msg", "seq": 5, "body": seal("three")})
		// Refused and dropped messages are acknowledged too (they will
		// never open); acks only grow.
		last := 0.0
		for {
			f := r.read(ctx)
			if f == nil {
				return
			}
			if seq, _ := f["seq"].(float64); f["type"] != "ack" || seq <= last || seq > 5 {
				t.Errorf("after ack %v the client sent %v", last, f)
			} else {
				last = seq
			}
			if last == 5 {
				close(acked)
				r.read(ctx) // until the client goes
				return
			}
		}
	})
	ctx := testContext(t)
	c := dial(t, ctx, url, nil)
	if _, err := c.Create(ctx, dh.X25519()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		text string
		err  error
	}{
		{"", nil}, // the peer_key event
		{"one", nil},
		{"", dh.ErrDecrypt},
		{"", base64.CorruptInputError(0)},
		{"three", nil},
	}
	for i, w := range want {
		ev, err := c.Next(ctx)
		switch {
		case w.err == nil && err != nil:
			t.Fatalf("event %d: %v", i, err)
		case w.err != nil:
			var corrupt base64.CorruptInputError
			if !errors.Is(err, client.ErrBadMessage) || !(errors.Is(err, w.err) || errors.As(err, &corrupt)) {
				t.Errorf("event %d: err = %v, want ErrBadMessage wrapping %v", i, err, w.err)
			}
		case w.text != "" && string(ev.Message.Plaintext) != w.text:
			t.Errorf("event %d: %q, want %q", i, ev.Message.Plaintext, w.text)
		}
	}
	select {
	case <-acked:
	case <-ctx.Done():
		t.Error("the client never acknowledged seq 5")
	}
}

// TestPeerEvents: the client reports what the peer did, and drops a
// peer_joined for a peer it knows is there.
func TestPeerEvents(t *testing.T) {
	url := fakeRelay(t, wire.Subprotocol, func(ctx context.Context, r *scripted) {
		f := r.read(ctx)
		r.write(ctx, map[string]any{"type": "room", "id": f["id"], "room": "6f1c9a52-3b7e-4d0a-9e57-1b2c3d4e5f60",
			"peer": "b2", "resume_token": "tok", "group": "x25519", "peers": 2, "resumed": false})
		for _, ev := range []map[string]any{
			{"type": "peer_joined", "resumed": false}, // already there: dropped
			{"type": "peer_left", "reason": "dropped"},
			{"type": "peer_joined", "resumed": true},
			{"type": "peer_left", "reason": "left"},
			{"type": "peer_joined", "resumed": false},
			{"type": "error", "code": "room_expired", "message": "the room expired"},
		} {
			r.write(ctx, ev)
		}
		r.read(ctx)
	})
	ctx := testContext(t)
	c := dial(t, ctx, url, nil)
	room, err := c.Join(ctx, "6f1c9a52-3b7e-4d0a-9e57-1b2c3d4e5f60")
	if err != nil || room.Peers != 2 || room.Group != dh.X25519() {
		t.Fatalf("Join = %+v, %v", room, err)
	}
	want := []client.Event{
		{Type: client.EventPeerLeft, Reason: wire.ReasonDropped},
		{Type: client.EventPeerJoined, Resumed: true},
		{Type: client.EventPeerLeft, Reason: wire.ReasonLeft},
		{Type: client.EventPeerJoined},
	}
	for i, w := range want {
		ev, err := c.Next(ctx)
		if err != nil || ev.Type != w.Type || ev.Reason != w.Reason || ev.Resumed != w.Resumed {
			t.Errorf("event %d = %+v, %v; want %+v", i, ev, err, w)
		}
	}
	var e *client.Error
	if _, err := c.Next(ctx); !errors.As(err, &e) || e.Code != wire.CodeRoomExpired {
		t.Errorf("Next = %v, want room_expired", err)
	}
	if _, ok := c.Room(); ok {
		t.Error("still in a room after room_expired")
	}
}

// decodeBody decodes a msg frame's body.
func decodeBody(v any) ([]byte, error) {
	s, _ := v.(string)
	return base64.StdEncoding.DecodeString(s)
}

// TestResumeSendsSentSeq checks that a resume carries sent_seq, the
// highest seq the relay confirmed: after a Redis failover that lost
// writes, the relay numbers new messages above it (protocol.md §3.8).
func TestResumeSendsSentSeq(t *testing.T) {
	peer := mustKey(t)
	resumed := make(chan map[string]any, 1)
	var conns atomic.Int32
	url := fakeRelay(t, wire.Subprotocol, func(ctx context.Context, r *scripted) {
		if conns.Add(1) > 1 {
			f := r.read(ctx)
			resumed <- f
			r.write(ctx, map[string]any{"type": "room", "id": f["id"], "room": f["room"], "peer": "a1",
				"group": "x25519", "peers": 2, "resumed": true})
			r.read(ctx) // until the client closes
			return
		}
		if r.handshake(ctx, peer.PublicKey().Hex()) == nil {
			return
		}
		f := r.read(ctx)
		if f["type"] != "msg" {
			t.Errorf("frame %v, want msg", f)
			return
		}
		r.write(ctx, map[string]any{"type": "sent", "id": f["id"], "seq": 7})
		r.ws.Close(websocket.StatusGoingAway, "restarting") // the drop
	})
	ctx := testContext(t)
	c := dial(t, ctx, url, nil)
	if _, err := c.Create(ctx, dh.X25519()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	if seq, err := c.Send(ctx, []byte("hello")); err != nil || seq != 7 {
		t.Fatalf("Send = %d, %v; want 7", seq, err)
	}
	if err := c.Resume(ctx); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	f := <-resumed
	if f["type"] != "resume" || f["sent_seq"] != 7.0 {
		t.Errorf("resume frame %v, want type resume with sent_seq 7", f)
	}
	if _, ok := f["last_seq"]; ok {
		t.Errorf("resume frame %v has last_seq, want none (nothing received)", f)
	}
}
