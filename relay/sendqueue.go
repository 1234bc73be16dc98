package relay

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// sendQueue is a connection's bounded queue of outgoing frames and the
// writer that drains it (tailscale derp's pktQueue and relay/client's queue
// are the models).
//
// Producers (the reader's handlers and the forwarder of the room's events)
// put frames in with add, which never waits, so that it may be called
// under the connection's lock: frames decided under that lock are queued in
// the order they were decided. A producer then calls wait, without any lock
// held, which waits while the queue holds more than max frames or more
// than maxBytes bytes, and, while the frames queued on every connection
// together hold more than the server's total (queuedBytes), until this
// queue is empty. Each producer adds a few frames at most between waits,
// so the queue holds at most max frames, or maxBytes, plus a few frames
// per producer.
//
// A client that lets a producer wait slowTimeout is a slow reader: the
// queue takes nothing more and onSlow closes the connection (4408). The
// client never sees a gap it could mistake for delivery: the writer writes
// the queue in order until the connection closes, and on resume the client
// gets everything after the last frame it read.
//
// The writer is a goroutine that runs only while frames wait (an idle
// connection has none); add starts it, and it exits when the queue is
// empty. Its states: parked (writing false, no goroutine), running
// (writing true), stopped (stop was called: nothing more is queued or
// written).
type sendQueue struct {
	// Static after construction.
	max         int                                       // frames before producers wait
	maxBytes    int64                                     // bytes before producers wait; <= 0: no bound
	total       *queuedBytes                              // the bytes queued on every connection; nil: not counted
	slowTimeout time.Duration                             // how long a producer waits for room
	bg          *goroutines                               // starts the writer
	write       func(b []byte) error                      // writes one frame; an error ends the writer
	closeWith   func(websocket.StatusCode, string)        // closes the connection; must not block
	onSlow      func()                                    // a producer waited slowTimeout in vain
	onFlushed   func(code websocket.StatusCode, r string) // closeAfterFlush's marker was reached

	mu       sync.Mutex    // guards the following; taken after conn.mu, before goroutines.mu
	frames   [][]byte      // encoded frames, oldest first; nil is closeAfterFlush's marker
	bytes    int64         // the bytes of frames, counted in total too
	writing  bool          // a writer goroutine is running
	stopped  bool          // the connection is ending
	closing  bool          // a close is queued or the client is a slow reader: queue nothing more
	progress chan struct{} // closed when the writer takes a frame; nil while nobody waits

	// Set under mu with the marker; read by the writer when it takes it.
	flushCode   websocket.StatusCode
	flushReason string
}

// add queues b and starts the writer if it is parked. It never waits. It
// reports false if b was dropped because the connection is closing or
// ending.
func (q *sendQueue) add(b []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped || q.closing {
		return false
	}
	q.frames = append(q.frames, b)
	q.bytes += int64(len(b))
	q.total.add(int64(len(b)))
	q.startLocked()
	return true
}

// fullLocked reports whether a producer must wait: the queue holds more
// than max frames or maxBytes bytes, or the server's queues together hold
// more than their total and this one is not empty. q.mu must be held.
func (q *sendQueue) fullLocked() bool {
	return len(q.frames) > q.max || (q.maxBytes > 0 && q.bytes > q.maxBytes) || (q.bytes > 0 && q.total.over())
}

// startLocked starts the writer if it is parked. q.mu must be held.
func (q *sendQueue) startLocked() {
	if !q.writing && q.bg.start(q.run) {
		q.writing = true
	}
}

// wait waits while the queue is full (see fullLocked), until ctx ends or
// slowTimeout passes; then the client is a slow reader. It must be called
// with no lock held.
func (q *sendQueue) wait(ctx context.Context) {
	var timeout <-chan time.Time
	for {
		q.mu.Lock()
		if !q.fullLocked() || q.stopped || q.closing {
			q.mu.Unlock()
			return
		}
		if q.progress == nil {
			q.progress = make(chan struct{})
		}
		progress := q.progress
		q.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(q.slowTimeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-progress:
		case <-ctx.Done():
			return
		case <-timeout:
			q.mu.Lock()
			first := !q.closing
			q.closing = true
			q.mu.Unlock()
			if first {
				q.onSlow()
			}
			return
		}
	}
}

