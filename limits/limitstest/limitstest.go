// Package limitstest is the conformance suite for the limiters of package
// limits ([limits.Memory], [limits.Redis]): whatever has the methods of
// [Limiter]. Every implementation runs the same suite, from its own test
// file:
//
//	func TestMemory(t *testing.T) {
//		limitstest.Run(t, func(t testing.TB, cfg limits.Config) limitstest.Limiter {
//			return limits.NewMemory(cfg)
//		})
//	}
//
// The suite uses real time. Window tests use windows of a few hundred
// milliseconds and wait, polling up to a deadline, for what must happen;
// nothing asserts that a limiter is fast.
package limitstest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/internal/testkit"
	"github.com/keyrelay/keyrelay/limits"
)

// Timing used by the suite.
const (
	// shortWindow is used where a test waits for a window to pass.
	shortWindow = 300 * time.Millisecond
	// patience bounds every wait for something that must happen.
	patience = 10 * time.Second
	// racers is the number of goroutines racing on one limit.
	racers = 50
)

// Limiter is what the suite tests: the methods of the limiters of package
// limits, whose contract the package documentation states. (Package limits
// defines no interface; the relay defines the one it consumes,
// relay.Limiter, without Close.)
type Limiter interface {
	Connect(ctx context.Context, ip string) (release func(), err error)
	JoinIP(ctx context.Context, ip string) error
	RoomAttempt(ctx context.Context, ip, room string) error
	CreateRoom(ctx context.Context, ip string) error
	UseKey(ctx context.Context, key, room string) error
	Close() error
}

// NewFunc returns a new Limiter enforcing cfg, sharing no counts with any
// other it returned. The suite closes every Limiter it gets (a second
// Close returning ErrClosed is fine); NewFunc may register its own
// cleanup, which runs after that Close.
type NewFunc func(tb testing.TB, cfg limits.Config) Limiter

// Run runs the conformance suite. Its subtests call t.Parallel, so several
// Limiters are open at once.
func Run(t *testing.T, newLimiter NewFunc) {
	open := func(t *testing.T, cfg limits.Config) Limiter {
		t.Helper()
		return Open(t, newLimiter, cfg)
	}
	for _, tc := range []struct {
		name string
		test func(*testing.T, opener)
	}{
		{"Defaults", testDefaults},
		{"Connect", testConnect},
		{"Release", testRelease},
		{"Join", testJoin},
		{"UseKey", testUseKey},
		{"Off", testOff},
		{"Windows", testWindows},
		{"Concurrency", testConcurrency},
		{"Closed", testClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, open)
		})
	}
}

// Open returns a Limiter from newLimiter that is closed when tb ends.
func Open(tb testing.TB, newLimiter NewFunc, cfg limits.Config) Limiter {
	tb.Helper()
	l := newLimiter(tb, cfg)
	testkit.CloseAtEnd(tb, l.Close, limits.ErrClosed, patience)
	return l
}

// opener returns a new Limiter that is closed when the test ends.
type opener func(t *testing.T, cfg limits.Config) Limiter

// off is a Config with every limit off, for tests to switch on the one
// they test.
var off = limits.Config{MaxConnsPerIP: -1, JoinsPerIP: -1, JoinsPerRoom: -1, RoomsPerIP: -1, KeyReuseWindow: -1}

// wantErr fails t unless errors.Is(err, want) (or err is nil, for nil).
func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want %v", what, err, want)
	}
}

// Connect calls l.Connect and fails tb on an error other than
// limits.ErrConnLimit. It returns the release function, or nil when
// refused.
func Connect(tb testing.TB, l Limiter, ip string) func() {
	tb.Helper()
	release, err := l.Connect(tb.Context(), ip)
	switch {
	case errors.Is(err, limits.ErrConnLimit):
		if release != nil {
			tb.Errorf("Connect(%s) refused with a release function", ip)
		}
		return nil
	case err != nil:
		tb.Fatalf("Connect(%s): %v", ip, err)
	case release == nil:
		tb.Fatalf("Connect(%s) = nil release function, nil error", ip)
	}
	return release
}

