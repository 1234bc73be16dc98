package main

import (
	"context"
	"time"
)

// pacer spaces events to at most a rate: wait returns at once for the
// first event and then no sooner than 1/rate after the previous one was
// due. A late event does not make the next ones come faster (no catching
// up), so the rate is not exceeded. A nil *pacer never waits.
type pacer struct {
	interval time.Duration
	next     time.Time // the earliest time of the next event; zero at first
}

// newPacer returns a pacer of rate events per second, or nil (no pacing)
// if rate is 0.
func newPacer(rate float64) *pacer {
	if rate <= 0 {
		return nil
	}
	return &pacer{interval: time.Duration(float64(time.Second) / rate)}
}

// wait blocks until the next event may happen, or returns ctx's error.
func (p *pacer) wait(ctx context.Context) error {
	if p == nil {
		return ctx.Err()
	}
	base := p.next
	if d := time.Until(base); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	} else {
		base = time.Now() // on time or late: the interval counts from now
	}
	p.next = base.Add(p.interval)
	return nil
}
