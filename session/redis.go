package session

import (
	"bytes"
	"context"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

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
	// Stores with different prefixes share nothing. Zero means "keyrelay:",
	// or "{keyrelay}:" on a Redis Cluster. On a Cluster the prefix must
	// contain a hash tag ("{…}"): CreateRoom counts rooms and creates one
	// in one script, so every key of the store must live in one hash slot.
	Prefix string
	// SubscriberBuffer is how many events a subscription may fall behind
	// before it is ended with ErrSlowSubscriber. Zero (or negative) means
	// 256.
	SubscriberBuffer int
	// SweepInterval is how often the store checks that the rooms it has
	// subscriptions to still exist, to end those of expired rooms with
	// ErrRoomNotFound, and drops Redis subscriptions no longer used. Zero
	// (or negative) means 1 s.
	SweepInterval time.Duration
}

// defaultRedisPrefix is RedisConfig.Prefix's default; on a Cluster it is
// wrapped in braces, a hash tag.
const defaultRedisPrefix = "keyrelay"

// Health checks of the connection that carries a store's subscriptions:
// after redisIdlePing without a message the store sends a PING, and it
// ends every subscription with ErrUnavailable if nothing arrives within
// redisPongWait after that.
const (
	redisIdlePing = time.Second
	redisPongWait = 3 * time.Second
)

// genLen is the length of a room's gen, which tells the rooms that have
// had one ID apart: its creation time on the Redis server's clock, in ms,
// as 16 decimal digits, so that a later room's gen compares greater. Each
// published event starts with its room's gen.
const genLen = 16

// maxLuaSeq is the largest sequence number the scripts handle exactly (Lua
// numbers are float64).
const maxLuaSeq = 1 << 53

// RedisStore is the [Store] kept in Redis. It serves many relay instances
// sharing one Redis (or a Sentinel set, or a Cluster): any instance can
// serve any peer of any room, what one instance publishes reaches the
// subscribers on every instance, and the messages waiting for a peer stay
// in Redis for whichever instance it resumes on.
//
// Every method that reads and changes a room runs one Lua script, which
// Redis runs atomically, so instances racing on a room can never admit a
// third member, fix two groups or hand out a sequence number twice, and
// instances racing to create rooms never exceed maxRooms. A room's keys
// carry its ID as hash tag, "{id}"; on a Cluster the prefix's hash tag,
// which comes first, puts all the store's keys in one slot (see
// RedisConfig.Prefix). Every key the store writes expires exactly when its
// room does (the index of rooms when its last room does), so an idle room
// leaves nothing behind. As in [MemoryStore], a call that succeeds counts
// as activity, except Room and Pending.
//
// All times (ExpiresAt, DisconnectedAt and the grace periods measured from
// them) come from the Redis server's clock, the one that expires keys, in
// milliseconds, so relay instances whose clocks differ still agree. Redis
// 6.2 or later is required.
//
// Events travel by Redis Pub/Sub on one channel per room. Each RedisStore
// holds one Pub/Sub connection for all its subscriptions, read by one
// goroutine that never waits for a subscriber: one that falls
// RedisConfig.SubscriberBuffer events behind is ended with
// ErrSlowSubscriber. Keyspace notifications are not needed: a sweeper
// ends the subscriptions of an expired room with ErrRoomNotFound at most
// RedisConfig.SweepInterval (plus a round trip) after it expired, and an
// event of a new room with the same ID ends them at once.
//
// When Redis cannot be reached, calls return an error wrapping
// ErrUnavailable, no later than their context's deadline (when a context
// ends first, the error wraps both ErrUnavailable and the context's
// error). Ready fails. Subscriptions end with an error wrapping
// ErrUnavailable, since events published meanwhile are lost: at once when
// the connection breaks, within 4 s (1 s idle, then 3 s for a PING's
// reply) when it goes silent. Nothing needs restarting: once Redis is
// back, new calls and new subscriptions work. A Redis that restarts
// without persistence has lost its rooms, which are then not found.
//
// Create one with [NewRedisStore]; the zero RedisStore is not usable.
type RedisStore struct {
	// Static after construction.
	client     redis.UniversalClient
	ownClient  bool // made from RedisConfig.URL, closed by Close
	prefix     string
	index      string // key of the room index
	subBuffer  int
	sweepEvery time.Duration
	bg         context.Context // ends with Close; for the reader and sweeper
	stop       context.CancelFunc
	swept      chan struct{} // closed by the sweeper when it returns
	readers    sync.WaitGroup

	closed atomic.Bool // set, under mu, by Close

	mu    sync.Mutex
	ps    *redisPubSub          // guarded by mu; nil before the first Subscribe and after a failure
	chans map[string]*redisChan // guarded by mu; by channel name
	pongs map[string]*redisChan // guarded by mu; SUBSCRIBEs awaiting their PING's reply
	seq   uint64                // guarded by mu; numbers the PINGs
}

