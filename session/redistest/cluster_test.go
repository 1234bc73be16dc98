package redistest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/internal/redisx"
	"github.com/keyrelay/keyrelay/session/redistest"
)

// healTimeout bounds a cluster's healing after a master dies.
const healTimeout = 30 * time.Second

func TestSlotOfKnownAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  string
		want int
	}{
		// The CRC16/XMODEM check value, 0x31C3, from the Cluster spec.
		{"check value", "123456789", 0x31C3},
		// CLUSTER KEYSLOT's documented examples.
		{"plain key", "somekey", 11058},
		{"hash tag", "foo{hash_tag}", 2515},
		{"foo", "foo", 12182},
		{"empty key", "", 0},
		{"tag alone", "{hash_tag}", 2515},
		{"tag is first braces", "x{hash_tag}{other}", 2515},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := redistest.SlotOf(tc.key); got != tc.want {
				t.Errorf("SlotOf(%q) = %d, want %d", tc.key, got, tc.want)
			}
		})
	}
}

func TestSlotOfMatchesKeyslot(t *testing.T) {
	t.Parallel()
	node := redistest.StartCluster(t)
	rdb := redis.NewClient(&redis.Options{Addr: node.Addr})
	t.Cleanup(func() { rdb.Close() })
	keys := []string{
		"", "a", "foo", "room:abc", "{room:abc}:msgs", "{room:abc}:peers",
		"{}", "{}x", "x{}", "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}",
		"{a", "a}", "}{", "{user1000}.following", "{user1000}.followers",
		"ünïcødé{ключ}", "\x00\xff{\x00}",
	}
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab{}:"
	for range 500 {
		k := make([]byte, r.IntN(12))
		for i := range k {
			k[i] = alphabet[r.IntN(len(alphabet))]
		}
		keys = append(keys, string(k))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmds := make([]*redis.IntCmd, len(keys))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.ClusterKeySlot(ctx, k)
		}
		return nil
	}); err != nil {
		t.Fatalf("CLUSTER KEYSLOT: %v", err)
	}
	for i, k := range keys {
		if got, want := redistest.SlotOf(k), int(cmds[i].Val()); got != want {
			t.Errorf("SlotOf(%q) = %d, CLUSTER KEYSLOT says %d", k, got, want)
		}
	}
}

func TestShardedCluster(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		masters, replicas int
	}{
		{"masters only", 3, 0},
		{"two replicas each", 3, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := redistest.StartShardedCluster(t, tc.masters, tc.replicas)
			if got, want := len(c.Addrs()), tc.masters*(1+tc.replicas); got != want {
				t.Errorf("%d nodes, want %d", got, want)
			}
			for _, addr := range c.Addrs() {
				if c.Node(addr) == nil || c.Node(addr).Addr != addr {
					t.Errorf("Node(%s) = %v", addr, c.Node(addr))
				}
			}
			if n := c.Node("127.0.0.1:1"); n != nil {
				t.Errorf("Node of a stranger = %v, want nil", n)
			}
			ms := c.Masters(t)
			checkShards(t, ms, tc.masters, tc.replicas)

			client := clusterClient(t, c.URL())
			keys := setKeys(t, client, "key", 300)
			for _, m := range ms {
				want := 0
				for _, k := range keys {
					if m.Owns(redistest.SlotOf(k)) {
						want++
						if got := c.MasterOf(t, k); got != m.Addr {
							t.Errorf("MasterOf(%q) = %s, want %s", k, got, m.Addr)
						}
					}
				}
				if got := dbSize(t, m.Addr); got != want {
					t.Errorf("master %s holds %d keys, want %d (those of its slots)", m.Addr, got, want)
				}
			}
		})
	}
}

