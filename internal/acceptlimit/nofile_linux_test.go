package acceptlimit

import (
	"syscall"
	"testing"
)

// TestRaiseFileLimit lowers the process's soft RLIMIT_NOFILE below the
// hard limit, checks that RaiseFileLimit raises it back, and restores the
// limit as it was.
func TestRaiseFileLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	low := syscall.Rlimit{Cur: min(orig.Max-1, 512), Max: orig.Max}
	if orig.Max < 2 {
		t.Skip("hard limit too low")
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skip(err)
	}
	before, after, hard, ok, err := RaiseFileLimit()
	if !ok {
		t.Skip("RLIMIT_NOFILE is left alone outside Linux")
	}
	if err != nil {
		t.Fatal(err)
	}
	if before != low.Cur || after != orig.Max || hard != orig.Max {
		t.Errorf("RaiseFileLimit() = %d, %d, %d; want %d, %d, %d", before, after, hard, low.Cur, orig.Max, orig.Max)
	}
	var now syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now)
	if now.Cur != orig.Max {
		t.Errorf("soft limit now %d, want the hard limit %d", now.Cur, orig.Max)
	}
}
