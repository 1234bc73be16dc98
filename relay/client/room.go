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
	// Group is the room's group, or nil until the first key fixes it. It
	// is the group the client pinned (given to Create or JoinGroup), or the
	// first one the relay reported; the client refuses any other.
	Group *dh.Group
	// Peers is the number of peers in the room, 1 or 2, as last reported.
	Peers int
	// Resumed reports whether the place was taken back with Resume.
	Resumed bool
}

// roomState is the client's place in a room. Guarded by Client.mu.
type roomState struct {
	id, peerID, token string
	group             *dh.Group // the pinned group: asked for, or the first reported; nil until then
	peers             int

	err        error // a refused group (*GroupError): the room is unusable
	superseded bool  // the relay closed the connection with 4409: do not resume

	priv      *dh.PrivateKey // our key, once sent or being sent
	keySent   bool           // priv was written to the relay at least once
	keyStored bool           // the relay stored priv (key_ok or handshake_complete)

	peer *peerState // the current other peer; replaced when a new one joins

	expired bool // the relay reported room_expired: its queued events are still delivered

	lastSeq   uint64 // highest seq queued for Next: resume's last_seq
	delivered uint64 // highest seq Next has returned
	acked     uint64 // highest seq acknowledged on the wire

	// unconfirmed holds the msgs written (or being written) without a
	// sent reply yet, in the order they were sealed: Resume sends them
	// again. A sent or a refusal removes one.
	unconfirmed []*outMsg
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

// legacy reports whether g is a legacy group, refused unless
// Options.AllowLegacyGroups: modp5.
func legacy(g *dh.Group) bool { return g == dh.MODP5() }

// checkGroupLocked applies the group pinning rules to the group name a
// frame of type typ carries ("" for none): with a pinned group, any other
// name is refused (ErrGroupChanged); without one, the name must be a
// group's wire name (dh.ErrUnknownGroup), not a legacy group unless the
// options allow it (ErrLegacyGroup), and it becomes the pinned group. A
// frame without a group passes: the room's group is not fixed yet. It
// returns a *GroupError. The caller holds Client.mu.
func (c *Client) checkGroupLocked(rs *roomState, typ wire.FrameType, name string) error {
	if name == "" {
		return nil
	}
	if rs.group != nil {
		if name != rs.group.Name() {
			return &GroupError{Frame: typ, Want: rs.group.Name(), Got: name, Err: ErrGroupChanged}
		}
		return nil
	}
	g, err := dh.LookupGroup(name)
	switch {
	case err != nil || g.Name() != name: // the wire has names only, not "14"
		return &GroupError{Frame: typ, Got: name, Err: dh.ErrUnknownGroup}
	case legacy(g) && !c.opts.AllowLegacyGroups:
		return &GroupError{Frame: typ, Got: name, Err: ErrLegacyGroup}
	}
	rs.group = g
	return nil
}

// failLocked makes rs unusable with err, a refused group, unless it
// already is. It reports whether it did (the first refusal). The caller
// holds Client.mu.
func (c *Client) failLocked(rs *roomState, err error) bool {
	if rs.err != nil {
		return false
	}
	c.logger.Warn("refused the relay's group; the room is unusable", "err", err)
	rs.err = err
	return true
}

// checkLegacy refuses a legacy group the options do not allow.
func (c *Client) checkLegacy(g *dh.Group) error {
	if g != nil && legacy(g) && !c.opts.AllowLegacyGroups {
		return fmt.Errorf("%w: %s (Options.AllowLegacyGroups is off)", ErrLegacyGroup, g)
	}
	return nil
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

// Create creates a room and joins it. group fixes the room's group and
// pins it: the client refuses a room, key_ok, peer_key or
// handshake_complete frame in any other group (a *GroupError wrapping
// ErrGroupChanged), which protects the exchange from a relay that
// rewrites the group. nil leaves the group to the first key (Handshake
// then uses x25519 unless the peer's key came first) and pins the first
// group the relay reports, if it is not a legacy group.
//
// It returns ErrLegacyGroup for modp5 unless Options.AllowLegacyGroups, a
// *GroupError if the relay's room reply names another group (the client
// then leaves the room at once and is in none), an *Error from the relay,
// such as wire.CodeAlreadyInRoom, wire.CodeTooManyRooms or
// wire.CodeGroupNotAllowed, ErrDisconnected, or ctx's error.
func (c *Client) Create(ctx context.Context, group *dh.Group) (Room, error) {
	f := &outFrame{Type: wire.TypeCreate}
	if group != nil {
		f.Group = group.Name()
	}
	return c.enter(ctx, f, group)
}

// Join joins the existing room id without an expected group: it is
// JoinGroup(ctx, id, nil). The client accepts the room's group unless it
// is a legacy group the options do not allow, and pins it.
func (c *Client) Join(ctx context.Context, id string) (Room, error) {
	return c.JoinGroup(ctx, id, nil)
}

// JoinGroup joins the existing room id, expecting its group to be group,
// as the share link or the application says, and pins it as Create does:
// the client refuses a room, key_ok, peer_key or handshake_complete frame
// in any other group. A room whose group is not fixed yet is accepted; the
// client's key is then in group. A nil group accepts the room's group
// unless it is a legacy group the options do not allow.
//
// It returns ErrLegacyGroup for a modp5 group unless
// Options.AllowLegacyGroups, a *GroupError (wrapping ErrGroupChanged or
// ErrLegacyGroup) if the room's group is refused (the client then leaves
// the room at once and is in none), an *Error from the relay, such as
// wire.CodeRoomNotFound, wire.CodeRoomFull or wire.CodeAlreadyInRoom,
// ErrDisconnected, or ctx's error. If the other peer's key is already
// stored it arrives at once (EventPeerKey).
func (c *Client) JoinGroup(ctx context.Context, id string, group *dh.Group) (Room, error) {
	return c.enter(ctx, &outFrame{Type: wire.TypeJoin, Room: id}, group)
}

// enter sends create or join and makes the room the client's, pinned to
// group if not nil.
func (c *Client) enter(ctx context.Context, f *outFrame, group *dh.Group) (Room, error) {
	if err := c.checkLegacy(group); err != nil {
		return Room{}, fmt.Errorf("client: %s: %w", f.Type, err)
	}
	var room Room
	var gerr error
	_, err := c.roundTrip(ctx, f, func(r *inFrame) {
		rs := &roomState{id: r.Room, peerID: r.Peer, token: r.ResumeToken, peers: r.Peers, peer: &peerState{}, group: group}
		gerr = c.checkGroupLocked(rs, wire.TypeRoom, r.group())
		if gerr == nil && f.Type == wire.TypeCreate && group != nil && r.group() == "" {
			// create fixes the group: the reply must name it.
			gerr = &GroupError{Frame: wire.TypeRoom, Want: group.Name(), Err: ErrGroupChanged}
		}
		if gerr != nil {
			return
		}
		c.room = rs
		room = rs.snapshotLocked(false)
	})
	if err == nil && gerr != nil {
		c.logger.Warn("refused the room's group; leaving", "err", gerr)
		// The relay holds the seat; give it back. No reply is awaited
		// (a left without a pending request is dropped).
		if data, merr := (&outFrame{Type: wire.TypeLeave}).marshal(0); merr == nil {
			c.write(c.current(), data)
		}
		err = gerr
	}
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
// messages the client has not seen. Then, before any new message, it
// sends again, as they were and in order, the messages Send reported as
// ErrUnconfirmed (for the same peer); it does not wait for their sent.
// If the relay refuses one of them for good (mailbox_full, say), Next
// reports that *Error. Concurrent Sends wait until Resume is done.
//
// It returns ErrNotInRoom outside a room, ErrClosed, ErrSuperseded after
// the relay closed the connection with 4409 (another connection holds the
// place), the room's *GroupError if a group was refused, a dial error, a
// *GroupError if the room reply names another group (the room is then
// unusable), or an *Error such as wire.CodeInvalidResume,
// wire.CodeResumeExpired or wire.CodeRoomNotFound; after the last two the
// place is gone and the client is in no room. After any other failure it
// may be called again.
func (c *Client) Resume(ctx context.Context) error {
	c.resumeMu.Lock()
	defer c.resumeMu.Unlock()
	c.mu.Lock()
	rs, old := c.room, c.conn
	var failed error
	switch {
	case rs == nil:
	case rs.superseded:
		failed = ErrSuperseded
	case rs.err != nil:
		failed = rs.err
	}
	c.mu.Unlock()
	if c.isClosed() {
		return ErrClosed
	}
	if rs == nil {
		return ErrNotInRoom
	}
	if failed != nil {
		return fmt.Errorf("client: resume: %w", failed)
	}
	old.shutdown(false)

	// No new msg may go out before the resume and the messages to send
	// again, or the peer would refuse the older counters as replays.
	c.sendMu.Lock()
	defer c.sendMu.Unlock()

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
		if gerr := c.checkGroupLocked(rs, wire.TypeRoom, r.group()); gerr != nil {
			c.failLocked(rs, gerr)
		}
		c.room = rs
	})
	if err == nil {
		c.mu.Lock()
		err = rs.err
		c.mu.Unlock()
	}
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
	c.mu.Lock()
	for _, m := range rs.unconfirmed {
		m.inWire = false // the old connection is gone: all go out again
	}
	c.mu.Unlock()
	c.resendUnconfirmed(rs)
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
