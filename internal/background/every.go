// Package background runs the periodic work of keyrelay's stores and
// limiters (sweeping expired rooms, renewing leases) in one way.
package background

import (
	"context"
	"time"
)

// Every runs f every interval, in a goroutine of its own, until ctx ends,
// and returns a channel that is closed once that goroutine has returned.
// The stores and limiters (their sweepers, the Redis limiter's lease
// renewals) end it on Close by cancelling ctx and then wait for the
// channel. A run of f under way when
// ctx ends is not interrupted. interval must be positive.
func Every(ctx context.Context, interval time.Duration, f func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				f()
			}
		}
	}()
	return done
}
