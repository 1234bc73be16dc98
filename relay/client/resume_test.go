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

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/wire"
)

// Resume, flow control and concurrency: what happens when the connection
// drops, when the application or the network is slow, and when many
// goroutines use one client.

// resume calls Resume until it works: the relay may not have noticed the
// drop yet when the first attempt arrives.
func resume(t *testing.T, ctx context.Context, c *client.Client) {
	t.Helper()
	var err error
	for i := range 10 {
		if err = c.Resume(ctx); err == nil {
			return
		}
		t.Logf("Resume attempt %d: %v", i+1, err)
		time.Sleep(time.Duration(i+1) * 20 * time.Millisecond)
	}
	t.Fatalf("Resume: %v", err)
}

// TestResume cuts a client's connection while messages flow both ways and
// checks that after Resume nothing is lost, nothing is repeated, and the
// encryption counters go on.
func TestResume(t *testing.T) {
	url := newRelay(t)
	ctx := testContext(t)
	var tracker relaytest.Cutter
	logs := &logRecorder{}
	a := dial(t, ctx, url, &client.Options{HTTPClient: tracker.HTTPClient(), Logger: slog.New(logs)})
	b := dial(t, ctx, url, nil)
	pair(t, ctx, a, b, dh.X25519())

	var want []string
	for i := range 3 {
		text := fmt.Sprintf("before %d", i)
		send(t, ctx, b, text)
		want = append(want, text)
	}
	var got []string
	for range 2 { // the third stays unread across the drop
		got = append(got, string(receive(t, ctx, a).Plaintext))
	}

	tracker.Cut()
	if ev := nextPeerEvent(t, ctx, b); ev.Type != client.EventPeerLeft || ev.Reason != wire.ReasonDropped {
		t.Fatalf("b saw %+v, want peer_left dropped", ev)
	}
	for i := range 3 { // stored for a while it is away
		text := fmt.Sprintf("during %d", i)
		send(t, ctx, b, text)
		want = append(want, text)
	}
	// Refused, or (if the client has not noticed the cut yet) handed to
	// the dead connection and sent again after Resume.
	_, err := a.Send(ctx, []byte("unconfirmed"))
	if !errors.Is(err, client.ErrDisconnected) {
		t.Errorf("Send while cut = %v, want ErrDisconnected", err)
	}
	unconfirmed := errors.Is(err, client.ErrUnconfirmed)
	// Next gives what was queued, then ErrDisconnected.
	for {
		m, err := a.Receive(ctx)
		if errors.Is(err, client.ErrDisconnected) {
			break
		}
		if err != nil {
			t.Fatalf("Receive while cut: %v", err)
		}
		got = append(got, string(m.Plaintext))
	}

	resume(t, ctx, a)
	if room, ok := a.Room(); !ok || room.Peers != 2 {
		t.Errorf("after Resume: room %+v, %v", room, ok)
	}
	if ev := nextPeerEvent(t, ctx, b); ev.Type != client.EventPeerJoined || !ev.Resumed {
		t.Errorf("b saw %+v, want peer_joined resumed", ev)
	}
	for len(got) < len(want) {
		got = append(got, string(receive(t, ctx, a).Plaintext))
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("a received\n%q\nwant\n%q", got, want)
	}
	// Both directions still work, with the same keys and counters going on.
	if unconfirmed {
		if m := receive(t, ctx, b); string(m.Plaintext) != "unconfirmed" {
			t.Errorf("b received %q, want the message sent again", m.Plaintext)
		}
	}
	send(t, ctx, a, "after")
	if m := receive(t, ctx, b); string(m.Plaintext) != "after" {
		t.Errorf("b received %q", m.Plaintext)
	}
	send(t, ctx, b, "after too")
	if m := receive(t, ctx, a); string(m.Plaintext) != "after too" {
		t.Errorf("a received %q", m.Plaintext)
	}
	if n := logs.count("duplicate msg dropped"); n != 0 {
		t.Errorf("the relay re-sent %d messages the client had seen", n)
	}

	// A second cut, with nothing pending, and an idle resume.
	tracker.Cut()
	if _, err := a.Receive(ctx); !errors.Is(err, client.ErrDisconnected) {
		t.Fatalf("Receive after the second cut = %v", err)
	}
	resume(t, ctx, a)
	send(t, ctx, b, "third life")
	if m := receive(t, ctx, a); string(m.Plaintext) != "third life" {
		t.Errorf("a received %q", m.Plaintext)
	}
}

// TestSlowApplication: with a queue of two events, an application that
// reads nothing for a while stalls the client's reading, and then gets
// every message, in order, once it reads.
func TestSlowApplication(t *testing.T) {
	url := newRelay(t)
	ctx := testContext(t)
	a := dial(t, ctx, url, &client.Options{QueueSize: 2})
	b := dial(t, ctx, url, nil)
	pair(t, ctx, a, b, dh.X25519())
	const n = 20
	for i := range n {
		send(t, ctx, b, fmt.Sprint(i))
	}
	for i := range n {
		if m := receive(t, ctx, a); string(m.Plaintext) != fmt.Sprint(i) {
			t.Fatalf("message %d: %q", i, m.Plaintext)
		}
	}
}

