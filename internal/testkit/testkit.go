// Package testkit holds the helpers that several packages' test suites
// share: a clock that tests move by hand, and a Close that fails the test
// instead of hanging it. It is for tests only.
package testkit

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// Clock is a clock that moves only when told to. Its Now can be given to
// code that takes a func() time.Time. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time // guarded by mu
}

// NewClock returns a Clock showing start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock d forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// CloseAtEnd registers a cleanup that calls closeFn when the test ends and
// fails the test if it returns an error other than one matching closed
// (the error of a second Close), or if it has not returned within
// patience: a Close that deadlocks fails the test instead of hanging it.
func CloseAtEnd(tb testing.TB, closeFn func() error, closed error, patience time.Duration) {
	tb.Helper()
	tb.Cleanup(func() {
		done := make(chan error, 1)
		go func() { done <- closeFn() }()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, closed) {
				tb.Errorf("Close: %v", err)
			}
		case <-time.After(patience):
			tb.Errorf("Close did not return within %v", patience)
		}
	})
}
