package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/relay/client"
)

// load runs the pairs of one configuration and gathers their figures.
type load struct {
	// Static after newLoad.
	cfg  config
	opts *client.Options // for every client; nil means defaults

	stats *stats

	// Progress counters, read by the progress line.
	started  atomic.Int64 // pairs started
	inFlight atomic.Int64
}

func newLoad(cfg config, opts *client.Options) *load {
	return &load{cfg: cfg, opts: opts, stats: newStats()}
}

// run starts pairs, at most cfg.concurrency at once, until cfg.pairs have
// run or cfg.duration has passed (the pairs in flight then finish), or ctx
// ends (the pairs in flight are abandoned and not counted). If progress is
// not nil, a live line goes to it at most once a second.
//
// The progress line is rewritten in place ("\r") when progressTTY is set,
// else each update is a line of its own.
func (l *load) run(ctx context.Context, progress io.Writer, progressTTY bool) *summary {
	if l.cfg.scenario == scenarioIdle {
		return l.runIdle(ctx, progress, progressTTY)
	}
	startCtx := ctx // when to stop starting pairs
	if l.cfg.duration > 0 {
		var cancel context.CancelFunc
		startCtx, cancel = context.WithTimeout(ctx, l.cfg.duration)
		defer cancel()
	}
	begin := time.Now()

	stopProgress := func() {}
	if progress != nil {
		stopProgress = l.showProgress(progress, progressTTY, begin)
	}

	var next atomic.Int64 // index of the next pair
	var wg sync.WaitGroup
	for range l.cfg.concurrency {
		wg.Go(func() {
			for startCtx.Err() == nil {
				i := next.Add(1) - 1
				if l.cfg.pairs > 0 && i >= int64(l.cfg.pairs) {
					return
				}
				l.started.Add(1)
				l.inFlight.Add(1)
				l.runPair(ctx, int(i))
				l.inFlight.Add(-1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	stopProgress()
	return l.stats.summary(l.cfg, elapsed)
}

// showProgress writes a progress line to w every second until the returned
// function is called, which ends the line.
func (l *load) showProgress(w io.Writer, tty bool, begin time.Time) (stop func()) {
	start, end := "", "\n"
	if tty {
		start, end = "\r", ""
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastPairs int64
		last := begin
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				ok, failed := l.stats.counts()
				rate := float64(ok-lastPairs) / now.Sub(last).Seconds()
				lastPairs, last = ok, now
				fmt.Fprintf(w, "%s%6.0fs  %d pairs ok  %.0f pairs/s  %d errors  %d in flight   %s",
					start, now.Sub(begin).Seconds(), ok, rate, failed, l.inFlight.Load(), end)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		if tty {
			fmt.Fprintln(w)
		}
	}
}

// urlsFor returns the URLs of pair i's two peers: different ones when
// several are configured.
func (l *load) urlsFor(i int) (a, b string) {
	n := len(l.cfg.urls)
	return l.cfg.urls[i%n], l.cfg.urls[(i+1)%n]
}

// runPair runs pair i's scenario and records its outcome.
func (l *load) runPair(ctx context.Context, i int) {
	pctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
	defer cancel()
	p := &pair{l: l, timings: &timings{}}
	err := p.run(pctx, i)
	if err != nil && ctx.Err() != nil {
		l.stats.abandoned()
		return
	}
	if p.resumes > 0 {
		l.stats.resumed(p.resumes)
	}
	l.stats.record(p.timings, p.messages, err)
}

// pair is one pair's run: peers A (creates the room) and B (joins it).
type pair struct {
	l        *load
	timings  *timings
	messages int // delivered, both ways
	resumes  int // churn: successful Resume calls
}

// run connects both peers, pairs them, completes the handshake and runs
// the scenario's exchange.
func (p *pair) run(ctx context.Context, i int) error {
	urlA, urlB := p.l.urlsFor(i)
	optsA, dropA := p.l.opts, func() {}
	if p.l.cfg.scenario == scenarioChurn && churnAction(i) == churnDrop {
		optsA, dropA = droppable(p.l.opts)
	}
	a, err := p.dial(ctx, urlA, optsA)
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := p.dial(ctx, urlB, p.l.opts)
	if err != nil {
		return err
	}
	defer b.Close()

	t0 := time.Now()
	room, err := a.Create(ctx, p.l.cfg.group)
	if err != nil {
		return stageError{"create", err}
	}
	p.timings.add(metricJoin, time.Since(t0))

	// B joins; both run the handshake at once, each waiting for the other's
	// key. The handshake latency runs from B's join to both completions.
	t0 = time.Now()
	if _, err := b.Join(ctx, room.ID); err != nil {
		return stageError{"join", err}
	}
	p.timings.add(metricJoin, time.Since(t0))
	errA := make(chan error, 1)
	go func() {
		_, err := a.Handshake(ctx)
		errA <- err
	}()
	_, errB := b.Handshake(ctx)
	if errB != nil {
		return stageError{"handshake", errB}
	}
	if err := <-errA; err != nil {
		return stageError{"handshake", err}
	}
	p.timings.add(metricHandshake, time.Since(t0))

	switch p.l.cfg.scenario {
	case scenarioChat:
		return p.chat(ctx, a, b)
	case scenarioChurn:
		if err := p.chat(ctx, a, b); err != nil {
			return err
		}
		return p.churn(ctx, i, a, b, dropA)
	}
	return nil
}

func (p *pair) dial(ctx context.Context, url string, opts *client.Options) (*client.Client, error) {
	t0 := time.Now()
	c, err := client.Dial(ctx, url, opts)
	if err != nil {
		return nil, stageError{"dial", err}
	}
	p.timings.add(metricConnect, time.Since(t0))
	return c, nil
}

// chat sends cfg.messages messages each way: A sends, B receives and
// replies, A receives. Each round trip is one latency sample.
func (p *pair) chat(ctx context.Context, a, b *client.Client) error {
	n, size := p.l.cfg.messages, p.l.cfg.size
	msgA := make([]byte, size)
	msgB := make([]byte, size)
	rand.Read(msgA)
	rand.Read(msgB)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errB := make(chan error, 1)
	go func() {
		errB <- func() error {
			for range n {
				m, err := b.Receive(ctx)
				if err != nil {
					return stageError{"receive", err}
				}
				if !bytes.Equal(m.Plaintext, msgA) {
					return stageError{"receive", errMismatch}
				}
				if _, err := b.Send(ctx, msgB); err != nil {
					return stageError{"send", err}
				}
			}
			return nil
		}()
	}()
	// A's loop; on failure, cancel stops B's.
	errAFn := func() error {
		for range n {
			t0 := time.Now()
			if _, err := a.Send(ctx, msgA); err != nil {
				return stageError{"send", err}
			}
			m, err := a.Receive(ctx)
			if err != nil {
				return stageError{"receive", err}
			}
			if !bytes.Equal(m.Plaintext, msgB) {
				return stageError{"receive", errMismatch}
			}
			p.timings.add(metricRoundTrip, time.Since(t0))
			p.messages += 2
		}
		return nil
	}
	if err := errAFn(); err != nil {
		cancel()
		<-errB
		return err
	}
	return <-errB
}

// errMismatch reports a message whose plaintext is not the one sent.
var errMismatch = errors.New("message differs from the one sent")

// stageError is an error of one step of a pair (dial, create, join,
// handshake, send, receive; churn: leave, peer_left, resume; idle: idle).
type stageError struct {
	stage string
	err   error
}

func (e stageError) Error() string { return e.stage + ": " + e.err.Error() }
func (e stageError) Unwrap() error { return e.err }

// errorCode classifies a pair's error for the summary: the relay's wire
// code for an *client.Error, else a short name such as "dial", "timeout",
// "disconnected" or "close_4408".
func errorCode(err error) string {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	var se stageError
	stage := "other"
	if errors.As(err, &se) {
		stage = se.stage
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, errMismatch):
		return "mismatch"
	case errors.Is(err, client.ErrTooLarge):
		return "too_large"
	case stage == "dial":
		return "dial"
	}
	if errors.Is(err, client.ErrDisconnected) {
		if code := websocket.CloseStatus(err); code != -1 {
			return fmt.Sprintf("close_%d", code)
		}
		return "disconnected"
	}
	return stage
}
