package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/internal/background"
	"github.com/keyrelay/keyrelay/internal/redisx"
)

// RedisConfig configures a [RedisStore]. Set exactly one of URL and Client.
type RedisConfig struct {
	// URL locates Redis:
	//
	//	redis://[user:password@]host:port[/db][?options]   one server
	//	rediss://…                                          the same over TLS
	//	redis://host:port?master_name=NAME[&addr=…]         Sentinel: the
	//	                                                    addresses are the
	//	                                                    sentinels'
	//	redis://host:port?addr=host2:port2[&addr=…]         Cluster
	//	redis://host:port?cluster=true                      Cluster, one seed
	//
	// The options are go-redis's (redis.ParseURL, ParseFailoverURL,
	// ParseClusterURL), such as dial_timeout=2s or read_timeout=1s. Unless
	// the URL sets max_retries, the store turns go-redis's retries off: a
	// retried script whose reply was lost would run twice. A store made
	// from a URL respects context deadlines, owns its client and closes it
	// on Close. (The client is made by internal/redisx.NewClient, which
	// cmd/keyrelay uses too.)
	URL string
	// Client is a ready go-redis client, used instead of URL, for a client
	// that other state shares (cmd/keyrelay hands one client to the store
	// and to the admission limits) and for tests. The store uses it but
	// does not own it: Close leaves it open, and whoever made it closes it
	// after closing the store. For calls to give up at their context's
	// deadline, it should have ContextTimeoutEnabled set, and MaxRetries -1
	// so that no write runs twice; redisx.NewClient's clients have both.
	Client redis.UniversalClient
	// Prefix starts the name of every key and channel the store uses.
	// Stores with different prefixes share nothing. Zero means
	// "keyrelay:". On a Cluster the prefix must not contain a hash tag
	// ("{…}"): the store adds one per partition, to spread its keys over
	// the slots (see Partitions).
	Prefix string
	// Partitions is, on a Redis Cluster, how many partitions the rooms
	// are spread over, each in a hash slot of its own, spaced evenly over
	// the slots (redis/lib.lua names the keys): a room's keys, its
	// channel, and the counts its scripts check share its partition's
	// slot, so that every call touches one shard and the rooms spread
	// evenly over the masters, to within 1/Partitions of the load. Zero
	// means 256; at most 16384. Every instance sharing the Cluster and
	// prefix must use the same number. Elsewhere there is one partition,
	// and a value other than 0 or 1 is an error.
	Partitions int
	// SubscriberBuffer is how many events a subscription may fall behind
	// before it is ended with ErrSlowSubscriber. Zero (or negative) means
	// 256.
	SubscriberBuffer int
	// SweepInterval is how often the store checks that the rooms it has
	// subscriptions to still exist, to end those of expired rooms with
	// ErrRoomNotFound, and drops Redis subscriptions no longer used. Zero
	// (or negative) means 1 s. The sweeper also retries the disconnects
	// that Redis did not accept (see RedisStore.Disconnect), and gives
	// back the Budget's bytes of the rooms and mailboxes Redis expired
	// (see RedisStore).
	SweepInterval time.Duration
	// AllowEviction lets the store run on a Redis whose maxmemory-policy
	// is not noeviction, with a warning in the log. False (the default)
	// refuses: NewRedisStore returns an error wrapping ErrEvictingRedis,
	// and Ready fails while a later check finds such a policy. Every key
	// the store writes has a TTL, so any evicting policy (volatile-* or
	// allkeys-*) lets a full Redis drop rooms and messages the relay has
	// confirmed; the store then reports the loss (ErrMessagesLost) where it
	// can, but cannot undo it.
	AllowEviction bool
	// Budget bounds the bytes of the bodies waiting in the store, in total
	// and per source, counted in Redis across every instance sharing it
	// and the prefix: the instances share one budget, they do not get one
	// each. The zero Budget bounds nothing beyond each room's
	// MaxPendingBytes (the bytes are counted all the same, so that
	// instances configured differently agree). Its fields must not be
	// negative. Each instance applies its own Budget to the shared counts:
	// give them all the same.
	Budget Budget
	// LeaseTTL is how long this instance's lease in Redis lasts unless it
	// is renewed (every third of it, by a goroutine of its own). When an instance's
	// lease ends (it was killed, or cut off from Redis), the sweeper of any
	// other instance marks the seats its connections held disconnected,
	// publishing each member's EventLeft (ReasonDropped), within
	// SweepInterval. Zero (or negative) means 15 s.
	LeaseTTL time.Duration
	// OnLeaseLost is called, from the sweeper, when this instance finds
	// that its own lease ended before it could renew it: other instances
	// may have marked its seats disconnected, so the connections holding
	// them should be closed, for their clients to resume. The store goes
	// on under a new instance ID. Nil means nothing is called.
	OnLeaseLost func()
	// PolicyCheckInterval is how often the sweeper reads Redis's
	// maxmemory-policy again, to notice a change at run time. Zero (or
	// negative) means 10 s.
	PolicyCheckInterval time.Duration
	// WaitReplicas, if positive, makes Append wait, before it returns,
	// until that many replicas of the master holding the room have the
	// message (Redis WAIT, on the connection that stored it), for at
	// most WaitTimeout. Redis replicates asynchronously: without it, a
	// master that fails over before its replica has a message loses it,
	// though Append (and so the relay's "sent") confirmed it. With it,
	// the loss takes every replica failing too, at the cost of a
	// replication round trip per message. A WAIT that times out with
	// fewer replicas is logged (at most once a minute) and Append still
	// succeeds: the message is stored and announced, and failing the call
	// would make a client send it twice. The store then does not wait on
	// that master for 10 s, so that a master short of replicas (one just
	// promoted by a failover) delays one message in ten seconds by the
	// timeout, not every one. Zero (the default) waits for none.
	WaitReplicas int
	// WaitTimeout bounds WaitReplicas' wait. Zero (or negative) means
	// 1 s.
	WaitTimeout time.Duration
	// Logger receives the store's warnings and errors: an evicting or
	// unreadable maxmemory-policy, a disconnect that could not be
	// recorded. Nil means slog.Default().
	Logger *slog.Logger
}

