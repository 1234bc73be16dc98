package session_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/session/sessiontest"
)

// TestRedisStoreShardedCluster runs the store's suites on a Redis Cluster
// of 3 masters and 3 replicas: rooms spread over the masters, a script
// that touched a key outside its room's slot would be refused, and events
// travel by sharded Pub/Sub.
func TestRedisStoreShardedCluster(t *testing.T) {
	t.Parallel()
	url := redistest.StartShardedCluster(t, 3, 1).URL()
	t.Run("suite", func(t *testing.T) {
		sessiontest.Run(t, func(t *testing.T) session.Store {
			return newRedisStore(t, url, uniquePrefix(t, false))
		})
	})
	t.Run("budget", func(t *testing.T) {
		sessiontest.RunBudget(t, func(t *testing.T, b session.Budget) session.Store {
			return newBudgetStore(t, url, uniquePrefix(t, false), b)
		})
	})
}

// TestRedisStoreSentinel runs the store's suite through Sentinel: one
// master, one replica, one sentinel.
func TestRedisStoreSentinel(t *testing.T) {
	t.Parallel()
	url := redistest.StartSentinel(t).URL()
	sessiontest.Run(t, func(t *testing.T) session.Store {
		return newRedisStore(t, url, uniquePrefix(t, false))
	})
}

// TestRedisStoreClusterConfig checks the configurations a Cluster refuses.
func TestRedisStoreClusterConfig(t *testing.T) {
	t.Parallel()
	cluster := redistest.StartCluster(t).URL() + "?cluster=true"
	single := redistest.StartServer(t).URL()
	for _, tc := range []struct {
		name string
		cfg  session.RedisConfig
	}{
		{"prefix with a hash tag", session.RedisConfig{URL: cluster, Prefix: "{keyrelay}:"}},
		{"negative partitions", session.RedisConfig{URL: cluster, Partitions: -1}},
		{"too many partitions", session.RedisConfig{URL: cluster, Partitions: 16385}},
		{"partitions on one Redis", session.RedisConfig{URL: single, Partitions: 4}},
		{"negative WaitReplicas", session.RedisConfig{URL: single, WaitReplicas: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := session.NewRedisStore(t.Context(), tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("NewRedisStore succeeded, want an error")
			}
			t.Log(err)
		})
	}
}

// eachMaster calls f with a client of each master of c, closed after.
func eachMaster(t *testing.T, c *redistest.Cluster, f func(addr string, node *redis.Client)) {
	t.Helper()
	for _, m := range c.Masters(t) {
		node := redis.NewClient(&redis.Options{Addr: m.Addr})
		f(m.Addr, node)
		node.Close()
	}
}

// clusterRoomKeys returns, by master address, the room hashes under
// prefix that each master of c holds.
func clusterRoomKeys(t *testing.T, c *redistest.Cluster, prefix string) map[string][]string {
	t.Helper()
	out := make(map[string][]string)
	eachMaster(t, c, func(addr string, node *redis.Client) {
		keys, err := node.Keys(t.Context(), prefix+"*:room:*").Result()
		if err != nil {
			t.Fatalf("KEYS on %s: %v", addr, err)
		}
		out[addr] = keys
	})
	return out
}

// scriptCalls returns, by master address, the scripts (EVALSHA and EVAL
// calls) each master of c has served since its statistics were last
// reset.
func scriptCalls(t *testing.T, c *redistest.Cluster) map[string]int64 {
	t.Helper()
	out := make(map[string]int64)
	eachMaster(t, c, func(addr string, node *redis.Client) {
		info, err := node.Info(t.Context(), "commandstats").Result()
		if err != nil {
			t.Fatalf("INFO on %s: %v", addr, err)
		}
		out[addr] = 0
		for line := range strings.Lines(info) {
			for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
				if rest, ok := strings.CutPrefix(line, cmd); ok {
					var n int64
					fmt.Sscanf(rest, "%d", &n)
					out[addr] += n
				}
			}
		}
	})
	return out
}

