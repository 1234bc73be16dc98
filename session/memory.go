package session

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keyrelay/keyrelay/internal/background"
)

// MemoryConfig configures a [MemoryStore]. The zero value is ready to use.
type MemoryConfig struct {
	// Now returns the current time. Nil means time.Now. Tests set it to a
	// fake clock.
	Now func() time.Time
	// SweepInterval is how often the background sweeper removes expired
	// rooms, and members whose grace period is over (with their
	// mailboxes). Zero (or negative) means 1 s. Between sweeps an expired
	// room is already treated as not found by every method.
	SweepInterval time.Duration
	// SubscriberBuffer is how many events a subscription may fall behind
	// before it is ended with ErrSlowSubscriber. Zero (or negative) means
	// 256.
	SubscriberBuffer int
	// Budget bounds the bytes of the bodies waiting in the store, in total
	// and per source. The zero Budget bounds nothing beyond each room's
	// MaxPendingBytes.
	Budget Budget
}

// Defaults for the zero fields of MemoryConfig.
const (
	defaultSweepInterval    = time.Second
	defaultSubscriberBuffer = 256
)

// MemoryStore is the in-memory [Store], the default. It serves one process:
// its rooms, keys, messages and events are not shared with other relay
// instances and do not survive a restart.
//
// All state sits behind one mutex; no method blocks on anything but that
// mutex. Publish never waits for a subscriber: each subscription has a
// buffer of MemoryConfig.SubscriberBuffer events and is ended with
// ErrSlowSubscriber when it is full. A background goroutine, stopped by
// Close, removes expired rooms every MemoryConfig.SweepInterval and ends
// their subscriptions with ErrRoomNotFound; between sweeps every method
// already treats an expired room as gone. A call counts as activity, and
// extends the room's life to TTL from now, when it succeeds: a failed call
// (ErrRoomFull, ErrBadToken, ErrMailboxFull, …) does not, nor do Room and
// Pending.
//
// Create one with [NewMemoryStore]; the zero MemoryStore is not usable.
type MemoryStore struct {
	// Static after construction.
	now       func() time.Time
	subBuffer int
	stop      context.CancelFunc // called by Close to stop the sweeper
	swept     <-chan struct{}    // closed by the sweeper when it returns

	mu     sync.Mutex
	closed bool                // guarded by mu
	rooms  map[string]*memRoom // guarded by mu
	ledger *ledger             // guarded by mu
}

// ledger counts the bytes of the bodies waiting in a MemoryStore, in
// total and per source, against the store's Budget. Guarded by
// MemoryStore.mu.
type ledger struct {
	budget   Budget
	total    int64
	bySource map[string]int64 // no entry for a source with nothing waiting
}

// admit reports why n more bytes from source do not fit, or nil.
func (l *ledger) admit(source string, n int64) error {
	if l.budget.Total > 0 && l.total+n > l.budget.Total {
		return ErrStoreOverBudget
	}
	if source != "" && l.budget.PerSource > 0 && l.bySource[source]+n > l.budget.PerSource {
		return ErrSourceOverBudget
	}
	return nil
}

// add counts n bytes from source; a negative n releases them.
func (l *ledger) add(source string, n int64) {
	l.total += n
	if source == "" {
		return
	}
	if v := l.bySource[source] + n; v > 0 {
		l.bySource[source] = v
	} else {
		delete(l.bySource, source)
	}
}

// release releases the bytes of every message in mailbox.
func (l *ledger) release(mailbox []memMessage) {
	for _, m := range mailbox {
		l.add(m.source, -int64(len(m.Body)))
	}
}

var _ Store = (*MemoryStore)(nil)

// memRoom is a room's state. Every field is guarded by MemoryStore.mu.
type memRoom struct {
	id        string
	cfg       RoomConfig
	group     string
	members   []*memMember // join order, at most two
	gone      []Member     // members removed after their grace (ID, TokenHash), newest last, at most two
	lastSeq   uint64
	expiresAt time.Time
	subs      map[*memSub]struct{}
	ledger    *ledger // the store's
}

