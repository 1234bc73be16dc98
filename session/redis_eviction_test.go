package session_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/session/redistest"
)

// logBuffer is a slog.Logger's output, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newLogger returns a logger that writes text to a buffer.
func newLogger() (*slog.Logger, *logBuffer) {
	b := new(logBuffer)
	return slog.New(slog.NewTextHandler(b, nil)), b
}

// evictionStore returns a store on srv configured by cfg (URL, Prefix and
// SweepInterval filled in), closed when the test ends.
func evictionStore(t *testing.T, srv *redistest.Server, cfg session.RedisConfig) *session.RedisStore {
	t.Helper()
	cfg.URL, cfg.Prefix, cfg.SweepInterval = srv.URL(), uniquePrefix(t, false), testSweep
	s, err := session.NewRedisStore(t.Context(), cfg)
	if err != nil {
		t.Fatalf("NewRedisStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRedisStoreRefusesEvictingPolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy string
		args   []string
	}{
		{"volatile-lru", []string{"--maxmemory", "2mb", "--maxmemory-policy", "volatile-lru"}},
		// A managed Redis that refuses CONFIG: the policy comes from INFO.
		{"allkeys-lru", []string{"--maxmemory-policy", "allkeys-lru", "--rename-command", "CONFIG", ""}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			srv := redistest.StartServerArgs(t, tc.args...)
			policy := tc.policy
			s, err := session.NewRedisStore(t.Context(), session.RedisConfig{URL: srv.URL(), Prefix: uniquePrefix(t, false)})
			if err == nil {
				s.Close()
				t.Fatalf("NewRedisStore under maxmemory-policy %s succeeded, want an error", policy)
			}
			if !errors.Is(err, session.ErrEvictingRedis) || errors.Is(err, session.ErrUnavailable) {
				t.Errorf("NewRedisStore = %v, want %v and not %v", err, session.ErrEvictingRedis, session.ErrUnavailable)
			}
			for _, want := range []string{strconv.Quote(policy), "CONFIG SET maxmemory-policy noeviction"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("NewRedisStore's error %q does not say %q", err, want)
				}
			}

			logger, logs := newLogger()
			s = evictionStore(t, srv, session.RedisConfig{AllowEviction: true, Logger: logger})
			if err := s.Ready(t.Context()); err != nil {
				t.Errorf("Ready with AllowEviction: %v", err)
			}
			if got := logs.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, policy) {
				t.Errorf("log with AllowEviction = %q, want a warning naming %s", got, policy)
			}
		})
	}
}

func TestRedisStorePolicyChangesAtRunTime(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	c := newClient(t, srv.Addr)
	ctx := t.Context()
	logger, logs := newLogger()
	s := evictionStore(t, srv, session.RedisConfig{Logger: logger, PolicyCheckInterval: testSweep})
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready under noeviction: %v", err)
	}
	if err := c.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "Ready to fail under allkeys-lru", func() bool {
		return errors.Is(s.Ready(ctx), session.ErrEvictingRedis)
	})
	if err := s.Ready(ctx); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("Ready under allkeys-lru = %v, want %v too", err, session.ErrUnavailable)
	}
	if got := logs.String(); !strings.Contains(got, "level=ERROR") || !strings.Contains(got, "allkeys-lru") {
		t.Errorf("log = %q, want an error naming allkeys-lru", got)
	}
	if err := c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "Ready to succeed under noeviction again", func() bool { return s.Ready(ctx) == nil })
}

// fill writes keys of 64 KiB without a TTL until Redis is full under
// noeviction and refuses writes: it lowers maxmemory to below what Redis
// then uses, so that the state is stable (Redis cannot free anything).
// unfill lifts the limit.
func fill(t *testing.T, c *redis.Client) (unfill func()) {
	t.Helper()
	ctx := t.Context()
	big := strings.Repeat("x", 64<<10)
	for i := range 32 {
		if err := c.Set(ctx, fmt.Sprintf("filler:%d", i), big, 0).Err(); err != nil {
			t.Fatalf("SET filler: %v", err)
		}
	}
	if err := c.ConfigSet(ctx, "maxmemory", "1mb").Err(); err != nil {
		t.Fatalf("CONFIG SET maxmemory: %v", err)
	}
	if err := c.Set(ctx, "probe", "x", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("SET on a full Redis = %v, want OOM", err)
	}
	return func() {
		if err := c.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
			t.Fatalf("CONFIG SET maxmemory 0: %v", err)
		}
	}
}

func TestRedisStoreReadyWhenFull(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	c := newClient(t, srv.Addr)
	ctx := t.Context()
	s := evictionStore(t, srv, session.RedisConfig{})
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	unfill := fill(t, c)
	if err := s.Ready(ctx); !errors.Is(err, session.ErrUnavailable) {
		t.Errorf("Ready with Redis full under noeviction = %v, want %v", err, session.ErrUnavailable)
	}
	unfill()
	if err := s.Ready(ctx); err != nil {
		t.Errorf("Ready once Redis has room: %v", err)
	}
}

