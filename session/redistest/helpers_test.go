package redistest_test

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Bounds of the tests' waits.
const (
	clientTimeout = 15 * time.Second // for a client to reach Redis again after a failover
	opTimeout     = 2 * time.Second  // for one command
)

// eventually calls f, with a context of opTimeout, until it returns nil,
// for up to timeout; then it fails t with f's last error.
func eventually(t *testing.T, timeout time.Duration, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || errors.Is(t.Context().Err(), context.Canceled) {
			t.Fatalf("still failing after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
