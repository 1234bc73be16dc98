package relay

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/wire"
)

// conn is one client connection. Its handler goroutine runs the reader loop
// (serve). An idle connection has no other goroutine: a writer goroutine
// runs only while frames wait in the send queue, the keepalive ping runs
// from a timer, and a pump goroutine turns the room's events into frames
// only while the connection is in a room.
type conn struct {
	// Static after construction.
	s       *Server
	ws      *websocket.Conn
	id      string
	ip      string                      // the client's address, as the limits count it
	logp    atomic.Pointer[slog.Logger] // per-connection logger; gains the room tag in a room
	limiter bucket                      // owned by the reader
	space   chan struct{}               // capacity 1: the writer took a frame from a full queue

	sendMu     sync.Mutex // serialises enqueue, so that frames queue in one order
	overflowed bool       // guarded by sendMu: a frame was dropped or a close queued; queue nothing more
	// Set under sendMu before the close marker is queued; read by the
	// writer after it takes the marker.
	flushCode   websocket.StatusCode
	flushReason string

	qMu       sync.Mutex // guards the following
	queue     [][]byte   // frames for the writer, at most SendQueue; nil is the close marker
	writing   bool       // a writer goroutine is running
	stopped   bool       // serve is finishing: start no writer or ping
	pingTimer *time.Timer
	bg        sync.WaitGroup // writer and ping goroutines; Add only under qMu while !stopped

	ctx       context.Context // ends when the connection ends; static
	cancel    context.CancelFunc
	closeOnce sync.Once

	mu sync.Mutex // guards the following
	// The room the connection is in; room == "" means none.
	room, roomTag, peer string
	group               string // the room's group, as far as known
	keySet              bool   // this peer stored its key
	peerKeySent         bool   // peer_key was sent for the current peer key
	hsSent              bool   // handshake_complete was sent
	joinedAt            time.Time
	superseded          bool // a newer connection resumed this peer
	pumpCancel          context.CancelFunc
	pumpDone            chan struct{}

	lastTouch time.Time // owned by ping, which never runs twice at once
}

// logger returns the connection's logger.
func (c *conn) logger() *slog.Logger { return c.logp.Load() }

// serve runs the connection until it ends.
func (c *conn) serve() {
	defer c.cancel()
	c.logger().Debug("connected")

	c.qMu.Lock()
	c.pingTimer = time.AfterFunc(c.s.cfg.PingInterval, c.ping)
	c.qMu.Unlock()

	for {
		typ, data, err := c.ws.Read(c.ctx)
		if err != nil {
			c.logEnd(err)
			break
		}
		if !c.limiter.allow(time.Now()) {
			c.sendError(nil, newWireError(wire.CodeRateLimited, "too many frames per second; frame ignored"))
			continue
		}
		if typ != websocket.MessageText {
			c.sendError(nil, newWireError(wire.CodeBadFrame, "binary frames are not part of the protocol; send JSON text frames"))
			continue
		}
		f, werr := decodeFrame(data)
		if werr != nil {
			var id json.RawMessage
			if f != nil {
				id = f.ID
			}
			c.sendError(id, werr)
			continue
		}
		c.handle(f)
	}

	c.exitRoom("dropped")
	c.cancel()
	c.qMu.Lock()
	c.stopped = true
	c.pingTimer.Stop()
	c.queue = nil
	c.qMu.Unlock()
	c.bg.Wait()
	c.ws.CloseNow()
	c.logger().Debug("disconnected")
}

// logEnd logs why the reader stopped, without treating a normal close as an
// error.
func (c *conn) logEnd(err error) {
	switch websocket.CloseStatus(err) {
	case websocket.StatusNormalClosure, websocket.StatusGoingAway:
		return
	case websocket.StatusMessageTooBig:
		c.s.metrics.rejected.WithLabelValues("frame_too_large").Inc()
		c.logger().Info("closed: frame too large")
		return
	}
	if c.ctx.Err() == nil {
		c.logger().Debug("read ended", "err", err)
	}
}

// closeWith closes the connection with code, once; later calls do nothing.
// It does not block.
func (c *conn) closeWith(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		go func() {
			c.ws.Close(code, reason)
			c.cancel()
		}()
	})
}

