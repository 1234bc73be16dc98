package limits

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/internal/background"
	"github.com/keyrelay/keyrelay/internal/redisx"
)

// RedisOptions tunes a [Redis] limiter. The zero value is ready to use:
// every zero field means the default its comment gives.
type RedisOptions struct {
	// Prefix starts the name of every key the limiter uses; limiters with
	// the same Prefix on the same Redis share their counts. Zero means
	// "keyrelay:limits:". Without a hash tag ("{…}") in it, each IP's
	// and each room's keys carry the IP or room as hash tag, which
	// spreads them over a Cluster; with one, every key lies in the
	// prefix's slot.
	Prefix string
	// Lease is how long a connection counts without being renewed: the
	// connections of an instance that crashed stop counting within one
	// Lease (rounded up to a millisecond). Zero (or negative) means 1
	// minute.
	Lease time.Duration
	// RenewInterval is how often the limiter renews the leases of the
	// connections it holds, in one pipelined round trip for all of them.
	// Zero, negative or not below Lease means Lease/3.
	RenewInterval time.Duration
	// Logger receives the failures of background work (renewals and
	// releases, which have no caller to return them to). Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Defaults for the zero fields of RedisOptions.
const (
	DefaultRedisPrefix = "keyrelay:limits:"
	DefaultLease       = time.Minute
)

// releaseTimeout bounds the Redis call of a release function, which has
// no context: past it, the connection stops counting when its lease
// expires instead.
const releaseTimeout = 5 * time.Second

// maxRenewIDs bounds the connection IDs in one renewal script (Lua's
// unpack has a limit); an IP with more is renewed in several.
const maxRenewIDs = 512

// Redis is the limiter kept in Redis (or a Sentinel set, or a Cluster).
// Every relay instance sharing the Redis and the prefix enforces one
// budget per IP and per room, whichever instance a client reaches.
//
// Each call is one round trip, one Lua script. Scripts read the Redis server's clock (TIME),
// never the instance's, so instances whose clocks differ agree. Windows
// and leases are rounded up to a millisecond; Redis 5 or later is
// required (scripts that write after reading TIME). Every key expires: a
// counter when both its windows are past, a key record KeyReuseWindow
// after its last use, a connection set with its last lease; once traffic
// stops, nothing is left.
//
// Key layout, after the prefix P:
//
//	P conn:{ip}   sorted set: connection IDs scored by lease expiry (ms)
//	P ip:{ip}            hash b, c, p: JoinIP's counter of the IP (window
//	                     number, current and previous counts)
//	P room:{id}:source   hash b, c, p: RoomAttempt's counter of the room
//	                     and the source (an IP, or an IPv6 /64)
//	P rooms:{source}     hash b, c, p: CreateRoom's counter of the source
//	P key:hex            string: hex(SHA-256(room ID)); hex is
//	                     hex(SHA-256(key))
//
// A connection is a member of its IP's sorted set, under a random ID,
// scored by when its lease ends. Connect counts the unexpired members only
// (removing the others) and adds one in the same script. One goroutine per
// limiter renews the leases of every connection it holds, every
// RedisOptions.RenewInterval, in one pipeline with one script per IP; a
// renewal also puts back connections that Redis lost (a restart without
// persistence), since they are still open. A release removes its member
// before it returns, waiting first for a renewal under way that includes
// it, which would put it back. The connections of a limiter that stops
// without releasing (its process crashed) stop counting when their leases
// end.
//
// When Redis cannot be reached, calls return an error wrapping
// ErrUnavailable, no later than their context's deadline if the client has
// ContextTimeoutEnabled (when the context ends first, the error wraps both
// ErrUnavailable and the context's error); nothing needs restarting once
// Redis is back. A failed renewal or release is logged: such connections may stop
// counting early (a lease that ended meanwhile is renewed, and counts
// again, at the next renewal) or count until their lease ends. A call
// whose reply was lost may have counted: an attempt or create counts until its
// window passes, a connection until its lease ends.
//
// Create one with [NewRedis]; the zero Redis is not usable.
type Redis struct {
	// Static after construction.
	client     redis.UniversalClient
	lim        limits
	prefix     string
	lease      time.Duration // whole milliseconds
	renewEvery time.Duration
	log        *slog.Logger
	idPrefix   string             // random, so that IDs differ across limiters
	bg         context.Context    // ends with Close; for renewals
	stop       context.CancelFunc // ends bg
	renewed    <-chan struct{}    // closed by the renewer when it returns

	nextID atomic.Uint64 // numbers the connection IDs
	closed atomic.Bool

	mu   sync.Mutex
	held map[string]map[*redisConn]struct{} // guarded by mu; live connections by IP
	// renewal is closed when the renewal under way, if any, is done and
	// has removed the connections released meanwhile. Guarded by mu.
	renewal chan struct{}
}

// redisConn is a connection a Redis limiter holds.
type redisConn struct {
	ip, id string
	// Guarded by Redis.mu.
	released bool // its release function was called
	renewing bool // a renewal that includes it is under way
}

// NewRedis returns a Redis limiter enforcing cfg on client, tuned by o
// (whose zero value takes every default). It uses client but does not own
// it: Close leaves it open, and whoever made it closes it after closing the
// limiter. The client should have ContextTimeoutEnabled set, so that calls
// give up at their context's deadline, and MaxRetries -1, so that no
// script runs twice (internal/redisx.NewClient's clients have both). It
// does not contact Redis. It returns an error if client is nil. Call Close
// to stop renewing the leases of its connections.
func NewRedis(client redis.UniversalClient, cfg Config, o RedisOptions) (*Redis, error) {
	if client == nil {
		return nil, errors.New("limits: NewRedis: nil client")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultRedisPrefix
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	o.Lease = time.Duration(ms(o.Lease)) * time.Millisecond
	if o.RenewInterval <= 0 || o.RenewInterval >= o.Lease {
		o.RenewInterval = o.Lease / 3
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	bg, stop := context.WithCancel(context.Background())
	r := &Redis{
		client:     client,
		lim:        resolve(cfg),
		prefix:     o.Prefix,
		lease:      o.Lease,
		renewEvery: o.RenewInterval,
		log:        o.Logger,
		idPrefix:   rand.Text() + ":",
		bg:         bg,
		stop:       stop,
		held:       make(map[string]map[*redisConn]struct{}),
	}
	r.renewed = background.Every(bg, r.renewEvery, r.renewOnce)
	return r, nil
}

// Key names; see the Redis type's documentation.
func (r *Redis) connKey(ip string) string { return r.prefix + "conn:{" + ip + "}" }
func (r *Redis) ipKey(ip string) string   { return r.prefix + "ip:{" + ip + "}" }
func (r *Redis) roomKey(room, src string) string {
	return r.prefix + "room:{" + room + "}:" + src
}
func (r *Redis) roomsKey(src string) string { return r.prefix + "rooms:{" + src + "}" }
func (r *Redis) keyKey(key string) string {
	d := digest(key)
	return r.prefix + "key:" + hex.EncodeToString(d[:])
}

// ms returns d in whole milliseconds, rounded up, at least 1.
func ms(d time.Duration) int64 {
	return max(int64((d+time.Millisecond-1)/time.Millisecond), 1)
}

// redisLua holds the limiter's Lua: lib.lua (shared helpers) and one
// script per decision.
//
//go:embed redis/*.lua
var redisLua embed.FS

// The limiter's decisions, one script each (redisx's prelude, lib.lua,
// then the script's own file), so that each is atomic in Redis.
var (
	scriptConnect = redisx.LoadScript(redisLua, "redis", "connect")
	scriptRenew   = redisx.LoadScript(redisLua, "redis", "renew")
	scriptWindow  = redisx.LoadScript(redisLua, "redis", "window")
	scriptUseKey  = redisx.LoadScript(redisLua, "redis", "usekey")
)

// Connect counts a connection from ip and returns its release function,
// which returns once the connection is removed from Redis: at once, or
// after the lease renewal under way (which takes at most a second or the
// renewal interval, whichever is longer), and within 5 s more; past that
// (Redis unreachable), the connection counts until its lease ends. It
// returns ErrConnLimit if ip has MaxConnsPerIP connections open on all the
// limiters sharing the Redis and prefix, an error wrapping ErrUnavailable,
// or ErrClosed after Close.
func (r *Redis) Connect(ctx context.Context, ip string) (func(), error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	if r.lim.conns == 0 {
		return func() {}, nil
	}
	c := &redisConn{ip: ip, id: r.idPrefix + strconv.FormatUint(r.nextID.Add(1), 36)}
	ok, err := r.runOne(ctx, "connect", scriptConnect, r.connKey(ip), r.lim.conns, r.lease.Milliseconds(), c.id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrConnLimit
	}
	r.mu.Lock()
	set := r.held[ip]
	if set == nil {
		set = make(map[*redisConn]struct{})
		r.held[ip] = set
	}
	set[c] = struct{}{}
	r.mu.Unlock()
	return func() { r.release(c) }, nil
}

// release stops counting c, the first time it is called, and returns
// once c is removed from Redis (or that failed). If a renewal that
// includes c is under way, the renewer removes c once it is done, lest
// the renewal put it back, and release waits for that.
func (r *Redis) release(c *redisConn) {
	r.mu.Lock()
	if c.released {
		r.mu.Unlock()
		return
	}
	c.released = true
	if c.renewing {
		done := r.renewal
		r.mu.Unlock()
		<-done
		return
	}
	r.dropLocked(c)
	r.mu.Unlock()
	r.forget(c)
}

// dropLocked removes c from r.held. r.mu must be held.
func (r *Redis) dropLocked(c *redisConn) {
	set := r.held[c.ip]
	delete(set, c)
	if len(set) == 0 {
		delete(r.held, c.ip)
	}
}

// forget removes conns from Redis, in one pipeline. On failure their
// leases end them.
func (r *Redis) forget(conns ...*redisConn) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	pipe := r.client.Pipeline()
	for _, c := range conns {
		pipe.ZRem(ctx, r.connKey(c.ip), c.id)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		r.log.Warn("limits: releasing connections failed; they count until their lease ends",
			"conns", len(conns), "lease", r.lease, "err", err)
	}
}

// JoinIP counts a create, join or resume by ip. It returns ErrJoinRate
// (see the package documentation), counted over all the limiters sharing
// the Redis and prefix, an error wrapping ErrUnavailable, or ErrClosed
// after Close.
func (r *Redis) JoinIP(ctx context.Context, ip string) error {
	return r.count(ctx, "join", r.ipKey(ip), r.lim.joinsIP, r.lim.joinWindow, ErrJoinRate)
}

// RoomAttempt counts an attempt on room by ip's source. It returns
// ErrRoomAttempts (see the package documentation), counted over all the
// limiters sharing the Redis and prefix, an error wrapping
// ErrUnavailable, or ErrClosed after Close.
func (r *Redis) RoomAttempt(ctx context.Context, ip, room string) error {
	return r.count(ctx, "room attempt", r.roomKey(room, source(ip)), r.lim.joinsRoom, r.lim.roomWindow, ErrRoomAttempts)
}

// CreateRoom counts a room created by ip's source. It returns
// ErrRoomsPerIP (see the package documentation), counted over all the
// limiters sharing the Redis and prefix, an error wrapping
// ErrUnavailable, or ErrClosed after Close.
func (r *Redis) CreateRoom(ctx context.Context, ip string) error {
	return r.count(ctx, "create room", r.roomsKey(source(ip)), r.lim.rooms, r.lim.roomsWin, ErrRoomsPerIP)
}

// count counts an attempt on the sliding-window counter key (window.lua),
// and returns refused if it refuses it; a limit of 0 is off.
func (r *Redis) count(ctx context.Context, op, key string, limit int, window time.Duration, refused error) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if limit == 0 {
		return nil
	}
	ok, err := r.runOne(ctx, op, scriptWindow, key, limit, ms(window))
	if err != nil {
		return err
	}
	if !ok {
		return refused
	}
	return nil
}

// UseKey records that key is used in room. It returns ErrKeyReused (see
// the package documentation), over all the limiters sharing the Redis and
// prefix, an error wrapping ErrUnavailable, or ErrClosed after Close.
func (r *Redis) UseKey(ctx context.Context, key, room string) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if r.lim.keyWindow == 0 {
		return nil
	}
	d := digest(room)
	ok, err := r.runOne(ctx, "usekey", scriptUseKey, r.keyKey(key), hex.EncodeToString(d[:]), ms(r.lim.keyWindow))
	if err != nil {
		return err
	}
	if !ok {
		return ErrKeyReused
	}
	return nil
}

