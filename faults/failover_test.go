package faults

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/wire"
)

// Master failover: Redis loses a master (SIGKILL) while pairs chat
// through two relays, and a replica takes its place. The relays are not
// restarted: the clients whose rooms were on the dead master get
// unavailable, see their connection closed (1013), resume, and chat on.
// Redis replicates asynchronously, so a master that dies may take with it
// writes the relay had confirmed with sent; --redis-wait-replicas 1 makes
// the relay confirm a message only once a replica has it. Each test runs
// both ways and logs, per run, the counts that docs/scaling.md quotes.

// Sizes and bounds of a failover run.
const (
	// failoverPairs is how many pairs chat: enough that any master of a
	// three-master Cluster holds several of their rooms (the store's 256
	// partitions are spread over the three).
	failoverPairs = 16
	// failoverPace is the pause between two messages of a talker: the
	// pairs chat without stopping, up to 20 messages a second each way,
	// and leave the two cores room for Redis, the relays and the race
	// detector.
	failoverPace = 50 * time.Millisecond
	// warmUpMessages is how many messages each side receives before the
	// kill.
	warmUpMessages = 10
	// failoverTimeout bounds the failover: a replica serving in the dead
	// master's place, as redistest sees it.
	failoverTimeout = 30 * time.Second
	// recoverTimeout bounds, from the end of the failover, the time every
	// pair takes to chat again.
	recoverTimeout = 20 * time.Second
	// recoverMessages is how many messages sent after the failover each
	// side of a pair must receive for the pair to have recovered. With
	// --redis-wait-replicas 1, the promoted master has no replica left,
	// and confirms each message only after --redis-wait-timeout (1 s).
	recoverMessages = 2
	// afterRecovery is how long the pairs chat on once all have
	// recovered, before the count.
	afterRecovery = 2 * time.Second
	// finishTimeout bounds the wait, once the senders have stopped, for
	// every confirmed message to arrive. Without --redis-wait-replicas it
	// is spent in full if messages were lost.
	finishTimeout = 10 * time.Second
)

// redisHA is a Redis deployment with a replica for each master, whose
// master a failover test kills.
type redisHA interface {
	// URL returns the relays' --redis-url.
	URL() string
	// pickVictim chooses the master to kill, given the rooms' IDs, and
	// reports which of the rooms it holds.
	pickVictim(t *testing.T, rooms []string) (held []bool)
	// killMaster kills the master pickVictim chose, with SIGKILL.
	killMaster(t *testing.T)
	// waitFailover waits until a replica serves in the dead master's
	// place, and fails t after timeout.
	waitFailover(t *testing.T, timeout time.Duration)
}

// clusterHA is a Redis Cluster.
type clusterHA struct {
	*redistest.Cluster
	victim string // the master to kill: the one that holds most rooms
}

func (c *clusterHA) pickVictim(t *testing.T, rooms []string) []bool {
	t.Helper()
	where := roomMasters(t, c.Cluster)
	count := map[string]int{}
	for _, id := range rooms {
		addr, ok := where[id]
		if !ok {
			t.Fatalf("room %s: no master holds its key", id)
		}
		count[addr]++
	}
	for _, m := range c.Masters(t) {
		if c.victim == "" || count[m.Addr] > count[c.victim] {
			c.victim = m.Addr
		}
	}
	held := make([]bool, len(rooms))
	for i, id := range rooms {
		held[i] = where[id] == c.victim
	}
	return held
}

func (c *clusterHA) killMaster(t *testing.T) {
	awaitReplica(t, c.victim)
	c.KillMaster(t, c.victim)
}

func (c *clusterHA) waitFailover(t *testing.T, timeout time.Duration) { c.WaitHealthy(t, timeout) }

// roomKeyPattern matches the key of a room on a Cluster,
// keyrelay:{TAG}:room:ID (session/redis_partition.go), and captures ID.
var roomKeyPattern = regexp.MustCompile(`^keyrelay:\{[^}]+\}:room:([^:]+)$`)