// closeAfterFlush closes the connection with code once the frames queued
// before it have been written, so that an error frame explaining the close
// reaches the client first. If the queue cannot take the marker (a slow
// reader), the connection is closed as closeWith would.
func (c *conn) closeAfterFlush(code websocket.StatusCode, reason string) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.overflowed {
		return
	}
	c.overflowed = true // nothing may follow the close
	c.flushCode, c.flushReason = code, reason
	if !c.push(nil) {
		c.closeWith(code, reason)
	}
}

// push appends b to the send queue and starts the writer if it is not
// running. It reports false if the queue is full (or the connection is
// finishing, in which case the frame could not be written anyway).
func (c *conn) push(b []byte) bool {
	c.qMu.Lock()
	defer c.qMu.Unlock()
	if c.stopped {
		return true // dropped: the connection is ending
	}
	if len(c.queue) >= c.s.cfg.SendQueue {
		return false
	}
	c.queue = append(c.queue, b)
	if !c.writing {
		c.writing = true
		c.bg.Add(1)
		go c.writeLoop()
	}
	return true
}

// pop takes the next frame for the writer; ok is false when the queue is
// empty, and the writer must then exit (it is marked as not running).
func (c *conn) pop() (b []byte, ok bool) {
	c.qMu.Lock()
	defer c.qMu.Unlock()
	if len(c.queue) == 0 || c.stopped {
		c.writing = false
		c.queue = nil // an idle connection keeps no queue
		return nil, false
	}
	b = c.queue[0]
	c.queue[0] = nil
	c.queue = c.queue[1:]
	return b, true
}

// writeLoop writes the queued frames until the queue is empty, then exits;
// push starts it again for the next frame.
func (c *conn) writeLoop() {
	defer c.bg.Done()
	for {
		b, ok := c.pop()
		if !ok {
			return
		}
		select { // wake an enqueue waiting for room
		case c.space <- struct{}{}:
		default:
		}
		if b == nil { // closeAfterFlush's marker: every earlier frame is written
			c.closeWith(c.flushCode, c.flushReason)
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.WriteTimeout)
		err := c.ws.Write(ctx, websocket.MessageText, b)
		cancel()
		if err != nil {
			if c.ctx.Err() == nil {
				c.s.metrics.rejected.WithLabelValues("write_failed").Inc()
				c.logger().Debug("write failed", "err", err)
			}
			c.cancel()
			return
		}
	}
}

// ping runs from the ping timer every PingInterval: it pings the client
// and, while the connection is in a room, keeps the room alive (a room
// expires only when no member is connected and nothing happens in it for
// RoomTTL). A failed ping ends the connection.
func (c *conn) ping() {
	c.qMu.Lock()
	if c.stopped {
		c.qMu.Unlock()
		return
	}
	c.bg.Add(1)
	c.qMu.Unlock()
	defer c.bg.Done()

	now := time.Now()
	if room, _ := c.current(); room != "" && now.Sub(c.lastTouch) >= c.s.cfg.RoomTTL/3 {
		ctx, cancel := c.storeCtx()
		if err := c.s.store.Touch(ctx, room); err == nil {
			c.lastTouch = now
		}
		cancel()
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.PingTimeout)
	err := c.ws.Ping(ctx)
	cancel()
	if err != nil {
		if c.ctx.Err() == nil {
			c.s.metrics.rejected.WithLabelValues("ping_timeout").Inc()
			c.logger().Debug("ping failed", "err", err)
		}
		c.cancel()
		return
	}
	c.qMu.Lock()
	if !c.stopped {
		c.pingTimer.Reset(c.s.cfg.PingInterval)
	}
	c.qMu.Unlock()
}