// Fill connects n times from ip, failing tb unless each is admitted, and
// returns the release functions.
func Fill(tb testing.TB, l Limiter, ip string, n int) []func() {
	tb.Helper()
	var out []func()
	for i := range n {
		release := Connect(tb, l, ip)
		if release == nil {
			tb.Fatalf("Connect(%s) #%d refused with ErrConnLimit, want admitted (limit not reached)", ip, i+1)
		}
		out = append(out, release)
	}
	return out
}

// Eventually polls cond until it returns nil, failing tb with its last
// error if that takes longer than the suite's patience.
func Eventually(tb testing.TB, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(patience)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v: %v", what, patience, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testDefaults(t *testing.T, open opener) {
	l := open(t, limits.Config{})
	ctx := t.Context()
	Fill(t, l, "10.0.0.1", limits.DefaultMaxConnsPerIP)
	if Connect(t, l, "10.0.0.1") != nil {
		t.Errorf("Connect #%d with the default limit admitted, want ErrConnLimit", limits.DefaultMaxConnsPerIP+1)
	}
	for i := range limits.DefaultJoinsPerIP {
		wantErr(t, fmt.Sprintf("JoinIP #%d", i+1), l.JoinIP(ctx, "10.0.0.2"), nil)
	}
	wantErr(t, "JoinIP over the default IP limit", l.JoinIP(ctx, "10.0.0.2"), limits.ErrJoinRate)
	for i := range limits.DefaultJoinsPerRoom {
		wantErr(t, fmt.Sprintf("RoomAttempt #%d on room r", i+1), l.RoomAttempt(ctx, "10.0.0.3", "r"), nil)
	}
	wantErr(t, "RoomAttempt over the default room limit", l.RoomAttempt(ctx, "10.0.0.3", "r"), limits.ErrRoomAttempts)
	wantErr(t, "RoomAttempt on room r from another source", l.RoomAttempt(ctx, "10.0.0.4", "r"), nil)
	for i := range limits.DefaultRoomsPerIP {
		wantErr(t, fmt.Sprintf("CreateRoom #%d", i+1), l.CreateRoom(ctx, "10.0.0.5"), nil)
	}
	wantErr(t, "CreateRoom over the default rooms limit", l.CreateRoom(ctx, "10.0.0.5"), limits.ErrRoomsPerIP)
	// Key reuse is off by default.
	wantErr(t, "UseKey(k, a)", l.UseKey(ctx, "aa", "a"), nil)
	wantErr(t, "UseKey(k, b) with the check off by default", l.UseKey(ctx, "aa", "b"), nil)
}

func testConnect(t *testing.T, open opener) {
	l := open(t, limits.Config{MaxConnsPerIP: 3})
	Fill(t, l, "10.0.0.1", 3)
	for i := range 3 {
		if Connect(t, l, "10.0.0.1") != nil {
			t.Errorf("Connect #%d over the limit admitted, want ErrConnLimit", 4+i)
		}
	}
	// Refusals count nothing, and other IPs have their own budget.
	Fill(t, l, "10.0.0.2", 3)
	Fill(t, l, "2001:db8::1", 3)
	if Connect(t, l, "2001:db8::1") != nil {
		t.Error("Connect #4 from 2001:db8::1 admitted, want ErrConnLimit")
	}
}

