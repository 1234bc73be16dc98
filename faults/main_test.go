package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/keyrelay/keyrelay/session/redistest"
)

// relayBin is the keyrelay binary TestMain built, or "" if it built none
// (no redis-server: every test skips).
var relayBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests builds the relay binary, with the race detector if the tests
// have it, so that a data race in the relay under a fault shows up in its
// output (see relayProc.cleanup), and runs the tests.
func runTests(m *testing.M) int {
	if _, err := exec.LookPath("redis-server"); err != nil && os.Getenv(redistest.RequireEnv) != "1" {
		return m.Run() // every test skips in redistest.StartServer
	}
	dir, err := os.MkdirTemp("", "keyrelay-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "keyrelay")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/keyrelay/keyrelay/cmd/keyrelay")
	// go test puts its own GOROOT/bin first in the PATH of test binaries.
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "faults: go %v: %v\n%s", args, err, out)
		return 1
	}
	relayBin = bin
	return m.Run()
}
