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
// it (a forwarder turns the room's events into frames for the client),
// and leaves it (exitRoom). The handlers of create, join and resume call
// enter once the store has given the connection its seat.

// entry is a seat the store has given the connection, on its way in.
type entry struct {
	frame   *wire.ClientFrame     // the create, join or resume being answered
	peer    string                // the member's ID
	token   string                // the new member's resume token; "" on resume
	resumed bool                  // a resume, not a new member
	lastSeq uint64                // on resume, the last message the client has
	gen     uint64                // the seat's generation this connection holds
	sub     *session.Subscription // the room's events, from before the snapshot
	room    session.Room          // the room, read after subscribing
	// ctx and stop bound the subscription and the forwarder.
	ctx  context.Context
	stop context.CancelFunc
}

// enter makes the connection a member of room id with the seat e
// describes: it subscribes to the room's events, replies with the room
// frame and whatever the member must catch up on (the other key,
// handshake_complete, waiting messages after lastSeq), tells the other
// peer, and starts the forwarder. If it fails, the seat is given back
// (best effort). A connection whose seat a newer one already holds is
// closed as superseded.
func (c *conn) enter(id string, e entry) error {
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
			if me, _ := e.room.Member(e.peer); me.Generation > e.gen {
				// A newer connection resumed this seat meanwhile.
				e.stop()
				c.closeWith(wire.CloseSuperseded, "another connection resumed this seat")
				return nil
			}
			c.entered(e)
			return nil
		}
	}
	e.stop()
	// Undo the membership, best effort: the seat must not stay taken.
	if !e.resumed {
		c.s.store.Leave(ctx, id, e.peer)
	} else {
		c.s.store.Disconnect(ctx, id, e.peer, e.gen)
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
	c.gen = e.gen
	c.knownPeer = other.ID // "" without one: the room frame tells the client
	c.keySet = me.PublicKey != ""
	c.peerKeySent, c.hsSent, c.superseded = false, false, false
	c.joinedAt = time.Now()
	c.logp.Store(c.s.log.With("conn", c.id, "room", c.roomTag))
	c.mu.Unlock()

	resumed := e.resumed
	c.send(&wire.ServerFrame{
		Type: wire.TypeRoom, ID: e.frame.ID, Room: room.ID, Peer: e.peer, ResumeToken: e.token,
		Group: &group, Peers: len(room.Members), Resumed: &resumed,
		ResumeGraceMS: room.Config.ResumeGrace.Milliseconds(),
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
		switch {
		case errors.Is(err, session.ErrMessagesLost):
			// Never silent: the client learns it before what remains.
			c.logger().Warn("messages lost by the store on resume", "err", err)
			we, _ := toWireError(err)
			c.sendError(nil, we)
		case err != nil:
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
	c.publish(ctx, session.Event{Type: session.EventJoined, Room: room.ID, Peer: e.peer, Reason: reason, Seq: e.gen, Conn: c.id})
	cancel()

	done := make(chan struct{})
	c.mu.Lock()
	c.stopForward, c.forwardDone = e.stop, done
	c.mu.Unlock()
	f := &forwarder{c: c, room: room.ID, peer: e.peer, gen: e.gen, other: other.ID, delivered: delivered, grace: room.Config.ResumeGrace}
	if hasOther && !other.Connected {
		f.watchGrace(other.DisconnectedAt)
	}
	go f.run(e.ctx, e.sub, done)
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

// forwarder forwards the room's events to the client: the peer's arrival
// and departure, its key, and its messages (the path by which a message
// stored by one instance reaches a peer connected to another). It also
// tells the client when a dropped peer's grace period ends. Its fields are
// owned by its goroutine (run).
type forwarder struct {
	c         *conn
	room      string
	peer      string        // the connection's member
	gen       uint64        // the seat generation the connection holds
	other     string        // the other member as the client knows it; "" for none
	delivered uint64        // the highest seq sent to the client
	grace     time.Duration // the room's resume grace period
	graceEnds *time.Timer   // while the other member is dropped: when its grace ends
}

// watchGrace starts the timer for the end of a dropped peer's grace
// period, which began at since.
func (f *forwarder) watchGrace(since time.Time) {
	f.stopGrace()
	// A little past the end: the store counts a member as gone only once
	// its grace is over, not at its last instant.
	f.graceEnds = time.NewTimer(time.Until(since.Add(f.grace)) + graceSlack)
}

// graceSlack is how long after a dropped peer's grace period the forwarder
// checks that it is over.
const graceSlack = 50 * time.Millisecond

// stopGrace stops the grace timer, if any.
func (f *forwarder) stopGrace() {
	if f.graceEnds != nil {
		f.graceEnds.Stop()
		f.graceEnds = nil
	}
}

// graceC returns the grace timer's channel, or nil (never ready).
func (f *forwarder) graceC() <-chan time.Time {
	if f.graceEnds == nil {
		return nil
	}
	return f.graceEnds.C
}

// tell sends the client frame fr about the other peer, now other ("" for
// none). The client's view of the peer (conn.knownPeer) changes in the
// same step as the frame is queued, so that a peer_key the reader sends
// for that peer cannot overtake it. With reset, the handshake with the
// old peer is forgotten: a new peer must send a new key, and the client
// may send no message until then.
func (f *forwarder) tell(other string, reset bool, fr *wire.ServerFrame) {
	c := f.c
	f.other = other
	c.mu.Lock()
	c.knownPeer = other
	if reset {
		c.peerKeySent, c.hsSent = false, false
	}
	c.queueLocked(fr)
	c.mu.Unlock()
	c.q.wait(c.ctx)
}

// run forwards events until ctx ends or the subscription does, then
// closes done.
func (f *forwarder) run(ctx context.Context, sub *session.Subscription, done chan struct{}) {
	defer close(done)
	defer f.stopGrace()
	for {
		select {
		case ev, ok := <-sub.C: // closed when ctx ends
			if !ok {
				f.ended(ctx, sub)
				return
			}
			if !f.handle(ev) {
				return
			}
		case <-f.graceC():
			f.graceEnds = nil
			f.checkGrace()
		}
	}
}

// handle forwards one event; it reports false when the connection has
// been superseded and the forwarder must stop.
func (f *forwarder) handle(ev *session.Event) bool {
	c := f.c
	switch ev.Type {
	case session.EventJoined:
		if ev.Peer == f.peer {
			if ev.Seq > f.gen {
				// A newer connection resumed this seat.
				c.mu.Lock()
				c.superseded = true
				c.mu.Unlock()
				c.closeWith(wire.CloseSuperseded, "another connection resumed this seat")
				return false
			}
			return true // this connection's own arrival, or an older one's
		}
		resumed := ev.Reason == session.ReasonResumed
		joined := &wire.ServerFrame{Type: wire.TypePeerJoined, Resumed: &resumed}
		switch {
		case resumed && ev.Peer == f.other:
			f.stopGrace() // back within its grace period
			f.tell(ev.Peer, false, joined)
		case ev.Peer == f.other:
			// Its join predates our snapshot: the room frame told the
			// client already.
		default:
			// A new peer in the seat of one that left or expired: a new
			// handshake.
			f.stopGrace()
			f.tell(ev.Peer, true, joined)
		}
	case session.EventLeft:
		if ev.Peer == f.peer {
			return true
		}
		if ev.Reason == session.ReasonLeft {
			// The room's handshake is over; a new peer must send a new
			// key.
			f.stopGrace()
			f.tell("", true, &wire.ServerFrame{Type: wire.TypePeerLeft, Reason: wire.ReasonLeft})
		} else {
			f.watchGrace(time.Now())
			c.send(&wire.ServerFrame{Type: wire.TypePeerLeft, Reason: wire.ReasonDropped})
		}
	case session.EventKey:
		if ev.Peer == f.peer {
			return true
		}
		c.sendPeerKey(ev.Key, ev.Group)
		c.sendHandshake()
	case session.EventMessage:
		if ev.Peer == f.peer || ev.Seq <= f.delivered {
			return true
		}
		f.delivered = ev.Seq
		c.send(&wire.ServerFrame{Type: wire.TypeMsg, Seq: ev.Seq, Body: base64.StdEncoding.EncodeToString(ev.Body)})
	}
	return true
}

// checkGrace runs when a dropped peer's grace period should be over: if
// the store says so, the client learns that the peer expired (peer_left
// "expired") and that a new peer may take its seat.
func (f *forwarder) checkGrace() {
	c := f.c
	ctx, cancel := c.storeCtx()
	room, err := c.s.store.Room(ctx, f.room)
	cancel()
	if err != nil {
		return // a vanished room ends the subscription; a store error is retried by nobody: the peer's next join tells
	}
	m, ok := room.Member(f.other)
	switch {
	case ok && m.Connected:
		return // it resumed; its peer_joined is on its way
	case ok && time.Since(m.DisconnectedAt) <= f.grace:
		f.watchGrace(m.DisconnectedAt) // it resumed and dropped again
		return
	}
	f.tell("", true, &wire.ServerFrame{Type: wire.TypePeerLeft, Reason: wire.ReasonExpired})
}

// ended handles the end of the subscription while the connection is still
// in the room (ctx has not ended): the room expired, the client fell too
// far behind, or the store failed.
func (f *forwarder) ended(ctx context.Context, sub *session.Subscription) {
	c := f.c
	if ctx.Err() != nil {
		return // we left the room or the connection ended
	}
	switch err := sub.Err(); {
	case errors.Is(err, session.ErrRoomNotFound):
		f.roomGone(newWireError(wire.CodeRoomExpired, "the room expired"))
	case errors.Is(err, session.ErrMessagesLost):
		// The store lost the room it still promised (Redis evicted it):
		// say so rather than that it expired or that the store is down.
		c.logger().Error("room lost by the store")
		f.roomGone(newWireError(wire.CodeMessagesLost, "the relay's store lost this room; you are in no room now"))
	case errors.Is(err, session.ErrSlowSubscriber):
		c.closeSlow()
	default:
		c.logger().Warn("room events ended", "err", err)
		c.sendError(nil, newWireError(wire.CodeUnavailable, "the session store is unavailable; reconnect and resume"))
		c.q.closeAfterFlush(wire.CloseStoreUnavailable, "session store unavailable")
	}
}

// roomGone takes the connection out of a room the store no longer has,
// if it is still in it, and tells the client why with we.
func (f *forwarder) roomGone(we *wireError) {
	c := f.c
	c.mu.Lock()
	stillIn := c.room == f.room
	if stillIn {
		c.clearRoomLocked()
	}
	c.mu.Unlock()
	if stillIn {
		c.logger().Info("room gone", "code", we.code)
		c.sendError(nil, we)
	}
}

// clearRoomLocked forgets the room. c.mu must be held.
func (c *conn) clearRoomLocked() {
	c.room, c.roomTag, c.peer, c.group, c.knownPeer = "", "", "", "", ""
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
	room, peer, gen, superseded := c.room, c.peer, c.gen, c.superseded
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
	if why == exitGone {
		c.dropHeldAck()
	} else {
		c.flushHeldAck() // the seat's acks, before its end is recorded
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
		err = c.s.store.Disconnect(ctx, room, peer, gen)
	}
	switch {
	case err == nil:
		c.publish(ctx, session.Event{Type: session.EventLeft, Room: room, Peer: peer, Reason: reason, Conn: c.id})
	case errors.Is(err, session.ErrSuperseded):
		// A newer connection resumed the seat before this one's end was
		// recorded: the peer was told it is back, not that it dropped.
	case !errors.Is(err, session.ErrRoomNotFound) && !errors.Is(err, session.ErrNotMember):
		c.logger().Warn("could not record leaving the room", "reason", reason, "err", err)
	}
	return true
}
