package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/internal/loadstats"
)

// load runs the pairs of one configuration and gathers their figures.
type load struct {
	cfg   config // static after newLoad
	stats *loadstats.Stats
}

func newLoad(cfg config) *load {
	return &load{cfg: cfg, stats: newStats()}
}

// run runs the scenario: pairs, at most cfg.Concurrency at once, until
// cfg.Pairs have run or cfg.Duration has passed (the pairs in flight then
// finish), or ctx ends (the pairs in flight are abandoned and not
// counted). Warnings (idle: /stats unreachable) go to warn.
func (l *load) run(ctx context.Context, warn io.Writer) *summary {
	if l.cfg.scenario == scenarioIdle {
		return l.runIdle(ctx, warn)
	}
	startCtx := ctx // when to stop starting pairs
	if l.cfg.Duration > 0 {
		var cancel context.CancelFunc
		startCtx, cancel = context.WithTimeout(ctx, l.cfg.Duration)
		defer cancel()
	}
	begin := time.Now()
	var next atomic.Int64 // index of the next pair
	var wg sync.WaitGroup
	for range l.cfg.Concurrency {
		wg.Go(func() {
			for startCtx.Err() == nil {
				i := next.Add(1) - 1
				if l.cfg.Pairs > 0 && i >= int64(l.cfg.Pairs) {
					return
				}
				l.runPair(ctx)
			}
		})
	}
	wg.Wait()
	return summarize(l.stats, l.cfg, time.Since(begin))
}

// runPair runs one pair of the scenario and records its outcome.
func (l *load) runPair(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	t := &loadstats.Timings{}
	var (
		messages int
		err      error
	)
	switch l.cfg.scenario {
	case scenarioUpgrade:
		err = l.upgradePair(pctx, t)
	case scenarioForward:
		messages, err = l.forwardPair(pctx, t)
	}
	if err != nil && ctx.Err() != nil {
		l.stats.Abandoned()
		return
	}
	l.stats.Record(t, messages, err)
}

// dial opens a WebSocket to url, compression disabled (as the relay's
// client does), with the server's read limit, and times it.
func dial(ctx context.Context, url string, t *loadstats.Timings) (*websocket.Conn, error) {
	t0 := time.Now()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return nil, loadstats.StageError{Stage: "dial", Err: err}
	}
	c.SetReadLimit(readLimit)
	t.Add(metricConnect, time.Since(t0))
	return c, nil
}

// upgradePair dials two connections to /upgrade and closes both, as a
// relay pair's two peers connect (and, at the end, close).
func (l *load) upgradePair(ctx context.Context, t *loadstats.Timings) error {
	u := l.cfg.endpoint("/upgrade", "")
	a, err := dial(ctx, u, t)
	if err != nil {
		return err
	}
	defer a.CloseNow()
	b, err := dial(ctx, u, t)
	if err != nil {
		return err
	}
	defer b.CloseNow()
	// A close error is not counted, as keyrelay-load counts none.
	a.Close(websocket.StatusNormalClosure, "")
	b.Close(websocket.StatusNormalClosure, "")
	return nil
}

// forwardPair connects A and B to /forward under a new pair ID, then runs
// cfg.messages round trips: A sends, B receives and replies, A receives.
// It returns the messages delivered, both ways.
func (l *load) forwardPair(ctx context.Context, t *loadstats.Timings) (delivered int, err error) {
	var id [16]byte
	rand.Read(id[:])
	u := l.cfg.endpoint("/forward", url.Values{"pair": {hex.EncodeToString(id[:])}}.Encode())
	a, err := dial(ctx, u, t)
	if err != nil {
		return 0, err
	}
	defer a.CloseNow()
	b, err := dial(ctx, u, t)
	if err != nil {
		return 0, err
	}
	defer b.CloseNow()

	n := l.cfg.messages
	msgA, msgB := payload(l.cfg.size), payload(l.cfg.size)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errB := make(chan error, 1)
	go func() {
		errB <- func() error {
			for range n {
				if err := expect(ctx, b, msgA); err != nil {
					return err
				}
				if err := b.Write(ctx, websocket.MessageText, msgB); err != nil {
					return loadstats.StageError{Stage: "send", Err: err}
				}
			}
			return nil
		}()
	}()
	// A's loop; on failure, cancel stops B's.
	err = func() error {
		for range n {
			t0 := time.Now()
			if err := a.Write(ctx, websocket.MessageText, msgA); err != nil {
				return loadstats.StageError{Stage: "send", Err: err}
			}
			if err := expect(ctx, a, msgB); err != nil {
				return err
			}
			t.Add(metricRoundTrip, time.Since(t0))
			delivered += 2
		}
		return nil
	}()
	if err != nil {
		cancel()
		<-errB
		return delivered, err
	}
	if err := <-errB; err != nil {
		return delivered, err
	}
	a.Close(websocket.StatusNormalClosure, "")
	b.Close(websocket.StatusNormalClosure, "")
	return delivered, nil
}

