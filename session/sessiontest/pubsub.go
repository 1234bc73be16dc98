package sessiontest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/session"
)

func testPubSub(t *testing.T, open opener) {
	t.Run("events reach every subscriber in order", func(t *testing.T) {
		s := open(t)
		create(t, s, "x", longCfg)
		create(t, s, "y", longCfg)
		x1, x2, y1 := subscribe(t, s, "x"), subscribe(t, s, "x"), subscribe(t, s, "y")
		var want []session.Event
		for i := range uint64(fewEvents) {
			ev := session.Event{Type: session.EventMessage, Room: "x", Peer: "a", Seq: i + 1, Body: []byte{byte(i), 1, 2}, Conn: "c1"}
			want = append(want, ev)
			wantErr(t, "Publish", s.Publish(t.Context(), ev), nil)
		}
		for name, sub := range map[string]*session.Subscription{"x1": x1, "x2": x2} {
			for i, w := range want {
				if got := recv(t, sub); !eventEqual(got, w) {
					t.Fatalf("%s: event %d = %+v, want %+v", name, i, got, w)
				}
			}
		}
		left := session.Event{Type: session.EventLeft, Room: "y", Peer: "b", Reason: session.ReasonDropped}
		wantErr(t, "Publish(y)", s.Publish(t.Context(), left), nil)
		if got := recv(t, y1); !eventEqual(got, left) {
			t.Errorf("y1's first event = %+v, want %+v (nothing from room x)", got, left)
		}
	})

	t.Run("from now on", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		early := session.Event{Type: session.EventJoined, Room: "r", Peer: "a"}
		wantErr(t, "Publish before Subscribe", s.Publish(t.Context(), early), nil)
		sub := subscribe(t, s, "r")
		key := session.Event{Type: session.EventKey, Room: "r", Peer: "a", Key: "aa01", Group: "x25519", Conn: "c7"}
		wantErr(t, "Publish", s.Publish(t.Context(), key), nil)
		if got := recv(t, sub); !eventEqual(got, key) {
			t.Errorf("first event = %+v, want %+v", got, key)
		}
	})

	t.Run("Append announces the message", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		join(t, s, "r", "a")
		join(t, s, "r", "b")
		keyAll(t, s, "r", "a", "b")
		sub := subscribe(t, s, "r")
		seq, err := s.Append(t.Context(), "r", "a", "", []byte("ciphertext"))
		wantErr(t, "Append", err, nil)
		want := session.Event{Type: session.EventMessage, Room: "r", Peer: "a", Seq: seq, Body: []byte("ciphertext")}
		if got := recv(t, sub); !eventEqual(got, want) {
			t.Errorf("event after Append = %+v, want %+v", got, want)
		}
	})

	t.Run("bodies are copied", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		sub1, sub2 := subscribe(t, s, "r"), subscribe(t, s, "r")
		body := []byte("ciphertext")
		wantErr(t, "Publish", s.Publish(t.Context(), session.Event{Type: session.EventMessage, Room: "r", Seq: 1, Body: body}), nil)
		copy(body, "XXXXXXXXXX")
		got1 := recv(t, sub1)
		if string(got1.Body) != "ciphertext" {
			t.Errorf("sub1 body = %q, want %q", got1.Body, "ciphertext")
		}
		if len(got1.Body) > 0 {
			got1.Body[0] = 'Y'
		}
		if got2 := recv(t, sub2); string(got2.Body) != "ciphertext" {
			t.Errorf("sub2 body = %q, want %q", got2.Body, "ciphertext")
		}
	})

	t.Run("slow subscriber is ended without blocking Publish", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		slow := subscribe(t, s, "r")
		done := make(chan error, 1)
		go func() {
			for i := range uint64(manyEvents) {
				ev := session.Event{Type: session.EventMessage, Room: "r", Seq: i + 1}
				if err := s.Publish(context.Background(), ev); err != nil {
					done <- fmt.Errorf("event %d: %w", i+1, err)
					return
				}
			}
			done <- nil
		}()
		select {
		case err := <-done:
			wantErr(t, "publishing", err, nil)
		case <-time.After(2 * patience):
			t.Fatalf("%d Publish calls to a room with a stuck subscriber did not return within %v", manyEvents, 2*patience)
		}
		got, err := drain(t, slow)
		wantErr(t, "slow subscription's Err", err, session.ErrSlowSubscriber)
		if len(got) >= manyEvents {
			t.Errorf("stuck subscriber received all %d events, want it ended before", len(got))
		}
		for i, ev := range got {
			if ev.Seq != uint64(i+1) {
				t.Fatalf("stuck subscriber's event %d has Seq %d, want %d (in order, no gaps)", i, ev.Seq, i+1)
			}
		}
		// The room still works for new subscribers.
		sub := subscribe(t, s, "r")
		ev := session.Event{Type: session.EventJoined, Room: "r", Peer: "b"}
		wantErr(t, "Publish", s.Publish(t.Context(), ev), nil)
		if got := recv(t, sub); !eventEqual(got, ev) {
			t.Errorf("new subscriber's event = %+v, want %+v", got, ev)
		}
	})

	t.Run("context cancel ends a subscription", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		ctx, cancel := context.WithCancel(t.Context())
		sub, err := s.Subscribe(ctx, "r")
		wantErr(t, "Subscribe", err, nil)
		other := subscribe(t, s, "r")
		cancel()
		if _, err := drain(t, sub); err != nil {
			t.Errorf("Err after cancel = %v, want nil", err)
		}
		ev := session.Event{Type: session.EventJoined, Room: "r", Peer: "a"}
		wantErr(t, "Publish", s.Publish(t.Context(), ev), nil)
		if got := recv(t, other); !eventEqual(got, ev) {
			t.Errorf("other subscriber's event = %+v, want %+v", got, ev)
		}
	})

	t.Run("Close ends subscriptions", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		sub := subscribe(t, s, "r")
		wantErr(t, "Close", s.Close(), nil)
		if _, err := drain(t, sub); !errors.Is(err, session.ErrClosed) {
			t.Errorf("Err after Close = %v, want %v", err, session.ErrClosed)
		}
	})

	t.Run("missing room", func(t *testing.T) {
		s := open(t)
		_, err := s.Subscribe(t.Context(), "nope")
		wantErr(t, "Subscribe", err, session.ErrRoomNotFound)
	})

	t.Run("publish with no subscriber", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		wantErr(t, "Publish", s.Publish(t.Context(), session.Event{Type: session.EventJoined, Room: "r", Peer: "a"}), nil)
	})
}