// enqueue queues a frame for the writer, waiting up to SlowReaderTimeout
// for room in the queue. A client that does not drain its queue in that time is
// a slow reader: the frame is dropped, nothing is queued after it (so the
// client never sees a gap it could mistake for delivery: on resume it gets
// everything after the last frame it read), and the connection is closed
// with 4408. Memory stays bounded by SendQueue frames.
func (c *conn) enqueue(f *wire.ServerFrame) {
	b, err := json.Marshal(f)
	if err != nil {
		c.logger().Error("marshal frame", "err", err)
		return
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.overflowed {
		return
	}
	if c.push(b) {
		return
	}
	t := time.NewTimer(c.s.cfg.SlowReaderTimeout)
	defer t.Stop()
	for {
		select {
		case <-c.space:
			if c.push(b) {
				return
			}
		case <-c.ctx.Done():
			c.overflowed = true
			return
		case <-t.C:
			c.overflowed = true
			c.s.metrics.rejected.WithLabelValues("slow_reader").Inc()
			c.logger().Info("closing slow reader")
			c.closeWith(wire.CloseSlowReader, "you are not reading fast enough; reconnect and resume")
			return
		}
	}
}

func (c *conn) sendError(id json.RawMessage, we *wireError) {
	c.s.metrics.errors.WithLabelValues(string(we.code)).Inc()
	c.enqueue(&wire.ServerFrame{Type: wire.TypeError, ID: id, Code: we.code, Message: we.msg})
}

// fail sends err as an error frame. A room that vanished under a member
// means it expired; internal errors are logged.
func (c *conn) fail(f *wire.ClientFrame, err error) {
	if errors.Is(err, session.ErrRoomNotFound) && f.Type != wire.TypeJoin && f.Type != wire.TypeResume && f.Type != wire.TypeCreate {
		if c.exitRoom("") {
			c.sendError(f.ID, newWireError(wire.CodeRoomExpired, "the room expired"))
			return
		}
	}
	we, known := toWireError(err)
	if !known {
		c.logger().Error("internal error", "type", f.Type, "err", err)
	}
	c.sendError(f.ID, we)
}

func (c *conn) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, c.s.cfg.StoreTimeout)
}

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

