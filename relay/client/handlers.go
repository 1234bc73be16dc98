package client

import (
	"fmt"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/wire"
)

// dispatch handles one frame, in cn's reader goroutine. It takes
// Client.mu for each state change (a reply's call.apply, room_expired, the
// …Locked handlers below) and releases it before enqueue, which may wait
// for room in the queue. It returns false if the reader must stop.
func (c *Client) dispatch(cn *conn, f *inFrame) bool {
	if f.Seq != 0 {
		c.logger.Debug("frame", "type", f.Type, "seq", f.Seq)
	} else {
		c.logger.Debug("frame", "type", f.Type)
	}
	switch f.Type {
	case wire.TypeRoom, wire.TypeKeyOK, wire.TypeSent, wire.TypeLeft, wire.TypeError:
		if key := idKey(f.ID); key != "" {
			cn.mu.Lock()
			cl := cn.pending[key]
			delete(cn.pending, key)
			cn.mu.Unlock()
			if cl != nil {
				var stray error
				if cl.msg != nil || cl.apply != nil && f.Type != wire.TypeError {
					c.mu.Lock()
					if cl.msg != nil {
						stray = c.onMsgReplyLocked(cl.room, cl.msg, f)
					} else {
						cl.apply(f)
					}
					c.notifyLocked()
					c.mu.Unlock()
				}
				cl.reply <- f
				if stray != nil {
					return c.enqueue(cn, item{err: stray})
				}
				return true
			}
		}
		if f.Type != wire.TypeError {
			c.logger.Debug("reply to no pending request; dropped", "type", f.Type)
			return true
		}
		if f.Code == wire.CodeRoomExpired {
			c.mu.Lock()
			if c.room != nil {
				c.room.expired = true
			}
			c.room = nil
			c.notifyLocked()
			c.mu.Unlock()
		}
		return c.enqueue(cn, item{err: f.relayError()})
	case wire.TypePeerKey:
		c.mu.Lock()
		ev, ok := c.onPeerKeyLocked(f)
		c.notifyLocked()
		c.mu.Unlock()
		if ok {
			return c.enqueue(cn, ev)
		}
	case wire.TypeHandshakeComplete:
		c.mu.Lock()
		err := c.onHandshakeCompleteLocked(f)
		c.notifyLocked()
		c.mu.Unlock()
		if err != nil {
			return c.enqueue(cn, item{err: err})
		}
	case wire.TypePeerJoined, wire.TypePeerLeft:
		c.mu.Lock()
		it, ok := c.onPeerEventLocked(f)
		c.notifyLocked()
		c.mu.Unlock()
		if ok {
			return c.enqueue(cn, it)
		}
	case wire.TypeMsg:
		c.mu.Lock()
		it, ok := c.onMsgLocked(f)
		c.mu.Unlock()
		if !ok {
			return true
		}
		if !c.enqueue(cn, it) {
			return false // not queued: the relay will send it again after Resume
		}
		c.mu.Lock()
		it.room.lastSeq = max(it.room.lastSeq, f.Seq)
		c.mu.Unlock()
	default:
		c.logger.Debug("unknown frame type; ignored", "type", f.Type)
	}
	return true
}

// enqueue puts it in the events queue, blocking while the queue is full:
// the client then stops reading from the connection. It returns false if
// the connection is being shut down.
func (c *Client) enqueue(cn *conn, it item) bool {
	return c.events.push(it, cn.stop)
}