// Close stops renewing the leases of the limiter's connections, which then
// count until their leases end unless released (the relay releases them
// before it closes the limiter). It leaves the client open. Every method,
// Close included, returns ErrClosed afterwards; release functions may
// still be called and still remove their connections.
func (r *Redis) Close() error {
	if !r.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	r.stop()
	<-r.renewed
	return nil
}

// renewOnce, run every r.renewEvery until Close, renews the leases of
// every connection the limiter holds, in one pipeline, and then removes
// from Redis the connections released meanwhile.
func (r *Redis) renewOnce() {
	done := make(chan struct{})
	defer close(done)
	r.mu.Lock()
	r.renewal = done
	var calls []scriptCall
	var batch []*redisConn
	for ip, set := range r.held {
		args := []any{r.lease.Milliseconds()}
		for c := range set {
			c.renewing = true
			batch = append(batch, c)
			args = append(args, c.id)
			if len(args) == maxRenewIDs+1 {
				calls = append(calls, scriptCall{scriptRenew, r.connKey(ip), args})
				args = []any{r.lease.Milliseconds()}
			}
		}
		if len(args) > 1 {
			calls = append(calls, scriptCall{scriptRenew, r.connKey(ip), args})
		}
	}
	r.mu.Unlock()
	if len(calls) == 0 {
		return
	}
	// A renewal may take up to a renewal interval, at least a second
	// (short intervals are for tests), but no longer than a lease.
	ctx, cancel := context.WithTimeout(r.bg, min(max(r.renewEvery, time.Second), r.lease))
	_, err := r.runAll(ctx, "renew", calls)
	cancel()
	if err != nil && r.bg.Err() == nil {
		r.log.Warn("limits: renewing connection leases failed; retrying at the next renewal",
			"conns", len(batch), "lease", r.lease, "err", err)
	}
	var gone []*redisConn
	r.mu.Lock()
	for _, c := range batch {
		c.renewing = false
		if c.released {
			r.dropLocked(c)
			gone = append(gone, c)
		}
	}
	r.mu.Unlock()
	if len(gone) > 0 {
		r.forget(gone...)
	}
}

