package relay

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/realip"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/wire"
)

// conn is one client connection. Its handler goroutine runs the reader loop
// (serve), which decodes each frame and hands it to its handler
// (handlers.go). An idle connection has no other goroutine: the send
// queue's writer runs only while frames wait (sendqueue.go), the keepalive
// ping runs from a timer, and a forwarder turns the room's events into
// frames only while the connection is in a room (room.go).
//
// Lock order: c.mu, then c.q.mu, then c.bg.mu. Nothing waits while holding
// any of them: under c.mu frames are only added to the send queue
// (sendQueue.add never waits), and the wait for room in the queue
// (sendQueue.wait) happens after c.mu is released.
type conn struct {
	// Static after construction.
	s       *Server
	ws      *websocket.Conn
	id      string
	ip      string                      // the client's address, as the limits count it
	source  string                      // realip.Source(ip): what the store's byte budget counts
	logp    atomic.Pointer[slog.Logger] // per-connection logger; gains the room tag in a room
	limiter bucket                      // frames and pings; owned by the reader
	bytes   bucket                      // message bytes; owned by the reader
	q       sendQueue                   // frames to the client, and their writer
	bg      goroutines                  // writer, keepalive and closer; serve waits for them

	ctx       context.Context // ends when the connection ends
	cancel    context.CancelFunc
	closeOnce sync.Once

	pingTimer *time.Timer // reset under bg.mu (ifRunning)
	lastTouch time.Time   // owned by ping, which never runs twice at once

	mu sync.Mutex // guards the following
	// The room the connection is in; room == "" means none.
	room, roomTag, peer string
	group               string // the room's group, as far as known
	keySet              bool   // this peer stored its key
	peerKeySent         bool   // peer_key was sent for the current peer key
	hsSent              bool   // handshake_complete was sent
	joinedAt            time.Time
	gen                 uint64 // the generation of the seat this connection holds
	knownPeer           string // the other member the client has been told of; "" for none
	superseded          bool   // a newer connection resumed this peer
	stopForward         context.CancelFunc
	forwardDone         chan struct{}

	held heldAck // the ack held back (Config.AckDelay); see ack.go
}

// newConn returns a connection on ws from ip, not yet serving; the server
// registers it.
func newConn(s *Server, ws *websocket.Conn, id, ip string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		ctx:     ctx,
		cancel:  cancel,
		s:       s,
		ws:      ws,
		id:      id,
		ip:      ip,
		source:  realip.Source(ip),
		limiter: newBucket(s.cfg.FramesPerSecond, s.cfg.FrameBurst),
		bytes:   newBucket(s.cfg.BytesPerSecond, s.cfg.ByteBurst),
	}
	c.q = sendQueue{
		max:         s.cfg.SendQueue,
		maxBytes:    s.cfg.MaxQueuedBytes,
		total:       &s.queued,
		slowTimeout: s.cfg.SlowReaderTimeout,
		bg:          &c.bg,
		write:       c.writeFrame,
		closeWith:   c.closeWith,
		onSlow:      c.closeSlow,
		onFlushed:   c.closeWith,
	}
	c.logp.Store(s.log.With("conn", id))
	return c
}

// logger returns the connection's logger.
func (c *conn) logger() *slog.Logger { return c.logp.Load() }

// serve runs the connection until it ends: the reader loop.
func (c *conn) serve() {
	defer c.cancel()
	c.logger().Debug("connected")

	c.bg.ifRunning(func() { c.pingTimer = time.AfterFunc(c.s.cfg.PingInterval, c.ping) })

	for {
		if d := c.bytes.debt(time.Now()); d > 0 {
			// The client spent its bytes: read nothing until it has
			// earned them back (TCP pushes back on a flood).
			c.s.metrics.throttled.WithLabelValues("bytes").Inc()
			if !sleep(c.ctx, d) {
				break
			}
		}
		typ, data, err := c.ws.Read(c.ctx)
		if err != nil {
			c.logEnd(err)
			break
		}
		now := time.Now()
		c.bytes.take(now, float64(len(data)))
		if !c.limiter.allow(now) {
			c.sendError(nil, newWireError(wire.CodeRateLimited, "too many frames per second; frame ignored"))
			// Read nothing more until a frame is allowed again: a flood
			// of small frames costs the relay no more than the budget.
			if !sleep(c.ctx, c.limiter.wait(now)) {
				break
			}
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

	c.exitRoom(exitDropped)
	c.cancel()
	c.q.stop()
	c.bg.ifRunning(func() { c.pingTimer.Stop() })
	c.bg.stop()
	c.ws.CloseNow()
	c.logger().Debug("disconnected")
}

// allowPing reports whether a WebSocket ping from the client is within its
// frame budget (it then gets its pong). It runs in the reader.
func (c *conn) allowPing() bool {
	now := time.Now()
	if c.limiter.allow(now) {
		return true
	}
	c.s.metrics.throttled.WithLabelValues("ping").Inc()
	// The reader handles pings: sleeping here reads nothing more until a
	// frame is allowed again, so a ping flood costs the relay no more
	// than the budget (TCP pushes back on the client).
	sleep(c.ctx, c.limiter.wait(now))
	return false
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// logEnd logs why the reader stopped, without treating a normal close as an
// error.
func (c *conn) logEnd(err error) {
	switch websocket.CloseStatus(err) {
	case wire.CloseNormal, wire.CloseGoingAway:
		return
	case wire.CloseTooBig:
		c.s.metrics.rejected.WithLabelValues("frame_too_large").Inc()
		c.logger().Info("closed: frame too large")
		return
	}
	if c.ctx.Err() == nil {
		c.logger().Debug("read ended", "err", err)
	}
}

// closeWith closes the connection with code, once; later calls do nothing.
// It does not block: the close handshake runs in a goroutine that serve
// waits for. Once serve is finishing, it only ends the connection's
// context (serve closes the socket itself).
func (c *conn) closeWith(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		if !c.bg.start(func() {
			c.ws.Close(code, reason)
			c.cancel()
		}) {
			c.cancel()
		}
	})
}

// closeSlow closes the connection of a slow reader (4408).
func (c *conn) closeSlow() {
	c.s.metrics.rejected.WithLabelValues("slow_reader").Inc()
	c.logger().Info("closing slow reader")
	c.closeWith(wire.CloseSlowReader, "you are not reading fast enough; reconnect and resume")
}

// writeFrame writes one frame within WriteTimeout; a failure ends the
// connection.
func (c *conn) writeFrame(b []byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.WriteTimeout)
	err := c.ws.Write(ctx, websocket.MessageText, b)
	cancel()
	if err != nil {
		// A write that meets the client's own close (its close frame, or
		// the socket it closed) is the end of a connection, not a failed
		// write: it is not counted.
		if c.ctx.Err() == nil && websocket.CloseStatus(err) == -1 && !errors.Is(err, net.ErrClosed) {
			c.s.metrics.rejected.WithLabelValues("write_failed").Inc()
			c.logger().Debug("write failed", "err", err)
		}
		c.cancel()
	}
	return err
}

