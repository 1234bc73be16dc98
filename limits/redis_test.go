package limits_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/limits/limitstest"
	"github.com/keyrelay/keyrelay/session/redistest"
)

// quiet drops the Limiters' background warnings, which the tests that
// stop Redis provoke on purpose.
var quiet = slog.New(slog.DiscardHandler)

// uniquePrefix returns a key prefix no other test uses.
func uniquePrefix(tb testing.TB) string {
	var b [4]byte
	rand.Read(b[:])
	name := strings.NewReplacer(" ", "_", "{", "(", "}", ")").Replace(tb.Name())
	return "kr-test:" + name + ":" + hex.EncodeToString(b[:]) + ":"
}

// newClient returns a client for the server at addr, closed when tb ends.
// Calls give up at their context's deadline and are never retried, as the
// relay's client is configured.
func newClient(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	tb.Cleanup(func() { c.Close() })
	return c
}

// newRedis returns a NewFunc for Limiters on client, each under a prefix
// of its own.
func newRedis(client redis.UniversalClient) limitstest.NewFunc {
	return func(tb testing.TB, cfg limits.Config) limitstest.Limiter {
		return mustNewRedis(tb, client, cfg, limits.RedisOptions{Prefix: uniquePrefix(tb), Logger: quiet})
	}
}

// mustNewRedis returns limits.NewRedis(client, cfg, opts), failing tb on
// an error.
func mustNewRedis(tb testing.TB, client redis.UniversalClient, cfg limits.Config, opts limits.RedisOptions) *limits.Redis {
	tb.Helper()
	l, err := limits.NewRedis(client, cfg, opts)
	if err != nil {
		tb.Fatalf("NewRedis: %v", err)
	}
	return l
}

func TestRedis(t *testing.T) {
	t.Parallel()
	limitstest.Run(t, newRedis(newClient(t, redistest.Start(t))))
}

// TestRedisCluster runs the suite on a one-node Redis Cluster, which
// refuses scripts whose keys lie in different hash slots.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	addr := redistest.StartCluster(t).Addr
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	limitstest.Run(t, newRedis(c))
}

func BenchmarkRedis(b *testing.B) {
	limitstest.Benchmark(b, newRedis(newClient(b, redistest.Start(b))))
}

// instances returns n Limiters on one Redis with one prefix, as n relay
// instances would have, closed when t ends.
func instances(t *testing.T, client redis.UniversalClient, cfg limits.Config, opts limits.RedisOptions, n int) []limitstest.Limiter {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = uniquePrefix(t)
	}
	opts.Logger = quiet
	var out []limitstest.Limiter
	for range n {
		out = append(out, limitstest.Open(t, func(tb testing.TB, cfg limits.Config) limitstest.Limiter {
			return mustNewRedis(tb, client, cfg, opts)
		}, cfg))
	}
	return out
}

func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want %v", what, err, want)
	}
}

