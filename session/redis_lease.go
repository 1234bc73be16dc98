package session

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Instance liveness (lib.lua describes the keys). Each RedisStore is an
// instance with a lease in Redis, renewed by a goroutine of its own every
// third of RedisConfig.LeaseTTL. Join and Reconnect record which instance holds a
// member's seat. When an instance dies without disconnecting its members
// (SIGKILL, a crash, a lost network), its lease ends, and the sweeper of
// any other instance marks the seats it held disconnected, publishing
// each member's EventLeft (ReasonDropped): the other peers are told, and
// the grace periods start then. So a seat is never held "connected" more
// than LeaseTTL plus a sweep after the last renewal of its instance.

// Defaults and bounds of the lease.
const (
	defaultLeaseTTL = 15 * time.Second
	// maxReap bounds the seats one sweep marks disconnected; the rest wait
	// for the next sweeps.
	maxReap = 1000
	// maxDead bounds the dead instances one sweep looks at.
	maxDead = 16
)

// lease is an instance's identity and lease. Its fields are used by the
// renewer goroutine only, but for id, which every goroutine reads.
type lease struct {
	ttl    time.Duration
	onLost func()
	part   int                    // the partition whose seats the tidying is at
	cursor uint64                 // where in it the tidying goes on
	id     atomic.Pointer[string] // the instance ID
}

// newInstanceID returns a new instance ID.
func newInstanceID() string { return uuid.NewString() }

// instance returns the store's current instance ID.
func (s *RedisStore) instance() string { return *s.lease.id.Load() }

// setInstance replaces the store's instance ID.
func (s *RedisStore) setInstance(id string) { s.lease.id.Store(&id) }

// instKey returns the set of the seats instance id holds in partition p.
func (s *RedisStore) instKey(p int, id string) string { return s.parts[p].key + "inst:" + id }

// instLife is how long an instance's set of seats in a partition lives
// after it last changed or was tidied (lib.lua's inst_life).
const instLife = 24 * time.Hour

// tidyParts bounds the partitions one renewal tidies.
const tidyParts = 8

// renewLease registers the instance (first) or renews its lease. A
// renewal that finds the lease ended gets the store a new instance ID and
// calls RedisConfig.OnLeaseLost: other instances may have marked the
// seats of the old one disconnected, so the connections holding them must
// resume.
func (s *RedisStore) renewLease(ctx context.Context, first bool) error {
	id := s.instance()
	flag := "0"
	if first {
		flag = "1"
	}
	v, err := scriptLease.Run(ctx, s.client, []string{s.instances}, id, s.lease.ttl.Milliseconds(), flag).StringSlice()
	if err != nil {
		return s.backendErr(ctx, "lease", err)
	}
	if len(v) > 0 && v[0] == "LOST" {
		s.log.Error("this instance's lease in Redis ended before it was renewed (Redis unreachable or the process paused for longer than the lease): its connections must resume", "lease", s.lease.ttl)
		s.setInstance(newInstanceID())
		if s.lease.onLost != nil {
			s.lease.onLost()
		}
		return s.renewLease(ctx, true)
	}
	return nil
}

// renewTick runs every third of the lease, in a goroutine of its own (so
// that a long SweepInterval cannot let the lease lapse): it renews the
// lease and tidies the instance's set of seats.
func (s *RedisStore) renewTick() {
	ctx, cancel := context.WithTimeout(s.bg, s.lease.ttl/3)
	defer cancel()
	if err := s.renewLease(ctx, false); err != nil {
		if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrClosed) {
			s.log.Error("lease renewal failed", "err", err)
		}
		return
	}
	s.tidySeats(ctx)
}

// leaseWork is the sweeper's part of instance liveness: it marks the
// seats of dead instances disconnected.
func (s *RedisStore) leaseWork() {
	ctx, cancel := context.WithTimeout(s.bg, max(s.sweepEvery, time.Second))
	defer cancel()
	s.reapDead(ctx)
}

// tidySeats takes out of the instance's own sets, a hundred at a time,
// the seats of rooms that Redis expired by itself (no script saw them
// go), so that a long-lived instance's sets do not grow. It goes through
// the partitions in turn, at most tidyParts a renewal, and keeps each set
// it has been through alive instLife longer.
func (s *RedisStore) tidySeats(ctx context.Context) {
	for range min(tidyParts, len(s.parts)) {
		p := s.lease.part % len(s.parts)
		key := s.instKey(p, s.instance())
		seats, cursor, err := s.client.SScan(ctx, key, s.lease.cursor, "", 100).Result()
		if err != nil {
			return
		}
		s.lease.cursor = cursor
		pipe := s.client.Pipeline()
		exists := make([]*redis.IntCmd, len(seats))
		for i, seat := range seats {
			room, _, _ := strings.Cut(seat, "\n")
			exists[i] = pipe.Exists(ctx, s.roomKey(room))
		}
		if len(seats) > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return
			}
		}
		for i, seat := range seats {
			if exists[i].Val() == 0 {
				s.client.SRem(ctx, key, seat)
			}
		}
		if cursor != 0 {
			return // the rest of this set at the next renewal
		}
		s.client.PExpire(ctx, key, instLife)
		s.lease.part = p + 1
	}
}

// reapDead marks disconnected the seats held by instances whose lease has
// ended (at most maxReap a sweep), announcing each. Two instances reaping
// at once is safe: reap.lua marks a seat only while the dead instance
// still holds it.
func (s *RedisStore) reapDead(ctx context.Context) {
	v, err := scriptDead.Run(ctx, s.client, []string{s.instances}, maxDead).StringSlice()
	if err != nil || len(v) == 0 || v[0] != "OK" {
		return // Redis unreachable: the next sweep tries again
	}
	budget := maxReap
	self := s.instance()
	for _, dead := range v[1:] {
		if dead == self {
			continue // our own lease lapsed: renewLease handles it
		}
		pipe := s.client.Pipeline()
		cards := make([]*redis.IntCmd, len(s.parts))
		for p := range s.parts {
			cards[p] = pipe.SCard(ctx, s.instKey(p, dead))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return
		}
		empty := true
		for p, card := range cards {
			if card.Val() == 0 {
				continue
			}
			empty = false
			key := s.instKey(p, dead)
			seats, _, err := s.client.SScan(ctx, key, 0, "", int64(budget)).Result()
			if err != nil {
				return
			}
			for _, seat := range seats {
				room, member, ok := strings.Cut(seat, "\n")
				if !ok || s.partOf(room) != p {
					s.client.SRem(ctx, key, seat)
					continue
				}
				ev := encodeEvent(Event{Type: EventLeft, Room: room, Peer: member, Reason: ReasonDropped})
				if _, err := s.run(ctx, "reap", scriptReap, room, member, dead, s.channel(room), ev); err != nil {
					if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) {
						return
					}
					s.log.Error("could not mark a dead instance's seat disconnected", "err", err)
				}
				if budget--; budget == 0 {
					return
				}
			}
		}
		if empty {
			// Every seat reaped: the instance is forgotten.
			s.client.ZRem(ctx, s.instances, dead)
		}
	}
}
