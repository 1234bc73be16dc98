package client_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/wire"
)

// Failover: a client with several relay URLs takes its seat back on
// another instance when its own stops, within the room's grace period;
// and a client restored from its State in a new process goes on with the
// conversation without reusing a counter.

// twoInstances starts two relays sharing one real Redis, as two processes
// behind a load balancer would, and returns them.
func twoInstances(t *testing.T, cfg relay.Config) (*relaytest.Server, *relaytest.Server) {
	t.Helper()
	addr := redistest.Start(t)
	prefix := "failover:" + strings.ReplaceAll(t.Name(), "/", ":") + ":"
	cfg.FramesPerSecond, cfg.FrameBurst = 1000, 1000
	r1 := relaytest.NewServer(t, relaytest.NewRedisStore(t, addr, prefix), cfg)
	r2 := relaytest.NewServer(t, relaytest.NewRedisStore(t, addr, prefix), cfg)
	return r1, r2
}

// stop stops an instance as SIGTERM does: its clients get 1001 (going
// away), and it accepts no more connections.
func stop(r *relaytest.Server) {
	r.Relay.Close()
	r.HTTP.Close()
}

// attempts records what Options.OnResumeAttempt reports.
type attempts struct {
	mu  sync.Mutex
	all []client.ResumeAttempt
}

func (a *attempts) record(at client.ResumeAttempt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all = append(a.all, at)
}

func (a *attempts) get() []client.ResumeAttempt {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]client.ResumeAttempt(nil), a.all...)
}

// waitDropped reads a's events until its connection has ended.
func waitDropped(t *testing.T, ctx context.Context, c *client.Client) {
	t.Helper()
	for {
		_, err := c.Next(ctx)
		if errors.Is(err, client.ErrDisconnected) {
			return
		}
		if err != nil && ctx.Err() != nil {
			t.Fatalf("Next: %v", err)
		}
	}
}

// TestResumeOnAnotherInstance: A is connected to instance 1 of two; when
// instance 1 stops, Resume tries it, then instance 2, which gives the seat
// back; the conversation goes on both ways, nothing lost or repeated.
func TestResumeOnAnotherInstance(t *testing.T) {
	r1, r2 := twoInstances(t, relay.Config{ResumeGrace: 30 * time.Second})
	ctx := testContext(t)
	var seen attempts
	a, err := client.DialURLs(ctx, []string{r1.URL, r2.URL}, &client.Options{OnResumeAttempt: seen.record})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got := a.URL(); got != r1.URL {
		t.Fatalf("URL() = %s, want the first, %s", got, r1.URL)
	}
	b := dial(t, ctx, r2.URL, nil)
	room, _, _ := pair(t, ctx, a, b, dh.X25519())
	if room.ResumeGrace != 30*time.Second {
		t.Errorf("Room.ResumeGrace = %v, want the relay's 30s", room.ResumeGrace)
	}
	send(t, ctx, a, "before")
	if m := receive(t, ctx, b); string(m.Plaintext) != "before" {
		t.Fatalf("b received %q", m.Plaintext)
	}

	stop(r1)
	waitDropped(t, ctx, a)
	send(t, ctx, b, "while away")
	if err := a.Resume(ctx); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if got := a.URL(); got != r2.URL {
		t.Errorf("after Resume, URL() = %s, want %s", got, r2.URL)
	}
	at := seen.get()
	if len(at) != 2 || at[0].URL != r1.URL || at[1].URL != r2.URL || at[0].Attempt != 1 || at[1].Attempt != 2 {
		t.Fatalf("attempts %+v, want instance 1 then instance 2", at)
	}
	if at[0].Err != nil || at[1].Err == nil {
		t.Errorf("attempts' errors %v, %v: want none, then instance 1's", at[0].Err, at[1].Err)
	}
	for _, x := range at {
		if x.Left <= 25*time.Second || x.Left > 30*time.Second {
			t.Errorf("attempt %d: Left %v, want a little under the 30s grace", x.Attempt, x.Left)
		}
	}
	if m := receive(t, ctx, a); string(m.Plaintext) != "while away" {
		t.Fatalf("a received %q, want the message sent while away", m.Plaintext)
	}
	send(t, ctx, a, "back")
	if m := receive(t, ctx, b); string(m.Plaintext) != "back" {
		t.Fatalf("b received %q", m.Plaintext)
	}
	send(t, ctx, b, "welcome back")
	if m := receive(t, ctx, a); string(m.Plaintext) != "welcome back" {
		t.Fatalf("a received %q", m.Plaintext)
	}
}

