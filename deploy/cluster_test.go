package deploy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/session/redistest"
)

// scriptTimeout bounds one run of scripts/cluster.sh (its build of
// keyrelay included).
const scriptTimeout = 2 * time.Minute

// needClusterTools skips the test where the script cannot run (fails it
// under KEYRELAY_REQUIRE_REDIS=1 if redis-server is what is missing).
func needClusterTools(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		msg := "redis-server is not installed: scripts/cluster.sh needs it"
		if os.Getenv(redistest.RequireEnv) == "1" {
			t.Fatalf("%s; %s=1 requires it", msg, redistest.RequireEnv)
		}
		t.Skip(msg)
	}
	for _, tool := range []string{"bash", "redis-cli", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: scripts/cluster.sh needs it", tool)
		}
	}
}

// scriptRun is one run of scripts/cluster.sh.
type scriptRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{} // closed once the script has exited
	err    error         // Wait's result; written before done is closed
}

// startScript runs bash scripts/cluster.sh with args, in a process group of
// its own, so that whatever it started can be stopped if the test fails
// before the script does.
func startScript(t *testing.T, args ...string) *scriptRun {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join("..", "scripts", "cluster.sh")}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYRELAY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	r := &scriptRun{t: t, cmd: cmd, stdout: new(syncBuffer), stderr: new(syncBuffer), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = r.stdout, r.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the script's own group
			<-r.done
		}
		if t.Failed() {
			t.Logf("cluster.sh %q\nstdout:\n%s\nstderr:\n%s", args, r.stdout.String(), r.stderr.String())
		}
	})
	return r
}

// wait waits for the script to exit and returns its exit code.
func (r *scriptRun) wait(timeout time.Duration) int {
	r.t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		r.t.Fatalf("cluster.sh still runs after %v", timeout)
	}
	var ee *exec.ExitError
	switch {
	case r.err == nil:
		return 0
	case errors.As(r.err, &ee):
		return ee.ExitCode()
	default:
		r.t.Fatal(r.err)
		return -1
	}
}

// waitOutput waits until stdout contains s.
func (r *scriptRun) waitOutput(s string) {
	r.t.Helper()
	deadline := time.After(scriptTimeout)
	for !strings.Contains(r.stdout.String(), s) {
		select {
		case <-r.done:
			r.t.Fatalf("cluster.sh exited (%v) before printing %q", r.err, s)
		case <-deadline:
			r.t.Fatalf("cluster.sh did not print %q within %v", s, scriptTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var (
	redisLineRE = regexp.MustCompile(`(?m)^redis: +(127\.0\.0\.1:\d+) \(pid (\d+)`)
	relayLineRE = regexp.MustCompile(`(?m)^relay (\d+): ws://(127\.0\.0\.1:\d+)/v1/ws +\(pid (\d+)`)
	logsDirRE   = regexp.MustCompile(`logs (?:in|kept in) (\S+?)\)?$`)
)

// cluster is what a run printed.
type cluster struct {
	redis     string   // address
	relays    []string // addresses
	relayPIDs []int
	logs      string // the logs' directory
}

func (r *scriptRun) parse() cluster {
	r.t.Helper()
	var c cluster
	out := r.stdout.String()
	if m := redisLineRE.FindStringSubmatch(out); m != nil {
		c.redis = m[1]
	}
	for _, m := range relayLineRE.FindAllStringSubmatch(out, -1) {
		c.relays = append(c.relays, m[2])
		pid, _ := strconv.Atoi(m[3])
		c.relayPIDs = append(c.relayPIDs, pid)
	}
	for line := range strings.Lines(r.stderr.String()) {
		if m := logsDirRE.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			c.logs = m[1]
		}
	}
	if c.logs == "" || !strings.Contains(filepath.Base(c.logs), "keyrelay-cluster") {
		r.t.Fatalf("cluster.sh named no logs' directory (got %q)", c.logs)
	}
	return c
}

// checkStopped checks that nothing listens any more on the addresses.
func checkStopped(t *testing.T, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after cluster.sh exited", a)
		}
	}
}

// impostorHTTP listens on addr and answers every request with 200 "ok",
// as a relay's /healthz and /readyz do. It returns false if addr is
// taken already (which serves the test as well).
func impostorHTTP(t *testing.T, addr string) bool {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})}}
	srv.Start()
	t.Cleanup(srv.Close)
	return true
}

// impostorRedis listens on a free loopback port and answers every line
// with +PONG, as Redis answers PING, and returns the port.
func impostorRedis(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := io.WriteString(c, "+PONG\r\n"); err != nil {
						return
					}
				}
			})
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

