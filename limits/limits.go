// Package limits is the relay's admission control: how many WebSocket
// connections one client IP may hold open, how often one IP may create,
// join or resume rooms, how many rooms one source may create, how often
// one source may try to join or resume one room, and whether a public key
// already used in another room is refused.
//
// [Memory] serves one process; [Redis] keeps the counts in Redis, so that
// every relay instance sharing it enforces one budget: an IP at its
// connection limit on one instance is refused on all of them. The package
// defines no interface: its consumer does (the relay's relay.Limiter).
// Both implementations have the methods below, with the same contract, and
// pass the same conformance suite, package limitstest.
//
// # Methods
//
// Every method is safe for concurrent use. Besides the errors each method
// names, any may return ErrClosed after Close and, for [Redis], an error
// wrapping ErrUnavailable when Redis cannot be reached; the operation then
// did not take effect, unless Redis failed after carrying it out, in which
// case it is undone by expiry (see [Redis]).
//
//   - Connect(ctx, ip) (release func(), err error) counts a connection
//     from ip. It returns a release function to call once, when the
//     connection ends (further calls do nothing), or ErrConnLimit,
//     counting nothing, when ip already has MaxConnsPerIP connections
//     open.
//   - JoinIP(ctx, ip) error counts one create, join or resume by ip. It
//     returns ErrJoinRate, counting nothing, when ip has made JoinsPerIP
//     of them within JoinWindow.
//   - RoomAttempt(ctx, ip, room) error counts one attempt on room by ip's
//     source (see below): a join, or a resume that failed for a wrong
//     token or an unknown peer. It returns ErrRoomAttempts, counting
//     nothing, when that source has made JoinsPerRoom attempts on room
//     within RoomWindow. Other sources' attempts on the room do not
//     count: a stranger cannot spend a member's budget.
//   - CreateRoom(ctx, ip) error counts one room created by ip's source.
//     It returns ErrRoomsPerIP, counting nothing, when that source has
//     created RoomsPerIP rooms within RoomsWindow.
//   - UseKey(ctx, key, room) error records that key, a public key (hex),
//     is used in room, and returns ErrKeyReused, recording nothing, if it
//     was used in a different room within KeyReuseWindow. Using it in the
//     same room again (a resume that sends the key again) is allowed and
//     restarts the window.
//   - Close() error stops the limiter's background work. Connections it
//     counted are not released: a Memory's counts go with it, a Redis's
//     expire with their lease. Every method, Close included, returns
//     ErrClosed afterwards; release functions may still be called.
//
// # Semantics
//
// Connections are counted while open: Connect counts one and returns the
// function that releases it. Redis holds each connection as a
// lease that the limiter holding it renews, so that the connections of an
// instance that crashed stop counting within one lease.
//
// Each limit is its own counter, and each call counts on one: a caller
// that asks JoinIP first and RoomAttempt only when JoinIP admitted (as the
// relay does) never spends a room's budget on an attempt the IP's rate
// refused. The relay asks RoomAttempt of a resume only after the resume
// failed: a member with its token is never refused by the room's budget.
//
// A source is an IPv4 address, or the /64 prefix of an IPv6 address (the
// smallest block a host is normally given, so that one host cannot spread
// its attempts or rooms over its 2^64 addresses); an IPv4-mapped IPv6
// address is its IPv4 address, and a string that is not an IP address is
// a source of its own. Connections and JoinIP count IP addresses as given.
//
// Attempts and creates are counted in sliding windows: two fixed windows, the
// current one and the previous one, whose count is weighted by how much of
// it still lies within one window width of now. A counter admitted
// limit attempts in the previous window and none in the current one,
// halfway through the current window, may make limit/2 more. Unlike a
// fixed window, this does not let a client that spent its budget at the
// end of one window spend all of it again at the start of the next (within
// any half window it admits at most limit*3/2); unlike a log of every
// attempt, it keeps two counters per IP or room, whatever the limit. It
// approximates: it assumes the previous window's attempts were spread
// evenly, so attempts bunched at the ends of two successive windows can
// still come close to twice the limit within one window width. An attempt
// is counted only when it is admitted, so that hammering while refused
// does not prolong the refusal.
//
// A public key is remembered, as its SHA-256 with the SHA-256 of its room,
// for KeyReuseWindow after it was last used; within that time, using it in
// another room is refused.
//
// The limiter sees client IPs, room IDs and public keys, never a private
// key, a resume token or a message.
package limits

import (
	"crypto/sha256"
	"errors"
	"time"

	"github.com/keyrelay/keyrelay/realip"
)

// Config holds the limits. Zero fields take the defaults stated on each; a
// negative value switches that limit off.
type Config struct {
	// MaxConnsPerIP bounds the WebSocket connections one client IP may
	// have open at once. Zero means 32.
	MaxConnsPerIP int
	// JoinsPerIP bounds the create, join and resume attempts of one client
	// IP per JoinWindow. Zero means 60.
	JoinsPerIP int
	// JoinWindow is the width of JoinsPerIP's sliding window. Zero means 1
	// minute; negative switches JoinsPerIP off.
	JoinWindow time.Duration
	// JoinsPerRoom bounds the attempts on one room ID from one source (an
	// IP, or an IPv6 /64) per RoomWindow: joins, and resumes that failed
	// for a wrong token or an unknown peer. Zero means 30.
	JoinsPerRoom int
	// RoomWindow is the width of JoinsPerRoom's sliding window. Zero means
	// 10 minutes; negative switches JoinsPerRoom off.
	RoomWindow time.Duration
	// RoomsPerIP bounds the rooms one source (an IP, or an IPv6 /64) may
	// create per RoomsWindow. Zero means 20.
	RoomsPerIP int
	// RoomsWindow is the width of RoomsPerIP's sliding window: set it to
	// the rooms' TTL, so that a create counts for as long as an idle room
	// it made can live. Zero means 10 minutes; negative switches
	// RoomsPerIP off.
	RoomsWindow time.Duration
	// KeyReuseWindow is how long after a public key was last used in a
	// room its use in another room is refused. Zero (the default) or
	// negative switches the check off; the relay sets it from its
	// configuration.
	KeyReuseWindow time.Duration
}

