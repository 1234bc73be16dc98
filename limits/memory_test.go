package limits_test

import (
	"testing"

	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/limits/limitstest"
)

func newMemory(tb testing.TB, cfg limits.Config) limits.Limiter {
	return limits.NewMemory(cfg)
}

func TestMemory(t *testing.T) {
	t.Parallel()
	limitstest.Run(t, newMemory)
}

func BenchmarkMemory(b *testing.B) {
	limitstest.Benchmark(b, newMemory)
}
