package faults

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/wire"
)

// talker is one side of a conversation: a client that sends numbered
// messages ("A 00000042") to the other side, receives the other side's,
// resumes whenever its connection drops, and records everything, so that
// checkDelivery can hold the relay to docs/protocol.md §3: a message the
// relay confirmed with sent is delivered to the other peer exactly once,
// in order, across resumes, as long as the room exists.
type talker struct {
	// Static after newPair.
	t    *testing.T
	name string
	c    *client.Client
	r    *router
	hs   *client.Handshake

	mu        sync.Mutex     // guards the following
	next      int            // index of the next message to send
	confirmed map[int]uint64 // index → seq: the relay answered sent
	uncertain map[int]bool   // the connection dropped before sent: stored or not
	refused   map[int]string // index → error code: the relay said it did not store it
	got       []int          // indices received from the other side, in order
	events    []string       // peer events and relay errors Next returned, in order
	closes    []int          // close code of each drop Next reported (-1: none)
	resumes   int            // successful resumes
	resumeErr error          // why resuming stopped for good (e.g. room_not_found)
	changed   chan struct{}  // closed and replaced whenever resumes or resumeErr change
}

// newTalker dials the relay through a new router pointing at target.
func newTalker(t *testing.T, ctx context.Context, name, target string) *talker {
	t.Helper()
	r := newRouter(t, target)
	c, err := client.Dial(ctx, relayURL, r.options())
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return &talker{
		t: t, name: name, c: c, r: r,
		confirmed: map[int]uint64{},
		uncertain: map[int]bool{},
		refused:   map[int]string{},
		changed:   make(chan struct{}),
	}
}

// newPair makes A (on relay ra) create an x25519 room and B (on rb) join
// it, runs the handshake, and checks that both sides derived the same
// safety number.
func newPair(t *testing.T, ctx context.Context, ra, rb string) (a, b *talker) {
	t.Helper()
	a, b = newTalker(t, ctx, "A", ra), newTalker(t, ctx, "B", rb)
	room, err := a.c.Create(ctx, dh.X25519())
	if err != nil {
		t.Fatalf("A: create: %v", err)
	}
	if _, err := b.c.Join(ctx, room.ID); err != nil {
		t.Fatalf("B: join: %v", err)
	}
	handshakeBoth(t, ctx, a, b)
	return a, b
}

// handshakeBoth runs both sides' Handshake at once and checks that their
// safety numbers and keys agree.
func handshakeBoth(t *testing.T, ctx context.Context, a, b *talker) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		hs, err := a.c.Handshake(ctx)
		a.hs = hs
		errc <- err
	}()
	hs, err := b.c.Handshake(ctx)
	if err != nil {
		t.Fatalf("B: handshake: %v", err)
	}
	b.hs = hs
	if err := <-errc; err != nil {
		t.Fatalf("A: handshake: %v", err)
	}
	if a.hs.SafetyNumber != b.hs.SafetyNumber {
		t.Fatal("A and B derived different safety numbers")
	}
	if !a.hs.PeerKey.Equal(b.hs.PublicKey) || !b.hs.PeerKey.Equal(a.hs.PublicKey) {
		t.Fatal("A's and B's views of the keys differ")
	}
}

// text is the plaintext of message i from name.
func text(name string, i int) string { return fmt.Sprintf("%s %08d", name, i) }

// parseText returns the index of a message from name.
func parseText(name string, b []byte) (int, error) {
	s, ok := strings.CutPrefix(string(b), name+" ")
	if !ok {
		return 0, fmt.Errorf("message %q is not from %s", b, name)
	}
	return strconv.Atoi(s)
}

// notify wakes waiters on the talker's state. tk.mu must be held.
func (tk *talker) notifyLocked() {
	close(tk.changed)
	tk.changed = make(chan struct{})
}