// TestRedisSharedBudget checks that two Limiters sharing Redis and prefix,
// as two relay instances do, enforce one budget.
func TestRedisSharedBudget(t *testing.T) {
	t.Parallel()
	client := newClient(t, redistest.Start(t))
	ctx := t.Context()

	t.Run("connections", func(t *testing.T) {
		l := instances(t, client, limits.Config{MaxConnsPerIP: 3}, limits.RedisOptions{}, 2)
		a, b := l[0], l[1]
		relA := limitstest.Fill(t, a, "ip", 2)
		limitstest.Fill(t, b, "ip", 1)
		if limitstest.Connect(t, a, "ip") != nil {
			t.Error("Connect on A with 3 open on A and B admitted, want ErrConnLimit")
		}
		if limitstest.Connect(t, b, "ip") != nil {
			t.Error("Connect on B with 3 open on A and B admitted, want ErrConnLimit")
		}
		relA[0]()
		limitstest.Fill(t, b, "ip", 1) // the slot A released
		if limitstest.Connect(t, a, "ip") != nil {
			t.Error("Connect on A after B took the released slot admitted, want ErrConnLimit")
		}
	})

	t.Run("joins", func(t *testing.T) {
		l := instances(t, client, limits.Config{JoinsPerIP: 2, JoinsPerRoom: 2, RoomsPerIP: 2}, limits.RedisOptions{}, 2)
		a, b := l[0], l[1]
		wantErr(t, "A: JoinIP(ip)", a.JoinIP(ctx, "ip"), nil)
		wantErr(t, "B: JoinIP(ip)", b.JoinIP(ctx, "ip"), nil)
		wantErr(t, "A: JoinIP(ip) over the IP limit", a.JoinIP(ctx, "ip"), limits.ErrJoinRate)
		wantErr(t, "B: JoinIP(ip) over the IP limit", b.JoinIP(ctx, "ip"), limits.ErrJoinRate)
		wantErr(t, "A: RoomAttempt(ip, r)", a.RoomAttempt(ctx, "ip", "r"), nil)
		wantErr(t, "B: RoomAttempt(ip, r)", b.RoomAttempt(ctx, "ip", "r"), nil)
		wantErr(t, "A: RoomAttempt(ip, r) over the room limit", a.RoomAttempt(ctx, "ip", "r"), limits.ErrRoomAttempts)
		wantErr(t, "B: RoomAttempt(ip2, r), another source", b.RoomAttempt(ctx, "ip2", "r"), nil)
		wantErr(t, "A: CreateRoom(ip)", a.CreateRoom(ctx, "ip"), nil)
		wantErr(t, "B: CreateRoom(ip)", b.CreateRoom(ctx, "ip"), nil)
		wantErr(t, "A: CreateRoom(ip) over the rooms limit", a.CreateRoom(ctx, "ip"), limits.ErrRoomsPerIP)
		wantErr(t, "B: CreateRoom(ip2), another source", b.CreateRoom(ctx, "ip2"), nil)
	})

	t.Run("keys", func(t *testing.T) {
		l := instances(t, client, limits.Config{KeyReuseWindow: time.Hour}, limits.RedisOptions{}, 2)
		a, b := l[0], l[1]
		wantErr(t, "A: UseKey(k, r)", a.UseKey(ctx, "aa", "r"), nil)
		wantErr(t, "B: UseKey(k, r) (a resume on another instance)", b.UseKey(ctx, "aa", "r"), nil)
		wantErr(t, "B: UseKey(k, s)", b.UseKey(ctx, "aa", "s"), limits.ErrKeyReused)
		wantErr(t, "A: UseKey(k, s)", a.UseKey(ctx, "aa", "s"), limits.ErrKeyReused)
	})

	t.Run("other prefix", func(t *testing.T) {
		a := instances(t, client, limits.Config{MaxConnsPerIP: 1}, limits.RedisOptions{}, 1)[0]
		b := instances(t, client, limits.Config{MaxConnsPerIP: 1}, limits.RedisOptions{}, 1)[0]
		limitstest.Fill(t, a, "ip", 1)
		limitstest.Fill(t, b, "ip", 1)
	})

	t.Run("racing instances", func(t *testing.T) {
		const limit = 10
		l := instances(t, client, limits.Config{MaxConnsPerIP: limit}, limits.RedisOptions{}, 5)
		var mu sync.Mutex
		admitted := 0
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				_, err := l[i%len(l)].Connect(ctx, "ip")
				if errors.Is(err, limits.ErrConnLimit) {
					return
				}
				if err != nil {
					t.Errorf("Connect: %v", err)
					return
				}
				mu.Lock()
				admitted++
				mu.Unlock()
			})
		}
		wg.Wait()
		if admitted != limit {
			t.Errorf("%d of 50 Connects racing on 5 instances admitted, want %d", admitted, limit)
		}
	})
}

// TestRedisLease checks that the connections of a live Limiter keep
// counting past their lease, renewed, and that those of a Limiter that
// stopped without releasing them (a crashed instance) stop counting once
// their lease ends.
func TestRedisLease(t *testing.T) {
	t.Parallel()
	client := newClient(t, redistest.Start(t))
	const lease = 1500 * time.Millisecond
	opts := limits.RedisOptions{Lease: lease, RenewInterval: 100 * time.Millisecond}
	l := instances(t, client, limits.Config{MaxConnsPerIP: 2}, opts, 2)
	a, b := l[0], l[1]
	limitstest.Fill(t, a, "ip", 2)

	// For two leases, A's connections must keep counting.
	for end := time.Now().Add(2 * lease); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if limitstest.Connect(t, b, "ip") != nil {
			t.Fatal("Connect on B admitted while A holds 2 connections (A's leases not renewed?)")
		}
	}

	// A crashes: it stops renewing, and releases nothing.
	if err := a.Close(); err != nil {
		t.Fatalf("Close A: %v", err)
	}
	if limitstest.Connect(t, b, "ip") != nil {
		t.Fatal("Connect on B admitted at once after A stopped, want A's connections to count until their lease ends")
	}
	limitstest.Eventually(t, "A's connections expire with their lease", func() error {
		if limitstest.Connect(t, b, "ip") == nil {
			return errors.New("Connect on B refused")
		}
		return nil
	})
}

