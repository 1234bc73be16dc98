package relay

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/google/uuid"

	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/wire"
)

// The frame handlers: handle dispatches each decoded client frame to the
// handler of its type, which answers it (or returns an error that fail
// turns into an error frame).

func (c *conn) handle(f *wire.ClientFrame) {
	var err error
	switch f.Type {
	case wire.TypeCreate:
		err = c.handleCreate(f)
	case wire.TypeJoin:
		err = c.handleJoin(f)
	case wire.TypeResume:
		err = c.handleResume(f)
	case wire.TypeKey:
		err = c.handleKey(f)
	case wire.TypeMsg:
		err = c.handleMsg(f)
	case wire.TypeAck:
		err = c.handleAck(f)
	case wire.TypeLeave:
		err = c.handleLeave(f)
	}
	if err != nil {
		c.fail(f, err)
	}
}

// current returns the room and peer the connection is in, or "" if none.
func (c *conn) current() (room, peer string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.room, c.peer
}

var errNotInRoom = newWireError(wire.CodeNotInRoom, "join or create a room first")
var errInRoom = newWireError(wire.CodeAlreadyInRoom, "leave this room first")

// inRoomFrame reports whether frames of type t act on the connection's
// room (so that the room's absence means it expired under the member).
func inRoomFrame(t wire.FrameType) bool {
	return t == wire.TypeKey || t == wire.TypeMsg || t == wire.TypeAck || t == wire.TypeLeave
}

// handleCreate creates a room and joins it.
func (c *conn) handleCreate(f *wire.ClientFrame) error {
	if room, _ := c.current(); room != "" {
		return errInRoom
	}
	group := ""
	if f.Group != nil {
		g, err := c.s.lookupGroup(*f.Group)
		if err != nil {
			return err
		}
		group = g.Name()
	}
	ctx, cancel := c.storeCtx()
	defer cancel()
	if err := c.s.limiter.JoinIP(ctx, c.ip); err != nil {
		return err
	}
	if err := c.s.limiter.CreateRoom(ctx, c.ip); err != nil {
		return err
	}
	id := uuid.NewString()
	if f.Room != nil {
		if !c.s.cfg.ClientRoomIDs {
			return newWireError(wire.CodeBadRequest, "this relay chooses room IDs: leave out room")
		}
		if !c.s.clientRoomID(*f.Room) {
			return newWireError(wire.CodeBadRequest, "room must be %d to %d characters from A-Z, a-z, 0-9, - and _", c.s.cfg.MinRoomIDLength, maxRoomIDLength)
		}
		id = *f.Room
	}
	cfg := session.RoomConfig{
		Group:           group,
		TTL:             c.s.cfg.RoomTTL,
		ResumeGrace:     c.s.cfg.ResumeGrace,
		MaxPending:      c.s.cfg.MaxPending,
		MaxPendingBytes: c.s.cfg.MaxPendingBytes,
		EmptyTTL:        c.s.cfg.EmptyRoomTTL,
	}
	if err := c.s.store.CreateRoom(ctx, id, cfg, c.s.cfg.MaxRooms); err != nil {
		return err
	}
	c.logger().Info("room created", "room", c.s.roomTag(id), "group", group)
	return c.join(f, id)
}

// handleJoin joins an existing room as a new member.
func (c *conn) handleJoin(f *wire.ClientFrame) error {
	if room, _ := c.current(); room != "" {
		return errInRoom
	}
	if !c.s.roomID(*f.Room) {
		return newWireError(wire.CodeBadRequest, "room must be a room ID as create returns it")
	}
	ctx, cancel := c.storeCtx()
	defer cancel()
	if err := c.s.limiter.JoinIP(ctx, c.ip); err != nil {
		return err
	}
	if err := c.s.limiter.RoomAttempt(ctx, c.ip, *f.Room); err != nil {
		return err
	}
	return c.join(f, *f.Room)
}