func (c *conn) handleCreate(f *wire.ClientFrame) error {
	if room, _ := c.current(); room != "" {
		return errInRoom
	}
	group := ""
	if f.Group != nil {
		g, err := dh.LookupGroup(*f.Group)
		if err != nil {
			return err
		}
		group = g.Name()
	}
	ctx, cancel := c.storeCtx()
	defer cancel()
	if err := c.s.limiter.Join(ctx, c.ip, ""); err != nil {
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
	cfg := session.RoomConfig{Group: group, TTL: c.s.cfg.RoomTTL, ResumeGrace: c.s.cfg.ResumeGrace, MaxPending: c.s.cfg.MaxPending}
	if err := c.s.store.CreateRoom(ctx, id, cfg, c.s.cfg.MaxRooms); err != nil {
		return err
	}
	c.logger().Info("room created", "room", c.s.roomTag(id), "group", group)
	return c.join(f, id)
}

func (c *conn) handleJoin(f *wire.ClientFrame) error {
	if room, _ := c.current(); room != "" {
		return errInRoom
	}
	if !c.s.roomID(*f.Room) {
		return newWireError(wire.CodeBadRequest, "room must be a room ID as create returns it")
	}
	ctx, cancel := c.storeCtx()
	defer cancel()
	if err := c.s.limiter.Join(ctx, c.ip, *f.Room); err != nil {
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
	if _, err := c.s.store.Join(ctx, id, session.Member{ID: peer, TokenHash: hash, Connected: true}); err != nil {
		return err
	}
	return c.enter(f, id, peer, token, false, 0)
}

func (c *conn) handleResume(f *wire.ClientFrame) error {
	if room, _ := c.current(); room != "" {
		return errInRoom
	}
	if !c.s.roomID(*f.Room) || !isRoomID(*f.Peer) {
		return newWireError(wire.CodeBadRequest, "room and peer must be IDs as the relay returned them")
	}
	tok, err := base64.RawURLEncoding.DecodeString(*f.ResumeToken)
	if err != nil || len(tok) != 32 {
		return newWireError(wire.CodeInvalidResume, "unknown peer or wrong resume token")
	}
	ctx, cancel := c.storeCtx()
	defer cancel()
	if err := c.s.limiter.Join(ctx, c.ip, *f.Room); err != nil {
		return err
	}
	if _, err := c.s.store.Reconnect(ctx, *f.Room, *f.Peer, sha256.Sum256(tok)); err != nil {
		return err
	}
	var last uint64
	if f.LastSeq != nil {
		last = *f.LastSeq
	}
	return c.enter(f, *f.Room, *f.Peer, "", true, last)
}

// enter makes the connection a member of room as peer: it subscribes to the
// room's events, replies with the room frame and whatever the member must
// catch up on (the other key, handshake_complete, waiting messages after
// lastSeq), tells the other peer, and starts the pump.
func (c *conn) enter(f *wire.ClientFrame, id, peer, token string, resumed bool, lastSeq uint64) error {
	pumpCtx, pumpCancel := context.WithCancel(c.ctx)
	ctx, cancel := c.storeCtx()
	defer cancel()
	sub, err := c.s.store.Subscribe(pumpCtx, id)
	if err == nil {
		var room session.Room
		// The snapshot is taken after subscribing, so nothing between the
		// two is missed; the flags below drop what arrives twice.
		room, err = c.s.store.Room(ctx, id)
		if err == nil {
			return c.entered(f, sub, room, peer, token, resumed, lastSeq, pumpCtx, pumpCancel)
		}
	}
	pumpCancel()
	// Undo the membership, best effort: the seat must not stay taken.
	if !resumed {
		c.s.store.Leave(ctx, id, peer)
	} else {
		c.s.store.Disconnect(ctx, id, peer)
	}
	return err
}

func (c *conn) entered(f *wire.ClientFrame, sub *session.Subscription, room session.Room, peer, token string, resumed bool, lastSeq uint64, pumpCtx context.Context, pumpCancel context.CancelFunc) error {
	me, _ := room.Member(peer)
	other, hasOther := room.Other(peer)
	group := room.Group

	c.mu.Lock()
	c.room, c.roomTag, c.peer, c.group = room.ID, c.s.roomTag(room.ID), peer, group
	c.keySet = me.PublicKey != ""
	c.peerKeySent, c.hsSent, c.superseded = false, false, false
	c.joinedAt = time.Now()
	c.logp.Store(c.s.log.With("conn", c.id, "room", c.roomTag))
	c.mu.Unlock()

	c.enqueue(&wire.ServerFrame{
		Type: wire.TypeRoom, ID: f.ID, Room: room.ID, Peer: peer, ResumeToken: token,
		Group: &group, Peers: len(room.Members), Resumed: &resumed,
	})
	if hasOther && other.PublicKey != "" {
		c.sendPeerKey(other.PublicKey, group)
		if me.PublicKey != "" {
			c.sendHandshake()
		}
	}
	var delivered uint64
	if resumed {
		ctx, cancel := c.storeCtx()
		msgs, err := c.s.store.Pending(ctx, room.ID, peer, lastSeq)
		cancel()
		if err != nil {
			c.logger().Warn("pending messages unavailable on resume", "err", err)
		}
		for _, m := range msgs {
			c.enqueue(&wire.ServerFrame{Type: wire.TypeMsg, Seq: m.Seq, Body: base64.StdEncoding.EncodeToString(m.Body)})
			delivered = m.Seq
		}
	}
	reason := ""
	if resumed {
		reason = "resumed"
	}
	ctx, cancel := c.storeCtx()
	c.s.store.Publish(ctx, session.Event{Type: session.EventJoined, Room: room.ID, Peer: peer, Reason: reason, Conn: c.id})
	cancel()

	done := make(chan struct{})
	c.mu.Lock()
	c.pumpCancel, c.pumpDone = pumpCancel, done
	c.mu.Unlock()
	go c.pump(pumpCtx, sub, room.ID, peer, other.ID, delivered, done)
	c.logger().Debug("entered room", "resumed", resumed, "peers", len(room.Members))
	return nil
}

// sendPeerKey sends peer_key once per peer key.
func (c *conn) sendPeerKey(key, group string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peerKeySent {
		return
	}
	c.peerKeySent = true
	if group != "" {
		c.group = group
	}
	c.enqueue(&wire.ServerFrame{Type: wire.TypePeerKey, PublicKey: key, Group: &group})
}

// sendHandshake sends handshake_complete once, and reports whether it did.
func (c *conn) sendHandshake() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hsSent || !c.peerKeySent || !c.keySet {
		return false
	}
	c.hsSent = true
	group := c.group
	c.s.metrics.handshakeLatency.Observe(time.Since(c.joinedAt).Seconds())
	c.enqueue(&wire.ServerFrame{Type: wire.TypeHandshakeComplete, Group: &group})
	return true
}

// pump forwards the room's events to the client until ctx ends or the
// subscription does.
func (c *conn) pump(ctx context.Context, sub *session.Subscription, room, peer, knownOther string, delivered uint64, done chan struct{}) {
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
					c.closeWith(websocket.StatusNormalClosure, "resumed on another connection")
					return
				}
				continue
			}
			resumed := ev.Reason == "resumed"
			if !resumed && ev.Peer == knownOther {
				// Its join predates our snapshot: the room frame told
				// the client already.
				continue
			}
			knownOther = ev.Peer
			c.enqueue(&wire.ServerFrame{Type: wire.TypePeerJoined, Resumed: &resumed})
		case session.EventLeft:
			if ev.Peer == peer {
				continue
			}
			if ev.Reason == "left" {
				// The room's handshake is over; a new peer must send a
				// new key.
				knownOther = ""
				c.mu.Lock()
				c.peerKeySent, c.hsSent = false, false
				c.mu.Unlock()
			}
			c.enqueue(&wire.ServerFrame{Type: wire.TypePeerLeft, Reason: wire.Reason(ev.Reason)})
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
			c.enqueue(&wire.ServerFrame{Type: wire.TypeMsg, Seq: ev.Seq, Body: base64.StdEncoding.EncodeToString(ev.Body)})
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
		c.s.metrics.rejected.WithLabelValues("slow_reader").Inc()
		c.closeWith(wire.CloseSlowReader, "you are not reading fast enough; reconnect and resume")
	default:
		c.logger().Warn("room events ended", "err", err)
		c.sendError(nil, newWireError(wire.CodeUnavailable, "the session store is unavailable; reconnect and resume"))
		c.closeAfterFlush(websocket.StatusTryAgainLater, "session store unavailable")
	}
}

