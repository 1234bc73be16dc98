package relay

import (
	"context"
	"encoding/base64"
	"errors"
	"time"

	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/wire"
)

// Room membership: how a connection enters a room (enter, entered), follows
// it (forwardEvents turns the room's events into frames for the client),
// and leaves it (exitRoom). The handlers of create, join and resume call
// enter once the store has given the connection its seat.

// entry is a seat the store has given the connection, on its way in.
type entry struct {
	frame   *wire.ClientFrame     // the create, join or resume being answered
	sub     *session.Subscription // the room's events, from before the snapshot
	room    session.Room          // the room, read after subscribing
	peer    string                // the member's ID
	token   string                // the new member's resume token; "" on resume
	resumed bool                  // a resume, not a new member
	lastSeq uint64                // on resume, the last message the client has
	// ctx and stop bound the subscription and the forwarder.
	ctx  context.Context
	stop context.CancelFunc
}

// enter makes the connection a member of room id as peer: it subscribes to
// the room's events, replies with the room frame and whatever the member
// must catch up on (the other key, handshake_complete, waiting messages
// after lastSeq), tells the other peer, and starts the forwarder. If it
// fails, the seat is given back (best effort).
func (c *conn) enter(f *wire.ClientFrame, id, peer, token string, resumed bool, lastSeq uint64) error {
	e := entry{frame: f, peer: peer, token: token, resumed: resumed, lastSeq: lastSeq}
	e.ctx, e.stop = context.WithCancel(c.ctx)
	ctx, cancel := c.storeCtx()
	defer cancel()
	sub, err := c.s.store.Subscribe(e.ctx, id)
	if err == nil {
		e.sub = sub
		// The snapshot is taken after subscribing, so nothing between the
		// two is missed; the flags of conn drop what arrives twice.
		e.room, err = c.s.store.Room(ctx, id)
		if err == nil {
			c.entered(e)
			return nil
		}
	}
	e.stop()
	// Undo the membership, best effort: the seat must not stay taken.
	if !resumed {
		c.s.store.Leave(ctx, id, peer)
	} else {
		c.s.store.Disconnect(ctx, id, peer)
	}
	return err
}

// entered finishes enter once the connection holds its seat.
func (c *conn) entered(e entry) {
	room := e.room
	me, _ := room.Member(e.peer)
	other, hasOther := room.Other(e.peer)
	group := room.Group

	c.mu.Lock()
	c.room, c.roomTag, c.peer, c.group = room.ID, c.s.roomTag(room.ID), e.peer, group
	c.keySet = me.PublicKey != ""
	c.peerKeySent, c.hsSent, c.superseded = false, false, false
	c.joinedAt = time.Now()
	c.logp.Store(c.s.log.With("conn", c.id, "room", c.roomTag))
	c.mu.Unlock()

	resumed := e.resumed
	c.send(&wire.ServerFrame{
		Type: wire.TypeRoom, ID: e.frame.ID, Room: room.ID, Peer: e.peer, ResumeToken: e.token,
		Group: &group, Peers: len(room.Members), Resumed: &resumed,
	})
	if hasOther && other.PublicKey != "" {
		c.sendPeerKey(other.PublicKey, group)
		if me.PublicKey != "" {
			c.sendHandshake()
		}
	}
	var delivered uint64
	if e.resumed {
		ctx, cancel := c.storeCtx()
		msgs, err := c.s.store.Pending(ctx, room.ID, e.peer, e.lastSeq)
		cancel()
		if err != nil {
			c.logger().Warn("pending messages unavailable on resume", "err", err)
		}
		for _, m := range msgs {
			c.send(&wire.ServerFrame{Type: wire.TypeMsg, Seq: m.Seq, Body: base64.StdEncoding.EncodeToString(m.Body)})
			delivered = m.Seq
		}
	}
	var reason session.Reason
	if e.resumed {
		reason = session.ReasonResumed
	}
	ctx, cancel := c.storeCtx()
	c.publish(ctx, session.Event{Type: session.EventJoined, Room: room.ID, Peer: e.peer, Reason: reason, Conn: c.id})
	cancel()

	done := make(chan struct{})
	c.mu.Lock()
	c.stopForward, c.forwardDone = e.stop, done
	c.mu.Unlock()
	go c.forwardEvents(e.ctx, e.sub, room.ID, e.peer, other.ID, delivered, done)
	c.logger().Debug("entered room", "resumed", e.resumed, "peers", len(room.Members))
}

// sendPeerKey sends peer_key once per peer key.
func (c *conn) sendPeerKey(key, group string) {
	c.mu.Lock()
	if !c.peerKeySent {
		c.peerKeySent = true
		if group != "" {
			c.group = group
		}
		c.queueLocked(&wire.ServerFrame{Type: wire.TypePeerKey, PublicKey: key, Group: &group})
	}
	c.mu.Unlock()
	c.q.wait(c.ctx)
}

