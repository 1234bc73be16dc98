package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/internal/loadstats"
	"github.com/keyrelay/keyrelay/relay/client"
)

// load runs the pairs of one configuration and gathers their figures.
type load struct {
	pool []string // relay-only: public keys (hex), from generateKeyPool
	// Static after newLoad.
	cfg config
	src *sources // every client's options

	stats  *stats
	watch  *relayWatch // nil without --metrics-url
	events *eventLog   // nil without --event-log

	// Progress counters, read by the progress line.
	started  atomic.Int64 // pairs started
	inFlight atomic.Int64

	openPerURL []atomic.Int64 // idle: connections open, by URL index; set by runIdle
}

// newLoad returns the load of cfg; opts (nil means defaults) is the base
// of every client's options.
func newLoad(cfg config, opts *client.Options) *load {
	var base client.Options
	if opts != nil {
		base = *opts
	}
	// --group modp5 is the operator's explicit choice: the clients must not
	// refuse the legacy group the load is about.
	base.AllowLegacyGroups = base.AllowLegacyGroups || cfg.group == dh.MODP5()
	return &load{cfg: cfg, src: newSources(&base, cfg.sourceAddrs), stats: newStats()}
}

// run runs the configuration's scenario and returns its summary. With
// metrics URLs, it scrapes the relays before the start, during the run and
// after the end, and adds their figures to the summary.
func (l *load) run(ctx context.Context, progress io.Writer, progressTTY bool) *summary {
	if len(l.cfg.metricsURLs) > 0 {
		l.watch = newRelayWatch(l.cfg.metricsURLs, l.cfg.urls)
		l.watch.begin(ctx, l.cfg.metricsInterval)
	}
	if l.cfg.relayOnly {
		if err := l.generateKeyPool(); err != nil {
			sum := l.stats.summary(l.cfg, 0)
			sum.Errors["key_pool"] = 1
			sum.ErrorExamples["key_pool"] = err.Error()
			return sum
		}
	}
	var sum *summary
	switch {
	case l.cfg.scenario == scenarioIdle:
		sum = l.runIdle(ctx, progress, progressTTY)
	default:
		sum = l.runPairs(ctx, progress, progressTTY)
	}
	if l.watch != nil {
		sum.Relays = l.watch.end(ctx)
	}
	return sum
}

// runPairs starts pairs until cfg.Pairs have run (or, with a rate, have
// arrived) or cfg.Duration has passed (the pairs in flight then finish),
// or ctx ends (the pairs in flight are abandoned and not counted). Without
// a rate, cfg.Concurrency pairs run at once, each starting the next when
// it ends (closed loop); with one, see runOpen. If progress is not nil, a
// live line goes to it at most once a second.
//
// The progress line is rewritten in place ("\r") when progressTTY is set,
// else each update is a line of its own.
func (l *load) runPairs(ctx context.Context, progress io.Writer, progressTTY bool) *summary {
	startCtx := ctx // when to stop starting pairs
	if l.cfg.Duration > 0 {
		var cancel context.CancelFunc
		startCtx, cancel = context.WithTimeout(ctx, l.cfg.Duration)
		defer cancel()
	}
	begin := time.Now()

	stopProgress := func() {}
	if progress != nil {
		stopProgress = l.showProgress(progress, progressTTY, begin)
	}

	var open *openLoop
	if l.cfg.rate > 0 {
		open = l.runOpen(ctx, startCtx, begin)
	} else {
		l.runClosed(ctx, startCtx)
	}
	elapsed := time.Since(begin)
	stopProgress()
	sum := l.stats.summary(l.cfg, elapsed)
	sum.OpenLoop = open
	return sum
}

