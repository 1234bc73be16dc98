package client

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

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
	// EventPeerLeft: the peer left (Event.Reason wire.ReasonLeft: for
	// good), its connection dropped (wire.ReasonDropped: it may resume), or
	// its grace period after a drop ended (wire.ReasonExpired: gone for
	// good). After left and expired a new peer may take the place, with a
	// new key exchange: Handshake then waits for the new peer's key.
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
	// Reason, for EventPeerLeft, is wire.ReasonLeft, wire.ReasonDropped or
	// wire.ReasonExpired.
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

// outMsg is a message written to the relay and not confirmed yet: Resume,
// or the next Send, sends its body again. Guarded by Client.mu.
type outMsg struct {
	body    string     // the sealed body, base64, as sent
	peer    *peerState // the key exchange it was sealed in
	waiting bool       // a Send waits for the outcome and reports it
	inWire  bool       // written on the current connection, its reply not in yet
	done    bool       // the relay answered: sent (seq) or a refusal (err)
	seq     uint64
	err     *Error
}

// Send encrypts plaintext for the peer and sends it, and returns the seq
// the relay gave it once the relay has stored it (sent). Concurrent Sends
// go out in the order they are sealed.
//
// It returns ErrTooLarge, ErrNotInRoom, ErrHandshakeIncomplete, the
// handshake's error if the exchange failed (such as a *GroupError), an
// *Error from the relay (such as wire.CodeMailboxFull or
// wire.CodeRateLimited: the message was not stored; send it again later),
// Options.SaveState's error (nothing was sent; the message's counter is
// skipped), or ErrDisconnected if the connection was known to be down
// (nothing was sent: Resume, then send it again).
//
// A message handed to the relay without a sent reply may or may not have
// been stored. Send then returns an error wrapping ErrUnconfirmed, and the
// client keeps the sealed body and sends it again as it is (the peer's
// client drops the copy if both arrive; do not send it again yourself):
//   - the connection dropped first: the error also wraps ErrDisconnected;
//     the body goes out again after the next successful Resume;
//   - the relay answered unavailable (its store failed): the body goes out
//     again before the next message, or after the next Resume. The next
//     Send sends the earlier bodies first and waits for their sent; if the
//     relay refuses one again, that Send returns the relay's *Error (such
//     as unavailable) without sending its own message;
//   - ctx ended first: the error also wraps ctx's error; the body goes out
//     again after the next Resume unless its sent arrives meanwhile.
func (c *Client) Send(ctx context.Context, plaintext []byte) (uint64, error) {
	if len(plaintext) > c.MaxPlaintext() {
		return 0, ErrTooLarge
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c.sendMu.Lock()
	c.mu.Lock()
	rs, cn := c.room, c.conn
	if rs == nil {
		c.mu.Unlock()
		c.sendMu.Unlock()
		return 0, ErrNotInRoom
	}
	ps := rs.peer
	_, err := c.channelLocked(rs, ps)
	ch := ps.channel
	c.mu.Unlock()
	select {
	case <-cn.done:
		if err == nil && ch != nil {
			err = c.connErr(cn) // known to be down: seal nothing
		}
	default:
	}
	if err == nil && ch == nil {
		err = ErrHandshakeIncomplete
	}
	if err == nil {
		err = c.flushUnconfirmed(ctx, rs, cn)
	}
	var body []byte
	if err == nil {
		body, err = ch.Seal(plaintext)
	}
	if err != nil {
		c.sendMu.Unlock()
		if errors.Is(err, ErrHandshakeIncomplete) {
			return 0, err
		}
		return 0, fmt.Errorf("send: %w", err)
	}
	m := &outMsg{body: base64.StdEncoding.EncodeToString(body), peer: ps, waiting: true, inWire: true}
	c.mu.Lock()
	rs.unconfirmed = append(rs.unconfirmed, m)
	c.mu.Unlock()
	// The counter just used, and the body, are saved before the body
	// leaves: a restored process never seals anything else with it.
	if err := c.saveState(); err != nil {
		c.mu.Lock()
		rs.unconfirmed = slices.DeleteFunc(rs.unconfirmed, func(x *outMsg) bool { return x == m })
		c.mu.Unlock()
		c.sendMu.Unlock()
		return 0, fmt.Errorf("send: %w", err) // the counter is skipped, never reused
	}
	cn, key, cl, err := c.start(&outFrame{Type: wire.TypeMsg, Body: m.body}, nil, nil, &call{msg: m, room: rs, keep: true})
	c.sendMu.Unlock()
	if err == nil {
		_, err = c.wait(ctx, cn, key, cl)
	}
	c.mu.Lock()
	m.waiting = false
	done, seq, refused := m.done, m.seq, m.err
	c.mu.Unlock()
	if done {
		c.saveState() // the body is no longer to be sent again
	}
	var re *Error
	switch {
	case done && refused == nil:
		return seq, nil
	case done:
		return 0, fmt.Errorf("send: %w", refused)
	case errors.Is(err, ErrClosed):
		return 0, err
	case errors.As(err, &re) && re.Code == wire.CodeUnavailable:
		// Not an *Error: that would mean "not stored".
		return 0, fmt.Errorf("send: %w: the relay answered %s (%s)", ErrUnconfirmed, re.Code, re.Message)
	}
	return 0, fmt.Errorf("send: %w: %w", ErrUnconfirmed, err)
}

// onMsgReplyLocked settles m, a msg of rs, with the relay's reply f: sent
// confirms it; unavailable leaves it unconfirmed (maybe stored), to be
// sent again by the next Send or Resume; any other error means it was not
// stored. It returns an error for Next when no Send waits to report a
// refusal (a message sent again by Resume). The caller (dispatch) holds
// Client.mu.
func (c *Client) onMsgReplyLocked(rs *roomState, m *outMsg, f *inFrame) error {
	m.inWire = false
	switch {
	case f.Type == wire.TypeError && f.Code == wire.CodeUnavailable:
		c.logger.Warn("the relay could not store a message; it will be sent again")
		return nil
	case f.Type == wire.TypeError:
		m.done, m.err = true, f.relayError()
	default:
		m.done, m.seq = true, f.Seq
		rs.sentSeq = max(rs.sentSeq, f.Seq)
	}
	rs.unconfirmed = slices.DeleteFunc(rs.unconfirmed, func(x *outMsg) bool { return x == m })
	if m.err != nil && !m.waiting {
		c.logger.Warn("a message sent again was refused", "code", m.err.Code)
		return fmt.Errorf("a message sent again after Resume was refused: %w", m.err)
	}
	return nil
}

// resendUnconfirmed writes again, in order, the unconfirmed messages of
// rs's current peer (all of them after a resume; else only those the relay
// answered, with unavailable), and forgets those of earlier peers. It
// returns the calls it started; a write error stops it (the rest wait for
// the next Resume). The caller holds sendMu.
func (c *Client) resendUnconfirmed(rs *roomState) []*resend {
	c.mu.Lock()
	rs.unconfirmed = slices.DeleteFunc(rs.unconfirmed, func(m *outMsg) bool { return m.peer != rs.peer })
	var msgs []*outMsg
	for _, m := range rs.unconfirmed {
		if !m.inWire {
			m.inWire = true
			msgs = append(msgs, m)
		}
	}
	c.mu.Unlock()
	var started []*resend
	for i, m := range msgs {
		c.logger.Debug("sending an unconfirmed message again")
		cn, key, cl, err := c.start(&outFrame{Type: wire.TypeMsg, Body: m.body}, nil, nil, &call{msg: m, room: rs, keep: true})
		if err != nil {
			c.logger.Debug("sending again failed; kept for the next resume", "err", err)
			c.mu.Lock()
			for _, m := range msgs[i:] {
				m.inWire = false
			}
			c.mu.Unlock()
			break
		}
		started = append(started, &resend{m: m, cn: cn, key: key, cl: cl})
	}
	return started
}

// resend is a message sent again, and its call.
type resend struct {
	m   *outMsg
	cn  *conn
	key string
	cl  *call
}

// flushUnconfirmed sends again the messages the relay answered with
// unavailable on cn, and waits for their outcome, so that no later
// counter overtakes them: the peer would then refuse them as replays. It
// returns the relay's *Error, or the connection's or ctx's error, if one
// is still not confirmed. The caller holds sendMu.
func (c *Client) flushUnconfirmed(ctx context.Context, rs *roomState, cn *conn) error {
	c.mu.Lock()
	none := !slices.ContainsFunc(rs.unconfirmed, func(m *outMsg) bool { return !m.inWire && m.peer == rs.peer })
	c.mu.Unlock()
	if none {
		return nil
	}
	var first error
	for _, r := range c.resendUnconfirmed(rs) {
		// Not waiting: Next reports a refusal of the earlier message; the
		// error here says why this one was not sent.
		_, err := c.wait(ctx, r.cn, r.key, r.cl)
		c.mu.Lock()
		if r.m.done && r.m.err == nil {
			err = nil
		}
		c.mu.Unlock()
		if err != nil && first == nil {
			first = err
		}
	}
	if first == nil {
		c.mu.Lock()
		if slices.ContainsFunc(rs.unconfirmed, func(m *outMsg) bool { return !m.inWire && m.peer == rs.peer }) {
			first = ErrDisconnected // a write failed: the connection is going
		}
		c.mu.Unlock()
	}
	if first != nil {
		return fmt.Errorf("an earlier unconfirmed message is still not stored, so this one was not sent: %w", first)
	}
	return nil
}

// Next returns the next event of the room: a message (decrypted, and
// acknowledged to the relay), the peer joining, leaving, dropping or
// coming back, or the peer's key arriving. Events come in the order the
// relay sent them.
//
// Next is how an application reads the room: call it in a loop, from a
// goroutine of its own, for as long as the room lasts, and show each
// event (see the package doc's steps, and Receive for the shortcut that
// tests take). Until it is called, events wait in a bounded queue (see
// "Frames and queues" in the package doc).
//
// Errors that concern one frame leave the client usable; call Next again:
// an *Error from the relay that answers no request (such as
// wire.CodeRoomExpired, after which the client is in no room, or
// wire.CodeRateLimited, or the refusal of a message Resume sent again),
// ErrBadMessage for a message that could not be opened, a *KeyChangeError
// when the relay forwards another key for the peer (reported once, at
// once: warn the user; the room is unusable from then on), and a
// *GroupError for a peer_key or handshake_complete in a refused group
// (reported once; the room is unusable from then on). A duplicate message
// is not reported. ErrDisconnected (a *CloseError when the relay closed
// the connection) means the connection ended and the queue is empty: call
// Resume, unless the error also matches ErrSuperseded. It also returns
// ErrClosed and ctx's error.
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
		if it.room != nil {
			c.saveState() // what was processed, before the ack frees it at the relay
			c.ackDelivered(it.room)
		}
		if ok {
			return ev, err
		}
	}
}