// memMember is a member and its mailbox. Guarded by MemoryStore.mu.
type memMember struct {
	Member
	mailbox []memMessage // unacknowledged messages for this member, by Seq
	bytes   int64        // the sum of len(Body) over mailbox
}

// memMessage is a message waiting, and the source it was sent from.
type memMessage struct {
	Message
	source string
}

// memSub is one subscription. Its fields are guarded by MemoryStore.mu;
// ch is closed exactly once, under mu, when the subscription ends.
type memSub struct {
	ch    chan *Event
	room  *memRoom
	ended bool
	err   error
	stop  func() bool // unregisters the context.AfterFunc
}

// NewMemoryStore returns an empty MemoryStore configured by cfg and starts
// its sweeper. Call Close to stop the sweeper and end all subscriptions.
func NewMemoryStore(cfg MemoryConfig) *MemoryStore {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = defaultSweepInterval
	}
	if cfg.SubscriberBuffer <= 0 {
		cfg.SubscriberBuffer = defaultSubscriberBuffer
	}
	s := &MemoryStore{
		now:       cfg.Now,
		subBuffer: cfg.SubscriberBuffer,
		rooms:     make(map[string]*memRoom),
		ledger:    &ledger{budget: cfg.Budget, bySource: make(map[string]int64)},
	}
	ctx, stop := context.WithCancel(context.Background())
	s.stop, s.swept = stop, background.Every(ctx, cfg.SweepInterval, s.sweep)
	return s
}

// sweep removes the expired rooms; the sweeper runs it every
// SweepInterval until Close.
func (s *MemoryStore) sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.sweepLocked(s.now())
	}
}

// sweepLocked removes every room expired at now, and from the others every
// member whose grace period is over, with its mailbox. s.mu must be held.
func (s *MemoryStore) sweepLocked(now time.Time) {
	for _, r := range s.rooms {
		if r.expired(now) {
			s.removeLocked(r, ErrRoomNotFound)
			continue
		}
		r.dropGone(now)
	}
}

// dropGone removes the members whose grace period is over at now, with
// their mailboxes. It is not activity, but a room left with no member
// expires within EmptyTTL.
func (r *memRoom) dropGone(now time.Time) {
	n := len(r.members)
	r.members = slices.DeleteFunc(r.members, func(m *memMember) bool {
		if !r.graceOver(m, now) {
			return false
		}
		r.ledger.release(m.mailbox)
		r.gone = append(r.gone, Member{ID: m.ID, TokenHash: m.TokenHash})
		if len(r.gone) > 2 {
			r.gone = slices.Delete(r.gone, 0, len(r.gone)-2)
		}
		return true
	})
	if len(r.members) != n {
		r.expiresAt = r.limit(now, r.expiresAt)
	}
}

// removeLocked deletes r and ends its subscriptions with err. s.mu must be
// held.
func (s *MemoryStore) removeLocked(r *memRoom, err error) {
	for sub := range r.subs {
		s.endLocked(sub, err)
	}
	for _, m := range r.members {
		r.ledger.release(m.mailbox)
	}
	delete(s.rooms, r.id)
}

// endLocked ends sub with err, if it has not ended yet. s.mu must be held.
func (s *MemoryStore) endLocked(sub *memSub, err error) {
	if sub.ended {
		return
	}
	sub.ended = true
	sub.err = err
	sub.stop()
	delete(sub.room.subs, sub)
	close(sub.ch)
}

// expired reports whether r has expired at now: a room expires TTL after
// its last activity, at ExpiresAt exactly.
func (r *memRoom) expired(now time.Time) bool { return !now.Before(r.expiresAt) }

// touch records activity at now.
func (r *memRoom) touch(now time.Time) { r.expiresAt = r.limit(now, now.Add(r.cfg.TTL)) }

