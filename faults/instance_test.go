package faults

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/session/redistest"
)

// fastFlags lift the frame rate limit well above what the talkers send.
var fastFlags = []string{"--frames-per-second", "2000"}

// twoRelays starts Redis and two relay instances sharing it.
func twoRelays(t *testing.T, extra ...string) (*redistest.Server, *relayProc, *relayProc) {
	t.Helper()
	rs := redistest.StartServer(t)
	return rs, startRelay(t, "relay1", rs.URL(), extra...), startRelay(t, "relay2", rs.URL(), extra...)
}

// TestRelayKilledMidHandshake: A, on relay 1, has stored its key; B, on
// relay 2, has joined but not sent its key. Relay 1 dies (SIGKILL). A
// resumes on relay 2 and the handshake completes there with the right
// keys: both sides derive the same safety number, and messages go both
// ways. The cases differ in when B sends its key, and in whether A's key
// was still in flight when relay 1 died.
func TestRelayKilledMidHandshake(t *testing.T) {
	for _, tc := range []struct {
		name string
		// keyInFlight: kill relay 1 while A's key frame may still be on its
		// way (A's SendKey may then fail with ErrDisconnected: stored or
		// not, Handshake after Resume must sort it out).
		keyInFlight bool
		// peerKeyWhileAway: B sends its key after relay 1 died and before
		// A resumes (else after A resumed).
		peerKeyWhileAway bool
	}{
		{name: "peer key while away", peerKeyWhileAway: true},
		{name: "peer key after resume"},
		{name: "own key in flight", keyInFlight: true, peerKeyWhileAway: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, r1, r2 := twoRelays(t)
			ctx := testContext(t, 30*time.Second)
			a, b := newTalker(t, ctx, "A", r1.addr), newTalker(t, ctx, "B", r2.addr)
			room, err := a.c.Create(ctx, dh.X25519())
			if err != nil {
				t.Fatalf("A: create: %v", err)
			}
			if _, err := b.c.Join(ctx, room.ID); err != nil {
				t.Fatalf("B: join: %v", err)
			}
			if tc.keyInFlight {
				errc := make(chan error, 1)
				go func() {
					_, err := a.c.SendKey(ctx)
					errc <- err
				}()
				r1.kill()
				if err := <-errc; err != nil && !errors.Is(err, client.ErrDisconnected) {
					t.Fatalf("A: key in flight: %v, want nil or ErrDisconnected", err)
				}
			} else {
				if _, err := a.c.SendKey(ctx); err != nil {
					t.Fatalf("A: key: %v", err)
				}
				r1.kill()
			}
			a.r.point(r2.addr)
			if tc.peerKeyWhileAway {
				if _, err := b.c.SendKey(ctx); err != nil {
					t.Fatalf("B: key: %v", err)
				}
			}
			if err := a.c.Resume(phase(t, ctx, 5*time.Second)); err != nil {
				t.Fatalf("A: resume on relay 2: %v", err)
			}
			handshakeBoth(t, phase(t, ctx, 5*time.Second), a, b)
			exchange(t, ctx, a, b)
		})
	}
}

// exchange sends one message each way and checks it arrives.
func exchange(t *testing.T, ctx context.Context, a, b *talker) {
	t.Helper()
	for _, p := range [][2]*talker{{a, b}, {b, a}} {
		from, to := p[0], p[1]
		want := text(from.name, 1000000)
		seq, err := from.c.Send(ctx, []byte(want))
		if err != nil {
			t.Fatalf("%s: send: %v", from.name, err)
		}
		m, err := to.c.Receive(phase(t, ctx, 5*time.Second))
		if err != nil {
			t.Fatalf("%s: receive: %v", to.name, err)
		}
		if string(m.Plaintext) != want || m.Seq != seq {
			t.Fatalf("%s received %q (seq %d), want %q (seq %d)", to.name, m.Plaintext, m.Seq, want, seq)
		}
	}
}