// TestRedisReleaseDuringRenewal races releases against renewals: a
// renewal that includes a connection released meanwhile must not leave it
// counting (with a lease of an hour, it would count all that hour).
func TestRedisReleaseDuringRenewal(t *testing.T) {
	t.Parallel()
	addr := redistest.Start(t)
	client := newClient(t, addr)
	prefix := uniquePrefix(t)
	opts := limits.RedisOptions{Prefix: prefix, Lease: time.Hour, RenewInterval: time.Millisecond}
	l := instances(t, client, limits.Config{MaxConnsPerIP: 1000}, opts, 1)[0]
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			ip := fmt.Sprint("ip", g%2)
			for end := time.Now().Add(time.Second); time.Now().Before(end); {
				release, err := l.Connect(ctx, ip)
				if err != nil {
					t.Errorf("Connect: %v", err)
					return
				}
				release()
			}
		})
	}
	wg.Wait()
	limitstest.Eventually(t, "every released connection removed", func() error {
		n, err := client.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		if n != 0 {
			keys, _ := client.Keys(ctx, "*").Result()
			return fmt.Errorf("%d keys left: %q", n, keys)
		}
		return nil
	})
}

// TestRedisLeavesNothing checks, on a server of its own, that every key
// has the prefix and a TTL, and that nothing is left once the windows and
// leases have passed, released or not.
func TestRedisLeavesNothing(t *testing.T) {
	t.Parallel()
	addr := redistest.Start(t)
	client := newClient(t, addr)
	ctx := t.Context()
	prefix := uniquePrefix(t)
	const short = 300 * time.Millisecond
	cfg := limits.Config{MaxConnsPerIP: 5, JoinsPerIP: 3, JoinWindow: short, JoinsPerRoom: 3, RoomWindow: 2 * short, RoomsPerIP: 3, RoomsWindow: 2 * short, KeyReuseWindow: short}
	l := instances(t, client, cfg, limits.RedisOptions{Prefix: prefix, Lease: short}, 2)
	a, b := l[0], l[1]
	for i := range 5 {
		ip, room := fmt.Sprint("ip", i), fmt.Sprint("room", i)
		for _, r := range limitstest.Fill(t, a, ip, 2) {
			r()
		}
		limitstest.Fill(t, b, ip, 3) // never released: b crashes
		for range 4 {
			a.JoinIP(ctx, ip)
			a.RoomAttempt(ctx, ip, room)
			a.CreateRoom(ctx, ip)
		}
		wantErr(t, "UseKey", a.UseKey(ctx, fmt.Sprint("key", i), room), nil)
		wantErr(t, "UseKey in another room", b.UseKey(ctx, fmt.Sprint("key", i), "x"), limits.ErrKeyReused)
	}
	keys, err := client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	// 5 IPs × (connections, joins, creates), 5 rooms, 5 keys; fewer if
	// some expired already (on a slow machine).
	if len(keys) == 0 || len(keys) > 25 {
		t.Errorf("%d keys %q, want 1 to 25", len(keys), keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			t.Errorf("key %q lacks the prefix %q", k, prefix)
		}
		pttl, err := client.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatalf("PTTL(%q): %v", k, err)
		}
		// -2: expired since KEYS; -1: no TTL.
		if pttl == -1 || pttl > 4*short {
			t.Errorf("key %q has TTL %v, want at most %v", k, pttl, 4*short)
		}
	}
	b.Close() // the crash: its connections are neither released nor renewed
	limitstest.Eventually(t, "DBSIZE back to 0", func() error {
		n, err := client.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("DBSIZE = %d", n)
		}
		return nil
	})
}