// join adds a new member to room id and enters it.
func (c *conn) join(f *wire.ClientFrame, id string) error {
	token, hash, err := newToken()
	if err != nil {
		return err
	}
	peer := uuid.NewString()
	ctx, cancel := c.storeCtx()
	defer cancel()
	room, err := c.s.store.Join(ctx, id, session.Member{ID: peer, TokenHash: hash, Connected: true})
	if err != nil {
		return err
	}
	me, _ := room.Member(peer)
	return c.enter(id, entry{frame: f, peer: peer, token: token, gen: me.Generation})
}

// handleResume takes a dropped member's seat back. The room's attempt
// budget is spent only by a resume that failed for a wrong token or an
// unknown peer, after the store checked it: a member with its token is
// never refused by it, however many strangers knocked.
func (c *conn) handleResume(f *wire.ClientFrame) error {
	if room, _ := c.current(); room != "" {
		return errInRoom
	}
	if !c.s.roomID(*f.Room) || !isRoomID(*f.Peer) {
		return newWireError(wire.CodeBadRequest, "room and peer must be IDs as the relay returned them")
	}
	ctx, cancel := c.storeCtx()
	defer cancel()
	tok, err := base64.RawURLEncoding.DecodeString(*f.ResumeToken)
	if err != nil || len(tok) != 32 {
		// No token of this shape was ever handed out; the room decides
		// the code, so that it does not depend on the token's shape.
		if _, err := c.s.store.Room(ctx, *f.Room); err != nil {
			return err
		}
		return session.ErrBadToken
	}
	if err := c.s.limiter.JoinIP(ctx, c.ip); err != nil {
		return err
	}
	room, err := c.s.store.Reconnect(ctx, *f.Room, *f.Peer, sha256.Sum256(tok))
	if errors.Is(err, session.ErrBadToken) || errors.Is(err, session.ErrNotMember) {
		if lerr := c.s.limiter.RoomAttempt(ctx, c.ip, *f.Room); lerr != nil {
			return lerr
		}
	}
	if err != nil {
		return err
	}
	me, _ := room.Member(*f.Peer)
	e := entry{frame: f, peer: *f.Peer, resumed: true, gen: me.Generation}
	if f.LastSeq != nil {
		e.lastSeq = *f.LastSeq
	}
	var sent uint64
	if f.SentSeq != nil {
		sent = *f.SentSeq
	}
	if err := c.raiseSeq(ctx, room, max(e.lastSeq, sent)); err != nil {
		return err
	}
	return c.enter(*f.Room, e)
}

// validationCodes are the codes of a key refused by validation, which the
// keyrelay_key_validation_failures_total metric counts.
var validationCodes = map[wire.Code]bool{
	wire.CodeMalformedKey:     true,
	wire.CodeInvalidPublicKey: true,
	wire.CodeGroupMismatch:    true,
	wire.CodeKeyReused:        true,
	wire.CodeKeyReflected:     true,
}

// handleKey validates and stores the member's public key and forwards it to
// the other peer.
func (c *conn) handleKey(f *wire.ClientFrame) error {
	err := c.setKey(f)
	if err != nil {
		if we, _ := toWireError(err); validationCodes[we.code] {
			c.s.metrics.validationErrors.WithLabelValues(string(we.code)).Inc()
		}
	}
	return err
}

