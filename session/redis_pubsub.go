package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Health checks of the connection that carries a store's subscriptions:
// after redisIdlePing without a message the store sends a PING, and it
// ends every subscription with ErrUnavailable if nothing arrives within
// redisPongWait after that.
const (
	redisIdlePing = time.Second
	redisPongWait = 3 * time.Second
)

// genLen is the length of a room's gen, which tells the rooms that have
// had one ID apart: its creation time on the Redis server's clock, in ms,
// as 16 decimal digits, so that a later room's gen compares greater. Each
// published event starts with its room's gen.
const genLen = 16

// redisPubSub is one Pub/Sub connection, its reader and its writer: the
// store's only one on a single Redis or Sentinel set, one per master that
// owns a subscribed room's partition on a Cluster (sharded Pub/Sub). The
// writer sends the SUBSCRIBEs and UNSUBSCRIBEs that ops asks for, in the
// order in which they were decided (under RedisStore.mu), so that no
// caller waits for a write: callers wait for the reply, or for their
// context.
type redisPubSub struct {
	addr     string // the node's address, on a Cluster; else ""
	sharded  bool   // SSUBSCRIBE, on a Cluster, instead of SUBSCRIBE
	ps       *redis.PubSub
	dead     chan struct{} // closed by kill
	killOnce sync.Once
	wake     chan struct{} // capacity 1: ops has work
	ops      []pubsubOp    // guarded by RedisStore.mu
}

// pubsubOp is a command for a redisPubSub's writer.
type pubsubOp struct {
	unsubscribe bool
	channels    []string // never empty: UNSUBSCRIBE with none means all
	ping        string   // after a SUBSCRIBE: the PING whose reply confirms it
}

// queueLocked queues op for p's writer. RedisStore.mu must be held.
func (p *redisPubSub) queueLocked(op pubsubOp) {
	p.ops = append(p.ops, op)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// kill marks p dead; a new Subscribe will open a new connection.
func (p *redisPubSub) kill() { p.killOnce.Do(func() { close(p.dead) }) }

// redisChan is a Redis channel the store is subscribed to (or subscribing
// to), and its subscribers. Guarded by RedisStore.mu.
type redisChan struct {
	room  string
	p     *redisPubSub
	ready chan struct{} // closed once Redis has processed the SUBSCRIBE
	subs  map[*redisSub]struct{}
}

// redisSub is one subscription. Its fields are guarded by RedisStore.mu;
// ch is closed exactly once, under mu, when the subscription ends.
type redisSub struct {
	ch    chan *Event
	c     *redisChan
	gen   string // the room's gen, once Subscribe has read it
	ended bool
	err   error
	stop  func() bool // unregisters the context.AfterFunc; nil until set
}

// Subscribe returns the room's events from now on: Redis has subscribed
// the store to the room's channel before it returns. The subscription
// ends, and its channel is closed, when ctx is done (Err() == nil), when
// it falls RedisConfig.SubscriberBuffer events behind (ErrSlowSubscriber),
// when the room expires (ErrRoomNotFound, within
// RedisConfig.SweepInterval), when Redis evicted the room before its
// expiry (ErrMessagesLost, as quickly), when the connection to Redis fails (an error
// wrapping ErrUnavailable) or when the store closes (ErrClosed).
// Subscribing counts as activity. It returns ErrRoomNotFound, an error
// wrapping ErrUnavailable, or ErrClosed after Close.
func (s *RedisStore) Subscribe(ctx context.Context, room string) (*Subscription, error) {
	sub, err := s.attach(ctx, room)
	if err != nil {
		return nil, err
	}
	v, err := s.run(ctx, "subscribe", scriptTouch, room)
	if err == nil && len(v) != 1 {
		err = errors.New("session: redis subscribe: malformed reply")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.endLocked(sub, nil)
		return nil, err
	}
	sub.gen = v[0]
	if !sub.ended {
		// No goroutine waits for ctx: AfterFunc runs only if ctx ends
		// first, and endLocked unregisters it otherwise.
		sub.stop = context.AfterFunc(ctx, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.endLocked(sub, nil)
		})
	}
	return NewSubscription(sub.ch, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		return sub.err
	}), nil
}