// TestClusterScript runs scripts/cluster.sh as a developer would, with the
// ports it might use taken by servers that answer like a relay or like
// Redis: it must either work or fail loudly (exit 1, logs kept, nothing
// left running), never report a cluster that is not there.
func TestClusterScript(t *testing.T) {
	needClusterTools(t)

	t.Run("8080 taken", func(t *testing.T) {
		// The relay's default port, which cluster.sh once gave Redis.
		impostorHTTP(t, "127.0.0.1:8080")
		r := startScript(t, "--check", "2")
		if code := r.wait(scriptTimeout); code != 0 {
			t.Fatalf("cluster.sh --check 2 exited %d, want 0", code)
		}
		c := r.parse()
		if len(c.relays) != 2 || c.redis == "" || !strings.Contains(r.stdout.String(), "check passed") {
			t.Fatalf("cluster.sh printed redis %q and relays %q, and no \"check passed\"", c.redis, c.relays)
		}
		for _, a := range append([]string{c.redis}, c.relays...) {
			if strings.HasSuffix(a, ":8080") {
				t.Errorf("cluster.sh reports %s, which the impostor holds", a)
			}
		}
		checkStopped(t, append([]string{c.redis}, c.relays...)...)
		if _, err := os.Stat(c.logs); !os.IsNotExist(err) {
			t.Errorf("logs' directory %s left behind after a passed check (%v)", c.logs, err)
		}
	})

	t.Run("first port taken", func(t *testing.T) {
		port := freePort(t)
		if !impostorHTTP(t, fmt.Sprintf("127.0.0.1:%d", port)) {
			t.Fatalf("port %d was taken meanwhile", port)
		}
		r := startScript(t, "--check", "2", strconv.Itoa(port))
		if code := r.wait(scriptTimeout); code != 1 {
			t.Fatalf("cluster.sh --check 2 %d (port taken) exited %d, want 1", port, code)
		}
		c := r.parse()
		defer os.RemoveAll(c.logs)
		checkFailedLoudly(t, r, c, "relay1.log", "address already in use")
		checkStopped(t, c.redis)
	})

	t.Run("redis port taken", func(t *testing.T) {
		port := impostorRedis(t)
		r := startScript(t, "--check", "--redis-port", strconv.Itoa(port), "1")
		if code := r.wait(scriptTimeout); code != 1 {
			t.Fatalf("cluster.sh --redis-port %d (taken by a fake Redis) exited %d, want 1", port, code)
		}
		c := r.parse()
		defer os.RemoveAll(c.logs)
		if len(c.relays) != 0 {
			t.Errorf("cluster.sh reported relays %q on a Redis that is not its own", c.relays)
		}
		checkFailedLoudly(t, r, c, "redis.log", "Address already in use")
	})

	t.Run("relay dies", func(t *testing.T) {
		r := startScript(t, "2")
		r.waitOutput("Ctrl-C to stop.")
		c := r.parse()
		defer os.RemoveAll(c.logs)
		if len(c.relayPIDs) != 2 {
			t.Fatalf("cluster.sh reported relays %q", c.relays)
		}
		// A process the script started, found by the ID it printed.
		if err := syscall.Kill(c.relayPIDs[1], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if code := r.wait(30 * time.Second); code != 1 {
			t.Fatalf("cluster.sh exited %d after relay 2 died, want 1", code)
		}
		checkFailedLoudly(t, r, c, "relay2.log", "")
		if !strings.Contains(r.stderr.String(), "relay 2 (pid "+strconv.Itoa(c.relayPIDs[1])+") exited") {
			t.Errorf("cluster.sh did not say that relay 2 exited")
		}
		checkStopped(t, c.redis, c.relays[0])
	})

	t.Run("stop", func(t *testing.T) {
		r := startScript(t, "2")
		r.waitOutput("Ctrl-C to stop.")
		c := r.parse()
		r.cmd.Process.Signal(syscall.SIGTERM) // the script alone, as Ctrl-C's SIGINT would
		if code := r.wait(30 * time.Second); code != 0 {
			t.Fatalf("cluster.sh exited %d after SIGTERM, want 0", code)
		}
		checkStopped(t, append([]string{c.redis}, c.relays...)...)
		if _, err := os.Stat(c.logs); !os.IsNotExist(err) {
			t.Errorf("logs' directory %s left behind after a normal stop (%v)", c.logs, err)
			os.RemoveAll(c.logs)
		}
	})
}

// checkFailedLoudly checks that a failed run said FAILED, kept its logs
// and that log file contains want.
func checkFailedLoudly(t *testing.T, r *scriptRun, c cluster, file, want string) {
	t.Helper()
	if !strings.Contains(r.stderr.String(), "FAILED") || !strings.Contains(r.stderr.String(), "logs kept in "+c.logs) {
		t.Errorf("cluster.sh failed without saying FAILED and where its logs are")
	}
	b, err := os.ReadFile(filepath.Join(c.logs, file))
	if err != nil {
		t.Fatalf("logs not kept: %v", err)
	}
	if !strings.Contains(string(b), want) {
		t.Errorf("%s does not say %q:\n%s", file, want, b)
	}
}