// sendLoop sends messages to the other side every pace until stop is
// closed or ctx ends. After a drop it waits for receiveLoop's resume; it
// never sends an index twice, so that a message the relay stored without
// confirming it can show up once at most.
func (tk *talker) sendLoop(ctx context.Context, stop <-chan struct{}, pace time.Duration) {
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		tk.mu.Lock()
		i := tk.next
		tk.next++
		resumes := tk.resumes
		tk.mu.Unlock()
		seq, err := tk.c.Send(ctx, []byte(text(tk.name, i)))
		var re *client.Error
		tk.mu.Lock()
		switch {
		case err == nil:
			tk.confirmed[i] = seq
		case errors.As(err, &re):
			tk.refused[i] = string(re.Code) // not stored: sent again never
		default:
			tk.uncertain[i] = true
		}
		tk.mu.Unlock()
		switch {
		case err == nil || re != nil:
		case errors.Is(err, client.ErrUnconfirmed) && !errors.Is(err, client.ErrDisconnected):
			// The relay answered unavailable: the client sends the same
			// body again before the next message.
		case errors.Is(err, client.ErrDisconnected):
			if !tk.waitResumed(ctx, stop, resumes) {
				return
			}
			continue
		default: // ErrNotInRoom after the room was lost, ctx, ErrClosed
			return
		}
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(pace):
		}
	}
}

