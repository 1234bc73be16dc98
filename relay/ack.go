package relay

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/keyrelay/keyrelay/session"
)

// appendAcker is a store that can store a message and its sender's own
// acknowledgement in one call (session.RedisStore.AppendAck).
type appendAcker interface {
	AppendAck(ctx context.Context, room, from, source string, body []byte, ack uint64) (uint64, error)
}

// heldAck is the ack a connection holds back under Config.AckDelay: the
// highest seq acknowledged for room and peer and not stored yet (0:
// none), and the timer that stores it.
type heldAck struct {
	mu         sync.Mutex
	room, peer string
	seq        uint64
	timer      *time.Timer
}

// holdAck holds seq, acknowledged by peer in room, for up to
// Config.AckDelay: the next message of the connection carries it, or the
// timer stores it. An ack for another seat than the one held stores the
// held one first.
func (c *conn) holdAck(room, peer string, seq uint64) {
	h := &c.held
	h.mu.Lock()
	if h.seq > 0 && (h.room != room || h.peer != peer) {
		h.mu.Unlock()
		c.flushHeldAck()
		h.mu.Lock()
	}
	h.room, h.peer = room, peer
	h.seq = max(h.seq, seq)
	if h.timer == nil {
		h.timer = time.AfterFunc(c.s.cfg.AckDelay, c.flushHeldAck)
	}
	h.mu.Unlock()
}

// takeHeldAck returns the ack held for peer in room, no longer held, or 0.
func (c *conn) takeHeldAck(room, peer string) uint64 {
	h := &c.held
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seq == 0 || h.room != room || h.peer != peer {
		return 0
	}
	return h.takeLocked()
}

// takeLocked returns the held seq and holds nothing. h.mu must be held.
func (h *heldAck) takeLocked() uint64 {
	seq := h.seq
	h.seq = 0
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
	return seq
}

// flushHeldAck stores the held ack, if any, with a context of its own:
// the connection may have ended. A failure is logged: the messages stay
// until a later ack (acks are cumulative) or the room's end.
func (c *conn) flushHeldAck() {
	h := &c.held
	h.mu.Lock()
	room, peer, seq := h.room, h.peer, h.takeLocked()
	h.mu.Unlock()
	if seq == 0 {
		return
	}
	c.storeAck(room, peer, seq)
}

// dropHeldAck forgets the held ack: its room is gone.
func (c *conn) dropHeldAck() {
	h := &c.held
	h.mu.Lock()
	h.takeLocked()
	h.mu.Unlock()
}

// storeAck stores peer's ack of seq in room now, logging a failure.
func (c *conn) storeAck(room, peer string, seq uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.StoreTimeout)
	defer cancel()
	err := c.s.store.Ack(ctx, room, peer, seq)
	if err != nil && !errors.Is(err, session.ErrRoomNotFound) && !errors.Is(err, session.ErrNotMember) {
		c.logger().Warn("could not store an ack", "err", err)
	}
}

// appendWithAck stores body from peer in room, with the ack the
// connection holds for that seat, if any: in the same call where the
// store offers AppendAck, else just before. If the message is refused,
// the ack is stored on its own.
func (c *conn) appendWithAck(ctx context.Context, room, peer string, body []byte) (uint64, error) {
	ack := c.takeHeldAck(room, peer)
	if ack == 0 {
		return c.s.store.Append(ctx, room, peer, c.source, body)
	}
	aa, ok := c.s.store.(appendAcker)
	if !ok {
		c.storeAck(room, peer, ack)
		return c.s.store.Append(ctx, room, peer, c.source, body)
	}
	seq, err := aa.AppendAck(ctx, room, peer, c.source, body, ack)
	if err != nil {
		c.storeAck(room, peer, ack)
	}
	return seq, err
}

// seqRaiser is a store whose room sequence can fall behind what clients
// were told, when a Redis master fails over before its replica had the
// last writes (session.RedisStore.RaiseSeq).
type seqRaiser interface {
	RaiseSeq(ctx context.Context, room string, seq uint64) error
}

// raiseSeq makes the room's next message number higher than seq, the
// highest one the resuming client has seen (its last_seq, or its
// sent_seq), if the store can lose writes and has fallen behind it: a
// message numbered again would be dropped by the peer as a duplicate.
func (c *conn) raiseSeq(ctx context.Context, room session.Room, seq uint64) error {
	if seq <= room.LastSeq {
		return nil
	}
	r, ok := c.s.store.(seqRaiser)
	if !ok {
		return nil
	}
	c.logger().Warn("a resuming client has seen message numbers the store has not: raising the room's (after a Redis failover that lost writes?)", "store_seq", room.LastSeq, "client_seq", seq)
	return r.RaiseSeq(ctx, room.ID, seq)
}
