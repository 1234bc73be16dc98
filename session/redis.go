package session

import (
	"context"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/internal/redisx"
)

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
// leaves nothing behind; the Budget's keys, below, go when nothing waits.
// As in [MemoryStore], a call that succeeds counts as activity, except
// Room and Pending.
//
// All times (ExpiresAt, DisconnectedAt and the grace periods measured from
// them) come from the Redis server's clock, the one that expires keys, in
// milliseconds, so relay instances whose clocks differ still agree. Redis
// 7.0 or later is required (script flags, for the lease).
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
// Redis must not evict the store's keys: every key has a TTL, so under
// any maxmemory-policy but noeviction a full Redis would drop rooms and
// confirmed messages. NewRedisStore refuses such a Redis unless
// RedisConfig.AllowEviction, and the sweeper checks the policy again every
// RedisConfig.PolicyCheckInterval (Ready fails while it evicts). Under
// noeviction a full Redis refuses writes: calls fail with ErrUnavailable
// and Ready fails, but nothing stored is lost. Where eviction happens all
// the same, it is reported, never silent: the room hash records how many
// messages each mailbox should hold, so Pending returns ErrMessagesLost
// for an evicted mailbox, and a room whose hash vanished before its expiry
// (as the index of rooms says) gives ErrMessagesLost instead of
// ErrRoomNotFound, and ends its subscriptions with ErrMessagesLost. (A
// room evicted together with its entry in the index is not found, as if
// it had expired.)
//
// The store's Budget (RedisConfig.Budget) holds across every instance
// sharing the Redis and prefix: the bytes waiting are counted in Redis, in
// total and per source, and per room incarnation in a ledger of what each
// mailbox holds from each source (redis/lib.lua names the keys and
// fields; each mailbox entry records its source). The scripts that store
// or remove bodies (Append, Ack, Leave, the removal of a member whose
// grace is over or of an expired room) update them in the same atomic
// step. This costs every Append about fifteen more O(1) commands in its
// script (reading both counters, incrementing them and the ledger,
// rescoring the ledger in its index, keeping expiries), every Ack about
// eight per source it gives back to, and every other call on a room one
// EXISTS, plus a ZADD, an HGET and a PTTL while bytes wait in it (and,
// once a day per room, extending the expiry of its ledger's counters).
// The bytes are counted even under the zero Budget, so that instances
// configured differently agree (each applies its own Budget to the shared
// counts).
//
// A room, or a disconnected member's mailbox, that Redis expires by
// itself gives nothing back. So the sweeper of every instance, every
// SweepInterval, settles up to 100 ledgers that are due (their room's
// expiry, or a member's grace end, has passed), one script each: it
// removes the members whose grace is over, or gives back the ledger of a
// room that is gone, so that two instances sweeping at once never give
// bytes back twice. While no instance runs, the bytes of the rooms that
// expire keep counting; the first instance back gives them back within a
// few sweeps. Ledgers outlive their rooms by at least a day, and counters
// live at least as long as the ledgers that count in them, so that
// nothing stays for ever. If every instance stays down for longer than
// that, a ledger may expire before it is settled: its bytes then keep
// counting until the counters expire (newer messages from their sources
// postpone that). Where Redis evicts keys (AllowEviction), an evicted
// mailbox is given back once its member acknowledges everything, but an
// evicted ledger's bytes keep counting in the same way.
//
// A Disconnect that Redis did not accept is retried by the sweeper until
// it lands or its room or member is gone: at most 4096 are queued, one per
// member (the newest generation); beyond that a failed disconnect is
// logged and dropped, and its member stays connected in Redis until it
// resumes, leaves or the room expires. The queue lives in the process:
// one that exits loses it the same way.
//
// Create one with [NewRedisStore]; the zero RedisStore is not usable.
type RedisStore struct {
	// Static after construction.
	client     redis.UniversalClient
	cluster    *redis.ClusterClient // client, on a Cluster; else nil
	ownClient  bool                 // made from RedisConfig.URL, closed by Close
	prefix     string
	parts      []partition // see redis_partition.go
	mode       string      // the last ARGV of every room script: "cluster" or ""
	budget     Budget
	wait       waitReplicas // RedisConfig.WaitReplicas; see redis_wait.go
	subBuffer  int
	sweepEvery time.Duration
	bg         context.Context // ends with Close; for the reader and sweeper
	stop       context.CancelFunc
	swept      <-chan struct{} // closed by the sweeper when it returns
	readers    sync.WaitGroup
	log        *slog.Logger
	policy     *policyCheck       // Redis's maxmemory-policy, checked by the sweeper
	retries    *disconnectRetries // failed disconnects, retried by the sweeper
	instances  string             // the registry of instances and their leases
	lease      lease              // this instance's; see redis_lease.go
	leased     <-chan struct{}    // closed when the lease's renewer returns
	census     census             // the partitions' last count, on a Cluster
	owed       owed               // bytes to take off sources' counters, on a Cluster

	closed atomic.Bool // set, under mu, by Close

	mu    sync.Mutex
	ps    map[string]*redisPubSub // guarded by mu; by node address ("" but on a Cluster); none before the first Subscribe and after a failure
	chans map[string]*redisChan   // guarded by mu; by channel name
	pongs map[string]*redisChan   // guarded by mu; SUBSCRIBEs awaiting their PING's reply
	seq   uint64                  // guarded by mu; numbers the PINGs
}

