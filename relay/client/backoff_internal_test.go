package client

import (
	"testing"
	"time"
)

// TestResumeBackoff: the waits between Resume's attempts double from
// 100 ms up to 5 s, each within ±20%, and vary.
func TestResumeBackoff(t *testing.T) {
	for k, base := range []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000} {
		base *= time.Millisecond
		lo, hi := base*8/10, base*12/10
		seen := map[time.Duration]bool{}
		for range 50 {
			d := resumeBackoff(k + 1)
			if d < lo || d > hi {
				t.Fatalf("resumeBackoff(%d) = %v, want %v ±20%%", k+1, d, base)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("resumeBackoff(%d): %d distinct waits in 50, want jitter", k+1, len(seen))
		}
	}
	if d := resumeBackoff(1000); d > ResumeBackoffMax*12/10 {
		t.Errorf("resumeBackoff(1000) = %v: overflowed past the cap", d)
	}
}
