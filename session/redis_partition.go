package session

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Partitions (redis/lib.lua describes the keys). On a Redis Cluster the
// store's keys are spread over RedisConfig.Partitions partitions, each in
// a hash slot of its own, spaced evenly over the 16384 slots, so that a
// Cluster whose masters serve equal ranges of slots (as redis-cli
// --cluster create and rebalance make them) holds equal shares of the
// partitions, and so of the rooms. A room lives in the partition its ID
// hashes to, with its index, budget counters and ledgers, and its
// channel: every script touches one slot, and every event travels through
// the one shard that owns it (sharded Pub/Sub). On a single Redis or a
// Sentinel set there is one partition, and nothing changes.
//
// What counts across partitions (the live rooms for maxRooms, the bytes
// waiting for Budget.Total) is added up by a census of every partition,
// which each instance's sweeper takes every SweepInterval; a script that
// checks a fleet-wide bound counts its own partition exactly and the
// others as the last census found them, plus what this instance created
// since. See RedisStore for how far that lets a bound be exceeded.

// Partition defaults and limits.
const (
	// defaultClusterPartitions is RedisConfig.Partitions' default on a
	// Cluster: enough for rooms to spread within a few percent over
	// dozens of shards, few enough for a census to be a pipeline of a few
	// hundred O(1) calls.
	defaultClusterPartitions = 256
	// maxPartitions bounds RedisConfig.Partitions: one per slot.
	maxPartitions = clusterSlots
	// clusterSlots is the number of hash slots of a Redis Cluster.
	clusterSlots = 16384
)

// partition is one partition's key prefix and shared keys.
type partition struct {
	key     string // P: every key of the partition starts with it
	index   string // P.."rooms"
	total   string // P.."budget:total"
	ledgers string // P.."budget:ledgers"
}

// newPartitions returns n partitions under prefix: on a Cluster, each
// with a hash tag that puts it in a slot of its own, spaced evenly;
// elsewhere (n is then 1) the prefix alone.
func newPartitions(prefix string, n int, cluster bool) []partition {
	parts := make([]partition, n)
	tags := slotTags()
	for i := range parts {
		key := prefix
		if cluster {
			slot := (2*i + 1) * clusterSlots / (2 * n)
			key = prefix + "{" + tags[slot] + "}:"
		}
		parts[i] = partition{key: key, index: key + "rooms", total: key + "budget:total", ledgers: key + "budget:ledgers"}
	}
	return parts
}

// slotTags returns, for each hash slot, a short hash tag whose keys lie in
// it: the first base-36 number that does.
var slotTags = sync.OnceValue(func() []string {
	tags := make([]string, clusterSlots)
	for n, left := uint64(0), clusterSlots; left > 0; n++ {
		tag := strconv.FormatUint(n, 36)
		if slot := keySlot(tag); tags[slot] == "" {
			tags[slot] = tag
			left--
		}
	}
	return tags
})

// keySlot returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of
// its hash tag, or of the whole key if it has none, modulo 16384.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % clusterSlots
}

// partOf returns the number of room's partition.
func (s *RedisStore) partOf(room string) int {
	if len(s.parts) == 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(room))
	return int(h.Sum32() % uint32(len(s.parts)))
}

// Key and channel names of a room: all in its partition.
func (s *RedisStore) roomKey(id string) string { return s.parts[s.partOf(id)].key + "room:" + id }
func (s *RedisStore) channel(id string) string { return s.parts[s.partOf(id)].key + "ev:" + id }

// sourceKey is, on a Cluster, the counter of the bytes waiting from
// source, in the source's own slot.
func (s *RedisStore) sourceKey(source string) string { return s.prefix + "src:{" + source + "}" }

