// Package sessiontest is the conformance suite for [session.Store]
// implementations. Every store runs the same suite, from its own test
// file:
//
//	func TestMemoryStore(t *testing.T) {
//		sessiontest.Run(t, func(t *testing.T) session.Store {
//			return session.NewMemoryStore(session.MemoryConfig{})
//		})
//	}
//
// The suite uses real time. Expiry tests give rooms TTLs of a few hundred
// milliseconds and wait, polling, for what must happen; nothing asserts
// that a store is fast. A store with a background sweeper should sweep
// well within a second for the suite to finish quickly.
package sessiontest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/internal/testkit"
	"github.com/keyrelay/keyrelay/session"
)

// Timing and sizes used by the suite.
const (
	// shortTTL and shortGrace are used where a test waits for expiry.
	shortTTL   = 300 * time.Millisecond
	shortGrace = 200 * time.Millisecond
	// patience bounds every wait for something that must happen.
	patience = 5 * time.Second
	// fewEvents are published to subscribers that read only afterwards;
	// a store must buffer at least that many.
	fewEvents = 32
	// manyEvents are published to a subscriber that never reads; a store
	// must end such a subscriber before it falls that far behind.
	manyEvents = 4096
)

// longCfg is a room that does not expire, nor lose a member, during a test.
var longCfg = session.RoomConfig{TTL: time.Minute, ResumeGrace: time.Minute, MaxPending: 16}

// Run runs the conformance suite. newStore must return a new, empty store
// each time it is called; Run closes every store it gets (a second Close
// returning ErrClosed is fine), and newStore may register its own
// t.Cleanup, which runs after that Close. The suite's subtests call
// t.Parallel, so several stores are open at once.
//
// Requirements beyond the Store documentation: a subscription must buffer
// at least 32 events and must be ended as slow before it falls 4096 events
// behind.
func Run(t *testing.T, newStore func(t *testing.T) session.Store) {
	open := func(t *testing.T) session.Store {
		t.Helper()
		s := newStore(t)
		testkit.CloseAtEnd(t, s.Close, session.ErrClosed, patience)
		return s
	}
	for _, tc := range []struct {
		name string
		test func(*testing.T, opener)
	}{
		{"CreateRoom", testCreateRoom},
		{"Room", testRoom},
		{"Join", testJoin},
		{"Reconnect", testReconnect},
		{"Disconnect", testDisconnect},
		{"Leave", testLeave},
		{"SetKey", testSetKey},
		{"Generations", testGenerations},
		{"Reflection", testReflection},
		{"Messages", testMessages},
		{"PendingBytes", testPendingBytes},
		{"GraceEnds", testGraceEnds},
		{"Unattended", testUnattended},
		{"Touch", testTouch},
		{"Activity", testActivity},
		{"Expiry", testExpiry},
		{"PubSub", testPubSub},
		{"Concurrency", testConcurrency},
		{"RoomsAndReady", testRoomsAndReady},
		{"Closed", testClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, open)
		})
	}
}

// opener returns a new store that is closed when the test ends.
type opener func(t *testing.T) session.Store

// token returns the resume-token hash of member id.
func token(id string) [32]byte { return sha256.Sum256([]byte("resume token of " + id)) }

// member returns member id, with its token hash.
func member(id string) session.Member { return session.Member{ID: id, TokenHash: token(id)} }

// msg returns the message seq from from with body.
func msg(seq uint64, from, body string) session.Message {
	return session.Message{Seq: seq, From: from, Body: []byte(body)}
}

// create creates room id with cfg.
func create(t *testing.T, s session.Store, id string, cfg session.RoomConfig) {
	t.Helper()
	if err := s.CreateRoom(t.Context(), id, cfg, 0); err != nil {
		t.Fatalf("CreateRoom(%q): %v", id, err)
	}
}

// setup creates room id with cfg and joins members to it, in order.
func setup(t *testing.T, s session.Store, id string, cfg session.RoomConfig, members ...string) {
	t.Helper()
	create(t, s, id, cfg)
	for _, m := range members {
		join(t, s, id, m)
	}
}

// keyAll stores a public key for each of members ("key of a", …): a room
// stores messages only once both members have keys.
func keyAll(t *testing.T, s session.Store, room string, members ...string) {
	t.Helper()
	for _, m := range members {
		if _, err := s.SetKey(t.Context(), room, m, "x25519", "key of "+m); err != nil {
			t.Fatalf("SetKey(%q, %q): %v", room, m, err)
		}
	}
}

