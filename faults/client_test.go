package faults

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/wire"
)

// Keepalive of the relays in TestClientVanishes: the ping interval is a
// flag; the time a pong may take is the relay's fixed 10 s.
const (
	pingInterval = 500 * time.Millisecond
	pingTimeout  = 10 * time.Second
)

// TestClientVanishes: A's connection ends without a WebSocket close
// frame: its TCP connection is closed (as when its process is killed),
// reset, or frozen (A neither reads nor writes and the socket stays open,
// like a hung machine: only the relay's keepalive can tell). B, on the
// other relay, must see peer_left "dropped" within the ping interval plus
// the ping timeout; A's seat must be kept (a third client gets room_full);
// A resumes and gets what B sent meanwhile, once, in order, and B sees
// peer_joined resumed.
func TestClientVanishes(t *testing.T) {
	for _, mode := range []cutMode{cutClose, cutReset, cutFreeze} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel() // the freeze waits for the keepalive
			_, r1, r2 := twoRelays(t, "--ping-interval", pingInterval.String())
			ctx := testContext(t, 40*time.Second)
			a, b := newPair(t, ctx, r1.addr, r2.addr)
			exchange(t, ctx, a, b)
			room, _ := a.c.Room()

			a.r.latest().cut(mode)
			cut := time.Now()
			// The bound is what the docs allow, plus slack for a loaded
			// machine; how fast it comes is only logged.
			ev := nextPeerEvent(t, phase(t, ctx, pingInterval+pingTimeout+5*time.Second), b)
			if ev.Type != client.EventPeerLeft || ev.Reason != wire.ReasonDropped {
				t.Fatalf("B saw %v %+v, want peer_left dropped", ev.Type, ev)
			}
			t.Logf("B saw peer_left dropped %v after the %s", time.Since(cut).Round(time.Millisecond), mode)

			c := newTalker(t, ctx, "C", r2.addr)
			if _, err := c.c.Join(ctx, room.ID); !isCode(err, wire.CodeRoomFull) {
				t.Errorf("C joining A's room while A may resume: %v, want room_full", err)
			}

			const away = 5
			seqs := make([]uint64, away)
			for i := range away {
				seq, err := b.c.Send(ctx, []byte(text("B", i)))
				if err != nil {
					t.Fatalf("B: send %d while A is away: %v", i, err)
				}
				seqs[i] = seq
			}
			if err := a.c.Resume(phase(t, ctx, 5*time.Second)); err != nil {
				t.Fatalf("A: resume: %v", err)
			}
			for i := range away {
				m, err := a.c.Receive(phase(t, ctx, 5*time.Second))
				if err != nil {
					t.Fatalf("A: receive %d: %v", i, err)
				}
				if want := text("B", i); string(m.Plaintext) != want || m.Seq != seqs[i] {
					t.Fatalf("A received %q (seq %d), want %q (seq %d)", m.Plaintext, m.Seq, want, seqs[i])
				}
			}
			if ev := nextPeerEvent(t, phase(t, ctx, 5*time.Second), b); ev.Type != client.EventPeerJoined || !ev.Resumed {
				t.Errorf("B saw %v %+v, want peer_joined resumed", ev.Type, ev)
			}
			exchange(t, ctx, a, b) // nothing repeated: the next message is the new one
		})
	}
}

// nextPeerEvent returns tk's next peer_joined or peer_left, failing the
// test on a message or an error.
func nextPeerEvent(t *testing.T, ctx context.Context, tk *talker) client.Event {
	t.Helper()
	for {
		ev, err := tk.c.Next(ctx)
		if err != nil {
			t.Fatalf("%s: waiting for a peer event: %v", tk.name, err)
		}
		switch ev.Type {
		case client.EventPeerJoined, client.EventPeerLeft:
			return ev
		case client.EventMessage:
			t.Fatalf("%s: unexpected message %q while waiting for a peer event", tk.name, ev.Message.Plaintext)
		}
	}
}