// limit returns exp, or earlier if the room holds no connected member:
// now+EmptyTTL for a room with no member, the end of the last grace
// period plus GraceMargin for one whose members are all disconnected.
func (r *memRoom) limit(now, exp time.Time) time.Time {
	if len(r.members) == 0 {
		if r.cfg.EmptyTTL > 0 {
			exp = minTime(exp, now.Add(r.cfg.EmptyTTL))
		}
		return exp
	}
	var last time.Time
	for _, m := range r.members {
		if m.Connected {
			return exp
		}
		if m.DisconnectedAt.After(last) {
			last = m.DisconnectedAt
		}
	}
	return minTime(exp, last.Add(r.cfg.ResumeGrace+GraceMargin(r.cfg.ResumeGrace)))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// member returns the member with id, or nil.
func (r *memRoom) member(id string) *memMember {
	for _, m := range r.members {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// other returns the member that is not id, or nil.
func (r *memRoom) other(id string) *memMember {
	for _, m := range r.members {
		if m.ID != id {
			return m
		}
	}
	return nil
}

// resumeGone reports whether id, with tokenHash, is a member removed after
// its grace period, and forgets it: it is told ErrResumeExpired once.
func (r *memRoom) resumeGone(id string, tokenHash [32]byte) bool {
	for i, g := range r.gone {
		if g.ID == id && subtle.ConstantTimeCompare(g.TokenHash[:], tokenHash[:]) == 1 {
			r.gone = slices.Delete(r.gone, i, i+1)
			return true
		}
	}
	return false
}

// removeMember removes member id and its mailbox.
func (r *memRoom) removeMember(id string) {
	r.members = slices.DeleteFunc(r.members, func(m *memMember) bool {
		if m.ID != id {
			return false
		}
		r.ledger.release(m.mailbox)
		return true
	})
}

// graceOver reports whether m has been disconnected for longer than the
// room's resume grace period at now.
func (r *memRoom) graceOver(m *memMember, now time.Time) bool {
	return !m.Connected && now.Sub(m.DisconnectedAt) > r.cfg.ResumeGrace
}

// snapshot returns a copy of r's state that shares no memory with it.
func (r *memRoom) snapshot() Room {
	members := make([]Member, len(r.members))
	for i, m := range r.members {
		members[i] = m.Member
	}
	return Room{
		ID:        r.id,
		Config:    r.cfg,
		Group:     r.group,
		Members:   members,
		LastSeq:   r.lastSeq,
		ExpiresAt: r.expiresAt,
	}
}

// lookup returns the live room id at now. An expired room that the sweeper
// has not reached yet is removed on the spot and reported as not found.
// s.mu must be held.
func (s *MemoryStore) lookup(id string, now time.Time) (*memRoom, error) {
	if s.closed {
		return nil, ErrClosed
	}
	r, ok := s.rooms[id]
	if !ok {
		return nil, ErrRoomNotFound
	}
	if r.expired(now) {
		s.removeLocked(r, ErrRoomNotFound)
		return nil, ErrRoomNotFound
	}
	return r, nil
}

// lookupMember is lookup followed by the member check: it returns the room
// and member id, or ErrRoomNotFound, ErrNotMember (with the room) or
// ErrClosed.
func (s *MemoryStore) lookupMember(room, id string, now time.Time) (*memRoom, *memMember, error) {
	r, err := s.lookup(room, now)
	if err != nil {
		return nil, nil, err
	}
	m := r.member(id)
	if m == nil {
		return r, nil, ErrNotMember // the room, for Reconnect's check of the gone
	}
	return r, m, nil
}

// validRoomConfig checks the rules stated in RoomConfig's doc comment.
func validRoomConfig(cfg RoomConfig) error {
	switch {
	case cfg.TTL <= 0:
		return fmt.Errorf("session: invalid room config: TTL must be > 0, got %v", cfg.TTL)
	case cfg.ResumeGrace <= 0:
		return fmt.Errorf("session: invalid room config: ResumeGrace must be > 0, got %v", cfg.ResumeGrace)
	case cfg.MaxPending <= 0:
		return fmt.Errorf("session: invalid room config: MaxPending must be > 0, got %d", cfg.MaxPending)
	case cfg.MaxPendingBytes < 0:
		return fmt.Errorf("session: invalid room config: MaxPendingBytes must be >= 0, got %d", cfg.MaxPendingBytes)
	case cfg.EmptyTTL < 0:
		return fmt.Errorf("session: invalid room config: EmptyTTL must be >= 0, got %v", cfg.EmptyTTL)
	}
	return nil
}

// CreateRoom creates an empty room id with cfg, expiring cfg.TTL from now
// unless there is activity. Its group is cfg.Group ("" leaves it to the
// first stored key). It returns an error (matching no sentinel) if cfg.TTL,
// cfg.ResumeGrace or cfg.MaxPending is not positive or
// cfg.MaxPendingBytes is negative, ErrRoomExists if a live room has the
// ID, ErrTooManyRooms if maxRooms > 0 and the store holds maxRooms live
// rooms, and ErrClosed after Close.
func (s *MemoryStore) CreateRoom(ctx context.Context, id string, cfg RoomConfig, maxRooms int) error {
	if err := validRoomConfig(cfg); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if _, err := s.lookup(id, now); err == nil {
		return ErrRoomExists
	} else if !errors.Is(err, ErrRoomNotFound) {
		return err
	}
	if maxRooms > 0 && len(s.rooms) >= maxRooms {
		s.sweepLocked(now) // expired rooms do not count
		if len(s.rooms) >= maxRooms {
			return ErrTooManyRooms
		}
	}
	r := &memRoom{
		id:     id,
		cfg:    cfg,
		group:  cfg.Group,
		subs:   make(map[*memSub]struct{}),
		ledger: s.ledger,
	}
	r.touch(now)
	s.rooms[id] = r
	return nil
}

// Room returns a snapshot of room id. It does not count as activity. It
// returns ErrRoomNotFound, or ErrClosed after Close.
func (s *MemoryStore) Room(ctx context.Context, id string) (Room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.lookup(id, s.now())
	if err != nil {
		return Room{}, err
	}
	return r.snapshot(), nil
}

// Join adds m to the room as connected, with m's ID and TokenHash; m's
// PublicKey, Connected and DisconnectedAt are ignored. Members
// disconnected for longer than the room's ResumeGrace are removed first,
// with their mailboxes. The new member's Generation is 1. It returns ErrRoomNotFound, ErrRoomFull
// if two members remain, an error matching no sentinel if a member already
// has m.ID, and ErrClosed after Close.
func (s *MemoryStore) Join(ctx context.Context, room string, m Member) (Room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r, err := s.lookup(room, now)
	if err != nil {
		return Room{}, err
	}
	r.dropGone(now)
	if len(r.members) >= 2 {
		return Room{}, ErrRoomFull
	}
	if r.member(m.ID) != nil {
		return Room{}, fmt.Errorf("session: join room %q: member %q is already in the room", room, m.ID)
	}
	r.members = append(r.members, &memMember{
		Member: Member{ID: m.ID, TokenHash: m.TokenHash, Connected: true, Generation: 1},
	})
	r.touch(now)
	return r.snapshot(), nil
}

// Reconnect marks member id connected again if tokenHash matches its
// TokenHash (compared in constant time), and increments its Generation.
// The token is checked before the
// grace period, so a wrong token learns nothing about it. It returns
// ErrRoomNotFound, ErrNotMember, ErrBadToken, ErrResumeExpired (and removes
// the member and its mailbox) if the member was disconnected for longer
// than the room's ResumeGrace, and ErrClosed after Close.
func (s *MemoryStore) Reconnect(ctx context.Context, room, id string, tokenHash [32]byte) (Room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r, m, err := s.lookupMember(room, id, now)
	if errors.Is(err, ErrNotMember) && r.resumeGone(id, tokenHash) {
		return Room{}, ErrResumeExpired
	}
	if err != nil {
		return Room{}, err
	}
	if subtle.ConstantTimeCompare(m.TokenHash[:], tokenHash[:]) != 1 {
		return Room{}, ErrBadToken
	}
	if r.graceOver(m, now) {
		r.dropGone(now)
		r.resumeGone(id, tokenHash)
		return Room{}, ErrResumeExpired
	}
	m.Connected = true
	m.DisconnectedAt = time.Time{}
	m.Generation++
	r.touch(now)
	return r.snapshot(), nil
}

// Disconnect marks member id disconnected now, starting its grace period,
// if generation is the member's current Generation (else it changes
// nothing and returns ErrSuperseded: a newer connection holds the seat).
// A member already disconnected keeps its earlier DisconnectedAt, so
// repeated calls cannot extend the grace period. It returns
// ErrRoomNotFound, ErrNotMember, or ErrClosed after Close.
func (s *MemoryStore) Disconnect(ctx context.Context, room, id string, generation uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r, m, err := s.lookupMember(room, id, now)
	if err != nil {
		return err
	}
	if m.Generation != generation {
		return ErrSuperseded
	}
	if m.Connected {
		m.Connected = false
		m.DisconnectedAt = now
	}
	r.touch(now)
	return nil
}

// Leave removes member id and the messages waiting for it; messages it
// sent stay with their recipient. It returns ErrRoomNotFound,
// ErrNotMember, or ErrClosed after Close.
func (s *MemoryStore) Leave(ctx context.Context, room, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r, err := s.lookup(room, now)
	if err != nil {
		return err
	}
	if r.member(id) == nil {
		return ErrNotMember
	}
	r.removeMember(id)
	r.touch(now)
	return nil
}

// SetKey stores member id's public key, key, of group; if the room has no
// group yet, group becomes the room's. It returns ErrRoomNotFound,
// ErrNotMember, ErrKeySet if the member already has a key,
// ErrGroupMismatch if group is not the room's, ErrKeyReflected if key is
// the other member's, and ErrClosed after Close.
func (s *MemoryStore) SetKey(ctx context.Context, room, id, group, key string) (Room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r, m, err := s.lookupMember(room, id, now)
	if err != nil {
		return Room{}, err
	}
	switch other := r.other(id); {
	case m.PublicKey != "":
		return Room{}, ErrKeySet
	case r.group != "" && r.group != group:
		return Room{}, ErrGroupMismatch
	case other != nil && other.PublicKey == key:
		return Room{}, ErrKeyReflected
	}
	r.group = group
	m.PublicKey = key
	r.touch(now)
	return r.snapshot(), nil
}

// Append stores a copy of body, from member from, for the room's other
// member, and returns the message's sequence number, LastSeq+1. It returns
// ErrRoomNotFound, ErrNotMember, ErrHandshakeIncomplete unless both
// members have a key, ErrMailboxFull if the recipient already has
// Config.MaxPending unacknowledged messages or if body would take the
// bytes waiting for it over Config.MaxPendingBytes, ErrSourceOverBudget
// or ErrStoreOverBudget if it would take the bytes waiting from source, or
// in the store, over MemoryConfig.Budget (nothing is stored and no
// sequence number is used), and ErrClosed after Close.
func (s *MemoryStore) Append(ctx context.Context, room, from, source string, body []byte) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r, err := s.lookup(room, now)
	if err != nil {
		return 0, err
	}
	sender := r.member(from)
	if sender == nil {
		return 0, ErrNotMember
	}
	to := r.other(from)
	if to == nil || to.PublicKey == "" || sender.PublicKey == "" {
		return 0, ErrHandshakeIncomplete
	}
	if len(to.mailbox) >= r.cfg.MaxPending {
		return 0, ErrMailboxFull
	}
	if max := r.cfg.MaxPendingBytes; max > 0 && to.bytes+int64(len(body)) > max {
		return 0, ErrMailboxFull
	}
	if err := s.ledger.admit(source, int64(len(body))); err != nil {
		return 0, err
	}
	r.lastSeq++
	to.mailbox = append(to.mailbox, memMessage{Message{Seq: r.lastSeq, From: from, Body: slices.Clone(body)}, source})
	to.bytes += int64(len(body))
	s.ledger.add(source, int64(len(body)))
	s.publishLocked(r, Event{Type: EventMessage, Room: room, Peer: from, Seq: r.lastSeq, Body: body})
	r.touch(now)
	return r.lastSeq, nil
}

// Pending returns copies of the unacknowledged messages for member id with
// a sequence number above after, in order. It does not count as activity.
// It returns ErrRoomNotFound, ErrNotMember, or ErrClosed after Close.
func (s *MemoryStore) Pending(ctx context.Context, room, id string, after uint64) ([]Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, m, err := s.lookupMember(room, id, s.now())
	if err != nil {
		return nil, err
	}
	var out []Message
	for _, msg := range m.mailbox {
		if msg.Seq > after {
			out = append(out, Message{Seq: msg.Seq, From: msg.From, Body: slices.Clone(msg.Body)})
		}
	}
	return out, nil
}

// Ack discards the messages for member id up to and including seq. It
// returns ErrRoomNotFound, ErrNotMember, or ErrClosed after Close.
func (s *MemoryStore) Ack(ctx context.Context, room, id string, seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r, m, err := s.lookupMember(room, id, now)
	if err != nil {
		return err
	}
	// The mailbox is sorted by Seq; slices.Delete zeroes the tail so the
	// discarded bodies can be collected.
	n := 0
	for n < len(m.mailbox) && m.mailbox[n].Seq <= seq {
		m.bytes -= int64(len(m.mailbox[n].Body))
		n++
	}
	s.ledger.release(m.mailbox[:n])
	m.mailbox = slices.Delete(m.mailbox, 0, n)
	r.touch(now)
	return nil
}

// Touch records activity, extending the room's life to TTL from now. It
// returns ErrRoomNotFound, or ErrClosed after Close.
func (s *MemoryStore) Touch(ctx context.Context, room string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r, err := s.lookup(room, now)
	if err != nil {
		return err
	}
	r.touch(now)
	return nil
}

// Publish delivers a copy of ev to every current subscriber of ev.Room,
// without waiting: a subscriber whose buffer is full is ended with
// ErrSlowSubscriber instead. Publishing to a live room counts as activity;
// publishing to a room that does not exist does nothing. It returns
// ErrClosed after Close, otherwise nil.
func (s *MemoryStore) Publish(ctx context.Context, ev Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r, err := s.lookup(ev.Room, now)
	if errors.Is(err, ErrRoomNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	s.publishLocked(r, ev)
	r.touch(now)
	return nil
}

// publishLocked sends a copy of ev to r's subscribers, ending those that
// are too far behind. s.mu must be held.
func (s *MemoryStore) publishLocked(r *memRoom, ev Event) {
	for sub := range r.subs {
		e := ev
		e.Body = slices.Clone(ev.Body)
		select {
		case sub.ch <- &e:
		default:
			s.endLocked(sub, ErrSlowSubscriber)
		}
	}
}

// Subscribe returns the room's events from now on. The subscription ends,
// and its channel is closed, when ctx is done (Err() == nil), when it falls
// MemoryConfig.SubscriberBuffer events behind (ErrSlowSubscriber), when the
// room expires (ErrRoomNotFound) or when the store closes (ErrClosed).
// Subscribing counts as activity. It returns ErrRoomNotFound, or ErrClosed
// after Close.
func (s *MemoryStore) Subscribe(ctx context.Context, room string) (*Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r, err := s.lookup(room, now)
	if err != nil {
		return nil, err
	}
	sub := &memSub{
		ch:   make(chan *Event, s.subBuffer),
		room: r,
	}
	// No goroutine waits for ctx: AfterFunc runs only if ctx ends first,
	// and endLocked unregisters it otherwise.
	sub.stop = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.endLocked(sub, nil)
	})
	r.subs[sub] = struct{}{}
	r.touch(now)
	return NewSubscription(sub.ch, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		return sub.err
	}), nil
}

// Rooms returns the number of live rooms, removing expired ones first. It
// returns ErrClosed after Close.
func (s *MemoryStore) Rooms(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	s.sweepLocked(s.now())
	return len(s.rooms), nil
}

// Ready returns nil: memory is always available. It returns ErrClosed
// after Close.
func (s *MemoryStore) Ready(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

// Close ends every subscription with ErrClosed, discards all rooms and
// stops the sweeper, waiting for it to return. Every method, Close
// included, returns ErrClosed afterwards.
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	for _, r := range s.rooms {
		s.removeLocked(r, ErrClosed)
	}
	s.mu.Unlock()
	s.stop()
	<-s.swept
	return nil
}
