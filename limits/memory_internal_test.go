package limits

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/internal/testkit"
)

func TestSlidingWindow(t *testing.T) {
	const width, limit = 1000, 10
	for _, tc := range []struct {
		name string
		// fill are the times of attempts made first, all expected to be
		// admitted; then at is the time from which want more are
		// admitted before the first refusal.
		fill []int64
		at   int64
		want int
	}{
		{"fresh", nil, 5_000, 10},
		{"same window", []int64{5_000, 5_100, 5_200}, 5_900, 7},
		{"previous full, at the start", repeat(5_000, 10), 6_000, 0},
		{"previous full, a tenth in", repeat(5_000, 10), 6_100, 1},
		{"previous full, halfway", repeat(5_000, 10), 6_500, 5},
		{"previous full, at the end", repeat(5_000, 10), 6_999, 10}, // 0.01 + c < 10
		{"previous half, halfway", repeat(5_999, 5), 6_500, 8},      // 2.5 + c < 10
		{"two windows on", repeat(5_000, 10), 7_000, 10},
		{"long after", repeat(5_000, 10), 90_000, 10},
		{"clock went back", repeat(5_000, 10), 4_000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s sliding
			for i, at := range tc.fill {
				if !s.admit(at, width, limit) {
					t.Fatalf("fill attempt %d at %d refused", i+1, at)
				}
			}
			got := 0
			for s.admit(tc.at, width, limit) {
				got++
				if got > 2*limit {
					break
				}
			}
			if got != tc.want {
				t.Errorf("%d admitted at %d, want %d", got, tc.at, tc.want)
			}
		})
	}
}

func repeat(at int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = at
	}
	return out
}

func TestSlidingExpired(t *testing.T) {
	var s sliding
	s.admit(5_500, 1000, 1)
	for _, tc := range []struct {
		now  int64
		want bool
	}{{5_500, false}, {6_999, false}, {7_000, true}, {70_000, true}} {
		if got := s.expired(tc.now, 1000); got != tc.want {
			t.Errorf("expired(%d) = %v, want %v", tc.now, got, tc.want)
		}
	}
}

// TestMemoryBounded checks that the sweeper removes every entry once it
// can no longer affect a decision, so that the maps do not grow with the
// number of IPs, rooms and keys ever seen.
func TestMemoryBounded(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Unix(1_700_000_000, 0))
	const window = time.Minute
	m := newMemory(Config{JoinWindow: window, RoomWindow: 2 * window, RoomsWindow: 2 * window, RoomsPerIP: 1, KeyReuseWindow: window}, clock.Now)
	defer m.Close()
	ctx := t.Context()
	const n = 1000
	var releases []func()
	for i := range n {
		ip, room := fmt.Sprint("ip", i), fmt.Sprint("room", i)
		release, err := m.Connect(ctx, ip)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
		if err := m.JoinIP(ctx, ip); err != nil {
			t.Fatal(err)
		}
		if err := m.RoomAttempt(ctx, ip, room); err != nil {
			t.Fatal(err)
		}
		if err := m.CreateRoom(ctx, ip); err != nil {
			t.Fatal(err)
		}
		if err := m.UseKey(ctx, fmt.Sprint("key", i), room); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string, wantConns, wantIPs, wantRooms, wantKeys int) {
		t.Helper()
		m.sweepOnce()
		conns, ips, rooms, creators, keys := m.size()
		if conns != wantConns || ips != wantIPs || rooms != wantRooms || creators != wantRooms || keys != wantKeys {
			t.Errorf("%s: %d conns, %d IPs, %d rooms, %d creators, %d keys; want %d, %d, %d, %d, %d",
				step, conns, ips, rooms, creators, keys, wantConns, wantIPs, wantRooms, wantRooms, wantKeys)
		}
	}
	check("at once", n, n, n, n)
	for _, r := range releases {
		r()
	}
	check("released", 0, n, n, n)
	clock.Advance(window - time.Nanosecond)
	check("just inside the windows", 0, n, n, n)
	clock.Advance(time.Nanosecond)
	check("key window past", 0, n, n, 0)
	// A join counter lasts until both its windows are past: at most two
	// widths.
	clock.Advance(window)
	check("two join windows on", 0, 0, n, 0)
	clock.Advance(2 * window)
	check("two room windows on", 0, 0, 0, 0)
}

// TestMemorySweeper checks that the background sweeper runs by itself.
func TestMemorySweeper(t *testing.T) {
	t.Parallel()
	m := NewMemory(Config{JoinWindow: 50 * time.Millisecond, RoomWindow: 50 * time.Millisecond, RoomsWindow: 50 * time.Millisecond, KeyReuseWindow: 50 * time.Millisecond})
	defer m.Close()
	ctx := t.Context()
	for i := range 100 {
		ip, room := fmt.Sprint("ip", i), fmt.Sprint("room", i)
		if err := m.JoinIP(ctx, ip); err != nil {
			t.Fatal(err)
		}
		if err := m.RoomAttempt(ctx, ip, room); err != nil {
			t.Fatal(err)
		}
		if err := m.CreateRoom(ctx, ip); err != nil {
			t.Fatal(err)
		}
		if err := m.UseKey(ctx, fmt.Sprint("key", i), room); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, ips, rooms, creators, keys := m.size()
		if ips+rooms+creators+keys == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %d IPs, %d rooms, %d creators, %d keys left, want none", ips, rooms, creators, keys)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