// waitResumed waits until the talker has resumed more than n times. It
// returns false if resuming failed for good, stop is closed or ctx ends.
func (tk *talker) waitResumed(ctx context.Context, stop <-chan struct{}, n int) bool {
	for {
		tk.mu.Lock()
		resumes, rerr, changed := tk.resumes, tk.resumeErr, tk.changed
		tk.mu.Unlock()
		switch {
		case rerr != nil:
			return false
		case resumes > n:
			return true
		}
		select {
		case <-changed:
		case <-stop:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// receiveLoop reads events until ctx ends, recording messages, and
// resumes after every drop.
func (tk *talker) receiveLoop(ctx context.Context, from string) {
	for {
		ev, err := tk.c.Next(ctx)
		var re *client.Error
		switch {
		case err == nil && ev.Type == client.EventMessage:
			i, perr := parseText(from, ev.Message.Plaintext)
			if perr != nil {
				tk.t.Errorf("%s: %v", tk.name, perr)
				continue
			}
			tk.mu.Lock()
			tk.got = append(tk.got, i)
			tk.notifyLocked()
			tk.mu.Unlock()
		case err == nil:
			desc := ev.Type.String()
			switch ev.Type {
			case client.EventPeerLeft:
				desc += " " + string(ev.Reason)
			case client.EventPeerJoined:
				desc += fmt.Sprintf(" resumed=%t", ev.Resumed)
			}
			tk.record(desc)
		case errors.As(err, &re):
			tk.record("error " + string(re.Code))
		case errors.Is(err, client.ErrDisconnected):
			tk.mu.Lock()
			tk.closes = append(tk.closes, int(websocket.CloseStatus(err)))
			tk.notifyLocked()
			tk.mu.Unlock()
			if !tk.resume(ctx) {
				return
			}
		case errors.Is(err, client.ErrBadMessage):
			tk.t.Errorf("%s: %v", tk.name, err)
		default: // ctx, ErrClosed
			return
		}
	}
}

// record appends an event's description.
func (tk *talker) record(desc string) {
	tk.mu.Lock()
	tk.events = append(tk.events, desc)
	tk.notifyLocked()
	tk.mu.Unlock()
}

// resume calls Resume until it succeeds, retrying after dial errors,
// unavailable and drops (a relay or Redis on its way back). It returns
// false when the place is gone for good (the error is kept in resumeErr)
// or ctx ends.
func (tk *talker) resume(ctx context.Context) bool {
	for {
		err := tk.c.Resume(ctx)
		var re *client.Error
		switch {
		case err == nil:
			tk.mu.Lock()
			tk.resumes++
			tk.notifyLocked()
			tk.mu.Unlock()
			return true
		case errors.As(err, &re) && re.Code != wire.CodeUnavailable,
			errors.Is(err, client.ErrNotInRoom), errors.Is(err, client.ErrClosed):
			tk.mu.Lock()
			tk.resumeErr = err
			tk.notifyLocked()
			tk.mu.Unlock()
			return false
		case ctx.Err() != nil:
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// resumed reports whether the talker has resumed at least once, and the
// error that stopped it resuming, if any.
func (tk *talker) resumed() (bool, error) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	return tk.resumes > 0, tk.resumeErr
}

// waitResume waits until the talker has resumed once, or failed to for
// good, or ctx ends; it returns nil once it has resumed.
func (tk *talker) waitResume(ctx context.Context) error {
	tk.waitFor(ctx, func() bool { return tk.resumes > 0 || tk.resumeErr != nil })
	ok, err := tk.resumed()
	switch {
	case ok:
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("%s did not resume: %w", tk.name, ctx.Err())
}

// waitFor waits until cond, evaluated with tk.mu held, holds, or ctx ends;
// it reports whether cond held.
func (tk *talker) waitFor(ctx context.Context, cond func() bool) bool {
	for {
		tk.mu.Lock()
		ok, changed := cond(), tk.changed
		tk.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// waitReceived waits until to has received n messages or ctx ends.
func waitReceived(ctx context.Context, to *talker, n int) bool {
	return to.waitFor(ctx, func() bool { return len(to.got) >= n })
}

// waitDelivered waits until to has received every message from confirmed
// (or ctx ends).
func waitDelivered(ctx context.Context, from, to *talker) {
	from.mu.Lock()
	want := make([]int, 0, len(from.confirmed))
	for i := range from.confirmed {
		want = append(want, i)
	}
	from.mu.Unlock()
	to.waitFor(ctx, func() bool {
		for _, i := range want {
			if !slices.Contains(to.got, i) {
				return false
			}
		}
		return true
	})
}

// delivery counts one direction of a conversation.
type delivery struct {
	sent, confirmed, uncertain, refused int
	delivered                           int // messages received, all distinct
	uncertainDelivered                  int // of them, not confirmed by sent
	lost                                []int
}

func (d delivery) String() string {
	return fmt.Sprintf("sent %d: confirmed %d, unconfirmed (dropped before sent) %d, refused %d; delivered %d (%d unconfirmed), confirmed but not delivered %d",
		d.sent, d.confirmed, d.uncertain, d.refused, d.delivered, d.uncertainDelivered, len(d.lost))
}

// loss is what loss of confirmed messages checkDelivery accepts.
type loss int

const (
	// lossNone: every message confirmed with sent arrives.
	lossNone loss = iota
	// lossRoom: the room was lost (a Redis without persistence that
	// restarted takes it with it, as the docs say): the confirmed
	// messages sent after the last one that arrived are lost with it.
	lossRoom
	// lossReplication: a Redis master failed over before its replica had
	// every write (asynchronous replication, no --redis-wait-replicas):
	// any confirmed message may be lost.
	lossReplication
)

// checkDelivery holds the messages from one side to the other to the
// guarantees of docs/protocol.md §3 and relay/client:
//
//   - delivered messages come in the order they were sent, each once;
//   - only messages the sender sent arrive, and never one the relay
//     refused with an error (mailbox_full, unavailable: "not stored");
//   - every message confirmed with sent arrives, except those that
//     accepted loss allows, which are returned as lost.
//
// It fails the test for any breach and returns the counts.
func checkDelivery(t *testing.T, from, to *talker, accepted loss) delivery {
	t.Helper()
	from.mu.Lock()
	to.mu.Lock()
	defer from.mu.Unlock()
	defer to.mu.Unlock()
	d := delivery{
		sent: from.next, confirmed: len(from.confirmed), uncertain: len(from.uncertain),
		refused: len(from.refused), delivered: len(to.got),
	}
	dir := from.name + "→" + to.name
	last := -1
	for k, i := range to.got {
		switch {
		case i == last:
			t.Errorf("%s: message %d delivered twice in a row (delivery %d)", dir, i, k)
		case i < last:
			t.Errorf("%s: message %d delivered after %d: out of order or repeated (delivery %d)", dir, i, last, k)
		}
		last = max(last, i)
		_, ok := from.confirmed[i]
		switch {
		case ok:
		case from.uncertain[i]:
			d.uncertainDelivered++
		case from.refused[i] != "":
			t.Errorf("%s: message %d delivered although the relay refused it (%s: not stored)", dir, i, from.refused[i])
		default:
			t.Errorf("%s: message %d delivered but never sent", dir, i)
		}
	}
	got := make(map[int]bool, len(to.got))
	for _, i := range to.got {
		got[i] = true
	}
	var missing []string
	for i, seq := range from.confirmed {
		switch {
		case got[i]:
		case accepted == lossRoom && i > last, accepted == lossReplication:
			d.lost = append(d.lost, i)
		default:
			missing = append(missing, fmt.Sprintf("%d (seq %d)", i, seq))
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Errorf("%s: %d messages confirmed with sent but never delivered (%v), e.g. %s",
			dir, len(missing), d, strings.Join(missing[:min(len(missing), 10)], ", "))
	}
	slices.Sort(d.lost)
	return d
}