// Receive returns the next message from the peer, discarding the other
// events: it is Next for tests, bots and tools that only exchange
// messages. A chat application reads with Next instead, which also tells
// it that the other person left, dropped, or was replaced by someone new
// (whose safety number must be compared). It returns Next's errors.
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
// delivered) and for a duplicate message, dropped silently. Next then
// acknowledges the messages delivered (ackDelivered).
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
		// Acknowledged whatever comes of it: a message that does not open
		// never will, and must not come back at every resume.
		rs.delivered = it.ev.Message.Seq
	}
	c.mu.Unlock()
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
	if errors.Is(err, dh.ErrReplay) {
		// A counter already accepted: a copy of a message the peer sent
		// again after a resume (docs/protocol.md: a msg without sent is
		// sent again as is). Dropped silently; acknowledged by Next.
		c.logger.Debug("duplicate message body dropped", "seq", seq)
		return Event{}, nil, false
	}
	if err != nil {
		return Event{}, badMessage(seq, err), true
	}
	ev = it.ev
	ev.Message.Plaintext = pt
	return ev, nil, true
}

// ackDelivered acknowledges the messages of rs delivered so far, when the
// queue is empty or ackBatch seqs behind. Next calls it after each item
// (and after Options.SaveState has the State that records them).
func (c *Client) ackDelivered(rs *roomState) {
	c.mu.Lock()
	var ack uint64
	if rs == c.room && rs.delivered > rs.acked && (rs.delivered-rs.acked >= ackBatch || c.events.len() == 0) {
		ack = rs.delivered
	}
	c.mu.Unlock()
	if ack > 0 {
		c.ack(rs, ack)
	}
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