func TestRedisStoreDisconnectRetried(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	c := newClient(t, srv.Addr)
	ctx := t.Context()
	logger, _ := newLogger()
	s := evictionStore(t, srv, session.RedisConfig{Logger: logger})
	mustCreate(t, s, "r", longCfg)
	for _, id := range []string{"a", "b"} {
		if _, err := s.Join(ctx, "r", member(id)); err != nil {
			t.Fatalf("Join(%s): %v", id, err)
		}
	}
	sub, err := s.Subscribe(ctx, "r") // b's relay, listening for a's departure
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}

	unfill := fill(t, c)
	dropped := time.Now()
	if err := s.Disconnect(ctx, "r", "a", 1); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Disconnect with Redis full = %v, want %v", err, session.ErrUnavailable)
	}
	time.Sleep(5 * testSweep) // retries that Redis refuses
	if r, err := s.Room(ctx, "r"); err != nil || !mustMember(t, r, "a").Connected {
		t.Fatalf("Room with Redis full = %+v, %v; want a still connected", r, err)
	}
	time.Sleep(500 * time.Millisecond)
	unfill()
	freed := time.Now()

	waitUntil(t, 5*time.Second, "the disconnect to land", func() bool {
		r, err := s.Room(ctx, "r")
		return err == nil && !mustMember(t, r, "a").Connected
	})
	r, err := s.Room(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	// Dated from the failed call, not from the retry.
	if at := mustMember(t, r, "a").DisconnectedAt; at.Before(dropped.Add(-time.Second)) || at.After(freed.Add(-250*time.Millisecond)) {
		t.Errorf("DisconnectedAt = %v, want about %v (the call), not %v (the retry)", at, dropped, freed)
	}
	select {
	case ev := <-sub.C:
		if ev == nil || ev.Type != session.EventLeft || ev.Peer != "a" || ev.Reason != session.ReasonDropped {
			t.Errorf("event after the retry = %+v, want a's EventLeft, dropped", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("no EventLeft within 5s of the retry")
	}
	// Once: a second Disconnect of the same generation changes nothing.
	if err := s.Disconnect(ctx, "r", "a", 1); err != nil {
		t.Errorf("Disconnect after the retry: %v", err)
	}
	if r2, _ := s.Room(ctx, "r"); !mustMember(t, r2, "a").DisconnectedAt.Equal(mustMember(t, r, "a").DisconnectedAt) {
		t.Errorf("DisconnectedAt moved from %v to %v", mustMember(t, r, "a").DisconnectedAt, mustMember(t, r2, "a").DisconnectedAt)
	}
}

// mustMember returns r's member id, failing the test if there is none.
func mustMember(t *testing.T, r session.Room, id string) session.Member {
	t.Helper()
	m, ok := r.Member(id)
	if !ok {
		t.Fatalf("room %+v has no member %q", r, id)
	}
	return m
}

// keyedRoom creates room r with members a and b, both with keys, in s.
func keyedRoom(t *testing.T, s session.Store) {
	t.Helper()
	ctx := t.Context()
	mustCreate(t, s, "r", longCfg)
	for _, id := range []string{"a", "b"} {
		if _, err := s.Join(ctx, "r", member(id)); err != nil {
			t.Fatalf("Join(%s): %v", id, err)
		}
		if _, err := s.SetKey(ctx, "r", id, "g", "key-"+id); err != nil {
			t.Fatalf("SetKey(%s): %v", id, err)
		}
	}
}

// TestRedisStoreEvictedMailbox lets Redis evict a mailbox for real: under
// volatile-lru (sampling every key, so that LRU picks the idlest), it fills
// Redis past maxmemory with keys that have a TTL while keeping the room's
// hash recently used, until the stream of b's messages is evicted. b's
// Pending must then say that messages were lost.
func TestRedisStoreEvictedMailbox(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServerArgs(t, "--maxmemory-policy", "volatile-lru", "--maxmemory-samples", "64")
	c := newClient(t, srv.Addr)
	ctx := t.Context()
	logger, _ := newLogger()
	s := evictionStore(t, srv, session.RedisConfig{AllowEviction: true, Logger: logger})
	keyedRoom(t, s)
	body := bytes.Repeat([]byte("m"), 1000)
	const n = 10
	for range n {
		if _, err := s.Append(ctx, "r", "a", "", body); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	boxes, err := c.Keys(ctx, "*mbox:r:*").Result()
	if err != nil || len(boxes) != 1 {
		t.Fatalf("mailbox keys = %q, %v; want b's only", boxes, err)
	}
	if msgs, err := s.Pending(ctx, "r", "b", 0); err != nil || len(msgs) != n {
		t.Fatalf("Pending before eviction = %d messages, %v; want %d", len(msgs), err, n)
	}

	// Redis's LRU clock ticks every second: let the mailbox grow idle.
	time.Sleep(2100 * time.Millisecond)
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			total, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if err := c.ConfigSet(ctx, "maxmemory", strconv.FormatInt(total+512<<10, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	filler := strings.Repeat("f", 16<<10)
	for i := 0; ; i++ {
		// The room's hash and the index stay recently used, b's mailbox
		// does not.
		if _, err := s.Room(ctx, "r"); err != nil {
			t.Fatalf("Room while filling (filler %d): %v", i, err)
		}
		if _, err := s.Rooms(ctx); err != nil {
			t.Fatalf("Rooms while filling: %v", err)
		}
		if k, _ := c.Exists(ctx, boxes[0]).Result(); k == 0 {
			break
		}
		if i == 1000 {
			t.Fatal("the mailbox was not evicted after 1000 fillers")
		}
		if err := c.Set(ctx, fmt.Sprintf("filler:%d", i), filler, time.Hour).Err(); err != nil {
			t.Fatalf("SET filler: %v", err)
		}
	}
	if err := c.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}

	msgs, err := s.Pending(ctx, "r", "b", 0)
	if !errors.Is(err, session.ErrMessagesLost) || len(msgs) != 0 {
		t.Fatalf("Pending after eviction = %d messages, %v; want none and %v", len(msgs), err, session.ErrMessagesLost)
	}
	// A client that received them all has lost nothing.
	if msgs, err := s.Pending(ctx, "r", "b", n); err != nil || len(msgs) != 0 {
		t.Errorf("Pending(after %d) after eviction = %d messages, %v; want none, no error", n, len(msgs), err)
	}
	// What arrives later is delivered with the report, until b acks it.
	seq, err := s.Append(ctx, "r", "a", "", []byte("later"))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err = s.Pending(ctx, "r", "b", 0)
	if !errors.Is(err, session.ErrMessagesLost) || len(msgs) != 1 || msgs[0].Seq != seq {
		t.Errorf("Pending after a later message = %+v, %v; want message %d and %v", msgs, err, seq, session.ErrMessagesLost)
	}
	if err := s.Ack(ctx, "r", "b", seq); err != nil {
		t.Fatal(err)
	}
	if msgs, err := s.Pending(ctx, "r", "b", 0); err != nil || len(msgs) != 0 {
		t.Errorf("Pending after b acked the later message = %+v, %v; want none, no error", msgs, err)
	}
}

// TestRedisStoreAckKeepsCount checks that acknowledging part of a mailbox
// keeps what it should hold exact: no loss is reported where there is
// none.
func TestRedisStoreAckKeepsCount(t *testing.T) {
	t.Parallel()
	s := newRedisStore(t, redistest.StartServer(t).URL(), uniquePrefix(t, false))
	ctx := t.Context()
	keyedRoom(t, s)
	for range 5 {
		if _, err := s.Append(ctx, "r", "a", "", []byte("m")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(ctx, "r", "b", "", []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	for _, ack := range []uint64{1, 2, 5, 9} {
		if err := s.Ack(ctx, "r", "b", ack); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Pending(ctx, "r", "b", 0); err != nil {
			t.Errorf("Pending after Ack(%d) = %v, want no error", ack, err)
		}
	}
}

// TestRedisStoreEvictedRoom models the eviction of a room's hash by
// deleting it (which key LRU picks cannot be steered exactly enough): its
// members must hear ErrMessagesLost, not that the room expired.
func TestRedisStoreEvictedRoom(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	c := newClient(t, srv.Addr)
	ctx := t.Context()
	s := newRedisStore(t, srv.URL(), uniquePrefix(t, false))
	keyedRoom(t, s)
	sub, err := s.Subscribe(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	rooms, err := c.Keys(ctx, "*room:r").Result()
	if err != nil || len(rooms) != 1 {
		t.Fatalf("room keys = %q, %v", rooms, err)
	}
	if err := c.Del(ctx, rooms[0]).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := drainSub(t, sub); !errors.Is(err, session.ErrMessagesLost) {
		t.Errorf("subscription Err after the room vanished = %v, want %v", err, session.ErrMessagesLost)
	}
	if _, err := s.Reconnect(ctx, "r", "a", member("a").TokenHash); !errors.Is(err, session.ErrMessagesLost) {
		t.Errorf("Reconnect = %v, want %v", err, session.ErrMessagesLost)
	}
	if _, err := s.Pending(ctx, "r", "b", 0); !errors.Is(err, session.ErrMessagesLost) {
		t.Errorf("Pending = %v, want %v", err, session.ErrMessagesLost)
	}
	if err := s.Publish(ctx, session.Event{Type: session.EventJoined, Room: "r"}); err != nil {
		t.Errorf("Publish = %v, want nil (no room)", err)
	}
	// A new room may take the ID.
	mustCreate(t, s, "r", longCfg)
	if _, err := s.Join(ctx, "r", member("a")); err != nil {
		t.Errorf("Join the new room: %v", err)
	}
}