// census is the last count of every partition's live rooms and bytes
// waiting, for the fleet-wide bounds on a Cluster: taken in full every
// SweepInterval, and for one partition after every script on it.
type census struct {
	mu       sync.Mutex
	rooms    []int64 // guarded by mu; by partition
	bytes    []int64 // guarded by mu
	sumRooms int64   // guarded by mu
	sumBytes int64   // guarded by mu
	// updates counts the updates of each partition from scripts, so that
	// a census does not overwrite with its older count a partition that a
	// script updated while the census was under way.
	updates []uint64 // guarded by mu
}

// update records partition p's counts.
func (c *census) update(p int, rooms, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rooms == nil {
		return // before the first census
	}
	c.sumRooms += rooms - c.rooms[p]
	c.sumBytes += bytes - c.bytes[p]
	c.rooms[p], c.bytes[p] = rooms, bytes
	c.updates[p]++
}

// takeCensus counts the live rooms and the bytes waiting in every
// partition, in one pipeline (on a Cluster, one round trip per shard),
// records them for others, and returns the sums, and, by partition, up to
// maxDue ledgers due for settling in each (gen..id; see settleLedgers).
func (s *RedisStore) takeCensus(ctx context.Context, maxDue int) (rooms, bytes int64, due [][]string, err error) {
	s.census.mu.Lock()
	before := slices.Clone(s.census.updates)
	s.census.mu.Unlock()
	cmds, err := evalAll(ctx, s.client, scriptRooms, len(s.parts), func(i int) ([]string, []any) {
		return []string{s.parts[i].index, s.parts[i].total, s.parts[i].ledgers}, []any{maxDue}
	})
	if err != nil {
		return 0, 0, nil, s.backendErr(ctx, "rooms", err)
	}
	r, b := make([]int64, len(s.parts)), make([]int64, len(s.parts))
	due = make([][]string, len(s.parts))
	for i, c := range cmds {
		v, err := c.StringSlice()
		if err != nil || len(v) < 3 || v[0] != "OK" {
			return 0, 0, nil, fmt.Errorf("session: redis rooms: malformed reply (%v)", err)
		}
		if r[i], err = strconv.ParseInt(v[1], 10, 64); err != nil {
			return 0, 0, nil, fmt.Errorf("session: redis rooms: %w", err)
		}
		if b[i], err = strconv.ParseInt(v[2], 10, 64); err != nil {
			return 0, 0, nil, fmt.Errorf("session: redis rooms: %w", err)
		}
		due[i] = v[3:]
	}
	s.census.mu.Lock()
	defer s.census.mu.Unlock()
	if s.census.updates == nil {
		s.census.updates = make([]uint64, len(s.parts))
	}
	for i := range r {
		if before != nil && s.census.updates[i] != before[i] {
			// A script reported a newer count meanwhile.
			r[i], b[i] = s.census.rooms[i], s.census.bytes[i]
		}
		rooms += r[i]
		bytes += b[i]
	}
	s.census.rooms, s.census.bytes = r, b
	s.census.sumRooms, s.census.sumBytes = rooms, bytes
	return rooms, bytes, due, nil
}

// others returns, for a script on partition p, the live rooms and the
// bytes waiting in the other partitions, as the census last found them.
// With one partition, both are 0 and the scripts count exactly.
func (s *RedisStore) others(p int) (rooms, bytes int64) {
	if len(s.parts) == 1 {
		return 0, 0
	}
	s.census.mu.Lock()
	defer s.census.mu.Unlock()
	if s.census.rooms == nil {
		return 0, 0
	}
	return s.census.sumRooms - s.census.rooms[p], s.census.sumBytes - s.census.bytes[p]
}