func TestShardedClusterFailover(t *testing.T) {
	t.Parallel()
	c := redistest.StartShardedCluster(t, 3, 1)
	client := clusterClient(t, c.URL())
	keys := setKeys(t, client, "key", 300)

	before := c.Masters(t)
	victim := before[1]
	// Replication is one stream: once the replica has a write made after
	// all the keys, it has the keys.
	waitReplicated(t, victim.Addr, slices.IndexFunc(keys, func(k string) bool { return victim.Owns(redistest.SlotOf(k)) }), keys)

	c.KillMaster(t, victim.Addr)
	took := c.WaitHealthy(t, healTimeout)
	t.Logf("cluster healthy %v after the master was killed", took)

	after := c.Masters(t)
	checkShards(t, after, 3, 0)
	for i, m := range after {
		switch {
		case m.Addr == victim.Addr:
			t.Errorf("the killed %s still serves slots %v", m.Addr, m.Slots)
		case i == 1:
			if !slices.Equal(m.Slots, victim.Slots) || m.Addr != victim.Replicas[0] {
				t.Errorf("slots %v are served by %s, want %v by the replica %s", m.Slots, m.Addr, victim.Slots, victim.Replicas[0])
			}
		case m.Addr != before[i].Addr || !slices.Equal(m.Slots, before[i].Slots):
			t.Errorf("an untouched shard changed: %+v, was %+v", m, before[i])
		}
	}

	// The keys of the untouched shards are there, for the client as it is.
	getKeys(t, client, keys, func(k string) bool { return !victim.Owns(redistest.SlotOf(k)) })
	// go-redis (v9.23) reloads its slot map on MOVED, ASK or READONLY, or
	// every ClusterStateReloadInterval (60 s), but not when a master
	// refuses connections: until told, the client keeps dialing the dead
	// one. Told, it finds the failed-over shard's keys, and can write in
	// every shard.
	client.ReloadState(t.Context())
	getKeys(t, client, keys, func(string) bool { return true })
	setKeys(t, client, "after", 300)
}

// checkShards checks that ms are masters masters, with replicas replicas
// each (at least, when replicas is 0), serving every slot exactly once.
func checkShards(t *testing.T, ms []redistest.Shard, masters, replicas int) {
	t.Helper()
	if len(ms) != masters {
		t.Fatalf("%d masters, want %d: %+v", len(ms), masters, ms)
	}
	owners := make([]int, redistest.Slots)
	for _, m := range ms {
		if replicas > 0 && len(m.Replicas) != replicas {
			t.Errorf("master %s has replicas %v, want %d", m.Addr, m.Replicas, replicas)
		}
		for _, r := range m.Slots {
			for slot := r.Start; slot <= r.End; slot++ {
				owners[slot]++
			}
		}
	}
	for slot, n := range owners {
		if n != 1 {
			t.Fatalf("slot %d has %d masters, want 1: %+v", slot, n, ms)
		}
	}
}

// clusterClient returns the project's client for url, a Cluster client,
// closed when the test ends.
func clusterClient(t *testing.T, url string) *redis.ClusterClient {
	t.Helper()
	u, err := redisx.NewClient(url)
	if err != nil {
		t.Fatalf("redisx.NewClient(%q): %v", url, err)
	}
	t.Cleanup(func() { u.Close() })
	c, ok := u.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("redisx.NewClient(%q) is a %T, want a *redis.ClusterClient", url, u)
	}
	return c
}

// setKeys sets n keys prefix:i to v:prefix:i and returns them, retrying
// (the client may still be finding a new master) for up to clientTimeout.
func setKeys(t *testing.T, client redis.Cmdable, prefix string, n int) []string {
	t.Helper()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s:%d", prefix, i)
	}
	slots := make(map[int]bool)
	for _, k := range keys {
		slots[redistest.SlotOf(k)] = true
		eventually(t, clientTimeout, func(ctx context.Context) error {
			return client.Set(ctx, k, "v:"+k, 0).Err()
		})
	}
	if len(slots) < n*9/10 {
		t.Fatalf("the keys fall in only %d slots", len(slots))
	}
	return keys
}

// getKeys checks, for up to clientTimeout, that the keys for which want
// is true have the values setKeys gave them.
func getKeys(t *testing.T, client redis.Cmdable, keys []string, want func(string) bool) {
	t.Helper()
	for _, k := range keys {
		if !want(k) {
			continue
		}
		eventually(t, clientTimeout, func(ctx context.Context) error {
			got, err := client.Get(ctx, k).Result()
			if err != nil {
				return fmt.Errorf("GET %s: %w", k, err)
			}
			if got != "v:"+k {
				t.Fatalf("GET %s = %q, want %q", k, got, "v:"+k)
			}
			return nil
		})
	}
}

// waitReplicated writes keys[i] again on the master at addr and waits
// until its replica has that write, and so every earlier one.
func waitReplicated(t *testing.T, addr string, i int, keys []string) {
	t.Helper()
	if i < 0 {
		t.Fatalf("no key falls in the slots of %s", addr)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := rdb.Set(ctx, keys[i], "v:"+keys[i], 0).Err(); err != nil {
		t.Fatalf("SET on %s: %v", addr, err)
	}
	if n, err := rdb.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 on %s = %d, %v, want 1 replica", addr, n, err)
	}
}

// dbSize returns the number of keys of the server at addr.
func dbSize(t *testing.T, addr string) int {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	defer cancel()
	n, err := rdb.DBSize(ctx).Result()
	if err != nil {
		t.Fatalf("DBSIZE on %s: %v", addr, err)
	}
	return int(n)
}