// TestResumeGivesUpAfterGrace: with every instance gone, Resume keeps
// trying, with growing waits, for the room's grace period and no longer,
// then gives up with ErrResumeGaveUp and the last attempt's error.
func TestResumeGivesUpAfterGrace(t *testing.T) {
	const grace = 1500 * time.Millisecond
	r1, r2 := twoInstances(t, relay.Config{ResumeGrace: grace})
	ctx := testContext(t)
	var seen attempts
	a, err := client.DialURLs(ctx, []string{r1.URL, r2.URL}, &client.Options{OnResumeAttempt: seen.record})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Create(ctx, dh.X25519()); err != nil {
		t.Fatal(err)
	}
	stop(r1)
	stop(r2)
	waitDropped(t, ctx, a)
	start := time.Now()
	err = a.Resume(ctx)
	took := time.Since(start)
	if !errors.Is(err, client.ErrResumeGaveUp) || !strings.Contains(err.Error(), "dial") {
		t.Fatalf("Resume = %v, want ErrResumeGaveUp with the last dial error", err)
	}
	t.Logf("Resume: %v after %v", err, took)
	if took > grace+time.Second {
		t.Errorf("Resume took %v, beyond the %v grace", took, grace)
	}
	at := seen.get()
	// 0 + 0 + 0.1 + 0.2 + 0.4 + 0.8 s (±20%) reaches 1.5 s after 6 or so.
	if len(at) < 5 || len(at) > 9 {
		t.Errorf("%d attempts in %v, want about 6: %+v", len(at), took, at)
	}
	for i, x := range at {
		if want := []string{r1.URL, r2.URL}[i%2]; x.URL != want {
			t.Errorf("attempt %d on %s, want %s", x.Attempt, x.URL, want)
		}
		if i > 0 && x.Left > at[i-1].Left {
			t.Errorf("attempt %d: Left %v grew from %v", x.Attempt, x.Left, at[i-1].Left)
		}
	}
	if _, ok := a.Room(); !ok {
		t.Error("after giving up the client left the room; it may Resume again")
	}
}

