package client

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/wire"
)

// ackBatch is how many delivered messages may wait before the client sends
// an ack while more are queued; with an empty queue it acks at once.
const ackBatch = 16

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

// badMessage is the error Next returns for a message it cannot open.
func badMessage(seq uint64, err error) error {
	return fmt.Errorf("%w: seq %d: %w", ErrBadMessage, seq, err)
}