var _ Store = (*RedisStore)(nil)

// redisPubSub is one Pub/Sub connection, its reader and its writer. The
// writer sends the SUBSCRIBEs and UNSUBSCRIBEs that ops asks for, in the
// order in which they were decided (under RedisStore.mu), so that no
// caller waits for a write: callers wait for the reply, or for their
// context.
type redisPubSub struct {
	ps       *redis.PubSub
	dead     chan struct{} // closed by kill
	killOnce sync.Once
	wake     chan struct{} // capacity 1: ops has work
	ops      []pubsubOp    // guarded by RedisStore.mu
}

// pubsubOp is a command for a redisPubSub's writer.
type pubsubOp struct {
	unsubscribe bool
	channels    []string // never empty: UNSUBSCRIBE with none means all
	ping        string   // after a SUBSCRIBE: the PING whose reply confirms it
}

// queueLocked queues op for p's writer. RedisStore.mu must be held.
func (p *redisPubSub) queueLocked(op pubsubOp) {
	p.ops = append(p.ops, op)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// kill marks p dead; a new Subscribe will open a new connection.
func (p *redisPubSub) kill() { p.killOnce.Do(func() { close(p.dead) }) }

// redisChan is a Redis channel the store is subscribed to (or subscribing
// to), and its subscribers. Guarded by RedisStore.mu.
type redisChan struct {
	room  string
	p     *redisPubSub
	ready chan struct{} // closed once Redis has processed the SUBSCRIBE
	subs  map[*redisSub]struct{}
}

// redisSub is one subscription. Its fields are guarded by RedisStore.mu;
// ch is closed exactly once, under mu, when the subscription ends.
type redisSub struct {
	ch    chan *Event
	c     *redisChan
	gen   string // the room's gen, once Subscribe has read it
	ended bool
	err   error
	stop  func() bool // unregisters the context.AfterFunc; nil until set
}

// NewRedisStore returns a RedisStore configured by cfg, once Redis has
// answered (within ctx). It returns an error wrapping ErrUnavailable if
// Redis cannot be reached, and an error matching no sentinel if cfg is
// invalid (neither or both of URL and Client, a URL that does not parse, a
// Cluster prefix without a hash tag) or Redis is older than 6.2. Call Close
// to release it.
func NewRedisStore(ctx context.Context, cfg RedisConfig) (*RedisStore, error) {
	client, own := cfg.Client, false
	switch {
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
	_, cluster := client.(*redis.ClusterClient)
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = defaultRedisPrefix + ":"
		if cluster {
			prefix = "{" + defaultRedisPrefix + "}:"
		}
	}
	fail := func(err error) (*RedisStore, error) {
		if own {
			client.Close()
		}
		return nil, err
	}
	if cluster && !hasHashTag(prefix) {
		return fail(fmt.Errorf("session: redis config: on a Cluster, Prefix %q needs a hash tag (such as \"{keyrelay}:\")", prefix))
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
	bg, stop := context.WithCancel(context.Background())
	s := &RedisStore{
		client:     client,
		ownClient:  own,
		prefix:     prefix,
		index:      prefix + "rooms",
		subBuffer:  cfg.SubscriberBuffer,
		sweepEvery: cfg.SweepInterval,
		bg:         bg,
		stop:       stop,
		swept:      make(chan struct{}),
		chans:      make(map[string]*redisChan),
		pongs:      make(map[string]*redisChan),
	}
	go s.sweep()
	return s, nil
}

// Client returns the store's go-redis client, for other state that should
// live in the same Redis (the relay's admission limits). It stays the
// store's: Close closes it if the store made it from a URL.
func (s *RedisStore) Client() redis.UniversalClient { return s.client }

// hasHashTag reports whether key's slot is decided by a hash tag.
func hasHashTag(key string) bool {
	i := strings.IndexByte(key, '{')
	return i >= 0 && strings.IndexByte(key[i+1:], '}') > 0
}

// checkRedisVersion returns an error if Redis cannot be reached or is older
// than 6.2 (XTRIM MINID).
func checkRedisVersion(ctx context.Context, client redis.UniversalClient) error {
	info, err := client.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("session: redis: %w: %w", ErrUnavailable, err)
	}
	for line := range strings.Lines(info) {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:")
		if !ok {
			continue
		}
		parts := strings.SplitN(v, ".", 3)
		if len(parts) < 2 {
			return nil
		}
		major, err1 := strconv.Atoi(parts[0])
		minor, err2 := strconv.Atoi(parts[1])
		if err1 == nil && err2 == nil && (major < 6 || major == 6 && minor < 2) {
			return fmt.Errorf("session: redis %s is too old: 6.2 or later is required", v)
		}
		return nil
	}
	return nil
}

// Key and channel names. Every one starts with the prefix; a room's carry
// its ID as hash tag.
func (s *RedisStore) roomKey(id string) string   { return s.prefix + "room:{" + id + "}" }
func (s *RedisStore) boxPrefix(id string) string { return s.prefix + "mbox:{" + id + "}:" }
func (s *RedisStore) channel(id string) string   { return s.prefix + "events:{" + id + "}" }

//go:embed redis/*.lua
var redisLua embed.FS

// The scripts: each is redisx's prelude, lib.lua, then its own file.
var (
	scriptCreate     = redisx.LoadScript(redisLua, "redis", "create")
	scriptRoom       = redisx.LoadScript(redisLua, "redis", "room")
	scriptJoin       = redisx.LoadScript(redisLua, "redis", "join")
	scriptReconnect  = redisx.LoadScript(redisLua, "redis", "reconnect")
	scriptDisconnect = redisx.LoadScript(redisLua, "redis", "disconnect")
	scriptLeave      = redisx.LoadScript(redisLua, "redis", "leave")
	scriptSetKey     = redisx.LoadScript(redisLua, "redis", "setkey")
	scriptAppend     = redisx.LoadScript(redisLua, "redis", "append")
	scriptPending    = redisx.LoadScript(redisLua, "redis", "pending")
	scriptAck        = redisx.LoadScript(redisLua, "redis", "ack")
	scriptTouch      = redisx.LoadScript(redisLua, "redis", "touch")
	scriptPublish    = redisx.LoadScript(redisLua, "redis", "publish")
	scriptRooms      = redisx.LoadScript(redisLua, "redis", "rooms")
)

// Script statuses other than "OK", and the errors they stand for.
var redisStatus = map[string]error{
	"NOTFOUND":      ErrRoomNotFound,
	"EXISTS":        ErrRoomExists,
	"TOOMANY":       ErrTooManyRooms,
	"FULL":          ErrRoomFull,
	"NOTMEMBER":     ErrNotMember,
	"BADTOKEN":      ErrBadToken,
	"RESUMEEXPIRED": ErrResumeExpired,
	"GROUPMISMATCH": ErrGroupMismatch,
	"KEYSET":        ErrKeySet,
	"MAILBOXFULL":   ErrMailboxFull,
	"DUPLICATE":     errDuplicateMember,
}

// errDuplicateMember is the script's refusal of a Join with the ID of a
// current member; Join reports it as the caller bug it is.
var errDuplicateMember = errors.New("session: member already in the room")

// run runs script on room with args after the common ones and returns its
// reply after the status "OK". A status naming an error returns that
// error.
func (s *RedisStore) run(ctx context.Context, op string, script *redis.Script, room string, args ...any) ([]string, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	argv := append([]any{room, s.boxPrefix(room)}, args...)
	v, err := script.Run(ctx, s.client, []string{s.roomKey(room), s.index}, argv...).StringSlice()
	if err != nil {
		return nil, s.backendErr(ctx, op, err)
	}
	if len(v) == 0 {
		return nil, fmt.Errorf("session: redis %s: empty reply", op)
	}
	if v[0] == "OK" {
		return v[1:], nil
	}
	if err, ok := redisStatus[v[0]]; ok {
		return nil, err
	}
	return nil, fmt.Errorf("session: redis %s: unexpected status %q", op, v[0])
}

// backendErr returns the error for a Redis call of operation op, made
// under ctx, that failed with err: ErrClosed after Close; an error wrapping
// ErrUnavailable and err if Redis could not be reached or answered that it
// cannot serve now, and wrapping ctx's error too if ctx ended first;
// otherwise (a bug: a script's error, or redis.Nil) err, wrapped. See
// redisx.Wrap.
func (s *RedisStore) backendErr(ctx context.Context, op string, err error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return redisx.Wrap(ctx, "session: redis "+op, ErrUnavailable, err)
}

// msString formats d in milliseconds for the scripts' arithmetic, up to
// nanosecond precision.
func msString(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', -1, 64)
}

// CreateRoom creates an empty room id with cfg, expiring cfg.TTL (rounded
// up to a millisecond) from now unless there is activity. Its group is
// cfg.Group ("" leaves it to the first stored key). It returns an error
// (matching no sentinel) if cfg.TTL, cfg.ResumeGrace or cfg.MaxPending is
// not positive, ErrRoomExists if a live room has the ID, ErrTooManyRooms if
// maxRooms > 0 and the store (all instances sharing its Redis and prefix)
// holds maxRooms live rooms, an error wrapping ErrUnavailable, and
// ErrClosed after Close.
func (s *RedisStore) CreateRoom(ctx context.Context, id string, cfg RoomConfig, maxRooms int) error {
	if err := validRoomConfig(cfg); err != nil {
		return err
	}
	ttlms := cfg.TTL / time.Millisecond
	if cfg.TTL%time.Millisecond != 0 {
		ttlms++
	}
	_, err := s.run(ctx, "create room", scriptCreate, id,
		int64(cfg.TTL), int64(cfg.ResumeGrace), int64(ttlms), msString(cfg.ResumeGrace),
		cfg.MaxPending, cfg.Group, maxRooms)
	return err
}

// Room returns a snapshot of room id. It does not count as activity. It
// returns ErrRoomNotFound, an error wrapping ErrUnavailable, or ErrClosed
// after Close.
func (s *RedisStore) Room(ctx context.Context, id string) (Room, error) {
	v, err := s.run(ctx, "room", scriptRoom, id)
	if err != nil {
		return Room{}, err
	}
	return decodeRoom(id, v)
}

// decodeRoom decodes a snapshot reply of the scripts (lib.lua's snapshot,
// after the status).
func decodeRoom(id string, v []string) (Room, error) {
	bad := func(what string) (Room, error) {
		return Room{}, fmt.Errorf("session: redis: malformed room %s", what)
	}
	if len(v) < 8 {
		return bad("reply")
	}
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	ttl, grace, maxp, seq, exp, n := num(v[0]), num(v[1]), num(v[2]), num(v[5]), num(v[6]), num(v[7])
	if ttl < 0 || grace < 0 || maxp < 0 || seq < 0 || exp < 0 || n < 0 || n > 2 || len(v) != 8+5*int(n) {
		return bad("fields")
	}
	r := Room{
		ID:        id,
		Config:    RoomConfig{Group: v[3], TTL: time.Duration(ttl), ResumeGrace: time.Duration(grace), MaxPending: int(maxp)},
		Group:     v[4],
		LastSeq:   uint64(seq),
		ExpiresAt: time.UnixMilli(exp),
		Members:   make([]Member, n),
	}
	for i := range r.Members {
		f := v[8+5*i:]
		m := Member{ID: f[0], PublicKey: f[2], Connected: f[3] == "1"}
		tok, err := hex.DecodeString(f[1])
		if err != nil || len(tok) != len(m.TokenHash) {
			return bad("token hash")
		}
		copy(m.TokenHash[:], tok)
		if !m.Connected {
			dat := num(f[4])
			if dat < 0 {
				return bad("DisconnectedAt")
			}
			m.DisconnectedAt = time.UnixMilli(dat)
		}
		r.Members[i] = m
	}
	return r, nil
}

// Join adds m to the room as connected, with m's ID and TokenHash; m's
// PublicKey, Connected and DisconnectedAt are ignored. Members
// disconnected for longer than the room's ResumeGrace are removed first,
// with their mailboxes. The new member inherits the messages that were
// appended while it had no peer. It returns ErrRoomNotFound, ErrRoomFull
// if two members remain, an error matching no sentinel if a member already
// has m.ID, an error wrapping ErrUnavailable, and ErrClosed after Close.
func (s *RedisStore) Join(ctx context.Context, room string, m Member) (Room, error) {
	v, err := s.run(ctx, "join", scriptJoin, room, m.ID, hex.EncodeToString(m.TokenHash[:]))
	if errors.Is(err, errDuplicateMember) {
		return Room{}, fmt.Errorf("session: join room %q: member %q is already in the room", room, m.ID)
	}
	if err != nil {
		return Room{}, err
	}
	return decodeRoom(room, v)
}

// Reconnect marks member id connected again if tokenHash matches its
// TokenHash (compared in constant time). The token is checked before the
// grace period, so a wrong token learns nothing about it. It returns
// ErrRoomNotFound, ErrNotMember, ErrBadToken, ErrResumeExpired (and removes
// the member and its mailbox) if the member was disconnected for longer
// than the room's ResumeGrace, an error wrapping ErrUnavailable, and
// ErrClosed after Close.
func (s *RedisStore) Reconnect(ctx context.Context, room, id string, tokenHash [32]byte) (Room, error) {
	v, err := s.run(ctx, "reconnect", scriptReconnect, room, id, hex.EncodeToString(tokenHash[:]))
	if err != nil {
		return Room{}, err
	}
	return decodeRoom(room, v)
}

// Disconnect marks member id disconnected now, starting its grace period.
// A member already disconnected keeps its earlier DisconnectedAt, so
// repeated calls cannot extend the grace period. It returns
// ErrRoomNotFound, ErrNotMember, an error wrapping ErrUnavailable, or
// ErrClosed after Close.
func (s *RedisStore) Disconnect(ctx context.Context, room, id string) error {
	_, err := s.run(ctx, "disconnect", scriptDisconnect, room, id)
	return err
}

// Leave removes member id and the messages waiting for it; messages it
// sent stay with their recipient. It returns ErrRoomNotFound,
// ErrNotMember, an error wrapping ErrUnavailable, or ErrClosed after
// Close.
func (s *RedisStore) Leave(ctx context.Context, room, id string) error {
	_, err := s.run(ctx, "leave", scriptLeave, room, id)
	return err
}

// SetKey stores member id's public key, key, of group; if the room has no
// group yet, group becomes the room's. It returns ErrRoomNotFound,
// ErrNotMember, ErrKeySet if the member already has a key,
// ErrGroupMismatch if group is not the room's, an error wrapping
// ErrUnavailable, and ErrClosed after Close.
func (s *RedisStore) SetKey(ctx context.Context, room, id, group, key string) (Room, error) {
	v, err := s.run(ctx, "set key", scriptSetKey, room, id, group, key)
	if err != nil {
		return Room{}, err
	}
	return decodeRoom(room, v)
}

// Append stores body, from member from, for the room's other member, or,
// while from has no peer, for whoever joins next, and returns the
// message's sequence number, LastSeq+1. It returns ErrRoomNotFound,
// ErrNotMember, ErrMailboxFull if the recipient already has
// Config.MaxPending unacknowledged messages (no sequence number is used),
// an error wrapping ErrUnavailable, and ErrClosed after Close.
func (s *RedisStore) Append(ctx context.Context, room, from string, body []byte) (uint64, error) {
	if body == nil {
		body = []byte{}
	}
	ev := encodeEvent(Event{Type: EventMessage, Room: room, Peer: from})
	prefix := ev[:len(ev)-1] // without the uvarint of seq 0, a single 0 byte
	v, err := s.run(ctx, "append", scriptAppend, room, from, body, s.channel(room), prefix)
	if err != nil {
		return 0, err
	}
	if len(v) != 1 {
		return 0, errors.New("session: redis append: malformed reply")
	}
	seq, err := strconv.ParseUint(v[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("session: redis append: malformed sequence number: %w", err)
	}
	return seq, nil
}

// Pending returns the unacknowledged messages for member id with a
// sequence number above after, in order. It does not count as activity.
// It returns ErrRoomNotFound, ErrNotMember, an error wrapping
// ErrUnavailable, or ErrClosed after Close.
func (s *RedisStore) Pending(ctx context.Context, room, id string, after uint64) ([]Message, error) {
	v, err := s.run(ctx, "pending", scriptPending, room, id, strconv.FormatUint(min(after, maxLuaSeq)+1, 10))
	if err != nil {
		return nil, err
	}
	if len(v)%3 != 0 {
		return nil, errors.New("session: redis pending: malformed reply")
	}
	var out []Message
	for i := 0; i < len(v); i += 3 {
		seq, err := strconv.ParseUint(v[i], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("session: redis pending: malformed sequence number: %w", err)
		}
		if seq > after {
			out = append(out, Message{Seq: seq, From: v[i+1], Body: []byte(v[i+2])})
		}
	}
	return out, nil
}

// Ack discards the messages for member id up to and including seq. It
// returns ErrRoomNotFound, ErrNotMember, an error wrapping ErrUnavailable,
// or ErrClosed after Close.
func (s *RedisStore) Ack(ctx context.Context, room, id string, seq uint64) error {
	_, err := s.run(ctx, "ack", scriptAck, room, id, strconv.FormatUint(min(seq, maxLuaSeq)+1, 10))
	return err
}

// Touch records activity, extending the room's life to TTL from now. It
// returns ErrRoomNotFound, an error wrapping ErrUnavailable, or ErrClosed
// after Close.
func (s *RedisStore) Touch(ctx context.Context, room string) error {
	_, err := s.run(ctx, "touch", scriptTouch, room)
	return err
}

// Publish sends ev to every subscriber of ev.Room, on every instance,
// without waiting for them (Redis PUBLISH); a subscriber whose buffer is
// full is ended with ErrSlowSubscriber instead. Events from one publisher
// arrive in the order of its Publish calls. Publishing to a live room
// counts as activity; publishing to a room that does not exist does
// nothing and returns nil. It returns an error wrapping ErrUnavailable, or
// ErrClosed after Close.
func (s *RedisStore) Publish(ctx context.Context, ev Event) error {
	_, err := s.run(ctx, "publish", scriptPublish, ev.Room, s.channel(ev.Room), encodeEvent(ev))
	if errors.Is(err, ErrRoomNotFound) {
		return nil
	}
	return err
}

// Subscribe returns the room's events from now on: Redis has subscribed
// the store to the room's channel before it returns. The subscription
// ends, and its channel is closed, when ctx is done (Err() == nil), when
// it falls RedisConfig.SubscriberBuffer events behind (ErrSlowSubscriber),
// when the room expires (ErrRoomNotFound, within
// RedisConfig.SweepInterval), when the connection to Redis fails (an error
// wrapping ErrUnavailable) or when the store closes (ErrClosed).
// Subscribing counts as activity. It returns ErrRoomNotFound, an error
// wrapping ErrUnavailable, or ErrClosed after Close.
func (s *RedisStore) Subscribe(ctx context.Context, room string) (*Subscription, error) {
	sub, err := s.attach(ctx, room)
	if err != nil {
		return nil, err
	}
	v, err := s.run(ctx, "subscribe", scriptTouch, room)
	if err == nil && len(v) != 1 {
		err = errors.New("session: redis subscribe: malformed reply")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.endLocked(sub, nil)
		return nil, err
	}
	sub.gen = v[0]
	if !sub.ended {
		// No goroutine waits for ctx: AfterFunc runs only if ctx ends
		// first, and endLocked unregisters it otherwise.
		sub.stop = context.AfterFunc(ctx, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.endLocked(sub, nil)
		})
	}
	return NewSubscription(sub.ch, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		return sub.err
	}), nil
}