func testRelease(t *testing.T, open opener) {
	t.Run("frees one slot", func(t *testing.T) {
		l := open(t, limits.Config{MaxConnsPerIP: 2})
		rel := Fill(t, l, "ip", 2)
		rel[0]()
		again := Connect(t, l, "ip")
		if again == nil {
			t.Fatal("Connect after a release refused, want admitted")
		}
		if Connect(t, l, "ip") != nil {
			t.Error("second Connect after one release admitted, want ErrConnLimit")
		}
	})

	t.Run("exactly once", func(t *testing.T) {
		l := open(t, limits.Config{MaxConnsPerIP: 2})
		rel := Fill(t, l, "ip", 2)
		rel[0]()
		rel[0]()
		rel[0]()
		Fill(t, l, "ip", 1)
		if Connect(t, l, "ip") != nil {
			t.Error("Connect admitted after a triple release of one connection, want ErrConnLimit (double release freed extra slots)")
		}
		rel[1]()
		Fill(t, l, "ip", 1)
	})

	t.Run("concurrent double release", func(t *testing.T) {
		l := open(t, limits.Config{MaxConnsPerIP: racers})
		rel := Fill(t, l, "ip", racers)
		var wg sync.WaitGroup
		for _, r := range rel[:racers/2] {
			for range 2 {
				wg.Go(r)
			}
		}
		wg.Wait()
		Fill(t, l, "ip", racers/2)
		if Connect(t, l, "ip") != nil {
			t.Errorf("Connect admitted with %d open, want ErrConnLimit", racers)
		}
	})

	t.Run("all released", func(t *testing.T) {
		l := open(t, limits.Config{MaxConnsPerIP: 5})
		for range 3 {
			for _, r := range Fill(t, l, "ip", 5) {
				r()
			}
		}
	})
}

func testJoin(t *testing.T, open opener) {
	long := time.Hour
	for _, tc := range []struct {
		name  string
		cfg   limits.Config
		steps []joinStep
	}{
		{
			name: "IP limit",
			cfg:  limits.Config{JoinsPerIP: 3, JoinWindow: long, JoinsPerRoom: -1, RoomsPerIP: -1},
			steps: []joinStep{
				{joinIP, "a", "", nil}, {joinIP, "a", "", nil}, {joinIP, "a", "", nil},
				{joinIP, "a", "", limits.ErrJoinRate},
				{joinIP, "b", "", nil}, // another IP
			},
		},
		{
			name: "room limit per source",
			cfg:  limits.Config{JoinsPerIP: -1, JoinsPerRoom: 2, RoomWindow: long, RoomsPerIP: -1},
			steps: []joinStep{
				{roomAttempt, "a", "r", nil}, {roomAttempt, "a", "r", nil},
				{roomAttempt, "a", "r", limits.ErrRoomAttempts},
				{roomAttempt, "a", "other", nil}, // another room
				// Another source has its own budget on r.
				{roomAttempt, "b", "r", nil}, {roomAttempt, "b", "r", nil},
				{roomAttempt, "b", "r", limits.ErrRoomAttempts},
			},
		},
		{
			name: "a stranger cannot spend a member's budget",
			cfg:  limits.Config{JoinsPerIP: -1, JoinsPerRoom: 2, RoomWindow: long, RoomsPerIP: -1},
			steps: []joinStep{
				{roomAttempt, "203.0.113.9", "r", nil}, {roomAttempt, "203.0.113.9", "r", nil},
				{roomAttempt, "203.0.113.9", "r", limits.ErrRoomAttempts},
				{roomAttempt, "203.0.113.9", "r", limits.ErrRoomAttempts},
				{roomAttempt, "203.0.113.9", "r", limits.ErrRoomAttempts},
				{roomAttempt, "198.51.100.1", "r", nil}, {roomAttempt, "198.51.100.1", "r", nil},
			},
		},
		{
			name: "IPv6 /64 is one source",
			cfg:  limits.Config{JoinsPerIP: -1, JoinsPerRoom: 2, RoomWindow: long, RoomsPerIP: -1},
			steps: []joinStep{
				{roomAttempt, "2001:db8::1", "r", nil}, {roomAttempt, "2001:db8::2", "r", nil},
				{roomAttempt, "2001:db8::ffff:1", "r", limits.ErrRoomAttempts},
				{roomAttempt, "2001:db8:0:1::1", "r", nil}, // another /64
				// An IPv4-mapped address is its IPv4 address.
				{roomAttempt, "::ffff:192.0.2.1", "r", nil}, {roomAttempt, "192.0.2.1", "r", nil},
				{roomAttempt, "192.0.2.1", "r", limits.ErrRoomAttempts},
				{roomAttempt, "192.0.2.2", "r", nil},
			},
		},
		{
			name: "rooms per source",
			cfg:  limits.Config{JoinsPerIP: -1, JoinsPerRoom: -1, RoomsPerIP: 2, RoomsWindow: long},
			steps: []joinStep{
				{createRoom, "a", "", nil}, {createRoom, "a", "", nil},
				{createRoom, "a", "", limits.ErrRoomsPerIP},
				{createRoom, "b", "", nil}, // another IP
				{createRoom, "2001:db8::1", "", nil}, {createRoom, "2001:db8::2", "", nil},
				{createRoom, "2001:db8::3", "", limits.ErrRoomsPerIP}, // the same /64
				{createRoom, "2001:db8:0:1::1", "", nil},
			},
		},
		{
			name: "each call counts on its own limit",
			cfg:  limits.Config{JoinsPerIP: 1, JoinWindow: long, JoinsPerRoom: 1, RoomWindow: long, RoomsPerIP: 1, RoomsWindow: long},
			steps: []joinStep{
				{joinIP, "a", "", nil}, {joinIP, "a", "", limits.ErrJoinRate},
				// The IP's refusals spent nothing of the room's or the
				// rooms' budget, and each spends nothing of the others'.
				{roomAttempt, "a", "r", nil}, {roomAttempt, "a", "r", limits.ErrRoomAttempts},
				{createRoom, "a", "", nil}, {createRoom, "a", "", limits.ErrRoomsPerIP},
				{joinIP, "b", "", nil},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, tc.cfg)
			runJoins(t, l, tc.steps)
		})
	}
}

