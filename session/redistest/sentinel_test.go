package redistest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/internal/redisx"
	"github.com/keyrelay/keyrelay/session/redistest"
)

// failoverTimeout bounds a Sentinel's failover in the tests.
const failoverTimeout = 30 * time.Second

// TestSentinelFailover runs a failover with each way of starting a
// sentinel, PATH set to hold only the programs each needs. (t.Setenv rules
// out t.Parallel.)
func TestSentinelFailover(t *testing.T) {
	tests := []struct {
		name     string
		programs []string // linked to redis-server in a directory on PATH
	}{
		{"redis-sentinel", []string{"redis-server", "redis-sentinel"}},
		{"redis-server --sentinel", []string{"redis-server"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Where redis-server is missing, StartSentinel skips or fails.
			if bin, err := exec.LookPath("redis-server"); err == nil {
				dir := t.TempDir()
				for _, p := range tc.programs {
					if err := os.Symlink(bin, filepath.Join(dir, p)); err != nil {
						t.Fatal(err)
					}
				}
				t.Setenv("PATH", dir)
			}
			testSentinelFailover(t)
		})
	}
}

func testSentinelFailover(t *testing.T) {
	s := redistest.StartSentinel(t)
	if got, want := s.MasterName(), redistest.MasterName; got != want {
		t.Errorf("MasterName() = %q, want %q", got, want)
	}
	if !strings.HasSuffix(s.URL(), "?master_name="+redistest.MasterName) {
		t.Errorf("URL() = %q, want one ending in ?master_name=%s", s.URL(), redistest.MasterName)
	}
	first := s.Master(t)
	if s.Node(first) == nil {
		t.Fatalf("Node(%s), the master, = nil", first)
	}

	u, err := redisx.NewClient(s.URL())
	if err != nil {
		t.Fatalf("redisx.NewClient(%q): %v", s.URL(), err)
	}
	t.Cleanup(func() { u.Close() })
	client, ok := u.(*redis.Client)
	if !ok {
		t.Fatalf("redisx.NewClient(%q) is a %T, want a failover *redis.Client", s.URL(), u)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn := client.Conn() // one connection, for WAIT to cover the SET
	if err := conn.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatalf("SET before the failover: %v", err)
	}
	if n, err := conn.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v, want 1 replica", n, err)
	}
	conn.Close()

	s.KillMaster(t)
	took := s.WaitFailover(t, failoverTimeout)
	t.Logf("failover done %v after the master was killed", took)
	if second := s.Master(t); second == first {
		t.Fatalf("the master is still %s", first)
	}

	eventually(t, clientTimeout, func(ctx context.Context) error {
		return client.Set(ctx, "after", "2", 0).Err()
	})
	for k, want := range map[string]string{"before": "1", "after": "2"} {
		ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
		got, err := client.Get(ctx, k).Result()
		cancel()
		if err != nil || got != want {
			t.Errorf("GET %s = %q, %v, want %q", k, got, err, want)
		}
	}
}