// setKey is handleKey but for the metric: it validates the key
// (dh.Group.ParsePublicKey), stores it, and tells the member and the room.
func (c *conn) setKey(f *wire.ClientFrame) error {
	c.mu.Lock()
	room, peer, group, keySet := c.room, c.peer, c.group, c.keySet
	c.mu.Unlock()
	if room == "" {
		return errNotInRoom
	}
	if keySet {
		return session.ErrKeySet
	}
	ctx, cancel := c.storeCtx()
	defer cancel()
	// group is required on key (allowedFields): a key is always read in
	// the group its sender names, never in the room's by default.
	g, err := c.s.lookupGroup(*f.Group)
	if err != nil {
		return err
	}
	if group != "" && g.Name() != group {
		return session.ErrGroupMismatch
	}
	pk, err := g.ParsePublicKey(*f.PublicKey)
	if err != nil {
		return err
	}
	if err := c.s.limiter.UseKey(ctx, pk.Hex(), room); err != nil {
		return err
	}
	r, err := c.s.store.SetKey(ctx, room, peer, g.Name(), pk.Hex())
	if err != nil {
		return err
	}
	name := g.Name()
	other, hasOther := r.Other(peer)
	c.mu.Lock()
	c.keySet, c.group = true, name
	// key_ok is queued before c.mu is released: the forwarder, which may
	// now complete the handshake, must not queue handshake_complete first.
	c.queueLocked(&wire.ServerFrame{Type: wire.TypeKeyOK, ID: f.ID, Group: &name})
	if hasOther && other.PublicKey != "" && other.ID == c.knownPeer && !c.peerKeySent {
		// The other key is already stored. Its event normally brings it
		// (the forwarder), but its relay may have died before announcing
		// it, so it is sent from here too, once; only for a peer the
		// client has been told of, so that it never overtakes that peer's
		// peer_joined.
		c.peerKeySent = true
		c.queueLocked(&wire.ServerFrame{Type: wire.TypePeerKey, PublicKey: other.PublicKey, Group: &name})
	}
	c.mu.Unlock()
	c.q.wait(c.ctx)
	c.publish(ctx, session.Event{Type: session.EventKey, Room: room, Peer: peer, Key: pk.Hex(), Group: name, Conn: c.id})
	if hasOther && other.PublicKey != "" {
		// The store serialises SetKey: exactly one of the two sees the
		// other key, so the room's handshake is counted once.
		c.s.metrics.handshakes.Inc()
	}
	// The forwarder may have delivered the other key between SetKey and
	// keySet above, when it could not yet complete the handshake.
	c.sendHandshake()
	return nil
}

// handleMsg stores a message for the other peer (Store.Append, which also
// announces it to the room) and confirms it with sent.
func (c *conn) handleMsg(f *wire.ClientFrame) error {
	c.mu.Lock()
	room, peer, hs := c.room, c.peer, c.hsSent
	c.mu.Unlock()
	if room == "" {
		return errNotInRoom
	}
	if !hs {
		return newWireError(wire.CodeHandshakeIncomplete, "both peers must send their keys first")
	}
	// Canonical base64 only (padding, no whitespace, zero pad bits), so
	// that the body the peer gets is byte for byte the one sent.
	body, err := base64.StdEncoding.Strict().DecodeString(*f.Body)
	if err != nil || len(body) == 0 || strings.ContainsAny(*f.Body, "\r\n") {
		return newWireError(wire.CodeBadRequest, "body must be non-empty canonical standard base64 (with padding, no whitespace)")
	}
	ctx, cancel := c.storeCtx()
	defer cancel()
	seq, err := c.appendWithAck(ctx, room, peer, body)
	if err != nil {
		return err
	}
	// Append announced the message to the room (atomically with storing
	// it: a confirmed message reaches the peer even if this relay dies now),
	// so it is counted before anyone can see it.
	c.s.metrics.messages.Inc()
	c.s.metrics.bytes.Add(float64(len(body)))
	c.send(&wire.ServerFrame{Type: wire.TypeSent, ID: f.ID, Seq: seq})
	return nil
}

// handleAck removes the messages the member has read from its mailbox.
func (c *conn) handleAck(f *wire.ClientFrame) error {
	room, peer := c.current()
	if room == "" {
		return errNotInRoom
	}
	if c.s.cfg.AckDelay > 0 {
		c.holdAck(room, peer, *f.Seq)
		return nil
	}
	ctx, cancel := c.storeCtx()
	defer cancel()
	return c.s.store.Ack(ctx, room, peer, *f.Seq)
}

// handleLeave leaves the room for good.
func (c *conn) handleLeave(f *wire.ClientFrame) error {
	if !c.exitRoom(exitLeft) {
		return errNotInRoom
	}
	c.send(&wire.ServerFrame{Type: wire.TypeLeft, ID: f.ID})
	return nil
}