// The calls a joinStep makes.
const (
	joinIP      = "JoinIP"
	roomAttempt = "RoomAttempt"
	createRoom  = "CreateRoom"
)

// joinStep is a JoinIP, RoomAttempt or CreateRoom call and the error it
// must return.
type joinStep struct {
	call     string
	ip, room string
	want     error
}

func runJoins(t *testing.T, l Limiter, steps []joinStep) {
	t.Helper()
	ctx := t.Context()
	for i, s := range steps {
		var err error
		switch s.call {
		case joinIP:
			err = l.JoinIP(ctx, s.ip)
		case roomAttempt:
			err = l.RoomAttempt(ctx, s.ip, s.room)
		case createRoom:
			err = l.CreateRoom(ctx, s.ip)
		default:
			t.Fatalf("step %d: unknown call %q", i+1, s.call)
		}
		wantErr(t, fmt.Sprintf("step %d: %s(%q, %q)", i+1, s.call, s.ip, s.room), err, s.want)
	}
}

func testUseKey(t *testing.T, open opener) {
	const k1, k2 = "0a1b2c", "d3e4f5"
	for _, tc := range []struct {
		name  string
		steps []keyStep
	}{
		{"same room again", []keyStep{{k1, "r", nil}, {k1, "r", nil}, {k1, "r", nil}}},
		{"another room", []keyStep{
			{k1, "r", nil}, {k1, "s", limits.ErrKeyReused},
			{k1, "r", nil}, // the refusal recorded nothing
			{k1, "s", limits.ErrKeyReused},
		}},
		{"keys apart", []keyStep{{k1, "r", nil}, {k2, "s", nil}, {k2, "r", limits.ErrKeyReused}, {k1, "s", limits.ErrKeyReused}}},
		{"two keys in one room", []keyStep{{k1, "r", nil}, {k2, "r", nil}}},
		{"empty room", []keyStep{{k1, "", nil}, {k1, "r", limits.ErrKeyReused}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, limits.Config{KeyReuseWindow: time.Hour})
			for i, s := range tc.steps {
				wantErr(t, fmt.Sprintf("step %d: UseKey(%s, %q)", i+1, s.key, s.room), l.UseKey(t.Context(), s.key, s.room), s.want)
			}
		})
	}
}

