package redistest_test

import (
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/session/redistest"
)

func TestServerStats(t *testing.T) {
	t.Parallel()
	s := redistest.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, PoolSize: 1})
	t.Cleanup(func() { rdb.Close() })
	ctx := t.Context()
	if err := rdb.Ping(ctx).Err(); err != nil { // the connection's setup
		t.Fatal(err)
	}
	cmds, cpu := s.CommandCount(t), s.CPUTime(t)
	const n = 1000
	for i := range n {
		if err := rdb.Set(ctx, fmt.Sprint("k", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Plus the INFO of the first CommandCount and of CPUTime.
	if got, want := s.CommandCount(t)-cmds, int64(n+2); got != want {
		t.Errorf("CommandCount went up by %d, want %d", got, want)
	}
	if got := s.CPUTime(t); got < cpu || got == 0 {
		t.Errorf("CPUTime = %v after %v, want more", got, cpu)
	}
}