// TestRelayKilledMidConversation: A on relay 1 and B on relay 2 send to
// each other without pause; relay 1 dies (SIGKILL). A sees its connection
// end without a close frame, resumes on relay 2, and both go on. Every
// message confirmed with sent arrives exactly once, in order; a message
// whose sent never came (A's drop) arrives at most once. B sees A come back
// (peer_joined, resumed) and never drops itself.
func TestRelayKilledMidConversation(t *testing.T) {
	_, r1, r2 := twoRelays(t, fastFlags...)
	ctx := testContext(t, 40*time.Second)
	a, b := newPair(t, ctx, r1.addr, r2.addr)
	cv := talk(ctx, a, b)
	cv.warmUp(t, phase(t, ctx, 10*time.Second), 20, "before the kill")
	r1.kill()
	a.r.point(r2.addr) // the load balancer notices
	if err := a.waitResume(phase(t, ctx, 10*time.Second)); err != nil {
		t.Fatalf("A: resume on relay 2: %v", err)
	}
	cv.warmUp(t, phase(t, ctx, 10*time.Second), 20, "after the resume")
	cv.finish(phase(t, ctx, 10*time.Second))

	ab, ba := checkDelivery(t, a, b, lossNone), checkDelivery(t, b, a, lossNone)
	t.Logf("A→B: %v", ab)
	t.Logf("B→A: %v", ba)
	if len(a.closes) == 0 || a.closes[0] != -1 {
		t.Errorf("A's drops ended with close codes %v, want first none (-1): its relay died", a.closes)
	}
	if len(b.closes) != 0 {
		t.Errorf("B dropped (close codes %v), though its relay lived", b.closes)
	}
	if !slices.Contains(b.events, "peer_joined resumed=true") {
		t.Errorf("B's events %q lack peer_joined resumed=true", b.events)
	}
}

// TestRelayKilledAfterStore: relay 1 stores A's message in Redis, confirms
// it to A with sent, and dies at once: a proxy between relay 1 and Redis
// lets the store command through and nothing after it, so the kill lands
// exactly there (TestRelayKilledMidConversation hits that window only by
// chance).
//
// docs/protocol.md §3 promises that a message the relay stored is
// delivered, and relay/client that a confirmed message is not lost. B stays
// connected to relay 2, so nothing but the message's event brings it to B.
// The relay once published that event in a second Redis call, which this
// kill cut off: B then got A's next message, acknowledged past the first,
// and the confirmed message was gone. Storing and announcing are now one
// Redis script (session.Store.Append).
func TestRelayKilledAfterStore(t *testing.T) {
	rs := redistest.StartServer(t)
	px := startRedisProxy(t, rs.Addr)
	r1 := startRelay(t, "relay1", "redis://"+px.addr())
	r2 := startRelay(t, "relay2", rs.URL())
	ctx := testContext(t, 30*time.Second)
	a, b := newPair(t, ctx, r1.addr, r2.addr)
	exchange(t, ctx, a, b)

	room, _ := a.c.Room()
	first := text("A", 1) + strings.Repeat(".", 4096)
	px.freezeAfter(room.Peer, 4096)
	seq1, err := a.c.Send(ctx, []byte(first))
	if err != nil {
		t.Fatalf("A: send 1: %v", err)
	}
	select {
	case <-px.held:
	case <-ctx.Done():
		t.Fatal("relay 1 never stored message 1")
	}
	r1.kill()
	a.r.point(r2.addr)
	if err := a.c.Resume(phase(t, ctx, 5*time.Second)); err != nil {
		t.Fatalf("A: resume on relay 2: %v", err)
	}
	seq2, err := a.c.Send(ctx, []byte(text("A", 2)))
	if err != nil {
		t.Fatalf("A: send 2: %v", err)
	}
	m, err := b.c.Receive(phase(t, ctx, 5*time.Second))
	if err != nil {
		t.Fatalf("B: receive: %v", err)
	}
	if string(m.Plaintext) != first {
		t.Errorf("B's next message is %q (seq %d); message 1 (seq %d), confirmed to A with sent before relay 1 died, was never delivered (message 2 has seq %d)",
			truncate40(m.Plaintext), m.Seq, seq1, seq2)
	}
	// Even a resume does not bring it back: B acknowledged past it.
	if err := b.c.Resume(phase(t, ctx, 5*time.Second)); err != nil {
		t.Fatalf("B: resume: %v", err)
	}
	quiet := phase(t, ctx, 500*time.Millisecond)
	for {
		m, err := b.c.Receive(quiet)
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("B: receive after resume: %v", err)
		}
		t.Logf("B after resume: %q seq %d", m.Plaintext, m.Seq)
	}
}

// truncate40 shortens a plaintext for a failure message.
func truncate40(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
