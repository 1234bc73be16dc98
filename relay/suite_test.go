package relay_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/session/redistest"
)

// TestSuiteOnRedis runs this package's whole test suite a second time, in a
// child process of this test binary, with every relay on a Redis store
// (one suite, two stores). Without redis-server it skips, unless
// KEYRELAY_REQUIRE_REDIS=1.
func TestSuiteOnRedis(t *testing.T) {
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
	cmd := exec.Command(os.Args[0], "-test.run", "^Test", "-test.count=1", "-test.timeout=5m", "-test.v")
	cmd.Env = append(os.Environ(), storeEnv+"=redis")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the relay suite failed on Redis: %v\n%s", err, out)
	}
	passed := strings.Count(string(out), "--- PASS: Test")
	if passed < 10 || strings.Contains(string(out), "--- FAIL") {
		t.Fatalf("the suite on Redis passed only %d tests:\n%s", passed, out)
	}
	t.Logf("relay suite on Redis: %d tests and subtests passed", passed)
}