// keyStep is a UseKey call and the error it must return.
type keyStep struct {
	key, room string
	want      error
}

func testOff(t *testing.T, open opener) {
	for _, tc := range []struct {
		name string
		cfg  limits.Config
	}{
		{"all -1", off},
		{"negative windows", limits.Config{MaxConnsPerIP: -1, JoinsPerIP: 1, JoinWindow: -1, JoinsPerRoom: 1, RoomWindow: -1, RoomsPerIP: 1, RoomsWindow: -1, KeyReuseWindow: -time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, tc.cfg)
			ctx := t.Context()
			rel := Fill(t, l, "ip", 100)
			for _, r := range rel {
				r()
				r()
			}
			for i := range 100 {
				wantErr(t, fmt.Sprintf("JoinIP #%d", i+1), l.JoinIP(ctx, "ip"), nil)
				wantErr(t, fmt.Sprintf("RoomAttempt #%d", i+1), l.RoomAttempt(ctx, "ip", "r"), nil)
				wantErr(t, fmt.Sprintf("CreateRoom #%d", i+1), l.CreateRoom(ctx, "ip"), nil)
			}
			wantErr(t, "UseKey(k, a)", l.UseKey(ctx, "aa", "a"), nil)
			wantErr(t, "UseKey(k, b)", l.UseKey(ctx, "aa", "b"), nil)
		})
	}

	t.Run("one limit off leaves the others", func(t *testing.T) {
		cfg := limits.Config{MaxConnsPerIP: -1, JoinsPerIP: -1, JoinsPerRoom: 1, RoomWindow: time.Hour, RoomsPerIP: -1, KeyReuseWindow: time.Hour}
		l := open(t, cfg)
		Fill(t, l, "ip", 100)
		runJoins(t, l, []joinStep{
			{joinIP, "ip", "", nil}, {joinIP, "ip", "", nil},
			{createRoom, "ip", "", nil}, {createRoom, "ip", "", nil},
			{roomAttempt, "ip", "r", nil}, {roomAttempt, "ip", "r", limits.ErrRoomAttempts},
		})
		wantErr(t, "UseKey(k, a)", l.UseKey(t.Context(), "aa", "a"), nil)
		wantErr(t, "UseKey(k, b)", l.UseKey(t.Context(), "aa", "b"), limits.ErrKeyReused)
	})
}