// clearRoomLocked forgets the room. c.mu must be held.
func (c *conn) clearRoomLocked() {
	c.room, c.roomTag, c.peer, c.group = "", "", "", ""
	c.keySet, c.peerKeySent, c.hsSent = false, false, false
	c.logp.Store(c.s.log.With("conn", c.id))
}

// exitRoom takes the connection out of its room, stopping the pump. With
// reason "left" the member leaves the room; with "dropped" it is marked
// disconnected (it may resume); with "" the store is not told (the room is
// gone). The other peer is told of a leave or a drop. It reports whether the
// connection was in a room.
func (c *conn) exitRoom(reason string) bool {
	c.mu.Lock()
	room, peer, superseded := c.room, c.peer, c.superseded
	cancelPump, pumpDone := c.pumpCancel, c.pumpDone
	c.clearRoomLocked()
	c.pumpCancel, c.pumpDone = nil, nil
	c.mu.Unlock()
	if room == "" {
		return false
	}
	if cancelPump != nil {
		cancelPump()
		<-pumpDone
	}
	if reason == "" || superseded {
		return true
	}
	// The connection's context may have ended: use a fresh one.
	ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.StoreTimeout)
	defer cancel()
	var err error
	if reason == "left" {
		err = c.s.store.Leave(ctx, room, peer)
	} else {
		err = c.s.store.Disconnect(ctx, room, peer)
	}
	if err != nil && !errors.Is(err, session.ErrRoomNotFound) && !errors.Is(err, session.ErrNotMember) {
		c.logger().Warn("could not record leaving the room", "reason", reason, "err", err)
	}
	if err == nil {
		c.s.store.Publish(ctx, session.Event{Type: session.EventLeft, Room: room, Peer: peer, Reason: reason, Conn: c.id})
	}
	return true
}