// evalAll runs script n times in one pipeline, with the keys and
// arguments args(i) gives, loading the script first if Redis (any shard)
// does not have it, and returns the commands.
func evalAll(ctx context.Context, c redis.UniversalClient, script *redis.Script, n int, args func(i int) ([]string, []any)) ([]*redis.Cmd, error) {
	for attempt := 0; ; attempt++ {
		pipe := c.Pipeline()
		cmds := make([]*redis.Cmd, n)
		for i := range n {
			keys, argv := args(i)
			cmds[i] = script.EvalSha(ctx, pipe, keys, argv...)
		}
		_, err := pipe.Exec(ctx)
		if err == nil {
			return cmds, nil
		}
		if attempt > 0 || !redis.HasErrorPrefix(err, "NOSCRIPT") {
			return nil, err
		}
		if err := script.Load(ctx, c).Err(); err != nil {
			return nil, err
		}
	}
}

// sourceLife is how long a source's counter on a Cluster lives after the
// last bytes it counted: the two days a ledger may outlive its room.
const sourceLife = 2 * 24 * time.Hour

// owed is, on a Cluster, the bytes the scripts gave back to sources and
// not yet taken off their counters: the next reserve of a source takes
// them off in the same call, and the sweeper the rest. Until then a
// source's counter counts them still, which errs on the safe side.
type owed struct {
	mu    sync.Mutex
	bytes map[string]int64 // guarded by mu
}

// add records given (source, bytes, ... as a script returned them).
func (o *owed) add(given []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := 0; i+1 < len(given); i += 2 {
		n, err := strconv.ParseInt(given[i+1], 10, 64)
		if err != nil || n <= 0 {
			continue
		}
		if o.bytes == nil {
			o.bytes = make(map[string]int64)
		}
		o.bytes[given[i]] += n
	}
}

// take returns what source is owed, and owes it nothing more.
func (o *owed) take(source string) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.bytes[source]
	delete(o.bytes, source)
	return n
}

// takeAll returns everything owed, by source, and owes nothing more.
func (o *owed) takeAll() map[string]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	all := o.bytes
	o.bytes = nil
	return all
}

// reserve adds size bytes to source's counter on a Cluster, after taking
// off what source is owed, unless that takes it over the store's
// Budget.PerSource, which returns ErrSourceOverBudget.
func (s *RedisStore) reserve(ctx context.Context, source string, size int) error {
	give := s.owed.take(source)
	v, err := scriptReserve.Run(ctx, s.client, []string{s.sourceKey(source)}, size, s.budget.PerSource, sourceLife.Milliseconds(), give).StringSlice()
	if err != nil {
		s.owed.add([]string{source, strconv.FormatInt(give, 10)})
		return s.backendErr(ctx, "reserve", err)
	}
	switch {
	case len(v) == 1 && v[0] == "OK":
		return nil
	case len(v) == 1 && v[0] == "SOURCEBUDGET":
		return ErrSourceOverBudget
	}
	return errors.New("session: redis reserve: malformed reply")
}

// giveBack records, on a Cluster, the bytes of given (source, bytes, ...,
// as a script returned them) as owed to their sources.
func (s *RedisStore) giveBack(given []string) {
	s.owed.add(given)
}

// payOwed takes what is owed off the sources' counters, in one pipeline
// (the sweeper's part, and Close's). What it could not is owed still.
func (s *RedisStore) payOwed(ctx context.Context) {
	all := s.owed.takeAll()
	if len(all) == 0 {
		return
	}
	sources := make([]string, 0, len(all))
	for src := range all {
		sources = append(sources, src)
	}
	if _, err := evalAll(ctx, s.client, scriptUnreserve, len(sources), func(i int) ([]string, []any) {
		return []string{s.sourceKey(sources[i])}, []any{all[sources[i]]}
	}); err != nil {
		for src, n := range all {
			s.owed.add([]string{src, strconv.FormatInt(n, 10)})
		}
		if !s.closed.Load() && !errors.Is(s.backendErr(ctx, "give back", err), ErrUnavailable) {
			s.log.Warn("could not give bytes back to their sources' budget counters; they count until the next sweep", "sources", len(sources), "err", err)
		}
	}
}

// giveBackTimeout bounds payOwed on Close.
const giveBackTimeout = 2 * time.Second