// defaultRedisPrefix is RedisConfig.Prefix's default; on a Cluster it is
// wrapped in braces, a hash tag.
const defaultRedisPrefix = "keyrelay"

// NewRedisStore returns a RedisStore configured by cfg, once Redis has
// answered (within ctx). It returns an error wrapping ErrUnavailable if
// Redis cannot be reached, and an error matching no sentinel if cfg is
// invalid (neither or both of URL and Client, a URL that does not parse, a
// Cluster prefix without a hash tag, a negative Budget field) or Redis is
// older than 7.0. It returns an error wrapping ErrEvictingRedis if Redis's
// maxmemory-policy is not noeviction, unless cfg.AllowEviction. Where
// Redis refuses both CONFIG GET and INFO (some managed services), the
// policy cannot be read: the store starts and logs a warning, once. Call
// Close to release it.
func NewRedisStore(ctx context.Context, cfg RedisConfig) (*RedisStore, error) {
	client, own := cfg.Client, false
	switch {
	case cfg.Budget.PerSource < 0 || cfg.Budget.Total < 0:
		return nil, fmt.Errorf("session: redis config: Budget.PerSource and Budget.Total must be >= 0, got %d and %d", cfg.Budget.PerSource, cfg.Budget.Total)
	case cfg.WaitReplicas < 0:
		return nil, fmt.Errorf("session: redis config: WaitReplicas must be >= 0, got %d", cfg.WaitReplicas)
	case cfg.URL != "" && client != nil:
		return nil, errors.New("session: redis config: set URL or Client, not both")
	case client == nil && cfg.URL == "":
		return nil, errors.New("session: redis config: URL or Client is required")
	case client == nil:
		var err error
		if client, err = redisx.NewClient(cfg.URL); err != nil {
			return nil, fmt.Errorf("session: %w", err)
		}
		own = true
	}
	cc, cluster := client.(*redis.ClusterClient)
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = defaultRedisPrefix + ":"
	}
	parts := cfg.Partitions
	if parts == 0 {
		parts = 1
		if cluster {
			parts = defaultClusterPartitions
		}
	}
	fail := func(err error) (*RedisStore, error) {
		if own {
			client.Close()
		}
		return nil, err
	}
	switch {
	case cluster && hasHashTag(prefix):
		return fail(fmt.Errorf("session: redis config: on a Cluster, Prefix %q must not hold a hash tag: the store adds one per partition", prefix))
	case parts < 1 || parts > maxPartitions:
		return fail(fmt.Errorf("session: redis config: Partitions must be between 1 and %d, got %d", maxPartitions, cfg.Partitions))
	case !cluster && parts != 1:
		return fail(fmt.Errorf("session: redis config: Partitions is for a Redis Cluster; one Redis (or Sentinel set) has 1, got %d", cfg.Partitions))
	}
	if err := checkRedisVersion(ctx, client); err != nil {
		return fail(err)
	}
	if cfg.SubscriberBuffer <= 0 {
		cfg.SubscriberBuffer = defaultSubscriberBuffer
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = defaultSweepInterval
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = defaultWaitTimeout
	}
	if cfg.PolicyCheckInterval <= 0 {
		cfg.PolicyCheckInterval = defaultPolicyCheckInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	policy := &policyCheck{allow: cfg.AllowEviction, every: cfg.PolicyCheckInterval, log: cfg.Logger}
	if err := policy.start(ctx, client); err != nil {
		return fail(err)
	}
	bg, stop := context.WithCancel(context.Background())
	s := &RedisStore{
		client:     client,
		ownClient:  own,
		cluster:    cc,
		prefix:     prefix,
		parts:      newPartitions(prefix, parts, cluster),
		budget:     cfg.Budget,
		wait:       waitReplicas{n: cfg.WaitReplicas, timeout: cfg.WaitTimeout},
		subBuffer:  cfg.SubscriberBuffer,
		sweepEvery: cfg.SweepInterval,
		bg:         bg,
		stop:       stop,
		log:        cfg.Logger,
		policy:     policy,
		retries:    newDisconnectRetries(cfg.Logger),
		ps:         make(map[string]*redisPubSub),
		chans:      make(map[string]*redisChan),
		pongs:      make(map[string]*redisChan),
		instances:  prefix + "instances",
	}
	if cluster {
		s.mode = "cluster"
	}
	s.lease.ttl, s.lease.onLost = cfg.LeaseTTL, cfg.OnLeaseLost
	if s.lease.ttl <= 0 {
		s.lease.ttl = defaultLeaseTTL
	}
	s.setInstance(newInstanceID())
	if err := s.renewLease(ctx, true); err != nil {
		stop()
		return fail(err)
	}
	if cluster {
		// The fleet-wide bounds need a first count of the partitions.
		if _, _, _, err := s.takeCensus(ctx, 0); err != nil {
			stop()
			return fail(err)
		}
	}
	s.swept = background.Every(bg, s.sweepEvery, s.sweepOnce)
	s.leased = background.Every(bg, s.lease.ttl/3, s.renewTick)
	return s, nil
}

// hasHashTag reports whether key's slot is decided by a hash tag.
func hasHashTag(key string) bool {
	i := strings.IndexByte(key, '{')
	return i >= 0 && strings.IndexByte(key[i+1:], '}') > 0
}

// checkRedisVersion returns an error if Redis cannot be reached or is older
// than 7.0 (XTRIM MINID needs 6.2; the lease's allow-oom script flag, 7.0).
func checkRedisVersion(ctx context.Context, client redis.UniversalClient) error {
	info, err := client.Info(ctx, "server").Result()
	if err != nil {
		if redisx.IsConfig(err) {
			return fmt.Errorf("session: redis: %w", err)
		}
		return fmt.Errorf("%w: redis: %w", ErrUnavailable, err)
	}
	for line := range strings.Lines(info) {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:")
		if !ok {
			continue
		}
		major, _, _ := strings.Cut(v, ".")
		if n, err := strconv.Atoi(major); err == nil && n < 7 {
			return fmt.Errorf("session: redis %s is too old: 7.0 or later is required", v)
		}
		return nil
	}
	return nil
}
