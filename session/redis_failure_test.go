package session_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/session/redistest"
)

// TestRedisStoreOutage stops Redis under a store and starts it again.
func TestRedisStoreOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	s := newRedisStore(t, srv.URL()+"?dial_timeout=500ms", uniquePrefix(t, false))
	ctx := t.Context()
	mustCreate(t, s, "r", longCfg)
	if _, err := s.Join(ctx, "r", member("a")); err != nil {
		t.Fatalf("Join: %v", err)
	}
	sub, err := s.Subscribe(ctx, "r")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}

	srv.Stop()
	if _, err := drainSub(t, sub); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("subscription Err after Redis stopped = %v, want %v", err, session.ErrUnavailable)
	}
	for _, c := range storeCalls("r") {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		start := time.Now()
		err := c.call(cctx, s)
		cancel()
		if !errors.Is(err, session.ErrUnavailable) {
			t.Errorf("%s with Redis down = %v, want %v", c.name, err, session.ErrUnavailable)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s with Redis down took %v, want a quick failure", c.name, d)
		}
	}

	srv.Restart()
	// The first calls may meet connections that died with the server.
	waitUntil(t, 5*time.Second, "Ready to succeed", func() bool { return s.Ready(ctx) == nil })
	// Restarted without persistence, Redis has lost the room.
	if _, err := s.Room(ctx, "r"); !errors.Is(err, session.ErrRoomNotFound) {
		t.Errorf("Room after the restart = %v, want %v", err, session.ErrRoomNotFound)
	}
	mustCreate(t, s, "r", longCfg)
	sub, err = s.Subscribe(ctx, "r")
	if err != nil {
		t.Fatalf("Subscribe after the restart: %v", err)
	}
	ev := session.Event{Type: session.EventJoined, Room: "r", Peer: "a"}
	if err := s.Publish(ctx, ev); err != nil {
		t.Fatalf("Publish after the restart: %v", err)
	}
	select {
	case got, ok := <-sub.C:
		if !ok || got.Peer != "a" {
			t.Errorf("event after the restart = %+v, %v (Err %v); want %+v", got, ok, sub.Err(), ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("no event within 5s after the restart")
	}
	for _, c := range storeCalls("r") {
		if err := c.call(ctx, s); errors.Is(err, session.ErrUnavailable) {
			t.Errorf("%s after the restart = %v", c.name, err)
		}
	}
}

// TestRedisStoreHungRedis freezes Redis (SIGSTOP): calls must give up at
// their context's deadline, with an error wrapping ErrUnavailable and
// context.DeadlineExceeded, and subscriptions must end by the health
// check.
func TestRedisStoreHungRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	s := newRedisStore(t, srv.URL(), uniquePrefix(t, false))
	ctx := t.Context()
	mustCreate(t, s, "r", longCfg)
	sub, err := s.Subscribe(ctx, "r")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}

	srv.Pause()
	defer srv.Resume()
	const timeout = 300 * time.Millisecond
	// All at once: one after the other, they would take longer than the
	// health check (4 s), which could end the Pub/Sub connection under
	// Subscribe before its deadline.
	var wg sync.WaitGroup
	for _, c := range storeCalls("r") {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			start := time.Now()
			err := c.call(cctx, s)
			if !errors.Is(err, session.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s with Redis hung = %v, want an error wrapping %v and %v", c.name, err, session.ErrUnavailable, context.DeadlineExceeded)
			}
			if d := time.Since(start); d > timeout+time.Second {
				t.Errorf("%s with Redis hung took %v, want about its %v deadline", c.name, d, timeout)
			}
		})
	}
	wg.Wait()
	if _, err := drainSub(t, sub); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("subscription Err with Redis hung = %v, want %v", err, session.ErrUnavailable)
	}
	// The Pub/Sub connection is gone: Subscribe opens a new one, to a
	// server that accepts it but never answers.
	cctx, cancel := context.WithTimeout(ctx, timeout)
	start := time.Now()
	_, err = s.Subscribe(cctx, "r")
	cancel()
	if d := time.Since(start); !errors.Is(err, session.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) || d > timeout+time.Second {
		t.Errorf("Subscribe on a new connection with Redis hung = %v after %v, want %v and %v after about %v", err, d, session.ErrUnavailable, context.DeadlineExceeded, timeout)
	}

	srv.Resume()
	waitUntil(t, 5*time.Second, "Touch to succeed", func() bool { return s.Touch(ctx, "r") == nil })
	if _, err := s.Subscribe(ctx, "r"); err != nil {
		t.Errorf("Subscribe after Redis resumed: %v", err)
	}
}

func TestNewRedisStoreErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	for _, tc := range []struct {
		name string
		cfg  session.RedisConfig
	}{
		{"neither URL nor Client", session.RedisConfig{}},
		{"both URL and Client", session.RedisConfig{URL: "redis://127.0.0.1:1", Client: client}},
		{"bad URL", session.RedisConfig{URL: "redis://user:secret@127.0.0.1:1/%zz"}},
		{"bad scheme", session.RedisConfig{URL: "http://user:secret@127.0.0.1:1"}},
		{"bad option", session.RedisConfig{URL: "redis://user:secret@127.0.0.1:1?bogus=1"}},
		{"bad cluster option", session.RedisConfig{URL: "redis://user:secret@127.0.0.1:1?cluster=maybe"}},
		{"negative Budget.PerSource", session.RedisConfig{URL: "redis://user:secret@127.0.0.1:1", Budget: session.Budget{PerSource: -1}}},
		{"negative Budget.Total", session.RedisConfig{URL: "redis://user:secret@127.0.0.1:1", Budget: session.Budget{Total: -1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := session.NewRedisStore(ctx, tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("NewRedisStore succeeded, want an error")
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q repeats the password", err)
			}
			if errors.Is(err, session.ErrUnavailable) {
				t.Errorf("error %v wraps ErrUnavailable, want a config error", err)
			}
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		for _, cfg := range []session.RedisConfig{
			{URL: "redis://127.0.0.1:1?dial_timeout=200ms"},
			{Client: client},
		} {
			s, err := session.NewRedisStore(ctx, cfg)
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, session.ErrUnavailable) {
				t.Errorf("NewRedisStore(%+v) = %v, want %v", cfg, err, session.ErrUnavailable)
			}
		}
	})
}

// storeCall is a Store method call, for tests that try them all.
type storeCall struct {
	name string
	call func(context.Context, session.Store) error
}

// storeCalls returns a call of every Store method but Close on room.
func storeCalls(room string) []storeCall {
	return []storeCall{
		{"CreateRoom", func(ctx context.Context, s session.Store) error { return s.CreateRoom(ctx, "new", longCfg, 10) }},
		{"Room", func(ctx context.Context, s session.Store) error { _, err := s.Room(ctx, room); return err }},
		{"Join", func(ctx context.Context, s session.Store) error { _, err := s.Join(ctx, room, member("b")); return err }},
		{"Reconnect", func(ctx context.Context, s session.Store) error {
			_, err := s.Reconnect(ctx, room, "a", member("a").TokenHash)
			return err
		}},
		{"Disconnect", func(ctx context.Context, s session.Store) error { return s.Disconnect(ctx, room, "a", 1) }},
		{"SetKey", func(ctx context.Context, s session.Store) error {
			_, err := s.SetKey(ctx, room, "a", "g", "k")
			return err
		}},
		{"Append", func(ctx context.Context, s session.Store) error {
			_, err := s.Append(ctx, room, "a", "", []byte("x"))
			return err
		}},
		{"Pending", func(ctx context.Context, s session.Store) error { _, err := s.Pending(ctx, room, "a", 0); return err }},
		{"Ack", func(ctx context.Context, s session.Store) error { return s.Ack(ctx, room, "a", 1) }},
		{"Touch", func(ctx context.Context, s session.Store) error { return s.Touch(ctx, room) }},
		{"Publish", func(ctx context.Context, s session.Store) error {
			return s.Publish(ctx, session.Event{Type: session.EventJoined, Room: room})
		}},
		{"Subscribe", func(ctx context.Context, s session.Store) error { _, err := s.Subscribe(ctx, room); return err }},
		{"Leave", func(ctx context.Context, s session.Store) error { return s.Leave(ctx, room, "a") }},
		{"Rooms", func(ctx context.Context, s session.Store) error { _, err := s.Rooms(ctx); return err }},
		{"Ready", func(ctx context.Context, s session.Store) error { return s.Ready(ctx) }},
	}
}