// join joins member id to room.
func join(t *testing.T, s session.Store, room, id string) session.Room {
	t.Helper()
	r, err := s.Join(t.Context(), room, member(id))
	if err != nil {
		t.Fatalf("Join(%q, %q): %v", room, id, err)
	}
	return r
}

// disconnect disconnects member id from room, as the connection holding
// its seat (its current Generation) does.
func disconnect(t *testing.T, s session.Store, room, id string) {
	t.Helper()
	r, err := s.Room(t.Context(), room)
	if err != nil {
		t.Fatalf("Room(%q): %v", room, err)
	}
	m, ok := r.Member(id)
	if !ok {
		t.Fatalf("Room(%q) has no member %q", room, id)
	}
	if err := s.Disconnect(t.Context(), room, id, m.Generation); err != nil {
		t.Fatalf("Disconnect(%q, %q): %v", room, id, err)
	}
}

// appendMsg appends body from member from and returns its sequence number.
func appendMsg(t *testing.T, s session.Store, room, from, body string) uint64 {
	t.Helper()
	seq, err := s.Append(t.Context(), room, from, "", []byte(body))
	if err != nil {
		t.Fatalf("Append(%q, %q): %v", room, from, err)
	}
	return seq
}

// getRoom returns a snapshot of room id.
func getRoom(t *testing.T, s session.Store, id string) session.Room {
	t.Helper()
	r, err := s.Room(t.Context(), id)
	if err != nil {
		t.Fatalf("Room(%q): %v", id, err)
	}
	return r
}

// countRooms returns s.Rooms.
func countRooms(t *testing.T, s session.Store) int {
	t.Helper()
	n, err := s.Rooms(t.Context())
	if err != nil {
		t.Fatalf("Rooms: %v", err)
	}
	return n
}

// memberIDs returns the IDs of r's members, in order.
func memberIDs(r session.Room) []string {
	var ids []string
	for _, m := range r.Members {
		ids = append(ids, m.ID)
	}
	return ids
}

// checkPending checks that member id's messages after after are want.
func checkPending(t *testing.T, s session.Store, room, id string, after uint64, want ...session.Message) {
	t.Helper()
	got, err := s.Pending(t.Context(), room, id, after)
	if err != nil {
		t.Fatalf("Pending(%q, %q, %d): %v", room, id, after, err)
	}
	if !slices.EqualFunc(got, want, func(a, b session.Message) bool {
		return a.Seq == b.Seq && a.From == b.From && bytes.Equal(a.Body, b.Body)
	}) {
		t.Errorf("Pending(%q, %q, %d) = %s, want %s", room, id, after, fmtMessages(got), fmtMessages(want))
	}
}

func fmtMessages(ms []session.Message) string {
	var b bytes.Buffer
	b.WriteString("[")
	for i, m := range ms {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%d:%s:%q", m.Seq, m.From, m.Body)
	}
	b.WriteString("]")
	return b.String()
}

// subscribe subscribes to room until the test ends.
func subscribe(t *testing.T, s session.Store, room string) *session.Subscription {
	t.Helper()
	sub, err := s.Subscribe(t.Context(), room)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", room, err)
	}
	return sub
}

// recv returns sub's next event, failing if none comes within patience.
func recv(t *testing.T, sub *session.Subscription) session.Event {
	t.Helper()
	select {
	case ev, ok := <-sub.C:
		if !ok {
			t.Fatalf("subscription ended (Err %v), want an event", sub.Err())
		}
		return *ev
	case <-time.After(patience):
		t.Fatalf("no event within %v", patience)
		panic("unreachable")
	}
}

// drain reads sub until it ends and returns its events and Err, failing if
// it does not end within patience.
func drain(t *testing.T, sub *session.Subscription) ([]session.Event, error) {
	t.Helper()
	timeout := time.After(patience)
	var evs []session.Event
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				return evs, sub.Err()
			}
			evs = append(evs, *ev)
		case <-timeout:
			t.Fatalf("subscription did not end within %v (%d events read)", patience, len(evs))
		}
	}
}

// eventEqual reports whether a and b are the same event.
func eventEqual(a, b session.Event) bool {
	return a.Type == b.Type && a.Room == b.Room && a.Peer == b.Peer && a.Key == b.Key &&
		a.Group == b.Group && a.Seq == b.Seq && bytes.Equal(a.Body, b.Body) && a.Reason == b.Reason &&
		a.Conn == b.Conn
}

// waitFor polls cond until it holds, failing the test if it does not within
// timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantErr reports an error unless errors.Is(got, want); want nil means no
// error.
func wantErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Errorf("%s: got error %v, want %v", what, got, want)
	}
}