var _ Store = (*RedisStore)(nil)

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
	scriptLease      = redisx.LoadScriptAllowOOM(redisLua, "redis", "lease") // a full Redis must not end a live instance's lease
	scriptDead       = redisx.LoadScript(redisLua, "redis", "dead")
	scriptReap       = redisx.LoadScript(redisLua, "redis", "reap")
	scriptSettle     = redisx.LoadScript(redisLua, "redis", "settle")
	scriptReserve    = redisx.LoadScript(redisLua, "redis", "reserve")
	scriptRaiseSeq   = redisx.LoadScript(redisLua, "redis", "raiseseq")
	scriptUnreserve  = redisx.LoadScript(redisLua, "redis", "unreserve")
)

// Script statuses other than "OK", and the errors they stand for.
var redisStatus = map[string]error{
	"NOTFOUND":      ErrRoomNotFound,
	"EXISTS":        ErrRoomExists,
	"TOOMANY":       ErrTooManyRooms,
	"FULL":          ErrRoomFull,
	"NOTMEMBER":     ErrNotMember,
	"SUPERSEDED":    ErrSuperseded,
	"BADTOKEN":      ErrBadToken,
	"RESUMEEXPIRED": ErrResumeExpired,
	"GROUPMISMATCH": ErrGroupMismatch,
	"KEYSET":        ErrKeySet,
	"REFLECTED":     ErrKeyReflected,
	"HSINCOMPLETE":  ErrHandshakeIncomplete,
	"MAILBOXFULL":   ErrMailboxFull,
	"SOURCEBUDGET":  ErrSourceOverBudget,
	"STOREBUDGET":   ErrStoreOverBudget,
	"LOST":          ErrMessagesLost,
	"DUPLICATE":     errDuplicateMember,
}

// errDuplicateMember is the script's refusal of a Join with the ID of a
// current member; Join reports it as the caller bug it is.
var errDuplicateMember = errors.New("session: member already in the room")

// run runs script on room with args after the common ones and returns its
// reply after the status "OK". A status naming an error returns that
// error, and the reply after it (only Pending's LOST has one).
func (s *RedisStore) run(ctx context.Context, op string, script *redis.Script, room string, args ...any) ([]string, error) {
	return s.runWait(ctx, op, script, room, false, args...)
}

// runWait is run, and then, if durable and RedisConfig.WaitReplicas is
// set, waits for the replicas (waitReplicas.run).
func (s *RedisStore) runWait(ctx context.Context, op string, script *redis.Script, room string, durable bool, args ...any) ([]string, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	pi := s.partOf(room)
	p := &s.parts[pi]
	argv := append([]any{room, p.key + "mbox:" + room + ":"}, args...)
	argv = append(argv, s.mode)
	keys := []string{p.key + "room:" + room, p.index, p.total, p.ledgers}
	var cmd *redis.Cmd
	if durable && s.wait.n > 0 {
		var err error
		if cmd, err = s.wait.run(ctx, s, script, keys, argv); err != nil {
			return nil, s.backendErr(ctx, op, err)
		}
	} else {
		cmd = script.Run(ctx, s.client, keys, argv...)
	}
	var v []string
	var err error
	if s.cluster == nil {
		v, err = cmd.StringSlice()
	} else {
		v, err = s.clusterReply(ctx, pi, cmd)
	}
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
		return v[1:], err
	}
	return nil, fmt.Errorf("session: redis %s: unexpected status %q", op, v[0])
}

