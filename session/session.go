// Package session holds the relay's shared state: rooms, their members, the
// members' public keys and the messages waiting for them, with expiry, and a
// per-room event stream through which the relay instance that holds one
// peer's connection hears what the other peer did, wherever that peer is
// connected.
//
// The relay depends only on the [Store] interface. [MemoryStore] (this
// package, the default) serves one process; a Redis implementation serves
// many instances behind a load balancer. Both pass the same conformance
// suite, package sessiontest.
//
// A Store stores what it is given. It never sees a private key or a
// plaintext: public keys are hex strings and message bodies are end-to-end
// encrypted ciphertext, opaque to it.
package session

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors returned by Store methods. Callers branch with errors.Is.
var (
	// ErrRoomNotFound: no room has the ID, or it expired.
	ErrRoomNotFound = errors.New("session: room not found")
	// ErrRoomExists: CreateRoom was given an ID already in use.
	ErrRoomExists = errors.New("session: room already exists")
	// ErrRoomFull: the room already has two members.
	ErrRoomFull = errors.New("session: room full")
	// ErrTooManyRooms: the store already holds the maximum number of rooms.
	ErrTooManyRooms = errors.New("session: too many rooms")
	// ErrNotMember: the peer is not a member of the room.
	ErrNotMember = errors.New("session: not a member of the room")
	// ErrBadToken: a resume token does not match the member's.
	ErrBadToken = errors.New("session: resume token does not match")
	// ErrResumeExpired: the member was disconnected for longer than the
	// room's resume grace period and has been removed.
	ErrResumeExpired = errors.New("session: resume grace period expired")
	// ErrGroupMismatch: the key's group differs from the room's.
	ErrGroupMismatch = errors.New("session: group differs from the room's")
	// ErrKeySet: the member has already stored a public key.
	ErrKeySet = errors.New("session: public key already set")
	// ErrKeyReflected: the key is the other member's own public key.
	ErrKeyReflected = errors.New("session: key is the other member's")
	// ErrHandshakeIncomplete: a message cannot be stored because the room
	// has no other member, or one of the two has no public key yet.
	ErrHandshakeIncomplete = errors.New("session: handshake incomplete")
	// ErrMailboxFull: the recipient already has the room's maximum number
	// of unacknowledged messages waiting, or the message would take the
	// bytes waiting for it over the room's maximum.
	ErrMailboxFull = errors.New("session: recipient's mailbox is full")
	// ErrSourceOverBudget: the bodies waiting from the sender's source
	// (Append's source) would go over Budget.PerSource. It matches
	// ErrMailboxFull too.
	ErrSourceOverBudget = fmt.Errorf("%w: the sender's source has its budget of bytes waiting", ErrMailboxFull)
	// ErrStoreOverBudget: the bodies waiting in the whole store would go
	// over Budget.Total. It matches ErrMailboxFull too.
	ErrStoreOverBudget = fmt.Errorf("%w: the store holds its budget of bytes waiting", ErrMailboxFull)
	// ErrMessagesLost: the store lost what it had confirmed: messages
	// waiting for a member (from Pending), or a whole room before its
	// expiry (from any method that names it). Only a store whose backend
	// can drop data behind its back returns it: a RedisStore on a Redis
	// that evicts keys when full (see RedisConfig.AllowEviction). Lost data
	// cannot be recovered.
	ErrMessagesLost = errors.New("session: messages lost by the store")
	// ErrSuperseded: Disconnect was called for a connection that no longer
	// holds the member's seat (a newer generation resumed it); nothing
	// changed, and the caller must not announce a drop.
	ErrSuperseded = errors.New("session: a newer connection holds the seat")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("session: store closed")
	// ErrUnavailable: the store's backend cannot be reached (Redis down).
	// Callers should report it and may retry later.
	ErrUnavailable = errors.New("session: store unavailable")
)

