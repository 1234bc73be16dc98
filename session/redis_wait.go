package session

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// defaultWaitTimeout is RedisConfig.WaitTimeout's default.
const defaultWaitTimeout = time.Second

// waitWarnEvery bounds how often a short WAIT is logged.
const waitWarnEvery = time.Minute

// waitReplicas is RedisConfig.WaitReplicas: the durability option.
type waitReplicas struct {
	n       int
	timeout time.Duration

	mu     sync.Mutex
	warned time.Time // guarded by mu; when a short WAIT was last logged
}

// run runs script with keys and argv and then WAIT, in one pipeline on
// one connection to the master that holds keys[0] (WAIT waits for the
// writes of its own connection), and returns the script's command. Fewer
// replicas than asked within the timeout is logged, not an error: the
// script's writes are done.
func (w *waitReplicas) run(ctx context.Context, s *RedisStore, script *redis.Script, keys []string, argv []any) (*redis.Cmd, error) {
	var node redis.Cmdable = s.client
	if s.cluster != nil {
		c, err := s.cluster.MasterForKey(ctx, keys[0])
		if err != nil {
			return nil, err
		}
		node = c
	}
	for attempt := 0; ; attempt++ {
		pipe := node.Pipeline()
		cmd := script.EvalSha(ctx, pipe, keys, argv...)
		wait := pipe.Do(ctx, "WAIT", w.n, w.timeout.Milliseconds())
		_, err := pipe.Exec(ctx)
		if err != nil && attempt == 0 && redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			if err := script.Load(ctx, s.client).Err(); err != nil {
				return nil, err
			}
			continue
		}
		if cmd.Err() != nil {
			return nil, cmd.Err()
		}
		if got, err := wait.Int64(); err != nil || got < int64(w.n) {
			w.short(s, got, err)
		}
		return cmd, nil
	}
}

// short logs, at most once every waitWarnEvery, that a WAIT ended with
// got replicas of the n asked for.
func (w *waitReplicas) short(s *RedisStore, got int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if time.Since(w.warned) < waitWarnEvery {
		return
	}
	w.warned = time.Now()
	s.log.Warn("a message was confirmed before the replicas asked for had it (WAIT timed out): a failover now could lose it", "replicas", got, "want", w.n, "timeout", w.timeout, "err", err)
}