// TestResumeFinalErrorStops: an error that no retry can fix
// (resume_expired) ends Resume at once, without trying the other URLs.
func TestResumeFinalErrorStops(t *testing.T) {
	r1, r2 := twoInstances(t, relay.Config{ResumeGrace: 200 * time.Millisecond})
	ctx := testContext(t)
	var seen attempts
	var cut relaytest.Cutter
	a, err := client.DialURLs(ctx, []string{r1.URL, r2.URL}, &client.Options{OnResumeAttempt: seen.record, HTTPClient: cut.HTTPClient()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := dial(t, ctx, r1.URL, nil)
	pair(t, ctx, a, b, dh.X25519())
	cut.Cut()
	waitDropped(t, ctx, a)
	for {
		ev := nextPeerEvent(t, ctx, b)
		if ev.Type == client.EventPeerLeft && ev.Reason == wire.ReasonExpired {
			break
		}
	}
	err = a.Resume(ctx)
	var re *client.Error
	if !errors.As(err, &re) || re.Code != wire.CodeResumeExpired {
		t.Fatalf("Resume = %v, want resume_expired", err)
	}
	if n := len(seen.get()); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

// TestDialURLs: Dial takes the first URL that answers, and reports every
// URL's error when none does.
func TestDialURLs(t *testing.T) {
	ctx := testContext(t)
	dead := deadURL(t)
	url := newRelay(t)
	c, err := client.DialURLs(ctx, []string{dead, url}, nil)
	if err != nil {
		t.Fatalf("DialURLs: %v", err)
	}
	defer c.Close()
	if c.URL() != url {
		t.Errorf("URL() = %s, want %s", c.URL(), url)
	}
	_, err = client.DialURLs(ctx, []string{dead, dead + "?again"}, nil)
	if err == nil || strings.Count(err.Error(), "dial ws://") != 2 {
		t.Errorf("DialURLs with no relay = %v, want both URLs' errors", err)
	}
	if _, err := client.DialURLs(ctx, nil, nil); err == nil {
		t.Error("DialURLs with no URL succeeded")
	}
}

// deadURL returns a WebSocket URL where nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	r := relaytest.NewServer(t, relaytest.NewMemoryStore(), relay.Config{})
	stop(r)
	return r.URL
}

// stateBox keeps the States a client saves, as a file would, and counts
// them.
type stateBox struct {
	mu    sync.Mutex
	last  []byte
	saves int
	fail  error // returned instead of saving, when set
}

func (s *stateBox) save(st client.State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	s.last, s.saves = b, s.saves+1
	return nil
}

func (s *stateBox) load(t *testing.T) client.State {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var st client.State
	if err := json.Unmarshal(s.last, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRestore: A saves its State as it goes and "dies" (its connection
// drops and the process is gone); a new client restored from the last
// State takes the seat back, gets what B sent meanwhile exactly once, and
// the conversation goes on both ways: its counters went on from the saved
// ones, or B would have dropped its messages as replays.
func TestRestore(t *testing.T) {
	url := newRelay(t)
	ctx := testContext(t)
	var box stateBox
	logs := &logRecorder{}
	a := dial(t, ctx, url, &client.Options{SaveState: box.save})
	b := dial(t, ctx, url, &client.Options{Logger: slog.New(logs)})
	_, ha, _ := pair(t, ctx, a, b, dh.P256())
	for _, text := range []string{"a1", "a2"} {
		send(t, ctx, a, text)
		if m := receive(t, ctx, b); string(m.Plaintext) != text {
			t.Fatalf("b received %q", m.Plaintext)
		}
	}
	send(t, ctx, b, "b1")
	if m := receive(t, ctx, a); string(m.Plaintext) != "b1" {
		t.Fatalf("a received %q", m.Plaintext)
	}
	st := box.load(t)
	if st.NextSend != 2 || st.NextReceive != 1 || st.LastSeq != 3 || !st.HandshakeComplete || len(st.Unconfirmed) != 0 {
		t.Fatalf("saved %s with next send %d, next receive %d, last seq %d, %d unconfirmed; want 2, 1, 3, 0",
			st, st.NextSend, st.NextReceive, st.LastSeq, len(st.Unconfirmed))
	}
	if s := st.String() + st.GoString(); strings.Contains(s, st.PrivateKey) || strings.Contains(s, st.ResumeToken) {
		t.Errorf("State.String shows a secret: %s", s)
	}
	a.Close() // the process dies: a drop, not a leave

	send(t, ctx, b, "b2")
	send(t, ctx, b, "b3")
	var seen attempts
	a2, err := client.Restore(ctx, []string{url}, st, &client.Options{SaveState: box.save, OnResumeAttempt: seen.record})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	defer a2.Close()
	if n := len(seen.get()); n < 1 {
		t.Error("Restore reported no attempt")
	}
	hs, err := a2.Handshake(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if hs.SafetyNumber != ha.SafetyNumber {
		t.Errorf("restored safety number %s, want %s", hs.SafetyNumber, ha.SafetyNumber)
	}
	for _, want := range []string{"b2", "b3"} {
		if m := receive(t, ctx, a2); string(m.Plaintext) != want {
			t.Fatalf("restored a received %q, want %q", m.Plaintext, want)
		}
	}
	send(t, ctx, a2, "a3")
	if m := receive(t, ctx, b); string(m.Plaintext) != "a3" {
		t.Fatalf("b received %q, want a3", m.Plaintext)
	}
	send(t, ctx, b, "b4")
	if m := receive(t, ctx, a2); string(m.Plaintext) != "b4" {
		t.Fatalf("restored a received %q, want b4", m.Plaintext)
	}
	if got := box.load(t).NextSend; got != 3 {
		t.Errorf("after a3 the saved next send is %d, want 3", got)
	}
	if n := logs.count("duplicate message body dropped"); n != 0 {
		t.Errorf("b dropped %d bodies as copies", n)
	}
}

// TestRestoreSendsUnconfirmedAgain: the relay stored A's message but
// answered unavailable, and A died before sending it again. The restored
// client sends the same body (the same counter) again; B gets the message
// once and drops the copy.
func TestRestoreSendsUnconfirmedAgain(t *testing.T) {
	store := &flakyStore{Store: relaytest.NewMemoryStore()}
	url := relaytest.NewServer(t, store, relay.Config{FramesPerSecond: 1000, FrameBurst: 1000}).URL
	ctx := testContext(t)
	var box stateBox
	logs := &logRecorder{}
	a := dial(t, ctx, url, &client.Options{SaveState: box.save})
	b := dial(t, ctx, url, &client.Options{Logger: slog.New(logs)})
	pair(t, ctx, a, b, dh.X25519())
	store.mode.Store(appendStoreThenFail)
	if _, err := a.Send(ctx, []byte("maybe")); !errors.Is(err, client.ErrUnconfirmed) {
		t.Fatalf("Send = %v, want ErrUnconfirmed", err)
	}
	st := box.load(t)
	if len(st.Unconfirmed) != 1 || st.NextSend != 1 {
		t.Fatalf("saved %d unconfirmed, next send %d; want 1, 1", len(st.Unconfirmed), st.NextSend)
	}
	a.Close()
	a2, err := client.Restore(ctx, []string{url}, st, nil)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	defer a2.Close()
	send(t, ctx, a2, "after")
	for _, want := range []string{"maybe", "after"} {
		if m := receive(t, ctx, b); string(m.Plaintext) != want {
			t.Fatalf("b received %q, want %q", m.Plaintext, want)
		}
	}
	if n := logs.count("duplicate message body dropped"); n != 1 {
		t.Errorf("b dropped %d copies, want 1", n)
	}
}

// TestSaveStateFailureSendsNothing: when the State cannot be saved, Send
// sends nothing (a restored process could otherwise reuse the counter),
// and the next Send, once saving works, goes out with a later counter.
func TestSaveStateFailureSendsNothing(t *testing.T) {
	url := newRelay(t)
	ctx := testContext(t)
	var box stateBox
	a := dial(t, ctx, url, &client.Options{SaveState: box.save})
	b := dial(t, ctx, url, nil)
	pair(t, ctx, a, b, dh.X25519())
	diskFull := errors.New("disk full")
	box.mu.Lock()
	box.fail = diskFull
	box.mu.Unlock()
	if _, err := a.Send(ctx, []byte("lost")); !errors.Is(err, diskFull) {
		t.Fatalf("Send = %v, want the save error", err)
	}
	box.mu.Lock()
	box.fail = nil
	box.mu.Unlock()
	send(t, ctx, a, "kept")
	if m := receive(t, ctx, b); string(m.Plaintext) != "kept" {
		t.Fatalf("b received %q, want only the message saved before it left", m.Plaintext)
	}
	if st := box.load(t); st.NextSend != 2 {
		t.Errorf("saved next send %d, want 2 (counter 0 skipped)", st.NextSend)
	}
}

// TestRestoreBadState: Restore refuses a State it cannot use, before it
// dials anything.
func TestRestoreBadState(t *testing.T) {
	ctx := testContext(t)
	g := dh.X25519()
	priv, err := g.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := client.State{Version: client.StateVersion, Room: "r", Peer: "p", ResumeToken: "tok", Group: "x25519", PrivateKey: priv.Hex(), KeyGroup: "x25519"}
	tests := []struct {
		name   string
		change func(*client.State)
	}{
		{"version", func(s *client.State) { s.Version = 2 }},
		{"no token", func(s *client.State) { s.ResumeToken = "" }},
		{"unknown group", func(s *client.State) { s.Group = "modp13" }},
		{"group by number", func(s *client.State) { s.Group = "14" }},
		{"bad private key", func(s *client.State) { s.PrivateKey = "zz" }},
		{"key in another group", func(s *client.State) { s.KeyGroup = "p256" }},
		{"key sent without key", func(s *client.State) { s.PrivateKey, s.KeyGroup, s.KeySent = "", "", true }},
		{"handshake without peer key", func(s *client.State) { s.HandshakeComplete = true }},
		{"counters without handshake", func(s *client.State) { s.NextSend = 4 }},
		{"bad peer key", func(s *client.State) { s.PeerKey = "00" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := good
			tt.change(&st)
			_, err := client.Restore(ctx, []string{"ws://127.0.0.1:1/v1/ws"}, st, nil)
			if !errors.Is(err, client.ErrBadState) {
				t.Errorf("Restore = %v, want ErrBadState", err)
			}
		})
	}
	legacy := client.State{Version: client.StateVersion, Room: "r", Peer: "p", ResumeToken: "tok", Group: "modp5"}
	if _, err := client.Restore(ctx, []string{"ws://127.0.0.1:1/v1/ws"}, legacy, nil); !errors.Is(err, client.ErrLegacyGroup) {
		t.Errorf("Restore of a modp5 room = %v, want ErrLegacyGroup", err)
	}
}

// unavailableOnce is a store whose next Reconnect (the store's half of a
// resume) fails as if Redis were unreachable, once.
type unavailableOnce struct {
	session.Store
	armed atomic.Bool
}

func (s *unavailableOnce) Reconnect(ctx context.Context, room, peer string, tokenHash [32]byte) (session.Room, error) {
	if s.armed.Swap(false) {
		return session.Room{}, fmt.Errorf("test: %w", session.ErrUnavailable)
	}
	return s.Store.Reconnect(ctx, room, peer, tokenHash)
}

// TestResumeRetriesUnavailable: a resume the relay answers with
// unavailable is tried again after a short wait, and succeeds; nothing is
// lost.
func TestResumeRetriesUnavailable(t *testing.T) {
	store := &unavailableOnce{Store: relaytest.NewMemoryStore()}
	url := relaytest.NewServer(t, store, relay.Config{}).URL
	ctx := testContext(t)
	var seen attempts
	var cut relaytest.Cutter
	a := dial(t, ctx, url, &client.Options{OnResumeAttempt: seen.record, HTTPClient: cut.HTTPClient()})
	b := dial(t, ctx, url, nil)
	pair(t, ctx, a, b, dh.X25519())
	cut.Cut()
	waitDropped(t, ctx, a)
	send(t, ctx, b, "while away")
	store.armed.Store(true)
	if err := a.Resume(ctx); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	at := seen.get()
	var re *client.Error
	if len(at) != 2 || !errors.As(at[1].Err, &re) || re.Code != wire.CodeUnavailable {
		t.Fatalf("attempts %+v, want a second one after unavailable", at)
	}
	if m := receive(t, ctx, a); string(m.Plaintext) != "while away" {
		t.Fatalf("a received %q", m.Plaintext)
	}
}