// scriptCall is one script run with one key.
type scriptCall struct {
	script *redis.Script
	key    string
	args   []any
}

// runOne runs script on key with args and reports whether it returned 1.
func (r *Redis) runOne(ctx context.Context, op string, script *redis.Script, key string, args ...any) (bool, error) {
	v, err := script.Run(ctx, r.client, []string{key}, args...).Int64()
	if err != nil {
		return false, r.backendErr(ctx, op, err)
	}
	return v == 1, nil
}

// runAll runs calls in one pipeline (a second one for the scripts Redis
// had not cached, once loaded) and reports, for each, whether it returned
// 1.
func (r *Redis) runAll(ctx context.Context, op string, calls []scriptCall) ([]bool, error) {
	cmds := make([]*redis.Cmd, len(calls))
	todo := make([]int, len(calls))
	for i := range todo {
		todo[i] = i
	}
	for attempt := 0; ; attempt++ {
		pipe := r.client.Pipeline()
		for _, i := range todo {
			c := calls[i]
			cmds[i] = c.script.EvalSha(ctx, pipe, []string{c.key}, c.args...)
		}
		pipe.Exec(ctx) // the errors are the commands'
		var missing []int
		for _, i := range todo {
			if redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
				missing = append(missing, i)
			}
		}
		if len(missing) == 0 || attempt > 0 {
			break
		}
		// Not run: load the scripts (on every node of a Cluster) and run
		// those calls again.
		loaded := make(map[*redis.Script]bool)
		for _, i := range missing {
			s := calls[i].script
			if loaded[s] {
				continue
			}
			loaded[s] = true
			if err := s.Load(ctx, r.client).Err(); err != nil {
				return nil, r.backendErr(ctx, op, err)
			}
		}
		todo = missing
	}
	ok := make([]bool, len(calls))
	for i, cmd := range cmds {
		v, err := cmd.Int64()
		if err != nil {
			return nil, r.backendErr(ctx, op, err)
		}
		ok[i] = v == 1
	}
	return ok, nil
}

// backendErr returns the error for a Redis call of operation op, made
// under ctx, that failed with err: ErrClosed after Close; an error wrapping
// ErrUnavailable and err if Redis could not be reached, or answered that
// it cannot serve now, and wrapping ctx's error too if ctx ended first;
// otherwise err, wrapped (a bug). See redisx.Wrap.
func (r *Redis) backendErr(ctx context.Context, op string, err error) error {
	if r.closed.Load() {
		return ErrClosed
	}
	return redisx.Wrap(ctx, "redis "+op, ErrUnavailable, err)
}
