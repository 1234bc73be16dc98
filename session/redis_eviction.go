package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/internal/redisx"
)

// ErrEvictingRedis is wrapped by the errors of NewRedisStore and Ready
// when Redis's maxmemory-policy is not noeviction: a full Redis would
// evict rooms and confirmed messages. Fix it on the Redis server with
// CONFIG SET maxmemory-policy noeviction (and in its configuration file),
// or set RedisConfig.AllowEviction to run with a warning instead.
var ErrEvictingRedis = errors.New("session: redis maxmemory-policy evicts keys")

// noEviction is the one maxmemory-policy under which Redis never drops the
// store's keys.
const noEviction = "noeviction"

// defaultPolicyCheckInterval is RedisConfig.PolicyCheckInterval's default.
const defaultPolicyCheckInterval = 10 * time.Second

// policyCheck is what the store knows of Redis's maxmemory-policy, read at
// start and by the sweeper.
type policyCheck struct {
	// Static after construction.
	allow bool          // RedisConfig.AllowEviction
	every time.Duration // RedisConfig.PolicyCheckInterval
	log   *slog.Logger

	mu      sync.Mutex
	policy  string    // guarded by mu; the last policy read, "" if none could be
	last    time.Time // guarded by mu; when the last check ran
	warned  bool      // guarded by mu; "cannot read the policy" was logged
	refused bool      // guarded by mu; the policy evicts and allow is false
}

// evicting returns the evicting policy that makes Ready fail, or "".
func (p *policyCheck) evicting() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refused {
		return p.policy
	}
	return ""
}

// start checks the policy once, when the store is made: an evicting policy
// is an error wrapping ErrEvictingRedis unless p.allow, in which case it is
// a warning; a policy that cannot be read (CONFIG and INFO refused) is a
// warning. Errors wrapping ErrUnavailable mean Redis could not be reached.
func (p *policyCheck) start(ctx context.Context, client redis.UniversalClient) error {
	policy, err := readEvictionPolicy(ctx, client)
	if err != nil && !errors.Is(err, errPolicyUnreadable) {
		return fmt.Errorf("session: redis maxmemory-policy: %w: %w", ErrUnavailable, err)
	}
	if policy != "" && policy != noEviction && !p.allow {
		return fmt.Errorf("%w: Redis's maxmemory-policy is %q: when full, it would drop rooms and messages the relay has confirmed; fix it with CONFIG SET maxmemory-policy noeviction (and in redis.conf, so that it survives a restart), or allow eviction explicitly to run with a warning", ErrEvictingRedis, policy)
	}
	p.record(policy, err)
	return nil
}

// due reports whether the sweeper should check the policy now.
func (p *policyCheck) due(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return now.Sub(p.last) >= p.every
}

// check reads the policy again and logs a change: to an evicting policy
// at error level (Ready then fails, unless p.allow: a warning), back to
// noeviction at info level. Redis being unreachable changes nothing:
// Ready reports that by itself.
func (p *policyCheck) check(ctx context.Context, client redis.UniversalClient) {
	policy, err := readEvictionPolicy(ctx, client)
	if err != nil && !errors.Is(err, errPolicyUnreadable) {
		p.mu.Lock()
		p.last = time.Now()
		p.mu.Unlock()
		return
	}
	p.record(policy, err)
}

// record stores the result of a check, logging what changed. err is nil
// or wraps errPolicyUnreadable.
func (p *policyCheck) record(policy string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	first := p.last.IsZero()
	p.last = time.Now()
	if err != nil {
		if !p.warned {
			p.warned = true
			p.log.Warn("cannot read Redis's maxmemory-policy: make sure it is noeviction, or Redis may drop rooms and confirmed messages when full", "err", err)
		}
		return
	}
	if policy == p.policy {
		return
	}
	was := p.policy
	p.policy = policy
	p.refused = false
	switch {
	case policy == noEviction:
		if !first {
			p.log.Info("Redis's maxmemory-policy is noeviction again", "was", was)
		}
	case p.allow:
		p.log.Warn("Redis's maxmemory-policy evicts keys, allowed by configuration: when full, Redis drops rooms and confirmed messages (their members get messages_lost); set it to noeviction", "maxmemory_policy", policy)
	default:
		p.refused = true
		p.log.Error("Redis's maxmemory-policy changed to one that evicts keys: when full, Redis drops rooms and confirmed messages; not ready until it is noeviction again (CONFIG SET maxmemory-policy noeviction)", "maxmemory_policy", policy, "was", was)
	}
}

// errPolicyUnreadable: Redis answered, but neither CONFIG GET nor INFO
// memory told its maxmemory-policy (a managed Redis that refuses them).
var errPolicyUnreadable = errors.New("maxmemory-policy unreadable")

// readEvictionPolicy returns Redis's maxmemory-policy: from CONFIG GET, or,
// where that is refused (managed Redis), from INFO memory. On a Cluster it
// asks every master and returns an evicting policy if any has one. It
// returns an error wrapping errPolicyUnreadable if Redis answered both
// with errors or without the policy, and another error if Redis could not
// be reached.
func readEvictionPolicy(ctx context.Context, client redis.UniversalClient) (string, error) {
	cc, ok := client.(*redis.ClusterClient)
	if !ok {
		return nodeEvictionPolicy(ctx, client)
	}
	var mu sync.Mutex
	var policy string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		p, err := nodeEvictionPolicy(ctx, c)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if policy == "" || p != noEviction {
			policy = p
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return policy, nil
}

// nodeEvictionPolicy is readEvictionPolicy for one server.
func nodeEvictionPolicy(ctx context.Context, c redis.Cmdable) (string, error) {
	cfg, cerr := c.ConfigGet(ctx, "maxmemory-policy").Result()
	switch {
	case cerr == nil && cfg["maxmemory-policy"] != "":
		return cfg["maxmemory-policy"], nil
	case cerr == nil:
		cerr = errors.New("no maxmemory-policy in the reply")
	case !refused(cerr):
		return "", cerr
	}
	info, ierr := c.Info(ctx, "memory").Result()
	switch {
	case ierr == nil:
		for line := range strings.Lines(info) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "maxmemory_policy:"); ok && v != "" {
				return v, nil
			}
		}
		ierr = errors.New("no maxmemory_policy in the reply")
	case !refused(ierr):
		return "", ierr
	}
	return "", fmt.Errorf("%w: CONFIG GET: %v; INFO memory: %v", errPolicyUnreadable, cerr, ierr)
}

// refused reports whether err is Redis's refusal of a command (an error
// reply that does not mean "not now").
func refused(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && !redisx.IsTransient(err)
}