// isCode reports whether err is a relay error with code.
func isCode(err error, code wire.Code) bool {
	var re *client.Error
	return errors.As(err, &re) && re.Code == code
}

// TestSlowReader: B, on a raw WebSocket connection, completes the
// handshake and then stops reading, while A, on the other relay, sends
// large messages. docs/protocol.md §3: when B's queue stays full for the
// slow-reader timeout, the relay closes B with 4408 and queues nothing
// after the last frame that fit, so B, resuming with the seq of the last
// msg it read, loses nothing. The test checks that, that A is unaffected
// (every Send confirmed, no drop), and that B gets every message exactly
// once, in order, over its two connections.
func TestSlowReader(t *testing.T) {
	rs := redistest.StartServer(t)
	flags := []string{
		"--frames-per-second", "5000", "--send-queue", "4", "--slow-reader-timeout", "1s",
		"--write-timeout", "30s", "--max-pending", "5000", "--max-pending-bytes", "100000000",
	}
	r1 := startRelay(t, "relay1", rs.URL(), flags...) // B's
	r2 := startRelay(t, "relay2", rs.URL(), flags...) // A's
	ctx := testContext(t, 60*time.Second)

	a := newTalker(t, ctx, "A", r2.addr)
	room, err := a.c.Create(ctx, dh.X25519())
	if err != nil {
		t.Fatalf("A: create: %v", err)
	}
	b := dialRaw(t, ctx, r1.addr)
	b.joinAndHandshake(t, ctx, a, room.ID)

	// B reads nothing from now on. A sends until B's relay gives up on B
	// (bounded: 3000 messages of 16 KiB, far beyond the socket buffers).
	const slowReaders = `keyrelay_connections_closed_total{reason="slow_reader"}`
	body := make([]byte, 16<<10)
	var confirmed []uint64 // seq of message i
	send := func(i int) {
		copy(body, text("A", i))
		seq, err := a.c.Send(ctx, body)
		if err != nil {
			t.Fatalf("A: send %d: %v (the slow reader must not affect the sender)", i, err)
		}
		confirmed = append(confirmed, seq)
	}
	closed := false
	for i := 0; i < 3000 && !closed; i++ {
		send(i)
		if i%10 == 9 {
			n, err := r1.metric(slowReaders)
			if err != nil {
				t.Fatalf("relay1 metrics: %v", err)
			}
			closed = n > 0
		}
	}
	if !closed {
		t.Fatalf("relay1 never closed B as a slow reader after %d messages", len(confirmed))
	}
	// B reads again; meanwhile A sends more, which wait for B's resume.
	type result struct {
		msgs []rawMsg
		err  error
	}
	done := make(chan result, 1)
	go func() {
		msgs, err := b.readMessagesUntilClosed(ctx)
		done <- result{msgs, err}
	}()
	for range 10 {
		send(len(confirmed))
	}
	res := <-done
	if code := websocket.CloseStatus(res.err); code != 4408 {
		t.Errorf("B's first connection ended with %v (close code %d), want close 4408", res.err, code)
	}
	first := res.msgs
	var last uint64
	if len(first) > 0 {
		last = first[len(first)-1].seq
	}

	b2 := dialRaw(t, ctx, r1.addr)
	rest := b2.resume(t, phase(t, ctx, 20*time.Second), b, last, len(confirmed)-len(first))
	all := append(first, rest...)
	t.Logf("A sent %d messages; B read %d before 4408 (seqs ≤ %d), %d after resuming", len(confirmed), len(first), last, len(rest))
	if len(all) != len(confirmed) {
		t.Errorf("B received %d messages, A had %d confirmed", len(all), len(confirmed))
	}
	for k, m := range all {
		if k >= len(confirmed) {
			break
		}
		if m.index != k || m.seq != confirmed[k] {
			t.Fatalf("B's message %d is A's %d (seq %d), want A's %d (seq %d): lost, repeated or out of order", k, m.index, m.seq, k, confirmed[k])
		}
	}
}
