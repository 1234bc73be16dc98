package session_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/session/redistest"
)

// TestRedisStoreCancelledSubscribe checks that Subscribe calls whose
// context ends early leave the other subscriptions alone.
func TestRedisStoreCancelledSubscribe(t *testing.T) {
	t.Parallel()
	s := newRedisStore(t, redistest.StartServer(t).URL(), uniquePrefix(t, false))
	ctx := t.Context()
	for _, id := range []string{"r", "other0", "other1", "other2"} {
		mustCreate(t, s, id, longCfg)
	}
	sub, err := s.Subscribe(ctx, "r")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	for i := range 50 {
		cctx, cancel := context.WithCancel(ctx)
		if i%2 == 0 {
			cancel()
		} else {
			time.AfterFunc(time.Duration(i)*10*time.Microsecond, cancel)
		}
		if sub, err := s.Subscribe(cctx, fmt.Sprint("other", i%3)); err == nil {
			drainSub(t, sub)
		}
		cancel()
	}
	ev := session.Event{Type: session.EventJoined, Room: "r", Peer: "a"}
	if err := s.Publish(ctx, ev); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	select {
	case got, ok := <-sub.C:
		if !ok || got.Peer != "a" {
			t.Errorf("event = %+v, %v (Err %v); want %+v", got, ok, sub.Err(), ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("no event within 5s")
	}
}

// TestRedisStoreSubscriberBuffer checks RedisConfig.SubscriberBuffer.
func TestRedisStoreSubscriberBuffer(t *testing.T) {
	t.Parallel()
	url := redistest.StartServer(t).URL()
	s, err := session.NewRedisStore(t.Context(), session.RedisConfig{URL: url, Prefix: uniquePrefix(t, false), SubscriberBuffer: 2})
	if err != nil {
		t.Fatalf("NewRedisStore: %v", err)
	}
	defer s.Close()
	ctx := t.Context()
	mustCreate(t, s, "r", longCfg)
	slow, err := s.Subscribe(ctx, "r")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	// Events reach the subscribers of a store one after the other, for
	// each event in turn: once probe has all three, slow has had its turn.
	probe, err := s.Subscribe(ctx, "r")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	for i := range 3 {
		if err := s.Publish(ctx, session.Event{Type: session.EventMessage, Room: "r", Seq: uint64(i + 1)}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		select {
		case <-probe.C:
		case <-time.After(5 * time.Second):
			t.Fatalf("probe got no event %d within 5s (Err %v)", i+1, probe.Err())
		}
	}
	evs, err := drainSub(t, slow)
	if len(evs) != 2 || !errors.Is(err, session.ErrSlowSubscriber) {
		t.Errorf("slow subscriber got %d events and Err %v, want 2 and %v", len(evs), err, session.ErrSlowSubscriber)
	}
}

// TestRedisStoreRoomRecreated checks that a subscription to a room that
// expired ends when a new room with its ID publishes, before any sweep.
func TestRedisStoreRoomRecreated(t *testing.T) {
	t.Parallel()
	url := redistest.StartServer(t).URL()
	s, err := session.NewRedisStore(t.Context(), session.RedisConfig{URL: url, Prefix: uniquePrefix(t, false), SweepInterval: time.Hour})
	if err != nil {
		t.Fatalf("NewRedisStore: %v", err)
	}
	defer s.Close()
	ctx := t.Context()
	short := longCfg
	short.TTL = 200 * time.Millisecond
	mustCreate(t, s, "r", short)
	old, err := s.Subscribe(ctx, "r")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	waitUntil(t, 5*time.Second, "r to expire", func() bool {
		_, err := s.Room(ctx, "r")
		return errors.Is(err, session.ErrRoomNotFound)
	})
	mustCreate(t, s, "r", longCfg)
	sub, err := s.Subscribe(ctx, "r")
	if err != nil {
		t.Fatalf("Subscribe to the new r: %v", err)
	}
	if err := s.Publish(ctx, session.Event{Type: session.EventJoined, Room: "r", Peer: "a"}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if evs, err := drainSub(t, old); len(evs) != 0 || !errors.Is(err, session.ErrRoomNotFound) {
		t.Errorf("old subscription got %d events and Err %v, want none and %v", len(evs), err, session.ErrRoomNotFound)
	}
	select {
	case ev, ok := <-sub.C:
		if !ok || ev.Peer != "a" {
			t.Errorf("new subscription's event = %+v, %v (Err %v)", ev, ok, sub.Err())
		}
	case <-time.After(5 * time.Second):
		t.Error("new subscription got no event within 5s")
	}
}

// TestRedisStoreCloseLeavesNoGoroutines checks that Close stops the
// sweeper and the Pub/Sub readers, and that subscriptions leave nothing.
func TestRedisStoreCloseLeavesNoGoroutines(t *testing.T) {
	// Not parallel: it counts the process's goroutines.
	url := redistest.StartServer(t).URL()
	before := runtime.NumGoroutine()
	for i := range 5 {
		s, err := session.NewRedisStore(t.Context(), session.RedisConfig{URL: url, Prefix: uniquePrefix(t, false), SweepInterval: time.Millisecond})
		if err != nil {
			t.Fatalf("NewRedisStore: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		for j := range 5 {
			room := fmt.Sprint("r", j)
			mustCreate(t, s, room, longCfg)
			if _, err := s.Subscribe(t.Context(), room); err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			if _, err := s.Subscribe(ctx, room); err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
		}
		if i%2 == 0 {
			cancel() // ends half the subscriptions before Close
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		cancel()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, want at most %d as before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