// expect reads the next message of c and checks that it is the text
// message want.
func expect(ctx context.Context, c *websocket.Conn, want []byte) error {
	typ, got, err := c.Read(ctx)
	if err != nil {
		return loadstats.StageError{Stage: "receive", Err: err}
	}
	if typ != websocket.MessageText || !bytes.Equal(got, want) {
		return loadstats.StageError{Stage: "receive", Err: loadstats.ErrMismatch}
	}
	return nil
}

// payload returns n random letters: valid UTF-8 for a text message.
func payload(n int) []byte {
	p := make([]byte, n)
	rand.Read(p)
	for i := range p {
		p[i] = 'a' + p[i]%26
	}
	return p
}

// runIdle opens cfg.Connections connections to /upgrade, at most
// cfg.Concurrency being opened at once, and holds them until cfg.Duration
// has passed since the start. It samples the server's /stats before the
// first opens and once all have opened (after a short settling time), and
// reports the difference per connection. A connection that ends before the
// hold does is an error (dropped).
func (l *load) runIdle(ctx context.Context, warn io.Writer) *summary {
	begin := time.Now()
	holdCtx, cancel := context.WithDeadline(ctx, begin.Add(l.cfg.Duration))
	defer cancel()
	before, errBefore := l.serverStats(ctx)
	if errBefore != nil {
		fmt.Fprintf(warn, "baseline: no server stats: %v\n", errBefore)
	}

	u := l.cfg.endpoint("/upgrade", "")
	opening := make(chan struct{}, l.cfg.Concurrency)
	var opened, conns sync.WaitGroup
start:
	for range l.cfg.Connections {
		select {
		case opening <- struct{}{}:
		case <-holdCtx.Done():
			break start
		}
		opened.Add(1)
		conns.Go(func() { l.idleConn(ctx, holdCtx, u, func() { <-opening; opened.Done() }) })
	}
	opened.Wait()

	var mem *serverMemory
	// Let the server settle: the handlers have started reading.
	settle := min(time.Second, time.Until(begin.Add(l.cfg.Duration))/2)
	select {
	case <-time.After(settle):
	case <-holdCtx.Done():
	}
	if errBefore == nil && holdCtx.Err() == nil {
		held, err := l.serverStats(ctx)
		if err != nil {
			fmt.Fprintf(warn, "baseline: no server stats: %v\n", err)
		} else {
			mem = &serverMemory{Before: before, Held: held, HeldConnections: held.Connections - before.Connections}
			if n := float64(mem.HeldConnections); n > 0 {
				mem.RSSBytesPerConnection = float64(held.RSSBytes-before.RSSBytes) / n
				mem.HeapBytesPerConnection = float64(held.HeapInuse-before.HeapInuse) / n
				mem.GoroutinesPerConnection = float64(held.Goroutines-before.Goroutines) / n
			}
		}
	}
	conns.Wait()
	sum := summarize(l.stats, l.cfg, time.Since(begin))
	sum.Server = mem
	return sum
}

// idleConn opens one connection, calls opened once it is open (or failed
// to open), holds it until holdCtx ends, and records its outcome.
func (l *load) idleConn(ctx, holdCtx context.Context, url string, opened func()) {
	t := &loadstats.Timings{}
	openCtx, cancel := context.WithTimeout(holdCtx, l.cfg.Timeout)
	c, err := dial(openCtx, url, t)
	cancel()
	opened()
	if err != nil {
		switch {
		case ctx.Err() != nil: // interrupted
			l.stats.Abandoned()
		case holdCtx.Err() != nil: // still opening when the hold ended: not attempted
		default:
			l.stats.RecordConn(t, false, err)
		}
		return
	}
	defer c.CloseNow()
	// Read returns when the server or the network ends the connection, or
	// at the end of the hold (which closes the connection).
	_, _, err = c.Read(holdCtx)
	if holdCtx.Err() != nil {
		err = nil
	} else {
		err = loadstats.StageError{Stage: "idle", Err: err}
	}
	if ctx.Err() != nil {
		l.stats.Abandoned()
		return
	}
	l.stats.RecordConn(t, true, err)
}

// serverStats fetches the server's /stats.
func (l *load) serverStats(ctx context.Context) (serverStats, error) {
	var st serverStats
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.cfg.endpoint("/stats", ""), nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /stats: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("GET /stats: %w", err)
	}
	return st, nil
}

// errorCode classifies an error for the summary, as keyrelay-load does:
// timeout, mismatch, dial, close_NNNN, or the stage's name.
func errorCode(err error) string {
	stage := loadstats.Stage(err)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, loadstats.ErrMismatch):
		return "mismatch"
	case stage == "dial":
		return "dial"
	}
	if code := websocket.CloseStatus(err); code != -1 {
		return fmt.Sprintf("close_%d", code)
	}
	return stage
}