// attach adds a subscription to room's channel, subscribing the store's
// Pub/Sub connection (opened if need be) to it, and returns once Redis has
// processed that SUBSCRIBE, or ctx ends.
func (s *RedisStore) attach(ctx context.Context, room string) (*redisSub, error) {
	name := s.channel(room)
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	p := s.ps
	if p == nil {
		// go-redis connects on first use, in the reader or the writer.
		p = &redisPubSub{ps: s.client.Subscribe(s.bg), dead: make(chan struct{}), wake: make(chan struct{}, 1)}
		s.ps = p
		s.readers.Add(2)
		go s.read(p)
		go s.write(p)
	}
	c := s.chans[name]
	if c == nil {
		c = &redisChan{room: room, p: p, ready: make(chan struct{}), subs: make(map[*redisSub]struct{})}
		s.chans[name] = c
		s.seq++
		ping := "keyrelay-subscribe-" + strconv.FormatUint(s.seq, 10)
		s.pongs[ping] = c
		p.queueLocked(pubsubOp{channels: []string{name}, ping: ping})
	}
	sub := &redisSub{ch: make(chan *Event, s.subBuffer), c: c}
	c.subs[sub] = struct{}{}
	s.mu.Unlock()
	var err error
	select {
	case <-c.ready:
		return sub, nil
	case <-p.dead:
		err = errors.New("connection lost")
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	s.endLocked(sub, nil)
	s.mu.Unlock()
	return nil, s.backendErr(ctx, "subscribe", err)
}

// write sends the commands queued for p until p dies. The commands are
// not bounded by any caller's context: a write cut short would leave the
// connection in an unknown state (go-redis drops it), ending every
// subscription it carries. The client's dial, read and write timeouts
// bound them.
func (s *RedisStore) write(p *redisPubSub) {
	defer s.readers.Done()
	for {
		select {
		case <-p.dead:
			return
		case <-p.wake:
		}
		s.mu.Lock()
		ops := p.ops
		p.ops = nil
		s.mu.Unlock()
		for _, op := range ops {
			var err error
			if op.unsubscribe {
				err = p.ps.Unsubscribe(s.bg, op.channels...)
			} else if err = p.ps.Subscribe(s.bg, op.channels...); err == nil {
				// The PING's reply follows the SUBSCRIBE's: when it
				// arrives, the channel is subscribed.
				err = p.ps.Ping(s.bg, op.ping)
			}
			if err != nil {
				s.lost(p, err)
				return
			}
		}
	}
}

// read receives the messages of p until its connection fails or the store
// closes, then ends p's subscriptions. It also checks the connection's
// health: after redisIdlePing without a message it sends a PING, and a
// connection silent for redisPongWait after that has failed.
func (s *RedisStore) read(p *redisPubSub) {
	defer s.readers.Done()
	pinged := false
	for {
		wait := redisIdlePing
		if pinged {
			wait = redisPongWait
		}
		msg, err := p.ps.ReceiveTimeout(s.bg, wait)
		if err != nil {
			var nerr net.Error
			if !pinged && errors.As(err, &nerr) && nerr.Timeout() {
				// Idle: make sure the connection still works.
				if err = p.ps.Ping(s.bg, "keyrelay-health"); err == nil {
					pinged = true
					continue
				}
			}
			s.lost(p, err)
			return
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Message:
			s.dispatch(p, m)
		case *redis.Pong:
			s.mu.Lock()
			if c, ok := s.pongs[m.Payload]; ok {
				delete(s.pongs, m.Payload)
				close(c.ready)
			}
			s.mu.Unlock()
		}
	}
}

// lost ends every subscription carried by p, whose connection failed with
// err, and closes p.
func (s *RedisStore) lost(p *redisPubSub, err error) {
	s.mu.Lock()
	if s.ps == p {
		s.ps = nil
	}
	p.kill()
	if !s.closed.Load() {
		err = fmt.Errorf("session: redis subscription: %w: %w", ErrUnavailable, err)
		for name, c := range s.chans {
			if c.p != p {
				continue
			}
			for sub := range c.subs {
				s.endLocked(sub, err)
			}
			delete(s.chans, name)
		}
		for ping, c := range s.pongs {
			if c.p == p {
				delete(s.pongs, ping)
			}
		}
	}
	s.mu.Unlock()
	p.ps.Close()
}

// dispatch hands message m, received on p, to the subscribers of its
// channel, without waiting for any.
func (s *RedisStore) dispatch(p *redisPubSub, m *redis.Message) {
	var gen string
	ev, err := Event{}, errors.New("session: redis: malformed event")
	if len(m.Payload) >= genLen {
		gen = m.Payload[:genLen]
		ev, err = decodeEvent(m.Payload[genLen:])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chans[m.Channel]
	if c == nil || c.p != p {
		return
	}
	for sub := range c.subs {
		switch {
		case err != nil:
			s.endLocked(sub, err)
		case sub.gen != "" && gen > sub.gen:
			// A new room with the same ID: the subscribed one is gone.
			s.endLocked(sub, ErrRoomNotFound)
		case sub.gen != "" && gen < sub.gen:
			// An event of an earlier room with the same ID, still in
			// flight when this subscription began: not for it.
		default:
			e := ev
			e.Body = bytes.Clone(ev.Body)
			select {
			case sub.ch <- &e:
			default:
				s.endLocked(sub, ErrSlowSubscriber)
			}
		}
	}
}

// endLocked ends sub with err, if it has not ended yet. s.mu must be held.
// The channel stays subscribed until the next sweep, so that a new
// subscriber to the room does not have to wait for Redis.
func (s *RedisStore) endLocked(sub *redisSub, err error) {
	if sub.ended {
		return
	}
	sub.ended = true
	sub.err = err
	if sub.stop != nil {
		sub.stop()
	}
	delete(sub.c.subs, sub)
	close(sub.ch)
}

// sweep runs sweepOnce every s.sweepEvery until Close.
func (s *RedisStore) sweep() {
	defer close(s.swept)
	t := time.NewTicker(s.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.bg.Done():
			return
		case <-t.C:
			s.sweepOnce()
		}
	}
}

// sweepOnce unsubscribes from the channels no subscription uses any more,
// and ends the subscriptions of rooms that no longer exist (or exist anew)
// with ErrRoomNotFound. Errors are left for the reader's health checks to
// find.
func (s *RedisStore) sweepOnce() {
	s.mu.Lock()
	p := s.ps
	var idle []string
	// The subscriptions to check, with the gens they had before the
	// check: a gen read afterwards that is greater (or none) proves their
	// room gone.
	type check struct {
		subs map[*redisSub]string
		cmd  *redis.StringCmd
	}
	checks := make(map[string]*check) // by room
	for name, c := range s.chans {
		if len(c.subs) == 0 {
			delete(s.chans, name)
			if c.p == p {
				idle = append(idle, name)
			}
			continue
		}
		for sub := range c.subs {
			if sub.gen == "" {
				continue // Subscribe is still checking the room itself
			}
			if checks[c.room] == nil {
				checks[c.room] = &check{subs: make(map[*redisSub]string)}
			}
			checks[c.room].subs[sub] = sub.gen
		}
	}
	if p != nil && len(idle) > 0 {
		p.queueLocked(pubsubOp{unsubscribe: true, channels: idle})
	}
	s.mu.Unlock()
	if len(checks) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(s.bg, max(s.sweepEvery, time.Second))
	defer cancel()
	pipe := s.client.Pipeline()
	for room, c := range checks {
		c.cmd = pipe.HGet(ctx, s.roomKey(room), "gen")
	}
	pipe.Exec(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range checks {
		gen, err := c.cmd.Result()
		if errors.Is(err, redis.Nil) {
			gen, err = "", nil
		}
		if err != nil {
			continue
		}
		for sub, had := range c.subs {
			if gen == "" || gen > had {
				s.endLocked(sub, ErrRoomNotFound)
			}
		}
	}
}

// Rooms returns the number of live rooms in the store, on every instance
// sharing its Redis and prefix. It returns an error wrapping
// ErrUnavailable, or ErrClosed after Close.
func (s *RedisStore) Rooms(ctx context.Context) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	v, err := scriptRooms.Run(ctx, s.client, []string{s.index}).StringSlice()
	if err != nil {
		return 0, s.backendErr(ctx, "rooms", err)
	}
	if len(v) != 2 || v[0] != "OK" {
		return 0, errors.New("session: redis rooms: malformed reply")
	}
	n, err := strconv.Atoi(v[1])
	if err != nil {
		return 0, fmt.Errorf("session: redis rooms: %w", err)
	}
	return n, nil
}

// Ready pings Redis. It returns an error wrapping ErrUnavailable if Redis
// does not answer (within ctx), or ErrClosed after Close.
func (s *RedisStore) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.client.Ping(ctx).Err(); err != nil {
		return s.backendErr(ctx, "ready", err)
	}
	return nil
}

