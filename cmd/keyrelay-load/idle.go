package main

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"
)

// runIdle opens cfg.connections connections, at most cfg.concurrency being
// opened at once, each of which creates a room of its own, and holds them
// until cfg.duration has passed since the start, reading events so that
// the client answers the relay's keepalive pings. A connection that the
// relay or the network ends before then is an error (close_NNNN with the
// relay's close code, or disconnected). Connections not started when the
// duration ends, or still opening then, are not counted; if ctx ends first, the open ones are
// abandoned and not counted.
func (l *load) runIdle(ctx context.Context, progress io.Writer, progressTTY bool) *summary {
	begin := time.Now()
	holdCtx, cancel := context.WithDeadline(ctx, begin.Add(l.cfg.duration))
	defer cancel()

	stopProgress := func() {}
	if progress != nil {
		stopProgress = l.showProgress(progress, progressTTY, begin)
	}

	opening := make(chan struct{}, l.cfg.concurrency)
	var wg sync.WaitGroup
start:
	for i := range l.cfg.connections {
		select {
		case opening <- struct{}{}:
		case <-holdCtx.Done():
			break start
		}
		l.started.Add(1)
		wg.Go(func() { l.runIdleConn(ctx, holdCtx, i, func() { <-opening }) })
	}
	wg.Wait()
	elapsed := time.Since(begin)
	stopProgress()
	return l.stats.summary(l.cfg, elapsed)
}

// runIdleConn opens idle connection i, calls opened once it is open (or
// failed to), holds it until holdCtx ends, and records its outcome.
func (l *load) runIdleConn(ctx, holdCtx context.Context, i int, opened func()) {
	p := &pair{l: l, timings: &timings{}}
	openCtx, cancel := context.WithTimeout(holdCtx, l.cfg.timeout)
	c, err := p.dial(openCtx, l.cfg.urls[i%len(l.cfg.urls)], l.opts)
	if err == nil {
		t0 := time.Now()
		if _, err = c.Create(openCtx, l.cfg.group); err != nil {
			err = stageError{"create", err}
		} else {
			p.timings.add(metricJoin, time.Since(t0))
		}
	}
	cancel()
	opened()
	if c != nil {
		defer c.Close()
	}
	if err != nil {
		switch {
		case ctx.Err() != nil: // interrupted
			l.stats.abandoned()
			return
		case holdCtx.Err() != nil: // still opening when the duration ended: not attempted
			return
		}
		l.stats.recordConn(p.timings, false, err)
		return
	}

	l.inFlight.Add(1)
	defer l.inFlight.Add(-1)
	// Next returns only when something arrives, which nothing should in
	// a room of one, or when the connection ends, or at the end of the hold.
	for {
		_, err = c.Next(holdCtx)
		if err == nil {
			continue
		}
		if holdCtx.Err() != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			err = nil
		} else {
			err = stageError{"idle", err}
		}
		break
	}
	if ctx.Err() != nil {
		l.stats.abandoned()
		return
	}
	l.stats.recordConn(p.timings, true, err)
}