// resetStats resets the statistics of every master of c.
func resetStats(t *testing.T, c *redistest.Cluster) {
	t.Helper()
	eachMaster(t, c, func(addr string, node *redis.Client) {
		if err := node.ConfigResetStat(t.Context()).Err(); err != nil {
			t.Fatalf("CONFIG RESETSTAT on %s: %v", addr, err)
		}
	})
}

// TestRedisStoreClusterSpread checks that rooms spread evenly over a
// Cluster's masters, and that a room's calls touch its own master only:
// 3 000 rooms on 3 masters hold a third each, within 10%.
func TestRedisStoreClusterSpread(t *testing.T) {
	t.Parallel()
	c := redistest.StartShardedCluster(t, 3, 0)
	prefix := uniquePrefix(t, false)
	// No background work (census, lease renewal) during the counts.
	s, err := session.NewRedisStore(t.Context(), session.RedisConfig{URL: c.URL(), Prefix: prefix, SweepInterval: time.Hour, LeaseTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()
	cfg := session.RoomConfig{TTL: time.Minute, ResumeGrace: time.Minute, MaxPending: 16}

	t.Run("rooms", func(t *testing.T) {
		const rooms = 3000
		for i := range rooms {
			if err := s.CreateRoom(ctx, fmt.Sprintf("spread-%d", i), cfg, 0); err != nil {
				t.Fatalf("CreateRoom: %v", err)
			}
		}
		byMaster := clusterRoomKeys(t, c, prefix)
		total := 0
		for addr, keys := range byMaster {
			share := float64(len(keys)) / (rooms / 3.0)
			t.Logf("master %s: %d rooms (%.1f%% of an even share)", addr, len(keys), 100*share)
			if share < 0.9 || share > 1.1 {
				t.Errorf("master %s holds %d rooms, want %d ± 10%%", addr, len(keys), rooms/3)
			}
			total += len(keys)
		}
		if total != rooms {
			t.Errorf("%d room hashes on the masters, want %d", total, rooms)
		}
		if n, err := s.Rooms(ctx); err != nil || n != rooms {
			t.Errorf("Rooms = %d, %v; want %d", n, err, rooms)
		}
	})

	t.Run("one master per room", func(t *testing.T) {
		resetStats(t, c)
		room := "one-shard"
		if err := s.CreateRoom(ctx, room, cfg, 0); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"a", "b"} {
			if _, err := s.Join(ctx, room, member(id)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.SetKey(ctx, room, id, "x25519", id+id); err != nil {
				t.Fatal(err)
			}
		}
		// No source: a source's counter lives in the source's own slot.
		seq, err := s.Append(ctx, room, "a", "", []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Ack(ctx, room, "b", seq); err != nil {
			t.Fatal(err)
		}
		home := ""
		for addr, keys := range clusterRoomKeys(t, c, prefix) {
			for _, k := range keys {
				if strings.HasSuffix(k, ":room:"+room) {
					home = addr
				}
			}
		}
		if home == "" {
			t.Fatal("the room's hash is on no master")
		}
		calls := scriptCalls(t, c)
		for addr, n := range calls {
			switch {
			case addr == home && n < 7:
				t.Errorf("the room's master %s served %d scripts, want at least 7 (create, 2 joins, 2 keys, append, ack)", addr, n)
			case addr != home && n != 0:
				t.Errorf("master %s, not the room's, served %d scripts, want 0", addr, n)
			}
		}
		t.Logf("scripts by master: %v (the room's: %s)", calls, home)
	})
}

// TestRedisStoreClusterSourceBudget checks that a source's budget holds
// across rooms in different partitions (and so on different masters) of a
// Cluster, where the source's counter lives in a slot of its own.
func TestRedisStoreClusterSourceBudget(t *testing.T) {
	t.Parallel()
	c := redistest.StartShardedCluster(t, 3, 0)
	s := newBudgetStore(t, c.URL(), uniquePrefix(t, false), session.Budget{PerSource: 100})
	ctx := t.Context()
	cfg := session.RoomConfig{TTL: time.Minute, ResumeGrace: time.Minute, MaxPending: 16}
	body := make([]byte, 30)
	sent := 0
	for i := range 10 {
		room := fmt.Sprintf("src-%d", i)
		if err := s.CreateRoom(ctx, room, cfg, 0); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"a", "b"} {
			if _, err := s.Join(ctx, room, member(id)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.SetKey(ctx, room, id, "x25519", id+id); err != nil {
				t.Fatal(err)
			}
		}
		_, err := s.Append(ctx, room, "a", "198.51.100.7", body)
		switch {
		case err == nil:
			sent++
		case !errors.Is(err, session.ErrSourceOverBudget):
			t.Fatalf("Append to %s: %v", room, err)
		}
	}
	if sent != 3 {
		t.Errorf("%d messages of 30 bytes stored from one source with a budget of 100, want 3", sent)
	}
	// Another source is not bounded by this one.
	if _, err := s.Append(ctx, "src-9", "a", "198.51.100.8", body); err != nil {
		t.Errorf("Append from another source: %v", err)
	}
	// Acknowledged bytes are given back to the source's counter.
	if err := s.Ack(ctx, "src-0", "b", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "src-8", "a", "198.51.100.7", body); err != nil {
		t.Errorf("Append after the source's first message was acknowledged: %v", err)
	}
}

// TestRedisStoreClusterRoomLimit checks maxRooms across partitions on a
// Cluster: one instance counts its own rooms at once, so it never exceeds
// the limit.
func TestRedisStoreClusterRoomLimit(t *testing.T) {
	t.Parallel()
	c := redistest.StartShardedCluster(t, 3, 0)
	s := newRedisStore(t, c.URL(), uniquePrefix(t, false))
	cfg := session.RoomConfig{TTL: time.Minute, ResumeGrace: time.Minute, MaxPending: 16}
	created := 0
	for i := range 40 {
		err := s.CreateRoom(t.Context(), fmt.Sprintf("limit-%d", i), cfg, 25)
		switch {
		case err == nil:
			created++
		case !errors.Is(err, session.ErrTooManyRooms):
			t.Fatalf("CreateRoom: %v", err)
		}
	}
	if created != 25 {
		t.Errorf("%d rooms created with maxRooms 25, want 25", created)
	}
}

// TestRedisStoreClusterWait checks the durability option on a Cluster
// with replicas: Append waits for a replica, and the message is on it.
func TestRedisStoreClusterWait(t *testing.T) {
	t.Parallel()
	c := redistest.StartShardedCluster(t, 3, 1)
	prefix := uniquePrefix(t, false)
	s, err := session.NewRedisStore(t.Context(), session.RedisConfig{URL: c.URL(), Prefix: prefix, SweepInterval: testSweep, WaitReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cfg := session.RoomConfig{TTL: time.Minute, ResumeGrace: time.Minute, MaxPending: 64}
	if err := s.CreateRoom(ctx, "w", cfg, 0); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := s.Join(ctx, "w", member(id)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetKey(ctx, "w", id, "x25519", id+id); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if _, err := s.Append(ctx, "w", "a", "", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
		// The replica has it as soon as Append returns.
		var key, replica string
		for _, m := range c.Masters(t) {
			node := redis.NewClient(&redis.Options{Addr: m.Addr})
			keys, _ := node.Keys(ctx, prefix+"*:mbox:w:*").Result()
			node.Close()
			if len(keys) > 0 {
				key = keys[0]
				if len(m.Replicas) > 0 {
					replica = m.Replicas[0]
				}
			}
		}
		if key == "" || replica == "" {
			t.Fatalf("no mailbox of w, or its master has no replica (key %q, replica %q)", key, replica)
		}
		r := redis.NewClient(&redis.Options{Addr: replica, OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			return cn.ReadOnly(ctx).Err()
		}})
		n, err := r.XLen(ctx, key).Result()
		r.Close()
		if err != nil || n != int64(i+1) {
			t.Fatalf("after Append %d: the replica's mailbox holds %d, %v; want %d", i+1, n, err, i+1)
		}
	}
}