// clusterReply returns the reply of a room script on partition p, on a
// Cluster, {reply, given, bytes, rooms} (redis/epilogue.lua), after
// giving back to their sources what the script gave back, and recording
// the partition's counts in the census.
func (s *RedisStore) clusterReply(ctx context.Context, p int, cmd *redis.Cmd) ([]string, error) {
	raw, err := cmd.Slice()
	if err != nil {
		return nil, err
	}
	if len(raw) != 4 {
		return nil, errors.New("malformed reply")
	}
	reply, given, counts := replyStrings(raw[0]), replyStrings(raw[1]), replyStrings(raw[2:])
	if reply == nil || given == nil || counts == nil {
		return nil, errors.New("malformed reply")
	}
	bytes, err1 := strconv.ParseInt(counts[0], 10, 64)
	rooms, err2 := strconv.ParseInt(counts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, errors.New("malformed reply")
	}
	s.census.update(p, rooms, bytes)
	s.giveBack(given)
	return reply, nil
}

// replyStrings returns v, an array reply of strings (or integers), as
// strings, or nil if it is not one.
func replyStrings(v any) []string {
	a, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]string, len(a))
	for i, x := range a {
		switch x := x.(type) {
		case string:
			out[i] = x
		case int64:
			out[i] = strconv.FormatInt(x, 10)
		default:
			return nil
		}
	}
	return out
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
	err = redisx.Wrap(ctx, "redis "+op, ErrUnavailable, err)
	if s.cluster != nil && errors.Is(err, ErrUnavailable) {
		// A master may have failed over: go-redis learns the new map of
		// the slots from MOVED replies, not from a dead node.
		s.cluster.ReloadState(s.bg)
	}
	return err
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
// not positive or cfg.MaxPendingBytes is negative, ErrRoomExists if a
// live room has the ID, ErrTooManyRooms if maxRooms > 0 and the store (all
// instances sharing its Redis and prefix) holds maxRooms live rooms, an
// error wrapping ErrUnavailable, and ErrClosed after Close.
func (s *RedisStore) CreateRoom(ctx context.Context, id string, cfg RoomConfig, maxRooms int) error {
	if err := validRoomConfig(cfg); err != nil {
		return err
	}
	ceilms := func(d time.Duration) int64 {
		ms := d / time.Millisecond
		if d%time.Millisecond != 0 {
			ms++
		}
		return int64(ms)
	}
	ttlms := ceilms(cfg.TTL)
	others, _ := s.others(s.partOf(id))
	_, err := s.run(ctx, "create room", scriptCreate, id,
		int64(cfg.TTL), int64(cfg.ResumeGrace), ttlms, msString(cfg.ResumeGrace),
		cfg.MaxPending, cfg.Group, maxRooms, cfg.MaxPendingBytes,
		int64(cfg.EmptyTTL), ceilms(cfg.EmptyTTL), others)
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

// Join adds m to the room as connected, with m's ID and TokenHash; m's
// PublicKey, Connected and DisconnectedAt are ignored. Members
// disconnected for longer than the room's ResumeGrace are removed first,
// with their mailboxes. The new member inherits the messages that were
// appended while it had no peer. It returns ErrRoomNotFound, ErrRoomFull
// if two members remain, an error matching no sentinel if a member already
// has m.ID, an error wrapping ErrUnavailable, and ErrClosed after Close.
func (s *RedisStore) Join(ctx context.Context, room string, m Member) (Room, error) {
	v, err := s.run(ctx, "join", scriptJoin, room, m.ID, hex.EncodeToString(m.TokenHash[:]), s.instance())
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
	v, err := s.run(ctx, "reconnect", scriptReconnect, room, id, hex.EncodeToString(tokenHash[:]), s.instance())
	if err != nil {
		return Room{}, err
	}
	return decodeRoom(room, v)
}

// Disconnect marks member id disconnected now, starting its grace period,
// if generation is the member's current Generation (else it changes
// nothing and returns ErrSuperseded: a newer connection holds the seat).
// A member already disconnected keeps its earlier DisconnectedAt, so
// repeated calls cannot extend the grace period. It returns
// ErrRoomNotFound, ErrNotMember, ErrSuperseded, an error wrapping
// ErrUnavailable, or ErrClosed after Close.
//
// A disconnect that fails with an error wrapping ErrUnavailable (Redis
// down, or full under noeviction) is also queued, and retried in the
// background every RedisConfig.SweepInterval until Redis accepts it or
// the room or member is gone; see [RedisStore]'s doc for the bound. A
// retry dates the disconnect from this call, not from when it lands, and
// publishes the member's EventLeft (ReasonDropped, no Conn), which the
// caller could not.
func (s *RedisStore) Disconnect(ctx context.Context, room, id string, generation uint64) error {
	err := s.disconnect(ctx, room, id, generation, 0, false)
	if errors.Is(err, ErrUnavailable) {
		s.retries.add(room, id, generation)
	}
	return err
}

// disconnect runs disconnect.lua: ago is how long before now the
// connection ended, and announce asks for the member's EventLeft
// (ReasonDropped) if the script marks it disconnected.
func (s *RedisStore) disconnect(ctx context.Context, room, id string, generation uint64, ago time.Duration, announce bool) error {
	var channel, ev any = "", ""
	if announce {
		channel = s.channel(room)
		ev = encodeEvent(Event{Type: EventLeft, Room: room, Peer: id, Reason: ReasonDropped})
	}
	_, err := s.run(ctx, "disconnect", scriptDisconnect, room, id, generation, ago.Milliseconds(), channel, ev)
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
// ErrGroupMismatch if group is not the room's, ErrKeyReflected if key is
// the other member's, an error wrapping ErrUnavailable, and ErrClosed
// after Close.
func (s *RedisStore) SetKey(ctx context.Context, room, id, group, key string) (Room, error) {
	v, err := s.run(ctx, "set key", scriptSetKey, room, id, group, key)
	if err != nil {
		return Room{}, err
	}
	return decodeRoom(room, v)
}

// Append stores body, from member from, whose connection comes from
// source, for the room's other member, and returns the message's sequence
// number, LastSeq+1. It returns ErrRoomNotFound, ErrNotMember,
// ErrHandshakeIncomplete unless both members have a key, ErrMailboxFull if
// the recipient already has Config.MaxPending unacknowledged messages or
// if body would take the bytes waiting for it (as the room hash counts
// them) over Config.MaxPendingBytes, ErrStoreOverBudget or
// ErrSourceOverBudget if it would take the bytes waiting in the store, or
// from source, on every instance sharing the Redis and prefix, over
// RedisConfig.Budget (in each case nothing is stored and no sequence
// number is used), an error wrapping ErrUnavailable, and ErrClosed after
// Close.
func (s *RedisStore) Append(ctx context.Context, room, from, source string, body []byte) (uint64, error) {
	return s.AppendAck(ctx, room, from, source, body, 0)
}

// AppendAck is Append, which, if it stores the message, also applies the
// sender's own acknowledgement of the messages for it up to and
// including ack, as Ack(ctx, room, from, ack) would, in the same atomic
// step (no acknowledgement if ack is 0). A relay that folds a
// conversation's acknowledgements into its replies saves Redis a script
// and a round trip per message. If it returns an error, nothing was
// acknowledged.
func (s *RedisStore) AppendAck(ctx context.Context, room, from, source string, body []byte, ack uint64) (uint64, error) {
	if body == nil {
		body = []byte{}
	}
	ev := encodeEvent(Event{Type: EventMessage, Room: room, Peer: from})
	prefix := ev[:len(ev)-1] // without the uvarint of seq 0, a single 0 byte
	per := s.budget.PerSource
	if s.cluster != nil && source != "" {
		// The source's counter is in a slot of its own: counted first,
		// given back if the message is not stored.
		if err := s.reserve(ctx, source, len(body)); err != nil {
			return 0, err
		}
		per = 0
	}
	_, othersBytes := s.others(s.partOf(room))
	keep := uint64(0)
	if ack > 0 {
		keep = min(ack, maxLuaSeq) + 1
	}
	v, err := s.runWait(ctx, "append", scriptAppend, room, true, from, body, s.channel(room), prefix,
		source, per, s.budget.Total, othersBytes, strconv.FormatUint(keep, 10))
	if err != nil {
		if s.cluster != nil && source != "" {
			s.giveBack([]string{source, strconv.Itoa(len(body))})
		}
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

// RaiseSeq makes room's LastSeq at least seq, so that the next message
// is numbered above it. Redis replicates asynchronously: a master that
// fails over before its replica has the last writes comes back with a
// LastSeq below numbers that clients were given, and the messages
// numbered again would look like duplicates to the peer. A relay calls it
// when a resuming client says it has seen a higher number. It is not
// activity. It returns ErrRoomNotFound, an error wrapping ErrUnavailable,
// or ErrClosed after Close.
func (s *RedisStore) RaiseSeq(ctx context.Context, room string, seq uint64) error {
	_, err := s.run(ctx, "raise seq", scriptRaiseSeq, room, strconv.FormatUint(min(seq, maxLuaSeq), 10))
	return err
}

// Pending returns the unacknowledged messages for member id with a
// sequence number above after, in order. It does not count as activity.
// It returns ErrRoomNotFound, ErrNotMember, an error wrapping
// ErrUnavailable, or ErrClosed after Close. It returns ErrMessagesLost,
// with the messages that remain, if the member's mailbox holds fewer
// messages than were stored for it and not acknowledged (Redis evicted
// it), unless after is at least the last one stored for it; it does so
// until the member acknowledges the last message stored for it.
func (s *RedisStore) Pending(ctx context.Context, room, id string, after uint64) ([]Message, error) {
	v, err := s.run(ctx, "pending", scriptPending, room, id, strconv.FormatUint(min(after, maxLuaSeq)+1, 10))
	lost := errors.Is(err, ErrMessagesLost)
	if err != nil && !lost {
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
	if lost {
		return out, fmt.Errorf("session: redis pending: room %q, member %q: %w", room, id, ErrMessagesLost)
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
// arrive in the order of its Publish calls. Publishing is not activity
// (it reads two fields of the room and writes nothing: the call whose
// outcome it announces was activity); publishing to a room that does not
// exist does nothing and returns nil. It returns an error wrapping ErrUnavailable, or
// ErrClosed after Close.
func (s *RedisStore) Publish(ctx context.Context, ev Event) error {
	_, err := s.run(ctx, "publish", scriptPublish, ev.Room, s.channel(ev.Room), encodeEvent(ev))
	if errors.Is(err, ErrRoomNotFound) || errors.Is(err, ErrMessagesLost) {
		return nil
	}
	return err
}

// Rooms returns the number of live rooms in the store, on every instance
// sharing its Redis and prefix. It returns an error wrapping
// ErrUnavailable, or ErrClosed after Close.
func (s *RedisStore) Rooms(ctx context.Context) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	n, _, _, err := s.takeCensus(ctx, 0)
	return int(n), err
}

// Ready checks that Redis accepts writes: it sets a small key, the
// prefix followed by "health", that expires after 10 s. It returns an
// error wrapping ErrUnavailable if Redis does not answer (within ctx) or
// refuses the write (OOM: full under noeviction), an error wrapping
// ErrUnavailable and ErrEvictingRedis while the last check of Redis's
// maxmemory-policy found one that evicts (unless
// RedisConfig.AllowEviction), or ErrClosed after Close.
func (s *RedisStore) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if p := s.policy.evicting(); p != "" {
		return fmt.Errorf("session: redis ready: %w: %w: maxmemory-policy is %q", ErrUnavailable, ErrEvictingRedis, p)
	}
	if err := s.client.Set(ctx, s.prefix+"health", "1", healthTTL).Err(); err != nil {
		return s.backendErr(ctx, "ready", err)
	}
	return nil
}

// healthTTL is how long Ready's key lives.
const healthTTL = 10 * time.Second

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
	ps := s.ps
	s.ps = nil
	s.mu.Unlock()
	s.stop()
	for _, p := range ps {
		p.kill()
		p.ps.Close()
	}
	s.readers.Wait()
	<-s.swept
	<-s.leased
	if s.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), giveBackTimeout)
		s.payOwed(ctx)
		cancel()
	}
	if n := s.retries.len(); n > 0 {
		s.log.Warn("store closed with disconnects Redis has not accepted: those members stay connected in Redis until they resume, leave or their rooms expire", "count", n)
	}
	if s.ownClient {
		s.client.Close()
	}
	return nil
}