// TestRedisKeys checks the default prefix and that what the Limiter
// stores of a public key and its room is their SHA-256, not them.
func TestRedisKeys(t *testing.T) {
	t.Parallel()
	addr := redistest.Start(t)
	client := newClient(t, addr)
	ctx := t.Context()
	l := limitstest.Open(t, func(tb testing.TB, _ limits.Config) limitstest.Limiter {
		return mustNewRedis(tb, client, limits.Config{KeyReuseWindow: time.Minute}, limits.RedisOptions{})
	}, limits.Config{})
	const pub, room = "5f3a0c9e7d21", "secret-room-id"
	limitstest.Fill(t, l, "192.0.2.7", 1)
	wantErr(t, "JoinIP", l.JoinIP(ctx, "192.0.2.7"), nil)
	wantErr(t, "RoomAttempt", l.RoomAttempt(ctx, "192.0.2.7", "r"), nil)
	wantErr(t, "UseKey", l.UseKey(ctx, pub, room), nil)
	keys, err := client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	if len(keys) != 4 {
		t.Errorf("keys %q, want 4", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, limits.DefaultRedisPrefix) {
			t.Errorf("key %q lacks the default prefix %q", k, limits.DefaultRedisPrefix)
		}
		if strings.Contains(k, pub) || strings.Contains(k, room) {
			t.Errorf("key %q holds the public key or its room", k)
		}
		if typ, _ := client.Type(ctx, k).Result(); typ == "string" {
			v, err := client.Get(ctx, k).Result()
			if err != nil {
				t.Fatalf("GET %q: %v", k, err)
			}
			if strings.Contains(v, pub) || strings.Contains(v, room) {
				t.Errorf("key %q = %q holds the public key or its room", k, v)
			}
		}
	}
}

// TestRedisUnavailable stops Redis under a Limiter, and restarts it (empty:
// it keeps nothing on disk): calls fail with errors wrapping
// limits.ErrUnavailable meanwhile, and work again afterwards with the
// same Limiter, whose open connections count again.
func TestRedisUnavailable(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	client := newClient(t, srv.Addr)
	prefix := uniquePrefix(t)
	cfg := limits.Config{MaxConnsPerIP: 1, KeyReuseWindow: time.Hour}
	l := instances(t, client, cfg, limits.RedisOptions{Prefix: prefix, Lease: time.Second}, 1)[0]
	limitstest.Fill(t, l, "kept", 1)
	released := limitstest.Fill(t, l, "released", 1)

	srv.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	release, err := l.Connect(ctx, "ip")
	if !errors.Is(err, limits.ErrUnavailable) || release != nil {
		t.Errorf("Connect with Redis stopped = %v, %v; want nil, an error wrapping limits.ErrUnavailable", release != nil, err)
	}
	wantErr(t, "JoinIP with Redis stopped", l.JoinIP(ctx, "ip"), limits.ErrUnavailable)
	wantErr(t, "RoomAttempt with Redis stopped", l.RoomAttempt(ctx, "ip", "r"), limits.ErrUnavailable)
	wantErr(t, "CreateRoom with Redis stopped", l.CreateRoom(ctx, "ip"), limits.ErrUnavailable)
	wantErr(t, "UseKey with Redis stopped", l.UseKey(ctx, "aa", "r"), limits.ErrUnavailable)
	released[0]() // must return (and log) despite Redis

	srv.Restart()
	limitstest.Eventually(t, "calls work again", func() error {
		release, err := l.Connect(ctx, "ip")
		if err != nil {
			return err
		}
		release()
		if err := l.JoinIP(ctx, "ip"); err != nil {
			return err
		}
		if err := l.RoomAttempt(ctx, "ip", "r"); err != nil {
			return err
		}
		if err := l.CreateRoom(ctx, "ip"); err != nil {
			return err
		}
		return l.UseKey(ctx, "aa", "r")
	})
	wantErr(t, "UseKey in another room after the restart", l.UseKey(ctx, "aa", "s"), limits.ErrKeyReused)
	// The restarted Redis lost the count of the connection kept open;
	// the next renewal puts it back.
	limitstest.Eventually(t, "the open connection counts again", func() error {
		if release := limitstest.Connect(t, l, "kept"); release != nil {
			release()
			return errors.New("Connect(kept) admitted")
		}
		return nil
	})
	// The released one is not put back.
	limitstest.Fill(t, l, "released", 1)

	t.Run("hung", func(t *testing.T) {
		srv.Pause()
		defer srv.Resume()
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		err := l.RoomAttempt(ctx, "ip2", "r2")
		if !errors.Is(err, limits.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("RoomAttempt with Redis hung = %v, want an error wrapping limits.ErrUnavailable and context.DeadlineExceeded", err)
		}
	})
}

func TestMain(m *testing.M) {
	// go-redis logs failed dials to standard error; the tests that stop
	// Redis provoke them on purpose.
	redis.SetLogger(quietRedis{})
	os.Exit(m.Run())
}

// quietRedis is a go-redis logger that drops everything.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func TestNewRedisNilClient(t *testing.T) {
	l, err := limits.NewRedis(nil, limits.Config{}, limits.RedisOptions{})
	if err == nil || l != nil {
		t.Errorf("NewRedis(nil) = %v, %v; want nil and an error", l, err)
	}
}