// Defaults for the zero fields of Config.
const (
	DefaultMaxConnsPerIP = 32
	DefaultJoinsPerIP    = 60
	DefaultJoinWindow    = time.Minute
	DefaultJoinsPerRoom  = 30
	DefaultRoomWindow    = 10 * time.Minute
	DefaultRoomsPerIP    = 20
	DefaultRoomsWindow   = 10 * time.Minute
)

// Errors returned by the limiters' methods. Callers branch with
// errors.Is.
var (
	// ErrConnLimit: the IP already has MaxConnsPerIP connections open.
	ErrConnLimit = errors.New("limits: too many connections from this address")
	// ErrJoinRate: the IP made JoinsPerIP attempts within JoinWindow.
	ErrJoinRate = errors.New("limits: too many join attempts from this address")
	// ErrRoomAttempts: the source made JoinsPerRoom attempts on the room
	// within RoomWindow.
	ErrRoomAttempts = errors.New("limits: too many join attempts on this room")
	// ErrRoomsPerIP: the source created RoomsPerIP rooms within
	// RoomsWindow.
	ErrRoomsPerIP = errors.New("limits: too many rooms created from this address")
	// ErrKeyReused: the public key was used in another room within
	// KeyReuseWindow.
	ErrKeyReused = errors.New("limits: public key already used in another room")
	// ErrClosed: the limiter has been closed.
	ErrClosed = errors.New("limits: limiter closed")
)

// ErrUnavailable is wrapped by the errors of a limiter whose backend
// (Redis) cannot be reached, or cannot serve now: nothing was counted,
// and the same call may succeed later.
var ErrUnavailable = errors.New("limits: unavailable")

// limits is a Config resolved: defaults applied, and 0 for a limit that
// is off.
type limits struct {
	conns      int           // 0: off
	joinsIP    int           // 0: off
	joinWindow time.Duration // > 0 when joinsIP is on
	joinsRoom  int           // 0: off
	roomWindow time.Duration // > 0 when joinsRoom is on
	rooms      int           // 0: off
	roomsWin   time.Duration // > 0 when rooms is on
	keyWindow  time.Duration // 0: off
}

// resolve applies cfg's defaults.
func resolve(cfg Config) limits {
	var l limits
	l.conns = pick(cfg.MaxConnsPerIP, DefaultMaxConnsPerIP)
	l.joinsIP = pick(cfg.JoinsPerIP, DefaultJoinsPerIP)
	l.joinWindow = pick(cfg.JoinWindow, DefaultJoinWindow)
	if l.joinWindow == 0 {
		l.joinsIP = 0
	}
	l.joinsRoom = pick(cfg.JoinsPerRoom, DefaultJoinsPerRoom)
	l.roomWindow = pick(cfg.RoomWindow, DefaultRoomWindow)
	if l.roomWindow == 0 {
		l.joinsRoom = 0
	}
	l.rooms = pick(cfg.RoomsPerIP, DefaultRoomsPerIP)
	l.roomsWin = pick(cfg.RoomsWindow, DefaultRoomsWindow)
	if l.roomsWin == 0 {
		l.rooms = 0
	}
	l.keyWindow = max(cfg.KeyReuseWindow, 0)
	return l
}

// pick returns def for 0, 0 (off) for a negative v, and v otherwise.
func pick[T int | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// source returns the source ip counts under for RoomAttempt and
// CreateRoom: an IPv4 address, an IPv6 address's /64 (realip.Source).
func source(ip string) string { return realip.Source(ip) }

// digest is what the limiters store of a public key or a room ID.
func digest(s string) [sha256.Size]byte { return sha256.Sum256([]byte(s)) }

// sliding is a sliding-window counter: the count of the current fixed
// window, number bucket (time / width), and of the one before it. Redis's
// window.lua keeps the same three numbers and applies the same rule.
type sliding struct {
	bucket     int64
	cur, prev  int64
	hasHistory bool // false for a new counter
}

// admit counts an attempt at now (in the unit of width) and reports
// whether it is admitted: whether prev, weighted by the part of the
// previous window still within width of now, plus cur stays below limit.
// A refused attempt changes nothing.
func (s *sliding) admit(now, width int64, limit int) bool {
	bucket := now / width
	cur, prev := s.cur, s.prev
	switch {
	case !s.hasHistory:
		cur, prev = 0, 0
	case s.bucket > bucket:
		// The clock went back: stay in the counter's window.
		bucket = s.bucket
	case s.bucket == bucket-1:
		cur, prev = 0, cur
	case s.bucket < bucket-1:
		cur, prev = 0, 0
	}
	elapsed := min(max(now-bucket*width, 0), width)
	if float64(prev)*float64(width-elapsed)/float64(width)+float64(cur) >= float64(limit) {
		return false
	}
	*s = sliding{bucket: bucket, cur: cur + 1, prev: prev, hasHistory: true}
	return true
}

// expired reports whether the counter no longer affects any attempt at or
// after now: from bucket+2 on, its windows are both past.
func (s *sliding) expired(now, width int64) bool {
	return now >= (s.bucket+2)*width
}