// RoomConfig is fixed when a room is created.
type RoomConfig struct {
	// Group is the Diffie-Hellman group's wire name, or "" if the first
	// stored key will fix it.
	Group string
	// TTL is how long the room lives without activity: any successful
	// Store call that names the room, except Room and Pending, counts as
	// activity. Must be > 0. A room with no connected member lives
	// shorter: see EmptyTTL and ResumeGrace.
	TTL time.Duration
	// ResumeGrace is how long a disconnected member keeps its place. Must
	// be > 0. A member whose grace is over is removed, with the messages
	// waiting for it, by the store's sweeper soon after (or by the next
	// call that needs its seat). While the room has members but none is
	// connected, it expires at the latest when the last grace ends, plus
	// GraceMargin(ResumeGrace), even if there is activity.
	ResumeGrace time.Duration
	// EmptyTTL is how long a room with no member (just created, or left by
	// all its members) lives without activity. Zero means TTL, and so does
	// a value above TTL; must not be negative.
	EmptyTTL time.Duration
	// MaxPending bounds the unacknowledged messages waiting for one member.
	// Must be > 0.
	MaxPending int
	// MaxPendingBytes bounds the bytes of the unacknowledged message
	// bodies waiting for one member (the sum of len(Body)). Zero means no
	// bound in bytes, only MaxPending; must not be negative.
	MaxPendingBytes int64
}

// Budget bounds the bytes of the unacknowledged message bodies a store
// holds across all its rooms: in total, and per source (the address, or
// network, that Append names as the sender's). A store's Budget is fixed
// when it is created; RoomConfig.MaxPendingBytes bounds one mailbox.
// Bytes count from Append until the message is acknowledged or its
// mailbox goes (Leave, the end of the member's grace, the room's expiry).
type Budget struct {
	// PerSource bounds the bodies waiting that were sent from one source.
	// Zero means no bound; must not be negative. Append with source ""
	// counts in Total only.
	PerSource int64
	// Total bounds the bodies waiting in the store. Zero means no bound;
	// must not be negative.
	Total int64
}

// GraceMargin is how long after the end of its last member's resume grace
// period a room with no connected member expires: the grace period, or
// 5 s if that is shorter. It leaves the member that comes back at the
// last moment the time to be told ErrResumeExpired rather than
// ErrRoomNotFound.
func GraceMargin(grace time.Duration) time.Duration { return min(grace, 5*time.Second) }

// Member is one of a room's (at most two) members.
type Member struct {
	// ID identifies the member within the room (chosen by the caller).
	ID string
	// TokenHash is the SHA-256 of the member's resume token. The store
	// keeps only the hash and compares in constant time.
	TokenHash [32]byte
	// PublicKey is the member's validated public key (hex), "" until set.
	PublicKey string
	// Connected reports whether an instance holds the member's connection.
	Connected bool
	// DisconnectedAt is when the member was last disconnected; zero while
	// connected.
	DisconnectedAt time.Time
	// Generation counts the connections that have held the member's seat:
	// 1 after Join, one more after each Reconnect. The connection with
	// the highest generation holds the seat; an older one is superseded.
	Generation uint64
}

// Room is a snapshot of a room's state.
type Room struct {
	ID     string
	Config RoomConfig
	// Group is the room's group: Config.Group, or the group of the first
	// stored key, or "".
	Group string
	// Members in join order; at most two.
	Members []Member
	// LastSeq is the sequence number of the room's latest message (0 before
	// the first). Sequence numbers are per room, start at 1 and increase by
	// one per message.
	LastSeq uint64
	// ExpiresAt is when the room expires unless there is activity: TTL
	// after the last activity, EmptyTTL after it while the room has no
	// member, and at most GraceMargin after the end of the last grace
	// period while it has members but none is connected.
	ExpiresAt time.Time
}