// roomMasters returns, by room ID, the address of the master that holds
// the room, as SCAN on each master finds the rooms' keys; it checks that
// MasterOf agrees.
func roomMasters(t *testing.T, c *redistest.Cluster) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	where := map[string]string{}
	for _, m := range c.Masters(t) {
		rdb := redis.NewClient(&redis.Options{Addr: m.Addr})
		iter := rdb.Scan(ctx, 0, "keyrelay:*:room:*", 1000).Iterator()
		for iter.Next(ctx) {
			sub := roomKeyPattern.FindStringSubmatch(iter.Val())
			if sub == nil {
				continue
			}
			if owner := c.MasterOf(t, iter.Val()); owner != m.Addr {
				t.Fatalf("key %s is on %s, but MasterOf says %s", iter.Val(), m.Addr, owner)
			}
			where[sub[1]] = m.Addr
		}
		err := iter.Err()
		rdb.Close()
		if err != nil {
			t.Fatalf("SCAN on %s: %v", m.Addr, err)
		}
	}
	return where
}

// sentinelHA is a master, its replica and a Sentinel: the master holds
// every room.
type sentinelHA struct {
	*redistest.Sentinel
}

func (s sentinelHA) pickVictim(_ *testing.T, rooms []string) []bool {
	held := make([]bool, len(rooms))
	for i := range held {
		held[i] = true
	}
	return held
}

func (s sentinelHA) killMaster(t *testing.T) {
	awaitReplica(t, s.Master(t))
	s.KillMaster(t)
}

// awaitReplica waits (Redis WAIT, at most 10 s) until a replica of the
// master at addr has every write the master had a moment ago, and fails t
// if none does. A failover test kills a master only once its replica
// streams: one still in its first sync (which a replica that the sentinel
// or the cluster has just reconfigured may redo) would come up empty and
// lose every room, which is not the loss these tests measure (the writes
// in flight when a healthy master dies).
func awaitReplica(t *testing.T, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	n, err := c.Do(ctx, "WAIT", 1, 10000).Int64()
	if err != nil || n < 1 {
		t.Fatalf("no replica of %s caught up within 10 s (WAIT: %d, %v)", addr, n, err)
	}
}

func (s sentinelHA) waitFailover(t *testing.T, timeout time.Duration) { s.WaitFailover(t, timeout) }

// TestClusterMasterFailover: a Redis Cluster of three masters, each with a
// replica, serves two relays; 16 pairs chat, A on relay 1 and B on relay
// 2. The master that holds most of their rooms dies (SIGKILL) and its
// replica takes its place. See testMasterFailover for what is checked.
//
// The pairs whose rooms are on the other masters are not dropped, but
// they may get unavailable for the second or two in which the Cluster
// has a failed master (CLUSTERDOWN: Redis refuses every slot while one is
// not served).
func TestClusterMasterFailover(t *testing.T) {
	testMasterFailover(t, "cluster", func(t *testing.T) redisHA {
		return &clusterHA{Cluster: redistest.StartShardedCluster(t, 3, 1)}
	})
}

// TestSentinelMasterFailover: a master, its replica and a Sentinel serve
// two relays on the Sentinel's URL; 16 pairs chat, A on relay 1 and B on
// relay 2. The master dies (SIGKILL) and the Sentinel promotes the
// replica. See testMasterFailover for what is checked.
func TestSentinelMasterFailover(t *testing.T) {
	testMasterFailover(t, "sentinel", func(t *testing.T) redisHA {
		return sentinelHA{redistest.StartSentinel(t)}
	})
}