// runClosed runs cfg.Concurrency workers, each running one pair after
// another until startCtx ends or cfg.Pairs have started.
func (l *load) runClosed(ctx, startCtx context.Context) {
	var next atomic.Int64 // index of the next pair
	var wg sync.WaitGroup
	for range l.cfg.Concurrency {
		wg.Go(func() {
			for startCtx.Err() == nil {
				i := next.Add(1) - 1
				if l.cfg.Pairs > 0 && i >= int64(l.cfg.Pairs) {
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
}

// openLoop reports an open-loop run's arrivals.
type openLoop struct {
	Rate      float64 `json:"rate"`     // arrivals per second asked for (--rate)
	Arrivals  int64   `json:"arrivals"` // arrivals due during the run: started + missed
	Started   int64   `json:"started"`
	Missed    int64   `json:"missed_arrivals"` // found --concurrency pairs in flight: not started
	Window    float64 `json:"arrival_window_seconds"`
	StartRate float64 `json:"achieved_start_rate"` // started / window
}

// runOpen starts a pair at every arrival, rate arrivals per second evenly
// spaced from begin, until startCtx ends or cfg.Pairs arrivals have come,
// then waits for the pairs in flight. An arrival that finds cfg.Concurrency
// pairs in flight is missed: not started, counted. Arrivals keep to their
// schedule: if the loop falls behind (a pause), the overdue ones come at
// once, so that the offered load does not depend on the relay's speed.
//
// The arrival window runs from begin to the time the next arrival would
// have been due (or to the end, if later): the achieved start rate is the
// pairs started over it.
func (l *load) runOpen(ctx, startCtx context.Context, begin time.Time) *openLoop {
	o := &openLoop{Rate: l.cfg.rate}
	due := func(k int64) time.Time {
		return begin.Add(time.Duration(float64(k) * float64(time.Second) / l.cfg.rate))
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	var wg sync.WaitGroup
	var k int64 // arrivals so far
arrivals:
	for l.cfg.Pairs == 0 || k < int64(l.cfg.Pairs) {
		if d := time.Until(due(k)); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-startCtx.Done():
				break arrivals
			}
		}
		if startCtx.Err() != nil {
			break
		}
		k++
		// Only this goroutine increments inFlight, so the cap holds.
		if l.inFlight.Load() >= int64(l.cfg.Concurrency) {
			o.Missed++
			continue
		}
		i := l.started.Add(1) - 1
		o.Started++
		l.inFlight.Add(1)
		wg.Go(func() {
			l.runPair(ctx, int(i))
			l.inFlight.Add(-1)
		})
	}
	end := time.Now()
	if next := due(k); startCtx.Err() == nil && next.After(end) {
		end = next // stopped by the count: the last arrival's slot counts whole
	}
	o.Window = end.Sub(begin).Seconds()
	o.Arrivals = k
	if o.Window > 0 {
		o.StartRate = float64(o.Started) / o.Window
	}
	wg.Wait()
	return o
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
				ok, failed := l.stats.Counts()
				rate := float64(ok-lastPairs) / now.Sub(last).Seconds()
				lastPairs, last = ok, now
				var drops string
				if l.cfg.resume {
					d, r := l.stats.dropsSoFar()
					drops = fmt.Sprintf("  %d drops, %d resumed", d, r)
				}
				fmt.Fprintf(w, "%s%6.0fs  %d pairs ok  %.0f pairs/s  %d errors  %d in flight%s   %s",
					start, now.Sub(begin).Seconds(), ok, rate, failed, l.inFlight.Load(), drops, end)
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
	pctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	p := &pair{l: l, i: i, timings: &loadstats.Timings{}}
	err := p.run(pctx, i)
	if err != nil && ctx.Err() != nil {
		l.stats.Abandoned()
		return
	}
	if p.resumes > 0 {
		l.stats.resumed(p.resumes)
	}
	for _, f := range []*flow{p.ab, p.ba} {
		if f == nil {
			continue
		}
		d, lost := f.counts()
		l.stats.delivered(d)
		for _, m := range lost {
			l.events.write(event{Event: eventLost, Pair: i, Peer: f.from, Index: &m.index, Seq: m.seq, Unconfirmed: m.unconfirmed})
		}
	}
	if err != nil {
		l.events.write(event{Event: eventPairFailed, Pair: i, Code: errorCode(err), Err: loadstats.Truncate(err.Error(), loadstats.MaxExample)})
	}
	l.stats.Record(p.timings, p.messages, err)
}

// pair is one pair's run: peers A (creates the room) and B (joins it).
type pair struct {
	l        *load
	i        int // the pair's index
	messages int // delivered, both ways
	resumes  int // churn: successful Resume calls after its planned drop

	// The messages of chat and churn (and of a script's chat steps), A to
	// B and B to A; nil until flows is called. Their senders and receivers
	// are the pair's goroutines, which have all ended when run returns.
	ab, ba *flow

	mu      sync.Mutex         // guards timings: both peers may add samples at once
	timings *loadstats.Timings // read once run has returned
}

// sample adds a latency sample.
func (p *pair) sample(metric string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timings.Add(metric, d)
}

// flows returns the pair's message flows, A to B and B to A, made on the
// first call.
func (p *pair) flows() (ab, ba *flow) {
	if p.ab == nil {
		p.ab, p.ba = newFlow("a", p.l.cfg.delayedAfter), newFlow("b", p.l.cfg.delayedAfter)
	}
	return p.ab, p.ba
}

// run connects both peers, pairs them, completes the handshake and runs
// the scenario's exchange.
func (p *pair) run(ctx context.Context, i int) error {
	if p.l.cfg.script != nil {
		return p.runScript(ctx, i, p.l.cfg.script)
	}
	urlA, urlB := p.l.urlsFor(i)
	a := p.newPeer("a", urlA, p.l.cfg.scenario == scenarioChurn && churnAction(i) == churnDrop)
	b := p.newPeer("b", urlB, false)
	defer a.close()
	defer b.close()

	var room client.Room
	err := a.connect(ctx, func(c *client.Client) error {
		t0 := time.Now()
		r, err := c.Create(ctx, p.l.cfg.group)
		if err != nil {
			return loadstats.StageError{Stage: "create", Err: err}
		}
		p.sample(metricJoin, time.Since(t0))
		room = r
		return nil
	})
	if err != nil {
		return err
	}

	// B joins; both run the handshake at once, each waiting for the other's
	// key. The handshake latency runs from B's (last) join to both
	// completions.
	var t0 time.Time
	err = b.connect(ctx, func(c *client.Client) error {
		t0 = time.Now()
		if _, err := c.Join(ctx, room.ID); err != nil {
			return loadstats.StageError{Stage: "join", Err: err}
		}
		p.sample(metricJoin, time.Since(t0))
		return nil
	})
	if err != nil {
		return err
	}
	handshake := func(ctx context.Context, pe *peer, _ int) error { return pe.handshake(ctx) }
	if p.l.cfg.relayOnly {
		handshake = func(ctx context.Context, pe *peer, k int) error { return p.l.sendPoolKey(ctx, pe.c, k) }
	}
	hctx, cancel := context.WithCancel(ctx)
	errA := make(chan error, 1)
	go func() { errA <- handshake(hctx, a, 2*i) }()
	errB := handshake(hctx, b, 2*i+1)
	if errB != nil {
		cancel()
	}
	eA := <-errA
	cancel()
	if errB != nil {
		return errB
	}
	if eA != nil {
		return eA
	}
	p.sample(metricHandshake, time.Since(t0))

	switch p.l.cfg.scenario {
	case scenarioChat:
		return p.chat(ctx, a, b, p.l.cfg.messages, p.l.cfg.size)
	case scenarioChurn:
		if err := p.chat(ctx, a, b, p.l.cfg.messages, p.l.cfg.size); err != nil {
			return err
		}
		return p.churn(ctx, i, a, b)
	}
	return nil
}

// dial connects one client of a script (no --resume).
func (p *pair) dial(ctx context.Context, url string, opts *client.Options) (*client.Client, error) {
	t0 := time.Now()
	c, err := client.Dial(ctx, url, opts)
	if err != nil {
		return nil, loadstats.StageError{Stage: "dial", Err: err}
	}
	p.sample(metricConnect, time.Since(t0))
	return c, nil
}

// chat sends n messages of size bytes each way, on the pair's flows: A
// sends, B receives and replies, A receives. Each round trip is one
// latency sample, from A's send to A's receipt; with --message-rate, A
// waits before a round trip that would exceed the rate, outside the
// sample. Every message is checked: the one due, exactly once (see flow).
// With --resume either peer may drop and resume on the way (see peer).
func (p *pair) chat(ctx context.Context, a, b *peer, n, size int) error {
	ab, ba := p.flows()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The first failure ends both loops and is the pair's error.
	var (
		once  sync.Once
		first error
	)
	fail := func(err error) {
		once.Do(func() {
			first = err
			cancel()
		})
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for range n {
			if err := b.expect(ctx, ab); err != nil {
				fail(err)
				return
			}
			if err := b.send(ctx, ba, size); err != nil {
				fail(err)
				return
			}
		}
	})
	pace := newPacer(p.l.cfg.messageRate)
	for range n {
		if err := pace.wait(ctx); err != nil {
			fail(loadstats.StageError{Stage: "send", Err: err})
			break
		}
		t0 := time.Now()
		if err := a.send(ctx, ab, size); err != nil {
			fail(err)
			break
		}
		if err := a.expect(ctx, ba); err != nil {
			fail(err)
			break
		}
		p.sample(metricRoundTrip, time.Since(t0))
		p.messages += 2
	}
	wg.Wait()
	return first
}

// errorCode classifies a pair's error for the summary: the relay's wire
// code for an *client.Error, else a short name such as "dial", "timeout",
// "disconnected" or "close_4408".
func errorCode(err error) string {
	var ce *client.Error
	if errors.As(err, &ce) {
		return string(ce.Code)
	}
	stage := loadstats.Stage(err)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, loadstats.ErrMismatch):
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
