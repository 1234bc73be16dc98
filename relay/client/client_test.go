package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/internal/clienttest"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/wire"
)

// testTimeout bounds each test's waits; tests never assert on speed, it only
// keeps a broken relay from hanging the suite.
const testTimeout = 20 * time.Second

// newRelay starts the real relay on a loopback httptest server and returns
// its WebSocket URL (relaytest.LogEnv shows its logs). The rate limit is raised so that tests that send
// bursts are not throttled; everything else is the default.
func newRelay(t *testing.T) string {
	t.Helper()
	return relaytest.NewServer(t, relaytest.NewMemoryStore(), relay.Config{FramesPerSecond: 1000, FrameBurst: 1000}).URL
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// logRecorder is a slog.Handler that keeps the messages of the records it
// gets, so that a test can check what the client noticed.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

func (h *logRecorder) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// dial connects a client that is closed at the end of the test.
func dial(t *testing.T, ctx context.Context, url string, opts *client.Options) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pair creates a room in group with a, joins it with b, and completes the
// handshake on both sides at once.
func pair(t *testing.T, ctx context.Context, a, b *client.Client, group *dh.Group) (client.Room, *client.Handshake, *client.Handshake) {
	t.Helper()
	room, err := a.Create(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Join(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	ha, hb := handshakeBoth(t, ctx, a, b)
	return room, ha, hb
}

func handshakeBoth(t *testing.T, ctx context.Context, a, b *client.Client) (*client.Handshake, *client.Handshake) {
	t.Helper()
	var ha *client.Handshake
	var errA error
	done := make(chan struct{})
	go func() {
		defer close(done)
		ha, errA = a.Handshake(ctx)
	}()
	hb, errB := b.Handshake(ctx)
	<-done
	if errA != nil || errB != nil {
		t.Fatalf("Handshake: %v, %v", errA, errB)
	}
	return ha, hb
}

func send(t *testing.T, ctx context.Context, c *client.Client, text string) uint64 {
	t.Helper()
	seq, err := c.Send(ctx, []byte(text))
	if err != nil {
		t.Fatalf("Send(%q): %v", text, err)
	}
	return seq
}

func receive(t *testing.T, ctx context.Context, c *client.Client) client.Message {
	t.Helper()
	m, err := c.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return m
}

// nextEvent returns the next event that is not a message or a peer key.
func nextPeerEvent(t *testing.T, ctx context.Context, c *client.Client) client.Event {
	t.Helper()
	for {
		ev, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if ev.Type == client.EventPeerJoined || ev.Type == client.EventPeerLeft {
			return ev
		}
	}
}

// TestChat runs the whole exchange in each kind of group: handshake, equal
// safety numbers, messages both ways.
func TestChat(t *testing.T) {
	url := newRelay(t)
	for _, g := range []*dh.Group{dh.X25519(), dh.P256(), dh.MODP14()} {
		t.Run(g.Name(), func(t *testing.T) {
			ctx := testContext(t)
			a, b := dial(t, ctx, url, nil), dial(t, ctx, url, nil)
			room, ha, hb := pair(t, ctx, a, b, g)
			if room.Group != g || room.Peers != 1 || room.ID == "" || room.Peer == "" {
				t.Errorf("room = %+v", room)
			}
			if ha.SafetyNumber != hb.SafetyNumber || len(ha.SafetyNumber) != 71 {
				t.Errorf("safety numbers %q and %q", ha.SafetyNumber, hb.SafetyNumber)
			}
			if ha.Group != g || hb.Group != g {
				t.Errorf("groups %v, %v", ha.Group, hb.Group)
			}
			if !ha.PeerKey.Equal(hb.PublicKey) || !hb.PeerKey.Equal(ha.PublicKey) {
				t.Error("each side's peer key is not the other's public key")
			}
			// Handshake again returns the same result at once.
			if again, err := a.Handshake(ctx); err != nil || again.SafetyNumber != ha.SafetyNumber {
				t.Errorf("second Handshake = %+v, %v", again, err)
			}

			var lastSeq uint64
			for i := range 3 {
				for _, dir := range []struct {
					name     string
					from, to *client.Client
				}{{"a->b", a, b}, {"b->a", b, a}} {
					text := fmt.Sprintf("%s message %d", dir.name, i)
					seq := send(t, ctx, dir.from, text)
					if seq <= lastSeq {
						t.Errorf("seq %d after %d", seq, lastSeq)
					}
					lastSeq = seq
					m := receive(t, ctx, dir.to)
					if string(m.Plaintext) != text || m.Seq != seq {
						t.Errorf("%s: received %q seq %d, want %q seq %d", dir.name, m.Plaintext, m.Seq, text, seq)
					}
				}
			}
			if _, err := a.Send(ctx, nil); err != nil {
				t.Errorf("empty message: %v", err)
			}
			if m := receive(t, ctx, b); len(m.Plaintext) != 0 {
				t.Errorf("empty message received as %q", m.Plaintext)
			}
		})
	}
}

// TestEvents checks that the creator sees the peer join, its key arrive and
// the peer leave or drop, in order, through Next.
func TestEvents(t *testing.T) {
	url := newRelay(t)
	ctx := testContext(t)
	a, b := dial(t, ctx, url, nil), dial(t, ctx, url, nil)
	pair(t, ctx, a, b, dh.X25519())
	var got []string
	for len(got) < 2 {
		ev, err := a.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.Type.String())
	}
	if want := "peer_joined peer_key"; strings.Join(got, " ") != want {
		t.Errorf("events %v, want %s", got, want)
	}

	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := nextPeerEvent(t, ctx, a); ev.Type != client.EventPeerLeft || ev.Reason != wire.ReasonLeft {
		t.Errorf("after Leave: %+v", ev)
	}
	if _, ok := b.Room(); ok {
		t.Error("b still in a room after Leave")
	}
	if err := b.Leave(ctx); !errors.Is(err, client.ErrNotInRoom) {
		t.Errorf("second Leave = %v, want ErrNotInRoom", err)
	}
	// The peer that left may come back as a new peer, with a new key.
	room, _ := a.Room()
	if _, err := b.Join(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	if ev := nextPeerEvent(t, ctx, a); ev.Type != client.EventPeerJoined || ev.Resumed {
		t.Errorf("after the new join: %+v", ev)
	}
	ha, hb := handshakeBoth(t, ctx, a, b)
	if ha.SafetyNumber != hb.SafetyNumber {
		t.Error("safety numbers differ with the new peer")
	}
	send(t, ctx, b, "new peer")
	if m := receive(t, ctx, a); string(m.Plaintext) != "new peer" {
		t.Errorf("received %q", m.Plaintext)
	}

	b.Close()
	if ev := nextPeerEvent(t, ctx, a); ev.Type != client.EventPeerLeft || ev.Reason != wire.ReasonDropped {
		t.Errorf("after Close: %+v", ev)
	}
	if err := b.Leave(ctx); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Leave after Close = %v, want ErrClosed", err)
	}
}

// TestLateJoiner: the creator's key is stored before the joiner arrives;
// the joiner gets it at once, before sending its own.
func TestLateJoiner(t *testing.T) {
	url := newRelay(t)
	ctx := testContext(t)
	a, b := dial(t, ctx, url, nil), dial(t, ctx, url, nil)
	room, err := a.Create(ctx, dh.P256())
	if err != nil {
		t.Fatal(err)
	}
	pubA, err := a.SendKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	joined, err := b.Join(ctx, room.ID)
	if err != nil {
		t.Fatal(err)
	}
	if joined.Group != dh.P256() || joined.Peers != 2 {
		t.Errorf("joined = %+v", joined)
	}
	ev, err := b.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != client.EventPeerKey || !ev.PeerKey.Equal(pubA) {
		t.Fatalf("first event = %v, want the creator's key", ev.Type)
	}
	ha, hb := handshakeBoth(t, ctx, a, b)
	if ha.SafetyNumber != hb.SafetyNumber {
		t.Error("safety numbers differ")
	}
	send(t, ctx, b, "late")
	if m := receive(t, ctx, a); string(m.Plaintext) != "late" {
		t.Errorf("received %q", m.Plaintext)
	}
}

// TestRelayErrors checks that error frames surface as *client.Error.
func TestRelayErrors(t *testing.T) {
	url := newRelay(t)
	ctx := testContext(t)
	a, b, c := dial(t, ctx, url, nil), dial(t, ctx, url, nil), dial(t, ctx, url, nil)
	room, err := a.Create(ctx, dh.X25519())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Join(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		code wire.Code
	}{
		{"third peer", func() error { _, err := c.Join(ctx, room.ID); return err }, wire.CodeRoomFull},
		{"no such room", func() error { _, err := c.Join(ctx, "6f1c9a52-3b7e-4d0a-9e57-1b2c3d4e5f60"); return err }, wire.CodeRoomNotFound},
		{"create in a room", func() error { _, err := a.Create(ctx, nil); return err }, wire.CodeAlreadyInRoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var e *client.Error
			if !errors.As(err, &e) || e.Code != tt.code {
				t.Fatalf("err = %v, want *client.Error with code %s", err, tt.code)
			}
			if e.Message == "" || !strings.Contains(err.Error(), string(tt.code)) {
				t.Errorf("err = %q", err)
			}
		})
	}
	// The client refuses before the relay can.
	if _, err := a.Send(ctx, []byte("x")); !errors.Is(err, client.ErrHandshakeIncomplete) {
		t.Errorf("Send before the handshake = %v", err)
	}
	if _, err := c.Send(ctx, []byte("x")); !errors.Is(err, client.ErrNotInRoom) {
		t.Errorf("Send outside a room = %v", err)
	}
	if _, err := c.Handshake(ctx); !errors.Is(err, client.ErrNotInRoom) {
		t.Errorf("Handshake outside a room = %v", err)
	}
	if err := c.Resume(ctx); !errors.Is(err, client.ErrNotInRoom) {
		t.Errorf("Resume outside a room = %v", err)
	}
	handshakeBoth(t, ctx, a, b)
	if _, err := a.Send(ctx, make([]byte, a.MaxPlaintext()+1)); !errors.Is(err, client.ErrTooLarge) {
		t.Errorf("Send too large = %v", err)
	}
	big := make([]byte, a.MaxPlaintext())
	if _, err := a.Send(ctx, big); err != nil {
		t.Errorf("Send of MaxPlaintext bytes: %v", err)
	}
	if m := receive(t, ctx, b); len(m.Plaintext) != len(big) {
		t.Errorf("received %d bytes, want %d", len(m.Plaintext), len(big))
	}
	// An error frame that answers no request comes out of Next.
	if err := clienttest.SendRaw(ctx, a, []byte(`{"type":"nonsense"}`)); err != nil {
		t.Fatal(err)
	}
	// (after the events already queued: peer_joined, peer_key).
	for {
		ev, err := a.Next(ctx)
		if err == nil {
			if ev.Type != client.EventPeerJoined && ev.Type != client.EventPeerKey {
				t.Fatalf("Next = %v event", ev.Type)
			}
			continue
		}
		var e *client.Error
		if !errors.As(err, &e) || e.Code != wire.CodeUnknownType {
			t.Errorf("Next after a bad raw frame = %v, want unknown_type", err)
		}
		break
	}
}

// TestInvalidKey sends keys the relay must refuse, through
// clienttest.Request, then completes the handshake normally.
func TestInvalidKey(t *testing.T) {
	url := newRelay(t)
	tests := []struct {
		group *dh.Group
		key   string
		code  wire.Code
	}{
		{dh.X25519(), strings.Repeat("00", 32), wire.CodeInvalidPublicKey},               // low order
		{dh.X25519(), "ed" + strings.Repeat("ff", 30) + "7f", wire.CodeInvalidPublicKey}, // u = p: not canonical
		{dh.P256(), "04" + strings.Repeat("00", 64), wire.CodeInvalidPublicKey},          // not on the curve
		{dh.MODP14(), "1", wire.CodeInvalidPublicKey},                                    // out of range
		{dh.MODP14(), "0x02", wire.CodeMalformedKey},
		{dh.X25519(), "abc", wire.CodeMalformedKey},
	}
	for _, tt := range tests {
		t.Run(tt.group.Name()+"/"+string(tt.code), func(t *testing.T) {
			ctx := testContext(t)
			a, b := dial(t, ctx, url, nil), dial(t, ctx, url, nil)
			room, err := a.Create(ctx, tt.group)
			if err != nil {
				t.Fatal(err)
			}
			_, err = clienttest.Request(ctx, a, map[string]any{"type": "key", "public_key": tt.key, "group": tt.group.Name()})
			var e *client.Error
			if !errors.As(err, &e) || e.Code != tt.code {
				t.Fatalf("bad key: err = %v, want code %s", err, tt.code)
			}
			if _, err := b.Join(ctx, room.ID); err != nil {
				t.Fatal(err)
			}
			ha, hb := handshakeBoth(t, ctx, a, b)
			if ha.SafetyNumber != hb.SafetyNumber {
				t.Error("safety numbers differ")
			}
			send(t, ctx, a, "after a bad key")
			if m := receive(t, ctx, b); string(m.Plaintext) != "after a bad key" {
				t.Errorf("received %q", m.Plaintext)
			}
		})
	}
}
