package relay_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/session/redistest"
)

// TestSuiteOnRedis runs this package's whole test suite again, in a
// child process of this test binary, with every relay on a Redis store
// (one suite, two stores). Without redis-server it skips, unless
// KEYRELAY_REQUIRE_REDIS=1.
func TestSuiteOnRedis(t *testing.T) {
	needRedis(t)
	runSuite(t, "Redis", storeEnv+"=redis")
}

// TestSuiteOnRedisCluster runs the relay suite again with every relay on
// a Redis Cluster of 3 masters and 3 replicas that this test starts: the
// rooms of the suite's tests spread over the masters, and events travel
// by sharded Pub/Sub.
func TestSuiteOnRedisCluster(t *testing.T) {
	needRedis(t)
	c := redistest.StartShardedCluster(t, 3, 1)
	runSuite(t, "a Redis Cluster", storeEnv+"=url", redisURLEnv+"="+c.URL())
}

// TestSuiteOnSentinel runs the relay suite again with every relay on a
// Redis that Sentinel locates (one master, one replica, one sentinel).
func TestSuiteOnSentinel(t *testing.T) {
	needRedis(t)
	s := redistest.StartSentinel(t)
	runSuite(t, "Sentinel", storeEnv+"=url", redisURLEnv+"="+s.URL())
}

// needRedis skips t where this process already runs the suite on a chosen
// store, under -short, and where redis-server is not installed (unless
// KEYRELAY_REQUIRE_REDIS=1, which fails instead).
func needRedis(t *testing.T) {
	t.Helper()
	if os.Getenv(storeEnv) != "" {
		t.Skip("this process already runs the suite on a chosen store")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(redistest.RequireEnv) == "1" {
			t.Fatalf("redis-server not found and %s=1", redistest.RequireEnv)
		}
		t.Skip("redis-server not installed: the relay suite runs on the memory store only")
	}
	if testing.Short() {
		t.Skip("-short: the relay suite runs on the memory store only")
	}
}

// runSuite runs this package's tests in a child process of this test
// binary with env added, and fails unless they all pass.
func runSuite(t *testing.T, on string, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^Test", "-test.count=1", "-test.timeout=5m", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the relay suite failed on %s: %v\n%s", on, err, out)
	}
	passed := strings.Count(string(out), "--- PASS: Test")
	if passed < 10 || strings.Contains(string(out), "--- FAIL") {
		t.Fatalf("the suite on %s passed only %d tests:\n%s", on, passed, out)
	}
	t.Logf("relay suite on %s: %d tests and subtests passed", on, passed)
}
