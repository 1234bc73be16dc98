package background_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/internal/background"
)

func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var runs atomic.Int64
	done := background.Every(ctx, time.Millisecond, func() { runs.Add(1) })
	deadline := time.Now().Add(5 * time.Second)
	for runs.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d runs within 5s, want 3", runs.Load())
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("done closed before ctx ended")
	default:
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("done not closed within 5s of ctx ending")
	}
	n := runs.Load()
	time.Sleep(20 * time.Millisecond)
	if got := runs.Load(); got != n {
		t.Errorf("%d runs after done, want none", got-n)
	}
}