// onPeerKeyLocked handles peer_key: it checks the key's group against the
// pinned one (a refusal makes the room unusable and is returned as an
// error item for Next) and validates the key in it. It returns an
// EventPeerKey item for a new valid key, and a *KeyChangeError item for a
// key other than the peer's known one (the exchange fails). The caller (dispatch) holds
// Client.mu.
func (c *Client) onPeerKeyLocked(f *inFrame) (item, bool) {
	rs := c.room
	if rs == nil {
		c.logger.Warn("peer_key outside a room; ignored")
		return item{}, false
	}
	if err := c.checkGroupLocked(rs, wire.TypePeerKey, f.group()); err != nil {
		if c.failLocked(rs, err) {
			return item{err: err}, true
		}
		return item{}, false
	}
	ps := rs.peer
	var key *dh.PublicKey
	var err error
	if rs.group == nil {
		err = fmt.Errorf("%w: peer_key without a group", dh.ErrUnknownGroup)
	} else {
		key, err = rs.group.ParsePublicKey(f.PublicKey)
	}
	switch {
	case ps.err != nil:
		return item{}, false // the exchange failed already, and said so
	case err != nil && ps.key == nil:
		c.logger.Warn("the relay forwarded an invalid peer key", "err", err)
		ps.err = fmt.Errorf("peer key: %w", err)
		return item{}, false // Handshake reports it
	case ps.key == nil:
		ps.key = key
		return item{room: rs, ev: Event{Type: EventPeerKey, PeerKey: key}}, true
	case err != nil || !ps.key.Equal(key):
		c.logger.Warn("the relay forwarded a different key for the same peer")
		kerr := &KeyChangeError{Old: ps.key, New: key, Err: err}
		if key != nil && rs.priv != nil {
			kerr.SafetyNumber, _ = dh.SafetyNumber(rs.priv.PublicKey(), key)
		}
		ps.err = kerr
		return item{err: kerr}, true // Next reports it at once
	}
	return item{}, false // the same key again, after a resume
}

// onHandshakeCompleteLocked handles handshake_complete. It returns the
// *GroupError, for Next, if the frame's group is refused (the room is then
// unusable). The caller (dispatch) holds Client.mu.
func (c *Client) onHandshakeCompleteLocked(f *inFrame) error {
	rs := c.room
	if rs == nil {
		return nil
	}
	if err := c.checkGroupLocked(rs, wire.TypeHandshakeComplete, f.group()); err != nil {
		if c.failLocked(rs, err) {
			return err
		}
		return nil
	}
	rs.peer.complete = true
	rs.keyStored = rs.priv != nil // both keys are stored, ours included
	return nil
}

// onPeerEventLocked handles peer_joined and peer_left. A new peer (joined,
// not resumed) or a peer gone for good (left, or expired after its grace
// period) ends the key exchange with the previous peer, and the messages
// to it that wait to be sent again are forgotten. The caller (dispatch)
// holds Client.mu.
func (c *Client) onPeerEventLocked(f *inFrame) (item, bool) {
	rs := c.room
	if rs == nil {
		return item{}, false
	}
	ev := Event{Resumed: f.resumed(), Reason: f.Reason}
	switch f.Type {
	case wire.TypePeerJoined:
		ev.Type = EventPeerJoined
		if !f.resumed() && rs.peers == 2 && !rs.peer.gone {
			// The peer was already here (the relay can report the
			// creator's join to a fast joiner): nothing happened.
			c.logger.Debug("peer_joined for a peer already present; ignored")
			return item{}, false
		}
		rs.peers = 2
		if !f.resumed() && rs.peer.gone {
			rs.newPeerLocked() // a new peer in the old one's place
		}
	case wire.TypePeerLeft:
		ev.Type = EventPeerLeft
		rs.peers = 1
		rs.peer.gone = true
		if f.Reason == wire.ReasonLeft || f.Reason == wire.ReasonExpired {
			rs.newPeerLocked()
		}
	}
	return item{room: rs, ev: ev}, true
}

// newPeerLocked starts a new key exchange for the next peer, forgetting
// the messages to the previous one. The caller holds Client.mu.
func (rs *roomState) newPeerLocked() {
	rs.peer = &peerState{}
	rs.unconfirmed = nil
}

// onMsgLocked handles msg: it returns the item to queue, or false for a
// seq already queued. The caller (dispatch) holds Client.mu; it releases
// it to queue the item, then takes it again to advance lastSeq once the
// item is queued.
func (c *Client) onMsgLocked(f *inFrame) (item, bool) {
	rs := c.room
	if rs == nil {
		c.logger.Warn("msg outside a room; ignored")
		return item{}, false
	}
	if f.Seq <= rs.lastSeq {
		c.logger.Debug("duplicate msg dropped", "seq", f.Seq)
		return item{}, false
	}
	return item{room: rs, peer: rs.peer, ev: Event{Type: EventMessage, Message: Message{Seq: f.Seq}}, body: f.Body}, true
}
