package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/wire"
)

// Room describes the client's place in a room, as the relay's room frame
// gave it.
type Room struct {
	// ID is the room's ID, to share with the other peer out of band.
	ID string
	// Peer is this client's peer ID in the room.
	Peer string
	// Group is the room's group, or nil until the first key fixes it.
	Group *dh.Group
	// Peers is the number of peers in the room, 1 or 2, as last reported.
	Peers int
	// Resumed reports whether the place was taken back with Resume.
	Resumed bool
}

// roomState is the client's place in a room. Guarded by Client.mu.
type roomState struct {
	id, peerID, token string
	group             *dh.Group // nil until fixed
	peers             int

	priv      *dh.PrivateKey // our key, once sent or being sent
	keySent   bool           // priv was written to the relay at least once
	keyStored bool           // the relay stored priv (key_ok or handshake_complete)

	peer *peerState // the current other peer; replaced when a new one joins

	expired bool // the relay reported room_expired: its queued events are still delivered

	lastSeq   uint64 // highest seq queued for Next: resume's last_seq
	delivered uint64 // highest seq Next has returned
	acked     uint64 // highest seq acknowledged on the wire
}

// peerState is the key exchange with one other peer. Guarded by Client.mu.
type peerState struct {
	key      *dh.PublicKey
	complete bool  // handshake_complete received
	gone     bool  // peer_left seen since: a new peer may take the place
	err      error // a peer key that is invalid or changed: the exchange failed
	channel  *dh.Channel
	hs       *Handshake
}

// snapshotLocked returns the Room the caller sees. The caller holds
// Client.mu.
func (rs *roomState) snapshotLocked(resumed bool) Room {
	return Room{ID: rs.id, Peer: rs.peerID, Group: rs.group, Peers: rs.peers, Resumed: resumed}
}

// setGroupLocked records the room's group from a frame's group field (""
// means not fixed yet). An unknown name is ignored here; the key exchange
// then fails on it. The caller holds Client.mu.
func (rs *roomState) setGroupLocked(name string) {
	if name == "" || rs.group != nil {
		return
	}
	if g, err := dh.LookupGroup(name); err == nil {
		rs.group = g
	}
}

// Room returns the client's room and true, or false outside a room.
func (c *Client) Room() (Room, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.room == nil {
		return Room{}, false
	}
	return c.room.snapshotLocked(false), true
}

// Create creates a room and joins it. group fixes the room's group; nil
// leaves it to the first key (Handshake then uses x25519 unless the peer's
// key came first). It returns an *Error from the relay, such as
// wire.CodeAlreadyInRoom or wire.CodeTooManyRooms, ErrDisconnected, or ctx's error.
func (c *Client) Create(ctx context.Context, group *dh.Group) (Room, error) {
	f := &outFrame{Type: wire.TypeCreate}
	if group != nil {
		f.Group = group.Name()
	}
	return c.enter(ctx, f)
}

// Join joins the existing room id. It returns an *Error from the relay,
// such as wire.CodeRoomNotFound, wire.CodeRoomFull or wire.CodeAlreadyInRoom,
// ErrDisconnected, or ctx's error. If the other peer's key is already
// stored it arrives at once (EventPeerKey).
func (c *Client) Join(ctx context.Context, id string) (Room, error) {
	return c.enter(ctx, &outFrame{Type: wire.TypeJoin, Room: id})
}

// enter sends create or join and makes the room the client's.
func (c *Client) enter(ctx context.Context, f *outFrame) (Room, error) {
	var room Room
	_, err := c.roundTrip(ctx, f, func(r *inFrame) {
		rs := &roomState{id: r.Room, peerID: r.Peer, token: r.ResumeToken, peers: r.Peers, peer: &peerState{}}
		rs.setGroupLocked(r.group())
		c.room = rs
		room = rs.snapshotLocked(false)
	})
	if err != nil {
		return Room{}, fmt.Errorf("client: %s: %w", f.Type, err)
	}
	c.logger.Info("in room", "room", room.ID, "peers", room.Peers)
	return room, nil
}

// Resume takes the client's place back after its connection dropped:
// it closes the current connection if it is still open, dials the relay
// again with the same options, and sends resume with the room, peer ID,
// resume token and the highest seq it has queued. The keys, the Channel's
// counters and the undelivered events are kept; the relay then sends the
// messages the client has not seen.
//
// It returns ErrNotInRoom outside a room, ErrClosed, a dial error, or an
// *Error such as wire.CodeInvalidResume, wire.CodeResumeExpired or wire.CodeRoomNotFound;
// after the last two the place is gone and the client is in no room. After
// any other failure it may be called again.
func (c *Client) Resume(ctx context.Context) error {
	c.resumeMu.Lock()
	defer c.resumeMu.Unlock()
	c.mu.Lock()
	rs, old := c.room, c.conn
	c.mu.Unlock()
	if c.isClosed() {
		return ErrClosed
	}
	if rs == nil {
		return ErrNotInRoom
	}
	old.shutdown(false)

	cn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.isClosed() {
		c.mu.Unlock()
		cn.shutdown(true)
		return ErrClosed
	}
	c.conn = cn
	f := &outFrame{Type: wire.TypeResume, Room: rs.id, Peer: rs.peerID, ResumeToken: rs.token, LastSeq: rs.lastSeq}
	c.mu.Unlock()

	_, err = c.roundTrip(ctx, f, func(r *inFrame) {
		rs.peers = r.Peers
		rs.setGroupLocked(r.group())
		c.room = rs
	})
	var re *Error
	if errors.As(err, &re) && (re.Code == wire.CodeResumeExpired || re.Code == wire.CodeRoomNotFound) {
		c.mu.Lock()
		if c.room == rs {
			c.room = nil // the place is gone
		}
		c.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("client: resume: %w", err)
	}
	c.logger.Info("resumed", "room", rs.id, "last_seq", f.LastSeq)
	// Messages delivered but not acknowledged before the drop.
	c.mu.Lock()
	seq := rs.delivered
	if seq <= rs.acked {
		seq = 0
	}
	c.mu.Unlock()
	if seq > 0 {
		c.ack(rs, seq)
	}
	return nil
}

// Leave leaves the room for good (the peer sees peer_left "left"); the
// connection stays open for another room. Undelivered events of the room
// are discarded. It returns ErrNotInRoom, an *Error, ErrDisconnected or
// ctx's error.
func (c *Client) Leave(ctx context.Context) error {
	c.mu.Lock()
	rs := c.room
	c.mu.Unlock()
	if rs == nil {
		return ErrNotInRoom
	}
	_, err := c.roundTrip(ctx, &outFrame{Type: wire.TypeLeave}, func(*inFrame) {
		if c.room == rs {
			c.room = nil
		}
	})
	if err != nil {
		return fmt.Errorf("client: leave: %w", err)
	}
	return nil
}

// waitState waits until cond, evaluated with c.mu held, is true. It
// returns ErrNotInRoom if the client leaves rs, and the connection's end,
// Close and ctx as errors.
func (c *Client) waitState(ctx context.Context, rs *roomState, cond func() bool) error {
	for {
		c.mu.Lock()
		if c.room != rs {
			c.mu.Unlock()
			return ErrNotInRoom
		}
		if cond() {
			c.mu.Unlock()
			return nil
		}
		changed, cn := c.changed, c.conn
		c.mu.Unlock()
		select {
		case <-changed:
		case <-cn.done:
			if c.current() == cn {
				return c.connErr(cn)
			}
		case <-c.closed:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