func testWindows(t *testing.T, open opener) {
	// Each case fills a limit, checks that it refuses, and waits for the
	// window to admit again.
	for _, tc := range []struct {
		name string
		cfg  limits.Config
		fill func(ctx context.Context, l Limiter) error // one admitted call
		n    int                                        // how many fill
		want error                                      // of one more
	}{
		{
			name: "IP window",
			cfg:  limits.Config{MaxConnsPerIP: -1, JoinsPerIP: 2, JoinWindow: shortWindow, JoinsPerRoom: -1},
			fill: func(ctx context.Context, l Limiter) error { return l.JoinIP(ctx, "ip") },
			n:    2,
			want: limits.ErrJoinRate,
		},
		{
			name: "room window",
			cfg:  limits.Config{MaxConnsPerIP: -1, JoinsPerIP: -1, JoinsPerRoom: 2, RoomWindow: shortWindow},
			fill: func(ctx context.Context, l Limiter) error { return l.RoomAttempt(ctx, "ip", "r") },
			n:    2,
			want: limits.ErrRoomAttempts,
		},
		{
			name: "rooms window",
			cfg:  limits.Config{MaxConnsPerIP: -1, JoinsPerIP: -1, JoinsPerRoom: -1, RoomsPerIP: 2, RoomsWindow: shortWindow},
			fill: func(ctx context.Context, l Limiter) error { return l.CreateRoom(ctx, "ip") },
			n:    2,
			want: limits.ErrRoomsPerIP,
		},
		{
			name: "key window",
			cfg:  limits.Config{MaxConnsPerIP: -1, JoinsPerIP: -1, JoinsPerRoom: -1, KeyReuseWindow: shortWindow},
			fill: func(ctx context.Context, l Limiter) error { return l.UseKey(ctx, "aa", "r") },
			n:    1,
			want: limits.ErrKeyReused,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, tc.cfg)
			ctx := t.Context()
			for i := range tc.n {
				wantErr(t, fmt.Sprintf("call #%d", i+1), tc.fill(ctx, l), nil)
			}
			// The one more: the same call for joins, the key in another
			// room for UseKey.
			more := tc.fill
			if tc.want == limits.ErrKeyReused {
				more = func(ctx context.Context, l Limiter) error { return l.UseKey(ctx, "aa", "s") }
			}
			wantErr(t, "call over the limit", more(ctx, l), tc.want)
			Eventually(t, "admitted again after the window", func() error { return more(ctx, l) })
		})
	}

	t.Run("sliding, not fixed", func(t *testing.T) {
		// A fixed window admits 2*limit attempts across a window
		// boundary. A sliding one, within any span of half a window,
		// admits at most limit*3/2: the span reaches at most halfway into
		// the next window, where the previous window's count still
		// weighs at least a half. Count the admissions that completed
		// within half a window of the first call's start (they ran within
		// that span on any clock the limiter reads on this machine).
		const limit = 20
		window := 400 * time.Millisecond
		l := open(t, limits.Config{MaxConnsPerIP: -1, JoinsPerIP: limit, JoinWindow: window, JoinsPerRoom: -1})
		ctx := t.Context()
		// Start a quarter window before a multiple of the window width
		// since the Unix epoch: a limiter whose windows are aligned so
		// (both here are) then sees the span straddle a boundary, where a
		// fixed window would admit 2*limit.
		width := window.Milliseconds()
		wait := (3*width/4 - time.Now().UnixMilli()%width + width) % width
		time.Sleep(time.Duration(wait) * time.Millisecond)
		start := time.Now()
		admitted := 0
		for time.Since(start) < window/2 {
			err := l.JoinIP(ctx, "ip")
			switch {
			case err == nil && time.Since(start) < window/2:
				admitted++
			case err != nil && !errors.Is(err, limits.ErrJoinRate):
				t.Fatalf("Join: %v", err)
			}
		}
		if admitted > limit*3/2 {
			t.Errorf("%d attempts admitted within %v, want at most %d (limit %d per %v)", admitted, window/2, limit*3/2, limit, window)
		}
	})
}