// testMasterFailover runs a failover under traffic twice, each time on a
// deployment start makes afresh: with asynchronous replication (the
// default), and with --redis-wait-replicas 1. Each run checks that:
//
//   - every pair chats again after the failover, without a relay restart:
//     each side receives messages the other sent after it; without
//     --redis-wait-replicas, a pair whose room the promoted replica never
//     received (both sides told room_not_found on resume) is counted as a
//     room lost to asynchronous replication instead, and a new pair across
//     both relays must then chat, to show that the relays recovered;
//   - what arrives, arrives once and in order, and only what was sent and
//     not refused (checkDelivery);
//   - with --redis-wait-replicas 1, every message confirmed with sent
//     arrives; without it, confirmed messages may be lost with the master,
//     and are counted.
//
// It logs one line of counts per run, and the warnings and errors the
// relays logged after the kill.
func testMasterFailover(t *testing.T, what string, start func(t *testing.T) redisHA) {
	for _, tc := range []struct {
		waitReplicas int
		accepted     loss
	}{
		{waitReplicas: 0, accepted: lossReplication},
		{waitReplicas: 1, accepted: lossNone},
	} {
		t.Run(fmt.Sprintf("wait-replicas=%d", tc.waitReplicas), func(t *testing.T) {
			ha := start(t)
			flags := append([]string{"--redis-wait-replicas", strconv.Itoa(tc.waitReplicas)}, fastFlags...)
			relays := []*relayProc{startRelay(t, "relay1", ha.URL(), flags...), startRelay(t, "relay2", ha.URL(), flags...)}
			ctx := testContext(t, 2*time.Minute)
			pairs, rooms := chatPairs(t, ctx, relays[0], relays[1])
			held := ha.pickVictim(t, rooms)

			for _, p := range pairs {
				p.mark(&p.atKill)
			}
			logged := make([]int, len(relays))
			for i, r := range relays {
				logged[i] = r.current().out.Len()
			}
			killed := time.Now()
			ha.killMaster(t)
			ha.waitFailover(t, failoverTimeout)
			took := time.Since(killed)
			for _, p := range pairs {
				p.mark(&p.atFailover)
			}

			rctx := phase(t, ctx, recoverTimeout)
			eachPair(pairs, func(p *failoverPair) { p.awaitRecovery(rctx, killed) })
			var stuck []string
			var allBack time.Duration
			lostRooms := 0
			for i, p := range pairs {
				switch {
				case p.recovered == 0 && tc.waitReplicas == 0 && roomGone(p.a) && roomGone(p.b):
					// The replica had not received the room: a loss
					// asynchronous replication allows, counted below.
					lostRooms++
				case p.recovered == 0:
					stuck = append(stuck, fmt.Sprintf("pair %d (room %s, on the killed master: %t): %s", i, rooms[i], held[i], p))
				default:
					allBack = max(allBack, p.recovered)
				}
			}
			if lostRooms > 0 {
				// The relays must serve new rooms all the same.
				a, b := newPair(t, ctx, relays[0].addr, relays[1].addr)
				cv := talk(ctx, a, b)
				cv.warmUp(t, phase(t, ctx, 15*time.Second), 5, "a new pair after the failover")
				cv.finish(phase(t, ctx, 10*time.Second))
			}
			if len(stuck) == 0 {
				select {
				case <-time.After(afterRecovery):
				case <-ctx.Done():
				}
			}
			fctx := phase(t, ctx, finishTimeout)
			eachPair(pairs, func(p *failoverPair) { p.cv.finish(fctx) })

			var sum failoverCount
			for i, p := range pairs {
				sum.add(p, held[i], checkDelivery(t, p.a, p.b, tc.accepted), checkDelivery(t, p.b, p.a, tc.accepted))
			}
			back := "never"
			if len(stuck) == 0 {
				back = allBack.Round(100 * time.Millisecond).String()
			}
			t.Logf("%s failover, wait-replicas=%d: %v, failover took %v, pairs recovered %d/%d (all chatting again %s after the kill), rooms lost with the master %d; %s",
				what, tc.waitReplicas, sum, took.Round(100*time.Millisecond), len(pairs)-len(stuck)-lostRooms, len(pairs), back, lostRooms, sum.pairs())
			for i, r := range relays {
				if s := r.logSummary(logged[i]); s != "" {
					t.Logf("%s logged after the kill: %s", r.name, s)
				}
			}
			if len(stuck) > 0 {
				t.Errorf("%d of %d pairs did not chat again within %v of the failover:\n%s",
					len(stuck), len(pairs), recoverTimeout, strings.Join(stuck, "\n"))
			}
		})
	}
}

