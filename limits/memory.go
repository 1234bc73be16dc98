package limits

import (
	"context"
	"sync"
	"time"

	"github.com/keyrelay/keyrelay/internal/background"
)

// Sweep interval bounds of a Memory: it sweeps every smallest window (of
// those that are on), but at most every memSweepMin and at least every
// memSweepMax.
const (
	memSweepMin = 10 * time.Millisecond
	memSweepMax = time.Second
)

// Memory is the in-memory limiter. It serves one process: its counts are
// not shared with other relay instances and do not survive a restart.
//
// All state sits behind one mutex; no method blocks on anything else. Its
// memory is bounded by what the windows can hold: a background goroutine,
// stopped by Close, removes the join counters and key records that no
// longer affect any decision, every smallest window (at least every
// second), and an IP's connection count goes when its last connection is
// released.
//
// Create one with [NewMemory]; the zero Memory is not usable.
type Memory struct {
	// Static after construction.
	lim        limits
	now        func() time.Time
	sweepEvery time.Duration
	stop       context.CancelFunc // called by Close to stop the sweeper
	swept      <-chan struct{}    // closed by the sweeper when it returns

	mu       sync.Mutex
	closed   bool                    // guarded by mu
	conns    map[string]int          // guarded by mu; open connections by IP, never 0
	ips      map[string]*sliding     // guarded by mu; JoinIP's counters, by IP
	rooms    map[roomSource]*sliding // guarded by mu; RoomAttempt's counters
	creators map[string]*sliding     // guarded by mu; CreateRoom's counters, by source
	keys     map[[32]byte]memKeyUse  // guarded by mu; by digest of the key
}

// roomSource is the key of a room attempt counter: a room and a source.
type roomSource struct{ room, source string }

// memKeyUse is where and until when a public key is remembered.
type memKeyUse struct {
	room    [32]byte // digest of the room ID
	expires time.Time
}

// NewMemory returns a Memory enforcing cfg. Call Close to stop its
// sweeper.
func NewMemory(cfg Config) *Memory {
	return newMemory(cfg, time.Now)
}

// newMemory is NewMemory with a clock, for tests.
func newMemory(cfg Config, now func() time.Time) *Memory {
	lim := resolve(cfg)
	sweep := memSweepMax
	for _, w := range []time.Duration{lim.joinWindow, lim.roomWindow, lim.roomsWin, lim.keyWindow} {
		if w > 0 {
			sweep = min(sweep, w)
		}
	}
	m := &Memory{
		lim:        lim,
		now:        now,
		sweepEvery: max(sweep, memSweepMin),
		conns:      make(map[string]int),
		ips:        make(map[string]*sliding),
		rooms:      make(map[roomSource]*sliding),
		creators:   make(map[string]*sliding),
		keys:       make(map[[32]byte]memKeyUse),
	}
	ctx, stop := context.WithCancel(context.Background())
	m.stop, m.swept = stop, background.Every(ctx, m.sweepEvery, m.sweepOnce)
	return m
}

// Connect counts a connection from ip and returns its release function,
// or returns ErrConnLimit if ip has MaxConnsPerIP connections open, or
// ErrClosed after Close.
func (m *Memory) Connect(ctx context.Context, ip string) (func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if m.lim.conns == 0 {
		return func() {}, nil
	}
	if m.conns[ip] >= m.lim.conns {
		return nil, ErrConnLimit
	}
	m.conns[ip]++
	var once sync.Once
	return func() { once.Do(func() { m.release(ip) }) }, nil
}

// release uncounts a connection from ip.
func (m *Memory) release(ip string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conns[ip]--; m.conns[ip] <= 0 {
		delete(m.conns, ip)
	}
}

// JoinIP counts a create, join or resume by ip. It returns ErrJoinRate
// (see the package documentation), or ErrClosed after Close.
func (m *Memory) JoinIP(ctx context.Context, ip string) error {
	return count(m, m.ips, ip, m.lim.joinWindow, m.lim.joinsIP, ErrJoinRate)
}

// RoomAttempt counts an attempt on room by ip's source. It returns
// ErrRoomAttempts (see the package documentation), or ErrClosed after
// Close.
func (m *Memory) RoomAttempt(ctx context.Context, ip, room string) error {
	return count(m, m.rooms, roomSource{room, source(ip)}, m.lim.roomWindow, m.lim.joinsRoom, ErrRoomAttempts)
}

// CreateRoom counts a room created by ip's source. It returns
// ErrRoomsPerIP (see the package documentation), or ErrClosed after
// Close.
func (m *Memory) CreateRoom(ctx context.Context, ip string) error {
	return count(m, m.creators, source(ip), m.lim.roomsWin, m.lim.rooms, ErrRoomsPerIP)
}

// count counts an attempt on counters[id] under m's lock, and returns
// refused if the counter refuses it; a limit of 0 is off.
func count[K comparable](m *Memory, counters map[K]*sliding, id K, window time.Duration, limit int, refused error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if limit == 0 {
		return nil
	}
	c := counters[id]
	if c == nil {
		c = new(sliding)
	}
	if !c.admit(m.now().UnixNano(), int64(window), limit) {
		return refused
	}
	counters[id] = c
	return nil
}

// UseKey records that key is used in room. It returns ErrKeyReused (see
// the package documentation), or ErrClosed after Close.
func (m *Memory) UseKey(ctx context.Context, key, room string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.lim.keyWindow == 0 {
		return nil
	}
	now := m.now()
	k, r := digest(key), digest(room)
	if u, ok := m.keys[k]; ok && now.Before(u.expires) && u.room != r {
		return ErrKeyReused
	}
	m.keys[k] = memKeyUse{room: r, expires: now.Add(m.lim.keyWindow)}
	return nil
}

// Close stops the sweeper and forgets every count. Every method, Close
// included, returns ErrClosed afterwards; release functions may still be
// called and do nothing.
func (m *Memory) Close() error {
	if !m.forgetAll() {
		return ErrClosed
	}
	m.stop()
	<-m.swept
	return nil
}

// forgetAll marks m closed and drops every count. It reports false if m
// was closed already.
func (m *Memory) forgetAll() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	wasOpen := !m.closed
	m.closed = true
	clear(m.conns)
	clear(m.ips)
	clear(m.rooms)
	clear(m.creators)
	clear(m.keys)
	return wasOpen
}

// sweepOnce removes the counters and key records that no longer affect
// any decision.
func (m *Memory) sweepOnce() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	ns := now.UnixNano()
	sweep(m.ips, ns, m.lim.joinWindow)
	sweep(m.rooms, ns, m.lim.roomWindow)
	sweep(m.creators, ns, m.lim.roomsWin)
	for k, u := range m.keys {
		if !now.Before(u.expires) {
			delete(m.keys, k)
		}
	}
}

// sweep removes the counters that no longer affect any decision at now.
func sweep[K comparable](counters map[K]*sliding, now int64, window time.Duration) {
	for id, c := range counters {
		if c.expired(now, int64(window)) {
			delete(counters, id)
		}
	}
}

// size returns the number of entries the Memory holds, for tests.
func (m *Memory) size() (conns, ips, rooms, creators, keys int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns), len(m.ips), len(m.rooms), len(m.creators), len(m.keys)
}