func testConcurrency(t *testing.T, open opener) {
	const limit = 10
	race := func(t *testing.T, wantOK int, call func(i int) error, want error) {
		t.Helper()
		var ok, refused atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range racers {
			wg.Go(func() {
				<-start
				switch err := call(i); {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, want):
					refused.Add(1)
				default:
					t.Errorf("call %d: %v", i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if got := ok.Load(); got != int64(wantOK) {
			t.Errorf("%d of %d racing calls admitted (%d refused), want %d", got, racers, refused.Load(), wantOK)
		}
	}

	t.Run("Connect", func(t *testing.T) {
		l := open(t, limits.Config{MaxConnsPerIP: limit})
		var mu sync.Mutex
		var rel []func()
		race(t, limit, func(int) error {
			r, err := l.Connect(t.Context(), "ip")
			if err == nil {
				mu.Lock()
				rel = append(rel, r)
				mu.Unlock()
			}
			return err
		}, limits.ErrConnLimit)
		// Releasing them all, concurrently, frees every slot.
		var wg sync.WaitGroup
		for _, r := range rel {
			wg.Go(r)
		}
		wg.Wait()
		Fill(t, l, "ip", limit)
	})

	t.Run("Join", func(t *testing.T) {
		l := open(t, limits.Config{JoinsPerIP: limit, JoinWindow: time.Hour, JoinsPerRoom: -1})
		race(t, limit, func(int) error { return l.JoinIP(t.Context(), "ip") }, limits.ErrJoinRate)
	})

	t.Run("RoomAttempt", func(t *testing.T) {
		l := open(t, limits.Config{JoinsPerIP: -1, JoinsPerRoom: limit, RoomWindow: time.Hour})
		race(t, limit, func(int) error { return l.RoomAttempt(t.Context(), "ip", "r") }, limits.ErrRoomAttempts)
	})

	t.Run("RoomAttempt from many sources", func(t *testing.T) {
		l := open(t, limits.Config{JoinsPerIP: -1, JoinsPerRoom: 1, RoomWindow: time.Hour})
		race(t, racers, func(i int) error { return l.RoomAttempt(t.Context(), fmt.Sprint("ip", i), "r") }, limits.ErrRoomAttempts)
	})

	t.Run("CreateRoom", func(t *testing.T) {
		l := open(t, limits.Config{JoinsPerIP: -1, RoomsPerIP: limit, RoomsWindow: time.Hour})
		race(t, limit, func(int) error { return l.CreateRoom(t.Context(), "2001:db8::1") }, limits.ErrRoomsPerIP)
	})

	t.Run("UseKey", func(t *testing.T) {
		l := open(t, limits.Config{KeyReuseWindow: time.Hour})
		race(t, 1, func(i int) error { return l.UseKey(t.Context(), "aa", fmt.Sprint("room", i)) }, limits.ErrKeyReused)
	})
}

func testClosed(t *testing.T, open opener) {
	l := open(t, limits.Config{KeyReuseWindow: time.Hour})
	ctx := t.Context()
	rel := Fill(t, l, "ip", 1)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if r, err := l.Connect(ctx, "ip"); !errors.Is(err, limits.ErrClosed) || r != nil {
		t.Errorf("Connect after Close = %v, %v; want nil, ErrClosed", r != nil, err)
	}
	wantErr(t, "JoinIP after Close", l.JoinIP(ctx, "ip"), limits.ErrClosed)
	wantErr(t, "RoomAttempt after Close", l.RoomAttempt(ctx, "ip", "r"), limits.ErrClosed)
	wantErr(t, "CreateRoom after Close", l.CreateRoom(ctx, "ip"), limits.ErrClosed)
	wantErr(t, "UseKey after Close", l.UseKey(ctx, "aa", "r"), limits.ErrClosed)
	wantErr(t, "second Close", l.Close(), limits.ErrClosed)
	rel[0]() // harmless
}

// Benchmark measures Connect with its release, JoinIP and RoomAttempt, on Limiters
// from newLimiter, with limits high enough never to refuse.
func Benchmark(b *testing.B, newLimiter NewFunc) {
	b.Run("ConnectRelease", func(b *testing.B) {
		l := Open(b, newLimiter, limits.Config{MaxConnsPerIP: 1 << 30})
		ctx := b.Context()
		b.ReportAllocs()
		for b.Loop() {
			release, err := l.Connect(ctx, "192.0.2.1")
			if err != nil {
				b.Fatal(err)
			}
			release()
		}
	})
	b.Run("JoinIP", func(b *testing.B) {
		l := Open(b, newLimiter, limits.Config{JoinsPerIP: 1 << 30})
		ctx := b.Context()
		b.ReportAllocs()
		for b.Loop() {
			if err := l.JoinIP(ctx, "192.0.2.1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("RoomAttempt", func(b *testing.B) {
		l := Open(b, newLimiter, limits.Config{JoinsPerRoom: 1 << 30})
		ctx := b.Context()
		b.ReportAllocs()
		for b.Loop() {
			if err := l.RoomAttempt(ctx, "2001:db8::1", "room"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
