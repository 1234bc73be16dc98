package main

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyrelay/keyrelay/internal/loadstats"
)

// runIdle opens cfg.Connections connections, at most cfg.Concurrency being
// opened at once, each of which creates a room of its own, and holds them
// until cfg.Duration has passed since the start, reading events so that
// the client answers the relay's keepalive pings. Then, with a relay
// watch, it scrapes the relays while every connection is still open, and
// releases them. A connection that the relay or the network ends before
// its release is an error (close_NNNN with the relay's close code, or
// disconnected). Connections not started when the duration ends, or still
// opening then, are not counted; if ctx ends first, the open ones are
// abandoned and not counted.
func (l *load) runIdle(ctx context.Context, progress io.Writer, progressTTY bool) *summary {
	begin := time.Now()
	holdCtx, cancel := context.WithDeadline(ctx, begin.Add(l.cfg.Duration))
	defer cancel()
	releaseCtx, release := context.WithCancel(ctx)
	defer release()
	l.openPerURL = make([]atomic.Int64, len(l.cfg.urls))
	heldDone := make(chan struct{})
	go func() {
		defer close(heldDone)
		<-holdCtx.Done()
		if l.watch != nil && ctx.Err() == nil && errors.Is(holdCtx.Err(), context.DeadlineExceeded) {
			open := make([]int64, len(l.openPerURL))
			for i := range l.openPerURL {
				open[i] = l.openPerURL[i].Load()
			}
			l.watch.held(ctx, open)
		}
		release()
	}()

	stopProgress := func() {}
	if progress != nil {
		stopProgress = l.showProgress(progress, progressTTY, begin)
	}

	opening := make(chan struct{}, l.cfg.Concurrency)
	var wg sync.WaitGroup
start:
	for i := range l.cfg.Connections {
		select {
		case opening <- struct{}{}:
		case <-holdCtx.Done():
			break start
		}
		l.started.Add(1)
		wg.Go(func() { l.runIdleConn(ctx, holdCtx, releaseCtx, i, func() { <-opening }) })
	}
	wg.Wait()
	cancel() // if every connection ended early, the hold ends now
	<-heldDone
	elapsed := time.Since(begin)
	stopProgress()
	return l.stats.summary(l.cfg, elapsed)
}

// runIdleConn opens idle connection i, calls opened once it is open (or
// failed to), holds it until releaseCtx ends, and records its outcome. It
// gives up opening when holdCtx ends.
func (l *load) runIdleConn(ctx, holdCtx, releaseCtx context.Context, i int, opened func()) {
	p := &pair{l: l, timings: &loadstats.Timings{}}
	openCtx, cancel := context.WithTimeout(holdCtx, l.cfg.Timeout)
	u := i % len(l.cfg.urls)
	c, err := p.dial(openCtx, l.cfg.urls[u], l.src.options())
	if err == nil {
		t0 := time.Now()
		if _, err = c.Create(openCtx, l.cfg.group); err != nil {
			err = loadstats.StageError{Stage: "create", Err: err}
		} else {
			p.timings.Add(metricJoin, time.Since(t0))
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
			l.stats.Abandoned()
			return
		case holdCtx.Err() != nil: // still opening when the duration ended: not attempted
			return
		}
		l.stats.RecordConn(p.timings, false, err)
		return
	}

	l.inFlight.Add(1)
	l.openPerURL[u].Add(1)
	// Next returns only when something arrives, which nothing should in
	// a room of one, or when the connection ends, or at the release.
	for {
		_, err = c.Next(releaseCtx)
		if err == nil {
			continue
		}
		if releaseCtx.Err() != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			err = nil
		} else {
			err = loadstats.StageError{Stage: "idle", Err: err}
		}
		break
	}
	l.openPerURL[u].Add(-1)
	l.inFlight.Add(-1)
	if ctx.Err() != nil {
		l.stats.Abandoned()
		return
	}
	l.stats.RecordConn(p.timings, true, err)
}
