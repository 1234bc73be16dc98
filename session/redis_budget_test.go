package session_test

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/session/sessiontest"
)

// newBudgetStore returns a store on Redis at url with prefix, budget b and
// a short sweep interval, closed when the test ends.
func newBudgetStore(t *testing.T, url, prefix string, b session.Budget) *session.RedisStore {
	t.Helper()
	s, err := session.NewRedisStore(t.Context(), session.RedisConfig{URL: url, Prefix: prefix, SweepInterval: testSweep, Budget: b})
	if err != nil {
		t.Fatalf("NewRedisStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRedisStoreBudget(t *testing.T) {
	t.Parallel()
	url := redistest.StartServer(t).URL()
	sessiontest.RunBudget(t, func(t *testing.T, b session.Budget) session.Store {
		return newBudgetStore(t, url, uniquePrefix(t, false), b)
	})
}

// TestRedisStoreBudgetCluster runs the budget suite on a one-node Redis
// Cluster, which refuses scripts whose keys lie in different hash slots:
// the budget's keys must share the prefix's.
func TestRedisStoreBudgetCluster(t *testing.T) {
	t.Parallel()
	url := redistest.StartCluster(t).URL() + "?cluster=true"
	sessiontest.RunBudget(t, func(t *testing.T, b session.Budget) session.Store {
		return newBudgetStore(t, url, uniquePrefix(t, false), b)
	})
}

// keyedRoomID creates room id with cfg and members a and b, both keyed.
func keyedRoomID(t *testing.T, s session.Store, id string, cfg session.RoomConfig) {
	t.Helper()
	mustCreate(t, s, id, cfg)
	for _, m := range []string{"a", "b"} {
		if _, err := s.Join(t.Context(), id, member(m)); err != nil {
			t.Fatalf("Join(%s, %s): %v", id, m, err)
		}
		if _, err := s.SetKey(t.Context(), id, m, "g", "key-"+m); err != nil {
			t.Fatalf("SetKey(%s, %s): %v", id, m, err)
		}
	}
}

// send appends n bytes to room from member from, sent from source, through
// s, and checks the error against want (nil or a sentinel).
func send(t *testing.T, s session.Store, room, from, source string, n int, want error) {
	t.Helper()
	_, err := s.Append(t.Context(), room, from, source, []byte(strings.Repeat("x", n)))
	if !errors.Is(err, want) {
		t.Fatalf("Append(%s, %s, %s, %d bytes) = %v, want %v", room, from, source, n, err, want)
	}
}

// counter returns the value of counter key in Redis: 0 if there is none.
// An existing key that holds 0 (or less) is an error: an idle count must
// leave no key.
func counter(t *testing.T, c *redis.Client, key string) int64 {
	t.Helper()
	v, err := c.Get(t.Context(), key).Result()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		t.Fatalf("counter %s = %q, want a positive integer", key, v)
	}
	return n
}

// wantCounters checks the budget's counters under prefix: total, and the
// count of each source in want; a source absent from want must have none.
func wantCounters(t *testing.T, c *redis.Client, prefix string, total int64, sources map[string]int64) {
	t.Helper()
	if got := counter(t, c, prefix+"budget:total"); got != total {
		t.Errorf("bytes waiting in the store = %d, want %d", got, total)
	}
	for src, want := range sources {
		if got := counter(t, c, prefix+"budget:src:"+src); got != want {
			t.Errorf("bytes waiting from %s = %d, want %d", src, got, want)
		}
	}
}

// TestRedisStoreSharedBudget checks that two instances sharing a Redis
// share one budget: what is sent through one counts against an Append
// through the other, per source and in total, and what one releases the
// other can use.
func TestRedisStoreSharedBudget(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	c := newClient(t, srv.Addr)
	prefix := uniquePrefix(t, false)
	b := session.Budget{PerSource: 10, Total: 25}
	one, two := newBudgetStore(t, srv.URL(), prefix, b), newBudgetStore(t, srv.URL(), prefix, b)
	keyedRoomID(t, one, "r1", longCfg)
	keyedRoomID(t, two, "r2", longCfg)

	send(t, one, "r1", "a", "s1", 6, nil)
	send(t, two, "r2", "a", "s1", 5, session.ErrSourceOverBudget)
	send(t, two, "r2", "a", "s1", 4, nil) // s1: 10, through both
	send(t, one, "r1", "b", "s2", 10, nil)
	send(t, two, "r2", "b", "s3", 6, session.ErrStoreOverBudget)
	send(t, two, "r2", "b", "s3", 5, nil) // 25 in all
	send(t, one, "r1", "a", "s4", 1, session.ErrStoreOverBudget)
	wantCounters(t, c, prefix, 25, map[string]int64{"s1": 10, "s2": 10, "s3": 5, "s4": 0})

	// r1's b acknowledges, through two, the 6 bytes that a sent through
	// one: one can send them again, from s1 and within the total.
	if err := two.Ack(t.Context(), "r1", "b", 1); err != nil {
		t.Fatalf("Ack on two: %v", err)
	}
	wantCounters(t, c, prefix, 19, map[string]int64{"s1": 4, "s2": 10, "s3": 5})
	send(t, one, "r2", "a", "s1", 6, nil)
	send(t, one, "r2", "a", "s1", 1, session.ErrStoreOverBudget)

	// r2's b leaves, through one, with the 10 bytes from s1 sent through
	// both: two can send them again.
	if err := one.Leave(t.Context(), "r2", "b"); err != nil {
		t.Fatalf("Leave on one: %v", err)
	}
	wantCounters(t, c, prefix, 15, map[string]int64{"s1": 0, "s2": 10, "s3": 5})
	send(t, two, "r1", "a", "s1", 10, nil)
	wantCounters(t, c, prefix, 25, map[string]int64{"s1": 10, "s2": 10, "s3": 5})
}

// budgetKeys returns the keys of the budget under prefix, found by SCAN.
// (Not scanKeys: other tests share the server, so KEYS and SCAN may see
// different keys.)
func budgetKeys(t *testing.T, c *redis.Client, prefix string) []string {
	t.Helper()
	var out []string
	iter := c.Scan(t.Context(), 0, "*", 100).Iterator()
	for iter.Next(t.Context()) {
		if k := iter.Val(); strings.HasPrefix(k, prefix+"budget:") {
			out = append(out, k)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestRedisStoreBudgetRoomExpiry checks that the bytes of rooms that Redis
// expires by itself (members connected, nothing acknowledged) are given
// back by the sweeper, exactly once however many instances sweep, and
// that the budget's keys go with them; and that when no instance runs
// while rooms expire, the first one back corrects the counts.
func TestRedisStoreBudgetRoomExpiry(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	c := newClient(t, srv.Addr)
	short := longCfg
	short.TTL = 300 * time.Millisecond

	// left checks that the budget's keys are exactly the counters, the
	// ledger of room "live" and the ledger index.
	left := func(t *testing.T, prefix string, sources ...string) {
		t.Helper()
		keys := budgetKeys(t, c, prefix)
		want := 2 + 1 + len(sources) // ledgers index, total, sources, live's ledger
		ledgers := 0
		for _, k := range keys {
			if strings.HasPrefix(k, prefix+"budget:ledger:") {
				ledgers++
				if !strings.HasPrefix(k, prefix+"budget:ledger:live:") {
					t.Errorf("ledger %q left after its room expired", k)
				}
			}
		}
		if len(keys) != want || ledgers != 1 {
			t.Errorf("budget keys %q, want %d: total, %v, live's ledger and the index", keys, want, sources)
		}
		if n, err := c.ZCard(t.Context(), prefix+"budget:ledgers").Result(); err != nil || n != 1 {
			t.Errorf("ledger index has %d entries, %v; want live's", n, err)
		}
		// Every counter, and the index, lives at least as long as the
		// ledger that counts in it.
		var ledger time.Duration
		for _, k := range keys {
			if strings.HasPrefix(k, prefix+"budget:ledger:") {
				ledger = c.PTTL(t.Context(), k).Val()
			}
		}
		for _, k := range keys {
			if pttl := c.PTTL(t.Context(), k).Val(); pttl < ledger-time.Second || pttl > 2*ledgerLife+time.Minute {
				t.Errorf("key %q expires in %v, want between the ledger's %v and %v", k, pttl, ledger, 2*ledgerLife+time.Minute)
			}
		}
	}

	t.Run("swept", func(t *testing.T) {
		t.Parallel()
		prefix := uniquePrefix(t, false)
		b := session.Budget{PerSource: 1000, Total: 1000}
		stores := []*session.RedisStore{
			newBudgetStore(t, srv.URL(), prefix, b),
			newBudgetStore(t, srv.URL(), prefix, b),
			newBudgetStore(t, srv.URL(), prefix, b),
		}
		keyedRoomID(t, stores[0], "live", longCfg)
		send(t, stores[0], "live", "a", "s1", 7, nil)
		const rooms = 20
		for i := range rooms {
			s, room := stores[i%len(stores)], fmt.Sprint("e", i)
			keyedRoomID(t, s, room, short)
			send(t, s, room, "a", "s1", 10, nil)
			send(t, s, room, "b", "s2", 5, nil)
		}
		wantCounters(t, c, prefix, 7+rooms*15, map[string]int64{"s1": 7 + rooms*10, "s2": rooms * 5})

		// Three sweepers race on every expired room's ledger.
		waitUntil(t, 5*time.Second, "the expired rooms' ledgers settled", func() bool {
			n, err := c.ZCard(t.Context(), prefix+"budget:ledgers").Result()
			return err == nil && n == 1
		})
		wantCounters(t, c, prefix, 7, map[string]int64{"s1": 7, "s2": 0})
		left(t, prefix, "s1")
		send(t, stores[1], "live", "b", "s2", 993, nil)
		send(t, stores[2], "live", "b", "s3", 1, session.ErrStoreOverBudget)
	})

	t.Run("every instance down", func(t *testing.T) {
		t.Parallel()
		prefix := uniquePrefix(t, false)
		b := session.Budget{PerSource: 20}
		before := newBudgetStore(t, srv.URL(), prefix, b)
		keyedRoomID(t, before, "live", longCfg)
		send(t, before, "live", "a", "s1", 3, nil)
		keyedRoomID(t, before, "gone", short)
		send(t, before, "gone", "a", "s1", 10, nil)
		// In a room that lives on, b drops and its grace ends: Redis
		// expires its mailbox, and nothing removes b.
		cfg := longCfg
		cfg.ResumeGrace = 100 * time.Millisecond
		keyedRoomID(t, before, "grace", cfg)
		send(t, before, "grace", "a", "s1", 4, nil)
		if err := before.Disconnect(t.Context(), "grace", "b", 1); err != nil {
			t.Fatalf("Disconnect: %v", err)
		}
		if err := before.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}

		waitUntil(t, 5*time.Second, "Redis to expire room gone and b's mailbox", func() bool {
			n, err := c.Exists(t.Context(), prefix+"room:gone", prefix+"mbox:grace:2").Result()
			return err == nil && n == 0
		})
		time.Sleep(5 * testSweep) // what a sweeper would have needed
		wantCounters(t, c, prefix, 17, map[string]int64{"s1": 17})

		after := newBudgetStore(t, srv.URL(), prefix, b)
		waitUntil(t, 5*time.Second, "the first instance back to settle", func() bool {
			n, err := c.ZCard(t.Context(), prefix+"budget:ledgers").Result()
			return err == nil && n == 1
		})
		wantCounters(t, c, prefix, 3, map[string]int64{"s1": 3})
		left(t, prefix, "s1")
		r, err := after.Room(t.Context(), "grace")
		if err != nil || len(r.Members) != 1 {
			t.Errorf("Room(grace) = %+v, %v; want a alone", r, err)
		}
		send(t, after, "live", "a", "s1", 17, nil)
		send(t, after, "live", "a", "s1", 1, session.ErrSourceOverBudget)
	})

	t.Run("room recreated", func(t *testing.T) {
		t.Parallel()
		prefix := uniquePrefix(t, false)
		// An instance that does not sweep within the test.
		quiet, err := session.NewRedisStore(t.Context(), session.RedisConfig{URL: srv.URL(), Prefix: prefix, SweepInterval: time.Hour})
		if err != nil {
			t.Fatalf("NewRedisStore: %v", err)
		}
		t.Cleanup(func() { quiet.Close() })
		keyedRoomID(t, quiet, "r", short)
		send(t, quiet, "r", "a", "s1", 10, nil)
		waitUntil(t, 5*time.Second, "Redis to expire room r", func() bool {
			n, err := c.Exists(t.Context(), prefix+"room:r").Result()
			return err == nil && n == 0
		})
		// A new room takes the ID before any sweeper settled the old one.
		keyedRoomID(t, quiet, "r", longCfg)
		send(t, quiet, "r", "a", "s1", 2, nil)
		wantCounters(t, c, prefix, 12, map[string]int64{"s1": 12})

		newBudgetStore(t, srv.URL(), prefix, session.Budget{})
		waitUntil(t, 5*time.Second, "the old room's ledger settled", func() bool {
			n, err := c.ZCard(t.Context(), prefix+"budget:ledgers").Result()
			return err == nil && n == 1
		})
		wantCounters(t, c, prefix, 2, map[string]int64{"s1": 2})
		gen, err := c.HGet(t.Context(), prefix+"room:r", "gen").Result()
		if err != nil {
			t.Fatal(err)
		}
		keys := budgetKeys(t, c, prefix)
		if !slices.Contains(keys, prefix+"budget:ledger:r:"+gen) || len(keys) != 4 {
			t.Errorf("budget keys %q, want the new room's ledger, the index and two counters", keys)
		}
	})
}

// TestRedisStoreBudgetUncounted checks the bytes no ledger holds: bodies
// stored before the budget was counted give nothing back (no counter
// goes below zero or is left at zero), and the bytes of a mailbox that
// vanished (evicted) are given back once its member acknowledges
// everything stored for it.
func TestRedisStoreBudgetUncounted(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	c := newClient(t, srv.Addr)

	t.Run("stored before the budget", func(t *testing.T) {
		t.Parallel()
		prefix := uniquePrefix(t, false)
		s := newBudgetStore(t, srv.URL(), prefix, session.Budget{PerSource: 10})
		keyedRoomID(t, s, "old", longCfg)
		send(t, s, "old", "a", "s1", 8, nil)
		// As if it had been stored before: no ledger, no count.
		if err := c.Del(t.Context(), budgetKeys(t, c, prefix)...).Err(); err != nil {
			t.Fatal(err)
		}
		keyedRoomID(t, s, "new", longCfg)
		send(t, s, "new", "a", "s1", 3, nil)
		if err := s.Ack(t.Context(), "old", "b", 1); err != nil {
			t.Fatalf("Ack: %v", err)
		}
		wantCounters(t, c, prefix, 3, map[string]int64{"s1": 3})
		if err := s.Ack(t.Context(), "new", "b", 1); err != nil {
			t.Fatalf("Ack: %v", err)
		}
		// The rooms' (empty) ledgers stay while the rooms live; no
		// counter does.
		for _, k := range budgetKeys(t, c, prefix) {
			if !strings.HasPrefix(k, prefix+"budget:ledger") {
				t.Errorf("budget key %q with nothing counted waiting, want none but the ledgers", k)
			}
		}
	})

	t.Run("evicted mailbox", func(t *testing.T) {
		t.Parallel()
		prefix := uniquePrefix(t, false)
		s := newBudgetStore(t, srv.URL(), prefix, session.Budget{PerSource: 10})
		keyedRoomID(t, s, "r", longCfg)
		send(t, s, "r", "a", "s1", 4, nil)
		send(t, s, "r", "a", "s1", 6, nil)
		if err := c.Del(t.Context(), prefix+"mbox:r:2").Err(); err != nil { // b's
			t.Fatal(err)
		}
		send(t, s, "r", "a", "s1", 1, session.ErrSourceOverBudget)
		// Acknowledging the first counts for nothing: the mailbox has no
		// entry to say how big it was.
		if err := s.Ack(t.Context(), "r", "b", 1); err != nil {
			t.Fatalf("Ack(1): %v", err)
		}
		wantCounters(t, c, prefix, 10, map[string]int64{"s1": 10})
		if err := s.Ack(t.Context(), "r", "b", 2); err != nil {
			t.Fatalf("Ack(2): %v", err)
		}
		wantCounters(t, c, prefix, 0, map[string]int64{"s1": 0})
		send(t, s, "r", "a", "s1", 10, nil)
	})
}