// TestConcurrent sends and receives from several goroutines on both sides
// at once; run with -race.
func TestConcurrent(t *testing.T) {
	url := newRelay(t)
	ctx := testContext(t)
	a, b := dial(t, ctx, url, nil), dial(t, ctx, url, nil)
	pair(t, ctx, a, b, dh.X25519())
	const senders, each = 3, 15
	var wg sync.WaitGroup
	for _, c := range []*client.Client{a, b} {
		for s := range senders {
			wg.Go(func() {
				for i := range each {
					if _, err := c.Send(ctx, fmt.Appendf(nil, "%d-%d", s, i)); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	for _, c := range []*client.Client{a, b} {
		wg.Go(func() {
			seen := make(map[string]bool)
			last := make(map[byte]int)
			for range senders * each {
				m, err := c.Receive(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if seen[string(m.Plaintext)] {
					t.Errorf("duplicate %q", m.Plaintext)
				}
				seen[string(m.Plaintext)] = true
				var s, i int
				fmt.Sscanf(string(m.Plaintext), "%d-%d", &s, &i)
				if prev, ok := last[byte(s)]; ok && i <= prev {
					t.Errorf("sender %d: %d after %d", s, i, prev)
				}
				last[byte(s)] = i
			}
		})
	}
	wg.Wait()
}

// TestResumeWhileConnected resumes over a connection the relay may still
// hold (Resume drops it first, and the relay may see the new one before
// the old one's end): each time, messages flow both ways and the peer's
// last word about the client is that it is back.
func TestResumeWhileConnected(t *testing.T) {
	url := newRelay(t)
	ctx := testContext(t)
	a, b := dial(t, ctx, url, nil), dial(t, ctx, url, nil)
	pair(t, ctx, a, b, dh.X25519())
	var last client.Event
	for i := range 10 {
		if err := a.Resume(ctx); err != nil {
			t.Fatalf("Resume %d: %v", i, err)
		}
		text := fmt.Sprint("b", i)
		send(t, ctx, b, text)
		if m := receive(t, ctx, a); string(m.Plaintext) != text {
			t.Fatalf("a received %q, want %q", m.Plaintext, text)
		}
		text = fmt.Sprint("a", i)
		send(t, ctx, a, text)
		for {
			ev, err := b.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type == client.EventMessage {
				if string(ev.Message.Plaintext) != text {
					t.Fatalf("b received %q, want %q", ev.Message.Plaintext, text)
				}
				break
			}
			if ev.Type != client.EventPeerKey {
				last = ev
			}
		}
	}
	if last.Type != client.EventPeerJoined || !last.Resumed {
		t.Errorf("b's last peer event: %v %+v, want peer_joined resumed", last.Type, last)
	}
}

// receiveAll receives n messages "00000000", "00000001" … in order,
// resuming whenever the connection drops, and returns the number of drops.
func receiveAll(t *testing.T, ctx context.Context, c *client.Client, n int) int {
	t.Helper()
	drops := 0
	for i := 0; i < n; {
		m, err := c.Receive(ctx)
		if errors.Is(err, client.ErrDisconnected) {
			drops++
			var ce websocket.CloseError
			if errors.As(err, &ce) && ce.Code != wire.CloseSlowReader {
				t.Errorf("closed with %v, want 4408", ce.Code)
			}
			resume(t, ctx, c)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(m.Plaintext[:8]), fmt.Sprintf("%08d", i); got != want {
			t.Fatalf("message %s, want %s (after %d drops)", got, want, drops)
		}
		i++
	}
	return drops
}

// sendNumbered sends n messages of size bytes starting "00000000",
// "00000001" …
func sendNumbered(t *testing.T, ctx context.Context, c *client.Client, n, size int) {
	t.Helper()
	msg := make([]byte, max(size, 8))
	for i := range n {
		copy(msg, fmt.Sprintf("%08d", i))
		if _, err := c.Send(ctx, msg); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
}

// TestSlowReaderClosed: an application that stops reading while large
// messages pour in makes the client stop reading the socket; the relay
// may then close it as a slow reader (4408, if the kernel's buffers fill
// up). Either way, reading with Resume on ErrDisconnected gets every
// message once, in order.
func TestSlowReaderClosed(t *testing.T) {
	url := relaytest.NewServer(t, relaytest.NewMemoryStore(), relay.Config{FramesPerSecond: 1000, FrameBurst: 1000, BytesPerSecond: 1e9, ByteBurst: 1 << 30, MaxPendingBytes: 1 << 30, SendQueue: 2}).URL
	ctx := testContext(t)
	a := dial(t, ctx, url, &client.Options{QueueSize: 1})
	b := dial(t, ctx, url, nil)
	pair(t, ctx, a, b, dh.X25519())
	// 60 of the largest messages, 2.9 MiB: more than the kernel's
	// buffers, few enough to seal and open within the test's deadline
	// under the race detector on a busy machine (150 took 12-19 s).
	const n = 60
	sendNumbered(t, ctx, b, n, b.MaxPlaintext())
	t.Logf("closed as a slow reader %d times", receiveAll(t, ctx, a, n))
}

// TestResumeManyPending: more messages wait for a dropped client than the
// relay's send queue holds (64 by default). The relay queues them all at
// once on resume, so it may close the client as a slow reader; resuming
// again must still deliver every message once, in order.
func TestResumeManyPending(t *testing.T) {
	url := newRelay(t)
	ctx := testContext(t)
	var tracker relaytest.Cutter
	a := dial(t, ctx, url, &client.Options{HTTPClient: tracker.HTTPClient()})
	b := dial(t, ctx, url, nil)
	pair(t, ctx, a, b, dh.X25519())
	tracker.Cut()
	if ev := nextPeerEvent(t, ctx, b); ev.Type != client.EventPeerLeft {
		t.Fatalf("b saw %+v, want peer_left", ev)
	}
	const n = 200
	sendNumbered(t, ctx, b, n, 8)
	resume(t, ctx, a)
	t.Logf("closed as a slow reader %d times", receiveAll(t, ctx, a, n))
}