// Member returns the member with id, and whether there is one.
func (r Room) Member(id string) (Member, bool) {
	for _, m := range r.Members {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// Other returns the member that is not id, and whether there is one.
func (r Room) Other(id string) (Member, bool) {
	for _, m := range r.Members {
		if m.ID != id {
			return m, true
		}
	}
	return Member{}, false
}

// Message is an end-to-end encrypted message waiting for its recipient.
type Message struct {
	Seq  uint64
	From string // sender's member ID
	Body []byte // opaque ciphertext
}

// EventType says what happened in a room.
type EventType string

// Event types. The store publishes none by itself; the relay publishes them
// with Store.Publish.
const (
	EventJoined  EventType = "joined"  // Peer joined or resumed
	EventLeft    EventType = "left"    // Peer left (Reason says how)
	EventKey     EventType = "key"     // Peer stored its public key (Key)
	EventMessage EventType = "message" // Peer sent message Seq (Body)
)

// Reason says why a member joined or left, in an Event. The values are
// stored in shared stores as they are: a new one must keep the old ones'
// spelling.
type Reason string

// Reasons of events.
const (
	ReasonLeft    Reason = "left"    // EventLeft: the member left for good
	ReasonDropped Reason = "dropped" // EventLeft: its connection ended; it may resume
	ReasonResumed Reason = "resumed" // EventJoined: the member took its seat back
)

// Event is something that happened in a room, published to every
// subscriber of the room (in every process sharing the store), in the order
// Publish was called for events from one publisher.
type Event struct {
	Type   EventType
	Room   string
	Peer   string // the member the event is about (its sender)
	Key    string // EventKey: the public key (hex)
	Group  string // EventKey: the room's group
	Seq    uint64 // EventMessage: the sequence number; EventJoined: the member's Generation
	Body   []byte // EventMessage
	Reason Reason // EventLeft: ReasonLeft or ReasonDropped; EventJoined: ReasonResumed or ""
	// Conn identifies the publishing connection, so that a connection can
	// tell its own events, and a superseded connection its successor's,
	// apart. The store carries it unchanged.
	Conn string
}

// Store is the relay's session state. Every method takes a context, which
// bounds how long it may wait for a backend; all methods are safe for
// concurrent use. Any method may also return ErrClosed and, for stores with
// a network backend, an error wrapping ErrUnavailable; a method that names
// a room may return ErrMessagesLost where ErrRoomNotFound would hide that
// the backend lost the room before its expiry.
type Store interface {
	// CreateRoom creates an empty room. It returns ErrRoomExists if id is
	// taken and ErrTooManyRooms if the store holds maxRooms rooms already
	// (maxRooms <= 0: no limit).
	CreateRoom(ctx context.Context, id string, cfg RoomConfig, maxRooms int) error

	// Room returns a snapshot of the room, or ErrRoomNotFound.
	Room(ctx context.Context, id string) (Room, error)

	// Join adds m, connected, to the room; only m.ID and m.TokenHash are
	// used (keys are set with SetKey). A member disconnected for longer
	// than the grace period is removed first, with the messages waiting
	// for it. It returns ErrRoomNotFound, or ErrRoomFull if two members
	// remain. Two concurrent Joins can never admit a third member. Joining
	// with the ID of a current member is a caller bug and returns an error.
	Join(ctx context.Context, room string, m Member) (Room, error)

	// Reconnect marks member id connected again if tokenHash matches its
	// TokenHash, and increments its Generation (whether or not it was
	// connected: the newest connection holds the seat). It returns
	// ErrRoomNotFound, ErrNotMember, ErrBadToken, or ErrResumeExpired (and
	// removes the member and the messages waiting for it) if it was
	// disconnected for longer than the grace period. ErrBadToken takes
	// precedence over ErrResumeExpired. A member whose grace is over and
	// that the store has already removed (its sweeper does so soon after
	// the grace ends) is still told ErrResumeExpired, once, if tokenHash
	// matches (the store remembers the last two removed per room);
	// otherwise ErrNotMember, or ErrRoomNotFound if the room went too.
	Reconnect(ctx context.Context, room, id string, tokenHash [32]byte) (Room, error)

	// Disconnect marks member id disconnected now, starting its grace
	// period, if generation is its current Generation; a superseded
	// connection's disconnect (an older generation) changes nothing and
	// returns ErrSuperseded. For a member already disconnected it keeps
	// the first time. It returns ErrRoomNotFound or ErrNotMember.
	Disconnect(ctx context.Context, room, id string, generation uint64) error

	// Leave removes member id and the messages waiting for it. It returns
	// ErrRoomNotFound or ErrNotMember.
	Leave(ctx context.Context, room, id string) error

	// SetKey stores member id's public key, key, of group. If the room has
	// no group yet, group becomes the room's. It returns ErrRoomNotFound,
	// ErrNotMember, ErrGroupMismatch, ErrKeySet if the member already has
	// a key, or ErrKeyReflected if key is the other member's key (keys are
	// compared as given: the caller passes one canonical encoding).
	// Concurrent SetKeys can never fix two groups.
	SetKey(ctx context.Context, room, id, group, key string) (Room, error)

	// Append stores body, from member from whose connection comes from
	// source (its address or network, for the store's Budget; "" for
	// none), for the room's other member, and returns the message's
	// sequence number. In the same atomic step it
	// publishes the message's EventMessage (Peer: from, Seq, Body; no
	// Conn) to the room's subscribers, so that a stored message is always
	// announced, even if its sender's relay dies right after. It returns
	// ErrRoomNotFound, ErrNotMember, ErrHandshakeIncomplete unless both
	// members have a key (a message is only ever stored for the member
	// whose key the sender encrypted it to), or ErrMailboxFull when the
	// other member already has Config.MaxPending unacknowledged messages,
	// or when body would take the bytes of the unacknowledged bodies
	// waiting for it over Config.MaxPendingBytes (when that is > 0);
	// ErrSourceOverBudget or ErrStoreOverBudget (both match
	// ErrMailboxFull) when body would take the bytes waiting from source,
	// or in the whole store, over the store's Budget.
	// Refusing stores nothing and uses no sequence number. Ack releases the
	// bytes of the messages it discards; Leave, and the removal of a
	// member, release its mailbox.
	Append(ctx context.Context, room, from, source string, body []byte) (uint64, error)

	// Pending returns the unacknowledged messages for member id with a
	// sequence number above after, in order. It returns ErrRoomNotFound or
	// ErrNotMember. It returns ErrMessagesLost, together with the messages
	// that remain, if messages for id with a sequence number above after
	// were stored but are gone without having been acknowledged; it does
	// so on every call until id acknowledges every message stored for it
	// so far.
	Pending(ctx context.Context, room, id string, after uint64) ([]Message, error)

	// Ack discards the messages for member id up to and including seq. It
	// returns ErrRoomNotFound or ErrNotMember.
	Ack(ctx context.Context, room, id string, seq uint64) error

	// Touch records activity, extending the room's life by its TTL. It
	// returns ErrRoomNotFound.
	Touch(ctx context.Context, room string) error

	// Publish delivers ev to every current subscriber of ev.Room. With no
	// subscriber, or no such room, it does nothing and returns nil.
	Publish(ctx context.Context, ev Event) error

	// Subscribe returns a channel of the room's events, from now on, until
	// ctx is done or the store closes; then the channel is closed. A
	// subscriber that falls more than a bounded number of events behind
	// has its channel closed early (the store never buffers without
	// bound); Subscription.Err then says so, and the subscriber should
	// resynchronise from Pending. When the room expires, its subscriptions
	// end with Err() == ErrRoomNotFound. Subscribing to a room that does
	// not exist returns ErrRoomNotFound.
	Subscribe(ctx context.Context, room string) (*Subscription, error)

	// Rooms returns the number of rooms in the store.
	Rooms(ctx context.Context) (int, error)

	// Ready reports whether the store's backend can be used now, writes
	// included.
	Ready(ctx context.Context) error

	// Close releases the store. Subscriptions end with ErrClosed; after
	// Close every method, Close included, returns ErrClosed.
	Close() error
}

// ErrSlowSubscriber is Subscription.Err after a subscription fell too far
// behind and was ended.
var ErrSlowSubscriber = errors.New("session: subscriber fell behind")

// Subscription is a stream of a room's events.
type Subscription struct {
	// C delivers the events; it is closed when the subscription ends.
	C <-chan *Event
	// err is read after C is closed.
	err func() error
}

// NewSubscription returns a Subscription over c whose Err is errFn. It is
// for Store implementations.
func NewSubscription(c <-chan *Event, errFn func() error) *Subscription {
	return &Subscription{C: c, err: errFn}
}

// Err returns why the subscription ended, once C is closed: nil when its
// context ended, ErrClosed, ErrSlowSubscriber, or a backend error.
func (s *Subscription) Err() error { return s.err() }