// sendHandshake sends handshake_complete once both keys are known and
// peer_key has been sent, and reports whether it did.
func (c *conn) sendHandshake() bool {
	c.mu.Lock()
	send := !c.hsSent && c.peerKeySent && c.keySet
	if send {
		c.hsSent = true
		group := c.group
		c.s.metrics.handshakeLatency.Observe(time.Since(c.joinedAt).Seconds())
		c.queueLocked(&wire.ServerFrame{Type: wire.TypeHandshakeComplete, Group: &group})
	}
	c.mu.Unlock()
	c.q.wait(c.ctx)
	return send
}

// forwardEvents forwards the room's events to the client until ctx ends or
// the subscription does: the peer's arrival and departure, its key, and
// its messages (the path by which a message stored by one instance reaches
// a peer connected to another). It closes done when it returns.
func (c *conn) forwardEvents(ctx context.Context, sub *session.Subscription, room, peer, knownOther string, delivered uint64, done chan struct{}) {
	defer close(done)
	for ev := range sub.C {
		switch ev.Type {
		case session.EventJoined:
			if ev.Peer == peer {
				if ev.Conn != c.id {
					// This peer resumed on another connection.
					c.mu.Lock()
					c.superseded = true
					c.mu.Unlock()
					c.closeWith(wire.CloseNormal, "resumed on another connection")
					return
				}
				continue
			}
			resumed := ev.Reason == session.ReasonResumed
			if !resumed && ev.Peer == knownOther {
				// Its join predates our snapshot: the room frame told
				// the client already.
				continue
			}
			knownOther = ev.Peer
			c.send(&wire.ServerFrame{Type: wire.TypePeerJoined, Resumed: &resumed})
		case session.EventLeft:
			if ev.Peer == peer {
				continue
			}
			reason := wire.ReasonDropped
			if ev.Reason == session.ReasonLeft {
				// The room's handshake is over; a new peer must send a
				// new key.
				reason = wire.ReasonLeft
				knownOther = ""
				c.mu.Lock()
				c.peerKeySent, c.hsSent = false, false
				c.mu.Unlock()
			}
			c.send(&wire.ServerFrame{Type: wire.TypePeerLeft, Reason: reason})
		case session.EventKey:
			if ev.Peer == peer {
				continue
			}
			c.sendPeerKey(ev.Key, ev.Group)
			c.sendHandshake()
		case session.EventMessage:
			if ev.Peer == peer || ev.Seq <= delivered {
				continue
			}
			delivered = ev.Seq
			c.send(&wire.ServerFrame{Type: wire.TypeMsg, Seq: ev.Seq, Body: base64.StdEncoding.EncodeToString(ev.Body)})
		}
	}
	if ctx.Err() != nil {
		return // we left the room or the connection ended
	}
	switch err := sub.Err(); {
	case errors.Is(err, session.ErrRoomNotFound):
		c.mu.Lock()
		stillIn := c.room == room
		if stillIn {
			c.clearRoomLocked()
		}
		c.mu.Unlock()
		if stillIn {
			c.logger().Info("room expired")
			c.sendError(nil, newWireError(wire.CodeRoomExpired, "the room expired"))
		}
	case errors.Is(err, session.ErrSlowSubscriber):
		c.closeSlow()
	default:
		c.logger().Warn("room events ended", "err", err)
		c.sendError(nil, newWireError(wire.CodeUnavailable, "the session store is unavailable; reconnect and resume"))
		c.q.closeAfterFlush(wire.CloseStoreUnavailable, "session store unavailable")
	}
}

// clearRoomLocked forgets the room. c.mu must be held.
func (c *conn) clearRoomLocked() {
	c.room, c.roomTag, c.peer, c.group = "", "", "", ""
	c.keySet, c.peerKeySent, c.hsSent = false, false, false
	c.logp.Store(c.s.log.With("conn", c.id))
}

// exitReason says how a connection leaves its room.
type exitReason int

const (
	exitLeft    exitReason = iota // the client sent leave: its seat is freed
	exitDropped                   // the connection ended: the member may resume
	exitGone                      // the room is gone: the store is not told
)

// exitRoom takes the connection out of its room, stopping the forwarder,
// records why in the store, and tells the other peer of a leave or a drop.
// It reports whether the connection was in a room.
func (c *conn) exitRoom(why exitReason) bool {
	c.mu.Lock()
	room, peer, superseded := c.room, c.peer, c.superseded
	stop, done := c.stopForward, c.forwardDone
	c.clearRoomLocked()
	c.stopForward, c.forwardDone = nil, nil
	c.mu.Unlock()
	if room == "" {
		return false
	}
	if stop != nil {
		stop()
		<-done
	}
	if why == exitGone || superseded {
		return true
	}
	// The connection's context may have ended: use a fresh one.
	ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.StoreTimeout)
	defer cancel()
	var err error
	reason := session.ReasonLeft
	if why == exitLeft {
		err = c.s.store.Leave(ctx, room, peer)
	} else {
		reason = session.ReasonDropped
		err = c.s.store.Disconnect(ctx, room, peer)
	}
	switch {
	case err == nil:
		c.publish(ctx, session.Event{Type: session.EventLeft, Room: room, Peer: peer, Reason: reason, Conn: c.id})
	case !errors.Is(err, session.ErrRoomNotFound) && !errors.Is(err, session.ErrNotMember):
		c.logger().Warn("could not record leaving the room", "reason", reason, "err", err)
	}
	return true
}