// ping runs from the ping timer every PingInterval: it pings the client
// and, while the connection is in a room, keeps the room alive (a room
// expires only when no member is connected and nothing happens in it for
// RoomTTL). A failed ping ends the connection.
func (c *conn) ping() {
	if !c.bg.enter() {
		return
	}
	defer c.bg.exit()

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
	c.bg.ifRunning(func() { c.pingTimer.Reset(c.s.cfg.PingInterval) })
}

// encode marshals a frame for the send queue. Its id is copied byte for
// byte as the client sent it (encoding/json would escape <, >, & and
// U+2028 in it).
func (c *conn) encode(f *wire.ServerFrame) []byte {
	id := f.ID
	f.ID = nil
	b, err := json.Marshal(f)
	f.ID = id
	if err != nil {
		c.logger().Error("marshal frame", "err", err)
		return nil
	}
	if id == nil {
		return b
	}
	return spliceID(b, id)
}

// spliceID inserts "id":id into the JSON object b right after its first
// member (the type), as encoding/json would place it, and returns the new
// frame.
func spliceID(b, id []byte) []byte {
	// b is {"type":"…",…}: frame types need no escaping, so the first
	// member ends at the fourth quote.
	end, quotes := 0, 0
	for i, ch := range b {
		if ch == '"' {
			if quotes++; quotes == 4 {
				end = i + 1
				break
			}
		}
	}
	out := make([]byte, 0, len(b)+len(id)+6)
	out = append(out, b[:end]...)
	out = append(out, `,"id":`...)
	out = append(out, id...)
	return append(out, b[end:]...)
}

// queueLocked adds a frame to the send queue without waiting, for callers
// holding c.mu; they call c.q.wait(c.ctx) once they have released it.
func (c *conn) queueLocked(f *wire.ServerFrame) {
	if b := c.encode(f); b != nil {
		c.q.add(b)
	}
}

// send queues a frame for the client and waits while the queue is over its
// bound (see sendQueue). It must be called with no lock held.
func (c *conn) send(f *wire.ServerFrame) {
	if b := c.encode(f); b != nil && c.q.add(b) {
		c.q.wait(c.ctx)
	}
}

// sendError sends an error frame with id (nil for none).
func (c *conn) sendError(id json.RawMessage, we *wireError) {
	c.s.metrics.errors.WithLabelValues(string(we.code)).Inc()
	c.send(&wire.ServerFrame{Type: wire.TypeError, ID: id, Code: we.code, Message: we.msg})
}

// fail sends err, from the handler of f, as an error frame; internal
// errors are logged. A room that vanished under a member means it expired:
// the connection leaves it, and the error is errRoomExpired.
func (c *conn) fail(f *wire.ClientFrame, err error) {
	if errors.Is(err, session.ErrRoomNotFound) && inRoomFrame(f.Type) && c.exitRoom(exitGone) {
		err = errRoomExpired
	}
	we, known := toWireError(err)
	if !known {
		c.logger().Error("internal error", "type", f.Type, "err", err)
	}
	c.sendError(f.ID, we)
}

// storeCtx returns the context of one call to the session store.
func (c *conn) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, c.s.cfg.StoreTimeout)
}

// publish announces ev to the room's members, logging a failure: the
// members miss the event (the store's state is already written, and a
// member that resumes reads it from there).
func (c *conn) publish(ctx context.Context, ev session.Event) {
	if err := c.s.store.Publish(ctx, ev); err != nil {
		c.logger().Warn("could not announce an event to the room", "event", ev.Type, "err", err)
	}
}