// Close ends every subscription with ErrClosed, closes the Pub/Sub
// connection, stops the sweeper and, if the store made its client from
// RedisConfig.URL, closes the client. The rooms stay in Redis for the
// other instances. Every method, Close included, returns ErrClosed
// afterwards.
func (s *RedisStore) Close() error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed.Store(true)
	for _, c := range s.chans {
		for sub := range c.subs {
			s.endLocked(sub, ErrClosed)
		}
	}
	clear(s.chans)
	clear(s.pongs)
	p := s.ps
	s.ps = nil
	s.mu.Unlock()
	s.stop()
	if p != nil {
		p.kill()
		p.ps.Close()
	}
	s.readers.Wait()
	<-s.swept
	if s.ownClient {
		s.client.Close()
	}
	return nil
}

// eventVersion is the first byte of an encoded event.
const eventVersion = 1

// encodeEvent encodes ev for Pub/Sub: eventVersion, then Type, Room, Peer,
// Key, Group, Reason and Conn, each as a uvarint length and bytes, Seq as
// a uvarint, and Body last, without a length.
func encodeEvent(ev Event) []byte {
	strs := [...]string{string(ev.Type), ev.Room, ev.Peer, ev.Key, ev.Group, ev.Reason, ev.Conn}
	n := 1 + binary.MaxVarintLen64 + len(ev.Body)
	for _, s := range strs {
		n += binary.MaxVarintLen64 + len(s)
	}
	b := make([]byte, 0, n)
	b = append(b, eventVersion)
	for _, s := range strs {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, ev.Seq)
	return append(b, ev.Body...)
}

// decodeEvent decodes what encodeEvent encoded.
func decodeEvent(p string) (Event, error) {
	malformed := errors.New("session: redis: malformed event")
	if len(p) == 0 || p[0] != eventVersion {
		return Event{}, malformed
	}
	b := []byte(p[1:])
	var strs [7]string
	for i := range strs {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return Event{}, malformed
		}
		strs[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	seq, k := binary.Uvarint(b)
	if k <= 0 {
		return Event{}, malformed
	}
	return Event{
		Type: EventType(strs[0]), Room: strs[1], Peer: strs[2], Key: strs[3],
		Group: strs[4], Reason: strs[5], Conn: strs[6], Seq: seq, Body: b[k:],
	}, nil
}
