package client

import (
	"context"
	"encoding/base64"
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

// Handshake is the outcome of the key exchange.
type Handshake struct {
	// Group is the room's group.
	Group *dh.Group
	// PublicKey is this client's public key.
	PublicKey *dh.PublicKey
	// PeerKey is the peer's public key, validated by the client.
	PeerKey *dh.PublicKey
	// SafetyNumber is dh.SafetyNumber of the two keys: 60 digits in groups
	// of five, the same on both sides unless a key was replaced in transit.
	// The users should compare it over another channel.
	SafetyNumber string
}

// EventType says what an Event is.
type EventType int

// Event types.
const (
	// EventMessage: a message from the peer (Event.Message).
	EventMessage EventType = iota + 1
	// EventPeerJoined: the peer joined, or came back (Event.Resumed).
	EventPeerJoined
	// EventPeerLeft: the peer left (Event.Reason wire.ReasonLeft: for good)
	// or its connection dropped (wire.ReasonDropped: it may resume).
	EventPeerLeft
	// EventPeerKey: the peer's public key arrived and is valid
	// (Event.PeerKey); the handshake completes once both keys are stored.
	EventPeerKey
)

// String returns the event type's name, such as "peer_left".
func (t EventType) String() string {
	switch t {
	case EventMessage:
		return "message"
	case EventPeerJoined:
		return string(wire.TypePeerJoined)
	case EventPeerLeft:
		return string(wire.TypePeerLeft)
	case EventPeerKey:
		return string(wire.TypePeerKey)
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is something that happened in the room, as Next returns it.
type Event struct {
	// Type says what happened, and which of the other fields is set.
	Type EventType
	// Message is the message, for EventMessage.
	Message Message
	// Resumed, for EventPeerJoined, reports that the peer took its place
	// back after a drop rather than being a new peer.
	Resumed bool
	// Reason, for EventPeerLeft, is wire.ReasonLeft or wire.ReasonDropped.
	Reason wire.Reason
	// PeerKey, for EventPeerKey, is the peer's public key.
	PeerKey *dh.PublicKey
}

// Message is a decrypted message from the peer.
type Message struct {
	// Seq is the relay's sequence number: per room, increasing.
	Seq uint64
	// Plaintext is the message as the peer sent it.
	Plaintext []byte
}

// item is an entry of the events queue.
type item struct {
	room *roomState // nil for errors, which are never stale
	peer *peerState // for messages: the key exchange they belong to
	ev   Event      // Message.Plaintext empty: body holds the ciphertext
	body string     // msg: the base64 body
	err  error      // an error frame that answers no request
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

// snapshot returns the Room the caller sees.
func (rs *roomState) snapshot(resumed bool) Room {
	return Room{ID: rs.id, Peer: rs.peerID, Group: rs.group, Peers: rs.peers, Resumed: resumed}
}

// setGroup records the room's group from a frame's group field ("" means
// not fixed yet). An unknown name is ignored here; the key exchange then
// fails on it.
func (rs *roomState) setGroup(name string) {
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
	return c.room.snapshot(false), true
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
		rs.setGroup(r.group())
		c.room = rs
		room = rs.snapshot(false)
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
		rs.setGroup(r.group())
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

// SendKey generates the client's key pair in the room's group, sends the
// public key, and returns it once the relay has stored it (key_ok). The
// private key stays in the client. If the key was sent already it returns
// it without sending again; after a dropped connection it sends the same
// key again.
//
// If the room has no group yet, it uses the group of the peer's key if that
// has arrived, else x25519; if the peer's key fixes another group
// meanwhile, it waits for that key and sends one of its group.
//
// It returns ErrNotInRoom, an *Error from the relay, ErrDisconnected or
// ctx's error.
func (c *Client) SendKey(ctx context.Context) (*dh.PublicKey, error) {
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	retried := false
	for {
		c.mu.Lock()
		rs := c.room
		if rs == nil {
			c.mu.Unlock()
			return nil, ErrNotInRoom
		}
		if rs.keyStored && rs.priv != nil {
			pub := rs.priv.PublicKey()
			c.mu.Unlock()
			return pub, nil
		}
		group := rs.group
		if group == nil && rs.peer.key != nil {
			group = rs.peer.key.Group()
		}
		if group == nil {
			group = dh.X25519()
		}
		if rs.priv == nil || rs.priv.Group() != group {
			priv, err := group.GenerateKey(c.opts.Rand)
			if err != nil {
				c.mu.Unlock()
				return nil, fmt.Errorf("client: generate key: %w", err)
			}
			rs.priv, rs.keySent = priv, false
		}
		priv, resend := rs.priv, rs.keySent
		rs.keySent = true
		c.mu.Unlock()

		_, err := c.roundTrip(ctx, &outFrame{Type: wire.TypeKey, PublicKey: priv.PublicKey().Hex(), Group: group.Name()}, func(*inFrame) {
			if rs.priv == priv {
				rs.keyStored = true
			}
		})
		var re *Error
		switch {
		case err == nil:
			return priv.PublicKey(), nil
		case errors.As(err, &re) && re.Code == wire.CodeKeyAlreadySet && resend:
			// Sent before a drop, stored, and its key_ok lost.
			c.mu.Lock()
			if rs.priv == priv {
				rs.keyStored = true
			}
			c.mu.Unlock()
			return priv.PublicKey(), nil
		case errors.As(err, &re):
			// Refused: not stored. Next time, a new key.
			c.mu.Lock()
			if rs.priv == priv {
				rs.priv, rs.keySent = nil, false
			}
			c.mu.Unlock()
			if re.Code == wire.CodeGroupMismatch && !retried {
				retried = true
				if err := c.waitPeerGroup(ctx, rs); err != nil {
					return nil, err
				}
				continue
			}
		}
		return nil, fmt.Errorf("client: key: %w", err)
	}
}

// waitPeerGroup waits until the room's group is known.
func (c *Client) waitPeerGroup(ctx context.Context, rs *roomState) error {
	return c.waitState(ctx, rs, func() bool { return rs.group != nil || rs.peer.key != nil })
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

// Handshake performs the key exchange: SendKey (if not done), then it waits
// for the peer's key, which it validates itself, and for
// handshake_complete, and derives the message key. Both users should
// compare the returned SafetyNumber over another channel. Once complete it
// returns the same Handshake at once, until a new peer takes the other
// place (after the first left), when it waits for the new peer's key.
//
// It returns SendKey's errors, an error wrapping dh.ErrInvalidPublicKey or
// dh.ErrMalformedKey for a bad peer key, dh.ErrSameKey if the "peer" key
// is the client's own, ErrPeerKeyChanged, ErrNotInRoom if the room ends,
// ErrDisconnected (Resume, then call Handshake again), or ctx's error.
func (c *Client) Handshake(ctx context.Context) (*Handshake, error) {
	if _, err := c.SendKey(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	rs := c.room
	c.mu.Unlock()
	if rs == nil {
		return nil, ErrNotInRoom
	}
	var hs *Handshake
	var hsErr error
	err := c.waitState(ctx, rs, func() bool {
		ps := rs.peer
		hs, hsErr = c.channelLocked(rs, ps)
		return hs != nil || hsErr != nil
	})
	if err != nil {
		return nil, fmt.Errorf("client: handshake: %w", err)
	}
	if hsErr != nil {
		return nil, fmt.Errorf("client: handshake: %w", hsErr)
	}
	c.logger.Info("handshake complete", "room", rs.id, "group", hs.Group.Name())
	h := *hs
	return &h, nil
}

// channelLocked returns ps's Handshake, deriving the Channel on the first
// call after both keys are known and the relay reported handshake_complete.
// It returns nil, nil while the exchange is not complete.
func (c *Client) channelLocked(rs *roomState, ps *peerState) (*Handshake, error) {
	if ps.err != nil {
		return nil, ps.err
	}
	if ps.hs != nil {
		return ps.hs, nil
	}
	if !ps.complete || ps.key == nil || rs.priv == nil {
		return nil, nil
	}
	fail := func(err error) (*Handshake, error) {
		ps.err = err
		return nil, err
	}
	z, err := rs.priv.SharedSecret(ps.key)
	if err != nil {
		return fail(err)
	}
	ch, err := dh.NewChannel(z, rs.priv.PublicKey(), ps.key)
	if err != nil {
		return fail(err)
	}
	sn, err := dh.SafetyNumber(rs.priv.PublicKey(), ps.key)
	if err != nil {
		return fail(err)
	}
	ps.channel = ch
	ps.hs = &Handshake{Group: ps.key.Group(), PublicKey: rs.priv.PublicKey(), PeerKey: ps.key, SafetyNumber: sn}
	return ps.hs, nil
}

// MaxPlaintext returns the longest plaintext Send accepts: the one whose
// msg frame fits Options.MaxFrameSize.
func (c *Client) MaxPlaintext() int {
	// {"type":"msg","id":18446744073709551615,"body":"…"} is 49 bytes
	// around the base64; leave room to spare.
	n := (c.opts.MaxFrameSize-128)/4*3 - dh.MessageOverhead
	return max(n, 0)
}

// Send encrypts plaintext for the peer and sends it, and returns the seq
// the relay gave it once the relay has stored it (sent). Concurrent Sends
// go out in the order they are sealed.
//
// It returns ErrTooLarge, ErrNotInRoom, ErrHandshakeIncomplete, the
// handshake's error if the exchange failed, an *Error from the relay (such
// as wire.CodeMailboxFull or wire.CodeRateLimited: the message was not stored, send
// it again later), ErrDisconnected (the message may or may not have been
// stored), or ctx's error (likewise).
func (c *Client) Send(ctx context.Context, plaintext []byte) (uint64, error) {
	if len(plaintext) > c.MaxPlaintext() {
		return 0, ErrTooLarge
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	rs := c.room
	if rs == nil {
		c.mu.Unlock()
		return 0, ErrNotInRoom
	}
	_, err := c.channelLocked(rs, rs.peer)
	ch := rs.peer.channel
	c.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("client: send: %w", err)
	}
	if ch == nil {
		return 0, ErrHandshakeIncomplete
	}

	c.sendMu.Lock()
	body, err := ch.Seal(plaintext)
	if err != nil {
		c.sendMu.Unlock()
		return 0, fmt.Errorf("client: send: %w", err)
	}
	cn, key, cl, err := c.start(&outFrame{Type: wire.TypeMsg, Body: base64.StdEncoding.EncodeToString(body)}, nil, nil)
	c.sendMu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("client: send: %w", err)
	}
	f, err := c.wait(ctx, cn, key, cl)
	if err != nil {
		return 0, fmt.Errorf("client: send: %w", err)
	}
	return f.Seq, nil
}

// Next returns the next event of the room: a message (decrypted, and
// acknowledged to the relay), the peer joining or leaving, or the peer's
// key arriving. Events come in the order the relay sent them.
//
// Errors that concern one frame leave the client usable; call Next again:
// an *Error from the relay that answers no request (such as
// wire.CodeRoomExpired, after which the client is in no room, or
// wire.CodeRateLimited), and ErrBadMessage for a message that could not be
// opened. ErrDisconnected means the connection ended and the queue is
// empty: call Resume. It also returns ErrClosed and ctx's error.
func (c *Client) Next(ctx context.Context) (Event, error) {
	for {
		it, ok, ready := c.events.pop()
		if !ok {
			cn := c.current()
			select {
			case <-ready:
				continue
			case <-cn.done:
				// The reader queues everything before it ends.
				if it, ok, _ = c.events.pop(); !ok {
					if c.current() != cn {
						continue // Resume replaced it meanwhile
					}
					return Event{}, c.connErr(cn)
				}
			case <-c.closed:
				return Event{}, ErrClosed
			case <-ctx.Done():
				return Event{}, ctx.Err()
			}
		}
		ev, err, ok := c.deliver(it)
		if ok {
			return ev, err
		}
	}
}

// Receive returns the next message from the peer, skipping the other
// events. It returns Next's errors.
func (c *Client) Receive(ctx context.Context) (Message, error) {
	for {
		ev, err := c.Next(ctx)
		if err != nil {
			return Message{}, err
		}
		if ev.Type == EventMessage {
			return ev.Message, nil
		}
	}
}

// deliver turns a queued item into what Next returns; ok is false for an
// item of a room the client left (events of an expired room are still
// delivered). It acknowledges the messages
// delivered so far when the queue is empty or ackBatch seqs behind.
func (c *Client) deliver(it item) (ev Event, err error, ok bool) {
	if it.err != nil {
		return Event{}, it.err, true
	}
	c.mu.Lock()
	rs := it.room
	current := rs == c.room
	if !current && !rs.expired {
		c.mu.Unlock()
		return Event{}, nil, false // the client left that room
	}
	var ch *dh.Channel
	var herr error
	if it.ev.Type == EventMessage {
		_, herr = c.channelLocked(rs, it.peer)
		ch = it.peer.channel
		rs.delivered = it.ev.Message.Seq
	}
	var ack uint64
	if current && rs.delivered > rs.acked && (rs.delivered-rs.acked >= ackBatch || c.events.len() == 0) {
		ack = rs.delivered
	}
	c.mu.Unlock()
	if ack > 0 {
		c.ack(rs, ack)
	}
	if it.ev.Type != EventMessage {
		return it.ev, nil, true
	}

	seq := it.ev.Message.Seq
	switch {
	case herr != nil:
		return Event{}, badMessage(seq, herr), true
	case ch == nil:
		return Event{}, badMessage(seq, ErrHandshakeIncomplete), true
	}
	body, err := base64.StdEncoding.DecodeString(it.body)
	if err != nil {
		return Event{}, badMessage(seq, err), true
	}
	pt, err := ch.Open(body)
	if err != nil {
		return Event{}, badMessage(seq, err), true
	}
	ev = it.ev
	ev.Message.Plaintext = pt
	return ev, nil, true
}

// ack acknowledges the messages up to seq. A failure is not reported: the
// messages stay stored at the relay, and Resume acknowledges them again.
func (c *Client) ack(rs *roomState, seq uint64) {
	data, _ := (&outFrame{Type: wire.TypeAck, Seq: seq}).marshal(0)
	if err := c.write(c.current(), data); err != nil {
		c.logger.Debug("ack not sent", "seq", seq, "err", err)
		return
	}
	c.mu.Lock()
	rs.acked = max(rs.acked, seq)
	c.mu.Unlock()
}

// onPeerKey handles peer_key: it validates the key in the room's group. It
// returns an EventPeerKey item for a new valid key.
func (c *Client) onPeerKey(f *inFrame) (item, bool) {
	rs := c.room
	if rs == nil {
		c.logger.Warn("peer_key outside a room; ignored")
		return item{}, false
	}
	ps := rs.peer
	g, err := dh.LookupGroup(f.group())
	if err == nil && rs.group != nil && g != rs.group {
		err = fmt.Errorf("%w: the peer key's group %s is not the room's %s", dh.ErrGroupMismatch, g, rs.group)
	}
	var key *dh.PublicKey
	if err == nil {
		key, err = g.ParsePublicKey(f.PublicKey)
	}
	switch {
	case err != nil:
		c.logger.Warn("the relay forwarded an invalid peer key", "err", err)
		ps.err = fmt.Errorf("peer key: %w", err)
		return item{}, false
	case ps.key == nil:
		rs.setGroup(g.Name())
		ps.key = key
		return item{room: rs, ev: Event{Type: EventPeerKey, PeerKey: key}}, true
	case !ps.key.Equal(key):
		c.logger.Warn("the relay forwarded a different key for the same peer")
		ps.err = ErrPeerKeyChanged
	}
	return item{}, false // the same key again, after a resume
}

// onHandshakeComplete handles handshake_complete.
func (c *Client) onHandshakeComplete(f *inFrame) {
	rs := c.room
	if rs == nil {
		return
	}
	rs.setGroup(f.group())
	rs.peer.complete = true
	rs.keyStored = rs.priv != nil // both keys are stored, ours included
}

// onPeerEvent handles peer_joined and peer_left. A new peer (joined, not
// resumed) or a peer that left for good ends the key exchange with the
// previous peer.
func (c *Client) onPeerEvent(f *inFrame) (item, bool) {
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
			rs.peer = &peerState{} // a new peer in the old one's place
		}
	case wire.TypePeerLeft:
		ev.Type = EventPeerLeft
		rs.peers = 1
		rs.peer.gone = true
		if f.Reason == wire.ReasonLeft {
			rs.peer = &peerState{}
		}
	}
	return item{room: rs, ev: ev}, true
}

// onMsg handles msg: it returns the item to queue, or false for a seq
// already queued. The caller advances lastSeq once the item is queued.
func (c *Client) onMsg(f *inFrame) (item, bool) {
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