// failoverPair is a pair chatting through a failover.
type failoverPair struct {
	a, b *talker
	cv   *conversation

	// Indices of the next message of each side (A's, then B's) when the
	// master was killed and when the failover was over.
	atKill, atFailover [2]int
	// recovered is how long after the kill each side had received
	// recoverMessages sent after the failover; 0 if they never did.
	recovered time.Duration
}

// chatPairs makes failoverPairs pairs, A on ra and B on rb, starts them
// chatting, and returns them, with their rooms' IDs, once each side has
// received warmUpMessages.
func chatPairs(t *testing.T, ctx context.Context, ra, rb *relayProc) ([]*failoverPair, []string) {
	t.Helper()
	pairs := make([]*failoverPair, failoverPairs)
	rooms := make([]string, len(pairs))
	for i := range pairs {
		a, b := newPair(t, ctx, ra.addr, rb.addr)
		room, _ := a.c.Room()
		pairs[i], rooms[i] = &failoverPair{a: a, b: b}, room.ID
	}
	for _, p := range pairs {
		p.cv = talkEvery(ctx, p.a, p.b, failoverPace)
	}
	wctx := phase(t, ctx, 15*time.Second)
	for i, p := range pairs {
		for _, tk := range []*talker{p.a, p.b} {
			if !waitReceived(wctx, tk, warmUpMessages) {
				t.Fatalf("pair %d: %s received fewer than %d messages before the failover", i, tk.name, warmUpMessages)
			}
		}
	}
	return pairs, rooms
}

// eachPair calls f for every pair at once and waits for all.
func eachPair(pairs []*failoverPair, f func(p *failoverPair)) {
	var wg sync.WaitGroup
	for _, p := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(p)
		}()
	}
	wg.Wait()
}

// mark records in at the index of each side's next message.
func (p *failoverPair) mark(at *[2]int) {
	for i, tk := range []*talker{p.a, p.b} {
		tk.mu.Lock()
		at[i] = tk.next
		tk.mu.Unlock()
	}
}

// awaitRecovery waits until each side has received recoverMessages that
// the other sent after the failover, or ctx ends, and sets p.recovered.
func (p *failoverPair) awaitRecovery(ctx context.Context, killed time.Time) {
	for i, to := range []*talker{p.b, p.a} {
		want := p.atFailover[i] + recoverMessages - 1
		if !to.waitFor(ctx, func() bool { return len(to.got) > 0 && to.got[len(to.got)-1] >= want }) {
			return
		}
	}
	p.recovered = time.Since(killed)
}

// disruption reports whether either side's connection ended (dropped),
// and whether either was refused with unavailable: an error event, or a
// send left unconfirmed since the kill (refused).
func (p *failoverPair) disruption() (dropped, refused bool) {
	for side, tk := range []*talker{p.a, p.b} {
		tk.mu.Lock()
		dropped = dropped || len(tk.closes) > 0
		refused = refused || slices.Contains(tk.events, "error "+string(wire.CodeUnavailable))
		for i := range tk.uncertain {
			refused = refused || i >= p.atKill[side]
		}
		tk.mu.Unlock()
	}
	return dropped, refused
}

// String describes both sides, for a pair that did not recover.
func (p *failoverPair) String() string {
	var parts []string
	for _, tk := range []*talker{p.a, p.b} {
		tk.mu.Lock()
		parts = append(parts, fmt.Sprintf("%s: sent %d, received %d (last %d), drops with close codes %v, %d resumes, resume error %v, events %q",
			tk.name, tk.next, len(tk.got), lastOf(tk.got), tk.closes, tk.resumes, tk.resumeErr, tk.events))
		tk.mu.Unlock()
	}
	return strings.Join(parts, "; ")
}

