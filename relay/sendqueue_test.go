package relay

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/wire"
)

// stalledConn returns a connection in a room of store whose send queue is
// full and whose writer is stuck, as behind a client that stopped reading.
// unstall releases the writer.
func stalledConn(t *testing.T) (c *conn, store session.Store, unstall func()) {
	t.Helper()
	store = session.NewMemoryStore(session.MemoryConfig{})
	t.Cleanup(func() { store.Close() })
	lim := limits.NewMemory(limits.Config{})
	t.Cleanup(func() { lim.Close() })
	s, err := New(store, Config{SendQueue: 2, SlowReaderTimeout: time.Hour, Limiter: lim}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c = newConn(s, nil, "1", "192.0.2.1")
	t.Cleanup(c.cancel)
	stuck := make(chan struct{})
	c.q.write = func([]byte) error { <-stuck; return nil }
	// The writer takes the first frame and blocks on it; the queue then
	// holds SendQueue frames.
	for range c.q.max + 1 {
		c.q.add([]byte(`{}`))
	}

	ctx := context.Background()
	room := "00000000-0000-4000-8000-000000000001"
	if err := store.CreateRoom(ctx, room, session.RoomConfig{Group: "x25519", TTL: time.Minute, ResumeGrace: time.Minute, MaxPending: 8}, 10); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := store.Join(ctx, room, session.Member{ID: id, Connected: true}); err != nil {
			t.Fatal(err)
		}
	}
	c.room, c.peer, c.group = room, "a", "x25519"
	var once bool
	return c, store, func() {
		if !once {
			once = true
			close(stuck)
		}
	}
}

// waiting reports whether some producer waits for room in c's queue.
func waiting(c *conn) bool {
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	return c.q.progress != nil
}

// TestNoWaitUnderConnLock checks, for each function that decides frames
// under c.mu (peer_key, handshake_complete, key_ok), that while it waits
// for room in a full send queue, c.mu is free: the connection's keepalive
// and forwarder, which take c.mu, go on. It also checks that the frame was
// queued before the wait, in the order decided under the lock.
func TestNoWaitUnderConnLock(t *testing.T) {
	key, err := dh.X25519().GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, group := key.PublicKey().Hex(), "x25519"
	tests := []struct {
		name  string
		setup func(c *conn)
		call  func(c *conn)
		want  wire.FrameType // the last frame queued
	}{
		{"sendPeerKey", func(c *conn) {}, func(c *conn) { c.sendPeerKey(pub, "x25519") }, wire.TypePeerKey},
		{"sendHandshake", func(c *conn) { c.keySet, c.peerKeySent = true, true }, func(c *conn) { c.sendHandshake() }, wire.TypeHandshakeComplete},
		{"handleKey", func(c *conn) {}, func(c *conn) {
			if err := c.handleKey(&wire.ClientFrame{Type: wire.TypeKey, PublicKey: &pub, Group: &group}); err != nil {
				t.Errorf("handleKey: %v", err)
			}
		}, wire.TypeKeyOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, unstall := stalledConn(t)
			defer unstall()
			tt.setup(c)
			done := make(chan struct{})
			go func() {
				defer close(done)
				tt.call(c)
			}()
			deadline := time.Now().Add(10 * time.Second)
			for !waiting(c) {
				if time.Now().After(deadline) {
					t.Fatal("the call never waited for room in the queue")
				}
				time.Sleep(time.Millisecond)
			}
			if !c.mu.TryLock() {
				t.Fatal("c.mu is held while the call waits for room in the send queue")
			}
			c.mu.Unlock()
			select {
			case <-done:
				t.Fatal("the call returned while the queue was full")
			default:
			}

			c.q.mu.Lock()
			last := c.q.frames[len(c.q.frames)-1]
			c.q.mu.Unlock()
			var f wire.ServerFrame
			if err := json.Unmarshal(last, &f); err != nil || f.Type != tt.want {
				t.Fatalf("last queued frame %s (%v), want %s", last, err, tt.want)
			}
			unstall() // the client reads again: the call finishes
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the call did not finish once the queue drained")
			}
		})
	}
}

// TestSendQueueBound checks that producers that wait after each add keep
// the queue within its bound plus one frame per producer, and that a wait
// that times out marks the client a slow reader once.
func TestSendQueueBound(t *testing.T) {
	slow := 0
	bg := &goroutines{}
	stuck := make(chan struct{})
	q := &sendQueue{max: 4, slowTimeout: 50 * time.Millisecond, bg: bg,
		write:  func([]byte) error { <-stuck; return nil },
		onSlow: func() { slow++ },
	}
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if q.add([]byte{'x'}) {
			q.wait(ctx) // times out on the first full queue
		}
	}
	q.mu.Lock()
	n := len(q.frames)
	q.mu.Unlock()
	// One frame is with the writer; the queue holds max, plus the one
	// whose wait timed out; nothing is queued after a slow reader.
	if n != q.max+1 || slow != 1 {
		t.Errorf("queue holds %d frames, onSlow called %d times; want %d and 1", n, slow, q.max+1)
	}
	close(stuck)
	q.stop()
	bg.stop()
}

// TestSendQueueBytes checks the bounds in bytes: a producer waits while
// its queue holds more than maxBytes, or while all queues together hold
// more than their total and its own is not empty; a client that does not
// read is then a slow reader, and stop gives its bytes back to the total.
func TestSendQueueBytes(t *testing.T) {
	frame := make([]byte, 100)
	for _, tt := range []struct {
		name       string
		maxBytes   int64
		totalMax   int64
		preTotal   int64 // bytes other connections hold
		wantFrames int   // frames queued when the wait times out, the writer's one apart
	}{
		{"per-queue bound", 250, 0, 0, 3},
		{"total bound, others hold it", 0, 1000, 1000, 1},
		{"total bound, this queue fills it", 0, 450, 0, 5},
		{"no byte bounds: the frame bound", 0, 0, 0, 9},
	} {
		t.Run(tt.name, func(t *testing.T) {
			slow := 0
			bg := &goroutines{}
			stuck := make(chan struct{})
			total := &queuedBytes{max: tt.totalMax}
			total.add(tt.preTotal)
			q := &sendQueue{max: 8, maxBytes: tt.maxBytes, total: total, slowTimeout: 50 * time.Millisecond, bg: bg,
				write:  func([]byte) error { <-stuck; return nil },
				onSlow: func() { slow++ },
			}
			for i := 0; i < 20; i++ {
				if q.add(frame) {
					q.wait(context.Background())
				}
			}
			q.mu.Lock()
			n, queued := len(q.frames), q.bytes
			q.mu.Unlock()
			if n != tt.wantFrames || slow != 1 {
				t.Errorf("queue holds %d frames, onSlow called %d times; want %d and 1", n, slow, tt.wantFrames)
			}
			if got, want := total.n.Load(), tt.preTotal+queued; got != want {
				t.Errorf("total = %d, want %d (others' %d plus this queue's %d)", got, want, tt.preTotal, queued)
			}
			close(stuck)
			q.stop()
			bg.stop()
			if got := total.n.Load(); got != tt.preTotal {
				t.Errorf("total after stop = %d, want %d", got, tt.preTotal)
			}
		})
	}
}