// closeAfterFlush queues a close with code once the frames queued before it
// are written, so that an error frame explaining the close reaches the
// client first; nothing is queued after it. If the queue is full (a slow
// reader), the connection is closed at once.
func (q *sendQueue) closeAfterFlush(code websocket.StatusCode, reason string) {
	q.mu.Lock()
	if q.stopped || q.closing {
		q.mu.Unlock()
		return
	}
	q.closing = true
	full := len(q.frames) >= q.max
	if !full {
		q.flushCode, q.flushReason = code, reason
		q.frames = append(q.frames, nil)
		q.startLocked()
	}
	q.mu.Unlock()
	if full {
		q.closeWith(code, reason)
	}
}

// next takes the oldest frame for the writer; ok is false when the queue
// is empty or stopped, and the writer must then exit (it is parked).
func (q *sendQueue) next() (b []byte, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.progress != nil { // wake the producers waiting for room
		close(q.progress)
		q.progress = nil
	}
	if len(q.frames) == 0 || q.stopped {
		q.writing = false
		q.frames = nil // an idle connection keeps no queue
		return nil, false
	}
	b = q.frames[0]
	q.frames[0] = nil
	q.frames = q.frames[1:]
	q.bytes -= int64(len(b))
	q.total.add(-int64(len(b)))
	return b, true
}

// run is the writer: it writes the queued frames until the queue is empty,
// then exits; add starts it again for the next frame.
func (q *sendQueue) run() {
	for {
		b, ok := q.next()
		if !ok {
			return
		}
		if b == nil { // closeAfterFlush's marker: every earlier frame is written
			q.mu.Lock()
			code, reason := q.flushCode, q.flushReason
			q.mu.Unlock()
			q.onFlushed(code, reason)
			return
		}
		if q.write(b) != nil {
			return
		}
	}
}

// stop drops the queued frames and queues nothing more; a running writer
// exits after its current write. The caller waits for it with goroutines.
func (q *sendQueue) stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stopped = true
	q.frames = nil
	q.total.add(-q.bytes)
	q.bytes = 0
	if q.progress != nil {
		close(q.progress)
		q.progress = nil
	}
}

// queuedBytes counts the bytes of the frames queued on all of a server's
// connections, against MaxQueuedBytesTotal.
type queuedBytes struct {
	max int64 // <= 0: no bound
	n   atomic.Int64
}

// add counts n more bytes (n < 0: fewer). A nil t counts nothing.
func (t *queuedBytes) add(n int64) {
	if t != nil {
		t.n.Add(n)
	}
}

// over reports whether the bytes queued exceed the bound.
func (t *queuedBytes) over() bool { return t != nil && t.max > 0 && t.n.Load() > t.max }

// goroutines tracks the goroutines a connection runs besides its reader
// (the writer, the keepalive and the closer), so that the reader can wait
// for them before it returns.
type goroutines struct {
	mu      sync.Mutex // guards stopped and Add on wg
	stopped bool
	wg      sync.WaitGroup
}

// start runs fn in a new goroutine unless stop has been called, and
// reports whether it did.
func (g *goroutines) start(fn func()) bool {
	if !g.enter() {
		return false
	}
	go func() {
		defer g.exit()
		fn()
	}()
	return true
}

// enter counts the calling goroutine (one that a timer started, say) as
// tracked, unless stop has been called; it reports whether it did, and if
// so the goroutine must call exit when done.
func (g *goroutines) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	g.wg.Add(1)
	return true
}

// exit ends what enter began.
func (g *goroutines) exit() { g.wg.Done() }

// ifRunning calls fn under the tracker's lock unless stop has been called,
// so that fn (resetting a timer, say) cannot race with stop.
func (g *goroutines) ifRunning(fn func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.stopped {
		fn()
	}
}

// stop refuses new goroutines and waits for the running ones.
func (g *goroutines) stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.wg.Wait()
}
