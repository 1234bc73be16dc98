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

// waitPause is how long the store does not wait on a master whose last
// WAIT ended short: a master without its replicas (one promoted by a
// failover, before a replica is added back) would otherwise hold every
// message for the whole timeout.
const waitPause = 10 * time.Second

// waitReplicas is RedisConfig.WaitReplicas: the durability option.
type waitReplicas struct {
	n       int
	timeout time.Duration

	mu     sync.Mutex
	warned time.Time            // guarded by mu; when a short WAIT was last logged
	paused map[string]time.Time // guarded by mu; by master address: no WAIT until then
}

// run runs script with keys and argv and then WAIT, in one pipeline on
// one connection to the master that holds keys[0] (WAIT waits for the
// writes of its own connection), and returns the script's command. Fewer
// replicas than asked within the timeout is logged, not an error: the
// script's writes are done; and that master is not waited on for
// waitPause, so that a master short of replicas delays one message in
// waitPause by the timeout, not every one.
func (w *waitReplicas) run(ctx context.Context, s *RedisStore, script *redis.Script, keys []string, argv []any) (*redis.Cmd, error) {
	var node redis.Cmdable = s.client
	addr := ""
	if s.cluster != nil {
		c, err := s.cluster.MasterForKey(ctx, keys[0])
		if err != nil {
			return nil, err
		}
		node, addr = c, c.Options().Addr
	}
	if w.isPaused(addr) {
		cmd := script.Run(ctx, node, keys, argv...)
		return cmd, cmd.Err()
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
			w.short(s, addr, got, err)
		}
		return cmd, nil
	}
}

// isPaused reports whether the master at addr is not to be waited on now.
func (w *waitReplicas) isPaused(addr string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return time.Now().Before(w.paused[addr])
}

// short pauses waiting on the master at addr for waitPause, and logs, at
// most once every waitWarnEvery, that a WAIT ended with got replicas of
// the n asked for.
func (w *waitReplicas) short(s *RedisStore, addr string, got int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.paused == nil {
		w.paused = make(map[string]time.Time)
	}
	now := time.Now()
	w.paused[addr] = now.Add(waitPause)
	if now.Sub(w.warned) < waitWarnEvery {
		return
	}
	w.warned = now
	s.log.Warn("messages are confirmed before the replicas asked for have them (WAIT timed out): a failover now could lose them; the store waits on this master again in 10 s", "replicas", got, "want", w.n, "timeout", w.timeout, "err", err)
}
