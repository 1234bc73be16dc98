package limits_test

import (
	"testing"

	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/limits/limitstest"
)

// The limiters have the methods the suite tests, and those the relay asks
// for.
var (
	_ limitstest.Limiter = (*limits.Memory)(nil)
	_ limitstest.Limiter = (*limits.Redis)(nil)
)

func newMemory(tb testing.TB, cfg limits.Config) limitstest.Limiter {
	return limits.NewMemory(cfg)
}

func TestMemory(t *testing.T) {
	t.Parallel()
	limitstest.Run(t, newMemory)
}

func BenchmarkMemory(b *testing.B) {
	limitstest.Benchmark(b, newMemory)
}