// lastOf returns the last of s, or -1.
func lastOf(s []int) int {
	if len(s) == 0 {
		return -1
	}
	return s[len(s)-1]
}

// failoverCount adds up a failover run.
type failoverCount struct {
	sent, confirmed, delivered int
	uncertainDelivered         int // of delivered, not confirmed: the sender's sent never came
	// lostBefore, lostDuring and lostAfter count the confirmed messages
	// never delivered, by when they were sent: before the kill, between
	// the kill and the end of the failover, after it.
	lostBefore, lostDuring, lostAfter int
	// Pairs: whose room was on the killed master; that dropped, and of
	// them, whose room was elsewhere; that got unavailable without
	// dropping.
	held, dropped, droppedElsewhere, refusedOnly int
}

// add counts pair p's two directions, ab (A→B) and ba.
func (c *failoverCount) add(p *failoverPair, held bool, ab, ba delivery) {
	for side, d := range []delivery{ab, ba} {
		c.sent += d.sent
		c.confirmed += d.confirmed
		c.delivered += d.delivered
		c.uncertainDelivered += d.uncertainDelivered
		for _, i := range d.lost {
			switch {
			case i < p.atKill[side]:
				c.lostBefore++
			case i < p.atFailover[side]:
				c.lostDuring++
			default:
				c.lostAfter++
			}
		}
	}
	if held {
		c.held++
	}
	switch dropped, refused := p.disruption(); {
	case dropped:
		c.dropped++
		if !held {
			c.droppedElsewhere++
		}
	case refused:
		c.refusedOnly++
	}
}

func (c failoverCount) String() string {
	lost := c.lostBefore + c.lostDuring + c.lostAfter
	s := fmt.Sprintf("sent %d, confirmed %d, delivered %d (%d unconfirmed), lost %d", c.sent, c.confirmed, c.delivered, c.uncertainDelivered, lost)
	if lost > 0 {
		s += fmt.Sprintf(" (sent before the kill %d, during the failover %d, after it %d)", c.lostBefore, c.lostDuring, c.lostAfter)
	}
	return s
}

// pairs describes what the pairs went through.
func (c failoverCount) pairs() string {
	s := fmt.Sprintf("%d rooms on the killed master, %d pairs dropped and resumed", c.held, c.dropped)
	if c.droppedElsewhere > 0 {
		s += fmt.Sprintf(" (%d with their room on another master)", c.droppedElsewhere)
	}
	if c.refusedOnly > 0 {
		s += fmt.Sprintf(", %d more got unavailable without a drop", c.refusedOnly)
	}
	return s
}

// logLinePattern picks the level and message of a relay's warning or
// error (log/slog's text format).
var logLinePattern = regexp.MustCompile(`level=(WARN|ERROR) msg=("(?:[^"\\]|\\.)*"|\S+)`)

// logSummary counts the warnings and errors that the relay's current run
// wrote past the first from bytes of its output, by level and message:
// "3× WARN room events ended; 1× ERROR …".
func (p *relayProc) logSummary(from int) string {
	counts := map[string]int{}
	for _, m := range logLinePattern.FindAllStringSubmatch(p.current().out.String()[from:], -1) {
		msg, err := strconv.Unquote(m[2])
		if err != nil {
			msg = m[2]
		}
		counts[m[1]+" "+msg]++
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%d× %s", counts[k], k))
	}
	return strings.Join(parts, "; ")
}

// roomGone reports whether tk stopped resuming because the relay no longer
// had its room (room_not_found).
func roomGone(tk *talker) bool {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	var re *client.Error
	return errors.As(tk.resumeErr, &re) && re.Code == wire.CodeRoomNotFound
}