// attach adds a subscription to room's channel, subscribing the store's
// Pub/Sub connection (opened if need be) to it, and returns once Redis has
// processed that SUBSCRIBE, or ctx ends.
func (s *RedisStore) attach(ctx context.Context, room string) (*redisSub, error) {
	name := s.channel(room)
	// On a Cluster, the master that owns the channel's slot (go-redis
	// reloads its map of the slots when a call finds it stale).
	var node *redis.Client
	addr := ""
	if s.cluster != nil {
		var err error
		if node, err = s.cluster.MasterForKey(ctx, name); err != nil {
			return nil, s.backendErr(ctx, "subscribe", err)
		}
		addr = node.Options().Addr
	}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	c := s.chans[name]
	if c != nil && c.p.addr != addr {
		// The slot has moved: the old node's subscription ends.
		for sub := range c.subs {
			s.endLocked(sub, fmt.Errorf("session: redis subscription: %w: the room's slot moved to another master", ErrUnavailable))
		}
		delete(s.chans, name)
		c = nil
	}
	p := s.ps[addr]
	if p == nil {
		// go-redis connects on first use, in the reader or the writer.
		p = &redisPubSub{addr: addr, dead: make(chan struct{}), wake: make(chan struct{}, 1)}
		if node != nil {
			p.ps, p.sharded = node.SSubscribe(s.bg), true
		} else {
			p.ps = s.client.Subscribe(s.bg)
		}
		s.ps[addr] = p
		s.readers.Add(2)
		go s.read(p)
		go s.write(p)
	}
	if c == nil {
		c = &redisChan{room: room, p: p, ready: make(chan struct{}), subs: make(map[*redisSub]struct{})}
		s.chans[name] = c
		s.seq++
		ping := "keyrelay-subscribe-" + strconv.FormatUint(s.seq, 10)
		s.pongs[ping] = c
		p.queueLocked(pubsubOp{channels: []string{name}, ping: ping})
	}
	sub := &redisSub{ch: make(chan *Event, s.subBuffer), c: c}
	c.subs[sub] = struct{}{}
	s.mu.Unlock()
	var err error
	select {
	case <-c.ready:
		return sub, nil
	case <-p.dead:
		err = errors.New("connection lost")
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	s.endLocked(sub, nil)
	s.mu.Unlock()
	return nil, s.backendErr(ctx, "subscribe", err)
}

// write sends the commands queued for p until p dies. The commands are
// not bounded by any caller's context: a write cut short would leave the
// connection in an unknown state (go-redis drops it), ending every
// subscription it carries. The client's dial, read and write timeouts
// bound them.
func (s *RedisStore) write(p *redisPubSub) {
	defer s.readers.Done()
	for {
		select {
		case <-p.dead:
			return
		case <-p.wake:
		}
		s.mu.Lock()
		ops := p.ops
		p.ops = nil
		s.mu.Unlock()
		for _, op := range ops {
			var err error
			switch {
			case op.unsubscribe && p.sharded:
				// One slot per SUNSUBSCRIBE on a Cluster.
				for _, ch := range op.channels {
					if err = p.ps.SUnsubscribe(s.bg, ch); err != nil {
						break
					}
				}
			case op.unsubscribe:
				err = p.ps.Unsubscribe(s.bg, op.channels...)
			case p.sharded:
				err = p.ps.SSubscribe(s.bg, op.channels...)
			default:
				err = p.ps.Subscribe(s.bg, op.channels...)
			}
			if err == nil && !op.unsubscribe {
				// The PING's reply follows the SUBSCRIBE's: when it
				// arrives, the channel is subscribed.
				err = p.ps.Ping(s.bg, op.ping)
			}
			if err != nil {
				s.lost(p, err)
				return
			}
		}
	}
}

// read receives the messages of p until its connection fails or the store
// closes, then ends p's subscriptions. It also checks the connection's
// health: after redisIdlePing without a message it sends a PING, and a
// connection silent for redisPongWait after that has failed.
func (s *RedisStore) read(p *redisPubSub) {
	defer s.readers.Done()
	pinged := false
	for {
		wait := redisIdlePing
		if pinged {
			wait = redisPongWait
		}
		msg, err := p.ps.ReceiveTimeout(s.bg, wait)
		if err != nil {
			var nerr net.Error
			if !pinged && errors.As(err, &nerr) && nerr.Timeout() {
				// Idle: make sure the connection still works.
				if err = p.ps.Ping(s.bg, "keyrelay-health"); err == nil {
					pinged = true
					continue
				}
			}
			s.lost(p, err)
			return
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Message:
			s.dispatch(p, m)
		case *redis.Pong:
			s.mu.Lock()
			if c, ok := s.pongs[m.Payload]; ok {
				delete(s.pongs, m.Payload)
				close(c.ready)
			}
			s.mu.Unlock()
		case *redis.Subscription:
			if m.Kind == "sunsubscribe" {
				s.unsubscribed(p, m.Channel)
			}
		}
	}
}

// unsubscribed handles a SUNSUBSCRIBE reply on p for channel: the
// store's own, for a channel it no longer uses, or the master's, when
// the channel's slot moved to another master (after which its events
// travel there). A confirmed channel that still has subscribers is in
// the second case: they end with ErrUnavailable, since events may have
// been lost, and their clients resume, subscribing on the new master.
func (s *RedisStore) unsubscribed(p *redisPubSub, channel string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chans[channel]
	if c == nil || c.p != p {
		return
	}
	select {
	case <-c.ready:
	default:
		return // subscribing anew after the store's own SUNSUBSCRIBE
	}
	for sub := range c.subs {
		s.endLocked(sub, fmt.Errorf("session: redis subscription: %w: the room's slot moved to another master", ErrUnavailable))
	}
	delete(s.chans, channel)
}

// lost ends every subscription carried by p, whose connection failed with
// err, and closes p.
func (s *RedisStore) lost(p *redisPubSub, err error) {
	if s.cluster != nil {
		s.cluster.ReloadState(s.bg) // the master may have failed over
	}
	s.mu.Lock()
	if s.ps[p.addr] == p {
		delete(s.ps, p.addr)
	}
	p.kill()
	if !s.closed.Load() {
		err = fmt.Errorf("session: redis subscription: %w: %w", ErrUnavailable, err)
		for name, c := range s.chans {
			if c.p != p {
				continue
			}
			for sub := range c.subs {
				s.endLocked(sub, err)
			}
			delete(s.chans, name)
		}
		for ping, c := range s.pongs {
			if c.p == p {
				delete(s.pongs, ping)
			}
		}
	}
	s.mu.Unlock()
	p.ps.Close()
}

// dispatch hands message m, received on p, to the subscribers of its
// channel, without waiting for any.
func (s *RedisStore) dispatch(p *redisPubSub, m *redis.Message) {
	var gen string
	ev, err := Event{}, errors.New("session: redis: malformed event")
	if len(m.Payload) >= genLen {
		gen = m.Payload[:genLen]
		ev, err = decodeEvent(m.Payload[genLen:])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chans[m.Channel]
	if c == nil || c.p != p {
		return
	}
	for sub := range c.subs {
		switch {
		case err != nil:
			s.endLocked(sub, err)
		case sub.gen != "" && gen > sub.gen:
			// A new room with the same ID: the subscribed one is gone.
			s.endLocked(sub, ErrRoomNotFound)
		case sub.gen != "" && gen < sub.gen:
			// An event of an earlier room with the same ID, still in
			// flight when this subscription began: not for it.
		default:
			e := ev
			e.Body = bytes.Clone(ev.Body)
			select {
			case sub.ch <- &e:
			default:
				s.endLocked(sub, ErrSlowSubscriber)
			}
		}
	}
}

// endLocked ends sub with err, if it has not ended yet. s.mu must be held.
// The channel stays subscribed until the next sweep, so that a new
// subscriber to the room does not have to wait for Redis.
func (s *RedisStore) endLocked(sub *redisSub, err error) {
	if sub.ended {
		return
	}
	sub.ended = true
	sub.err = err
	if sub.stop != nil {
		sub.stop()
	}
	delete(sub.c.subs, sub)
	close(sub.ch)
}

// sweepOnce is the sweeper's work, every s.sweepEvery until Close: it
// retries the disconnects Redis did not accept, counts the partitions
// (takeCensus) and gives back the bytes of the mailboxes Redis expired by
// itself (settleLedgers), checks Redis's
// maxmemory-policy every RedisConfig.PolicyCheckInterval, and sweeps the
// subscriptions.
func (s *RedisStore) sweepOnce() {
	s.leaseWork()
	s.retryDisconnects()
	if s.cluster != nil {
		ctx, cancel := context.WithTimeout(s.bg, max(s.sweepEvery, time.Second))
		s.payOwed(ctx)
		cancel()
	}
	// One script per partition counts it (for the fleet-wide bounds on a
	// Cluster) and lists its ledgers due for settling; a failure keeps
	// the last count, and is left for the next sweep.
	ctx, cancel := context.WithTimeout(s.bg, max(s.sweepEvery, time.Second))
	if _, _, due, err := s.takeCensus(ctx, maxSettle); err == nil {
		s.settleLedgers(ctx, due)
	} else if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrClosed) {
		s.log.Error("sweep: census failed", "err", err)
	}
	cancel()
	if s.policy.due(time.Now()) {
		ctx, cancel := context.WithTimeout(s.bg, max(s.sweepEvery, time.Second))
		s.policy.check(ctx, s.client)
		cancel()
	}
	s.sweepSubs()
}

// sweepSubs unsubscribes from the channels no subscription uses any more,
// and ends the subscriptions of rooms that no longer exist (or exist anew)
// with ErrRoomNotFound, or with ErrMessagesLost if the index of rooms says
// that the room should still live (Redis evicted it). Errors are left for
// the reader's health checks to find.
func (s *RedisStore) sweepSubs() {
	s.mu.Lock()
	idle := make(map[*redisPubSub][]string)
	// The subscriptions to check, with the gens they had before the
	// check: a gen read afterwards that is greater (or none) proves their
	// room gone.
	type check struct {
		subs map[*redisSub]string
		cmd  *redis.StringCmd
		exp  *redis.FloatCmd // the room's expiry in the index (ms)
	}
	checks := make(map[string]*check) // by room
	for name, c := range s.chans {
		if len(c.subs) == 0 {
			delete(s.chans, name)
			if s.ps[c.p.addr] == c.p {
				idle[c.p] = append(idle[c.p], name)
			}
			continue
		}
		for sub := range c.subs {
			if sub.gen == "" {
				continue // Subscribe is still checking the room itself
			}
			if checks[c.room] == nil {
				checks[c.room] = &check{subs: make(map[*redisSub]string)}
			}
			checks[c.room].subs[sub] = sub.gen
		}
	}
	for p, names := range idle {
		p.queueLocked(pubsubOp{unsubscribe: true, channels: names})
	}
	s.mu.Unlock()
	if len(checks) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(s.bg, max(s.sweepEvery, time.Second))
	defer cancel()
	pipe := s.client.Pipeline()
	now := pipe.Time(ctx)
	for room, c := range checks {
		c.cmd = pipe.HGet(ctx, s.roomKey(room), "gen")
		c.exp = pipe.ZScore(ctx, s.parts[s.partOf(room)].index, room)
	}
	pipe.Exec(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range checks {
		gen, err := c.cmd.Result()
		if errors.Is(err, redis.Nil) {
			gen, err = "", nil
		}
		if err != nil {
			continue
		}
		why := ErrRoomNotFound
		if exp, err := c.exp.Result(); gen == "" && err == nil && now.Err() == nil && exp > float64(now.Val().UnixMilli()) {
			why = ErrMessagesLost // gone before its expiry: evicted
		}
		for sub, had := range c.subs {
			if gen == "" || gen > had {
				s.endLocked(sub, why)
			}
		}
	}
}
