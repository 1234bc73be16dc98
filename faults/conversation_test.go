package faults

import (
	"context"
	"sync"
	"testing"
	"time"
)

// pace is the pause between two messages of a talker: fast enough for
// faults to land mid-conversation, slow enough to stay far from the rate
// limit and the mailbox limit while a peer is away.
const pace = 2 * time.Millisecond

// conversation is two talkers sending to each other.
type conversation struct {
	a, b          *talker
	stop          chan struct{} // closed by stopSending
	senders       sync.WaitGroup
	receivers     sync.WaitGroup
	cancelReceive context.CancelFunc
}

// talk starts A and B sending to and receiving from each other, a message
// every pace.
func talk(ctx context.Context, a, b *talker) *conversation {
	return talkEvery(ctx, a, b, pace)
}

// talkEvery is talk with another pause between two messages of a talker.
func talkEvery(ctx context.Context, a, b *talker, pause time.Duration) *conversation {
	cv := &conversation{a: a, b: b, stop: make(chan struct{})}
	rctx, cancel := context.WithCancel(ctx)
	cv.cancelReceive = cancel
	for _, p := range [][2]*talker{{a, b}, {b, a}} {
		me, other := p[0], p[1]
		cv.senders.Add(1)
		go func() {
			defer cv.senders.Done()
			me.sendLoop(ctx, cv.stop, pause)
		}()
		cv.receivers.Add(1)
		go func() {
			defer cv.receivers.Done()
			me.receiveLoop(rctx, other.name)
		}()
	}
	return cv
}

// stopSending stops both senders and waits for them.
func (cv *conversation) stopSending() {
	close(cv.stop)
	cv.senders.Wait()
}

// finish stops sending, lets each side receive every message the other
// had confirmed (until ctx ends), then stops receiving.
func (cv *conversation) finish(ctx context.Context) {
	select {
	case <-cv.stop:
	default:
		cv.stopSending()
	}
	waitDelivered(ctx, cv.a, cv.b)
	waitDelivered(ctx, cv.b, cv.a)
	cv.cancelReceive()
	cv.receivers.Wait()
}

// warmUp waits until each side has received n more messages than it had,
// failing the test at ctx's end.
func (cv *conversation) warmUp(t *testing.T, ctx context.Context, n int, what string) {
	t.Helper()
	for _, tk := range []*talker{cv.a, cv.b} {
		tk.mu.Lock()
		want := len(tk.got) + n
		tk.mu.Unlock()
		if !waitReceived(ctx, tk, want) {
			t.Fatalf("%s: %s received fewer than %d messages", what, tk.name, want)
		}
	}
}

// testContext returns a context that ends after d or when the test ends.
func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// phase returns a context for one step of a test: it ends after d, with
// ctx, or when the test ends.
func phase(t *testing.T, ctx context.Context, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(ctx, d)
	t.Cleanup(cancel)
	return ctx
}