func (c *conn) handleKey(f *wire.ClientFrame) error {
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
	if group == "" && f.Group == nil {
		// Another member may have fixed the group since we last heard.
		r, err := c.s.store.Room(ctx, room)
		if err != nil {
			return err
		}
		group = r.Group
	}
	var g *dh.Group
	var err error
	switch {
	case f.Group != nil:
		if g, err = dh.LookupGroup(*f.Group); err != nil {
			return err
		}
		if group != "" && g.Name() != group {
			c.s.metrics.validationErrors.WithLabelValues(string(wire.CodeGroupMismatch)).Inc()
			return session.ErrGroupMismatch
		}
	case group != "":
		g, _ = dh.LookupGroup(group)
	default:
		return newWireError(wire.CodeBadRequest, "the room has no group yet: name it in the group field")
	}
	pk, err := g.ParsePublicKey(*f.PublicKey)
	if err != nil {
		we, _ := toWireError(err)
		c.s.metrics.validationErrors.WithLabelValues(string(we.code)).Inc()
		return err
	}
	if err := c.s.limiter.UseKey(ctx, pk.Hex(), room); err != nil {
		if errors.Is(err, limits.ErrKeyReused) {
			c.s.metrics.validationErrors.WithLabelValues(string(wire.CodeKeyReused)).Inc()
		}
		return err
	}
	r, err := c.s.store.SetKey(ctx, room, peer, g.Name(), pk.Hex())
	if err != nil {
		if errors.Is(err, session.ErrGroupMismatch) {
			c.s.metrics.validationErrors.WithLabelValues(string(wire.CodeGroupMismatch)).Inc()
		}
		return err
	}
	name := g.Name()
	c.mu.Lock()
	c.keySet, c.group = true, name
	// key_ok is queued before c.mu is released: the pump, which may now
	// complete the handshake, must not queue handshake_complete first.
	c.enqueue(&wire.ServerFrame{Type: wire.TypeKeyOK, ID: f.ID, Group: &name})
	c.mu.Unlock()
	c.s.store.Publish(ctx, session.Event{Type: session.EventKey, Room: room, Peer: peer, Key: pk.Hex(), Group: name, Conn: c.id})
	if other, ok := r.Other(peer); ok && other.PublicKey != "" {
		// The store serialises SetKey: exactly one of the two sees the
		// other key, so the room's handshake is counted once.
		c.s.metrics.handshakes.Inc()
		c.sendPeerKey(other.PublicKey, name)
	}
	// The pump may have delivered the other key between SetKey and
	// keySet above, when it could not yet complete the handshake.
	c.sendHandshake()
	return nil
}

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
	body, err := base64.StdEncoding.DecodeString(*f.Body)
	if err != nil || len(body) == 0 {
		return newWireError(wire.CodeBadRequest, "body must be non-empty standard base64")
	}
	ctx, cancel := c.storeCtx()
	defer cancel()
	seq, err := c.s.store.Append(ctx, room, peer, body)
	if err != nil {
		return err
	}
	// Append announced the message to the room (atomically with storing
	// it: a confirmed message reaches the peer even if this relay dies now).
	c.enqueue(&wire.ServerFrame{Type: wire.TypeSent, ID: f.ID, Seq: seq})
	c.s.metrics.messages.Inc()
	c.s.metrics.bytes.Add(float64(len(body)))
	return nil
}

func (c *conn) handleAck(f *wire.ClientFrame) error {
	room, peer := c.current()
	if room == "" {
		return errNotInRoom
	}
	ctx, cancel := c.storeCtx()
	defer cancel()
	return c.s.store.Ack(ctx, room, peer, *f.Seq)
}

func (c *conn) handleLeave(f *wire.ClientFrame) error {
	if !c.exitRoom("left") {
		return errNotInRoom
	}
	c.enqueue(&wire.ServerFrame{Type: wire.TypeLeft, ID: f.ID})
	return nil
}

// newToken returns a resume token (32 random bytes, base64url) and its
// SHA-256.
func newToken() (string, [32]byte, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", [32]byte{}, err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), sha256.Sum256(b[:]), nil
}

// maxRoomIDLength bounds client-chosen room IDs.
const maxRoomIDLength = 64

// roomID reports whether s can name a room: a relay-made ID, or, when the
// relay allows them, a client-chosen one.
func (s *Server) roomID(id string) bool {
	return isRoomID(id) || (s.cfg.ClientRoomIDs && s.clientRoomID(id))
}

// clientRoomID reports whether id is a well-formed client-chosen room ID.
func (s *Server) clientRoomID(id string) bool {
	if len(id) < s.cfg.MinRoomIDLength || len(id) > maxRoomIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch b := id[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '-', b == '_':
		default:
			return false
		}
	}
	return true
}

// isRoomID reports whether s is a UUID in the canonical lowercase form the
// relay hands out.
func isRoomID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}
