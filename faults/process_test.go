package faults

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/session/redistest"
)

// Bounds of process start and stop. They are generous: the relay may be
// built with the race detector and share two cores with other work.
const (
	readyTimeout = 20 * time.Second // for a started relay to answer /readyz
	stopTimeout  = 15 * time.Second // for SIGTERM to end a relay
)

// relayProc is a keyrelay process owned by a test.
type relayProc struct {
	// Static after startRelay.
	t    *testing.T
	name string
	addr string   // 127.0.0.1:port, the same across restarts
	args []string // flags other than --addr

	mu   sync.Mutex // guards the following
	run  *relayRun  // the current or last run
	logs []string   // output of the earlier runs
}

// relayRun is one run of the process.
type relayRun struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed once it has exited
	err  error         // Wait's result; written before done is closed
}

// startRelay starts keyrelay on a free loopback port, sharing the Redis at
// redisURL, with no per-IP connection limit, warnings-only logs and the
// extra flags, and waits until /readyz answers 200. The process is killed
// when the test ends, if it still runs.
func startRelay(t *testing.T, name, redisURL string, extra ...string) *relayProc {
	t.Helper()
	if relayBin == "" {
		t.Fatal("faults: no relay binary (TestMain built none)")
	}
	p := &relayProc{
		t:    t,
		name: name,
		args: append([]string{"--redis-url", redisURL, "--max-conns-per-ip", "-1", "--joins-per-ip", "-1", "--log-level", "warn"}, extra...),
	}
	t.Cleanup(p.cleanup)
	var errs []error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := p.launch(); err != nil {
			errs = append(errs, err) // most likely the port was taken meanwhile
			continue
		}
		return p
	}
	t.Fatalf("%s: could not start: %v", name, errors.Join(errs...))
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch starts a run on p.addr and waits until it is ready.
func (p *relayProc) launch() error {
	cmd := exec.Command(relayBin, append([]string{"--addr", p.addr}, p.args...)...)
	// Flags win over KEYRELAY_* variables, but a variable could set what
	// the flags leave at its default: keep the tests' relays hermetic.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYRELAY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out := new(syncBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	r := &relayRun{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	p.mu.Lock()
	if p.run != nil {
		p.logs = append(p.logs, p.run.out.String())
	}
	p.run = r
	p.mu.Unlock()
	if err := p.awaitReady(r); err != nil {
		r.cmd.Process.Kill()
		<-r.done
		return fmt.Errorf("%s on %s: %w (output: %q)", p.name, p.addr, err, out.String())
	}
	return nil
}

// awaitReady waits until the run answers /readyz with 200.
func (p *relayProc) awaitReady(r *relayRun) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-r.done:
			return fmt.Errorf("exited: %v", r.err)
		default:
		}
		if code, err := p.readyz(); err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v", readyTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// httpClient makes the tests' plain HTTP requests (readiness, metrics).
var httpClient = &http.Client{Timeout: 3 * time.Second}

// readyz returns the status code of GET /readyz.
func (p *relayProc) readyz() (int, error) {
	resp, err := httpClient.Get("http://" + p.addr + "/readyz")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// waitReadyz polls /readyz until it answers want, failing the test at ctx's
// end.
func (p *relayProc) waitReadyz(ctx context.Context, want int) {
	p.t.Helper()
	last := "no answer"
	for {
		code, err := p.readyz()
		if err == nil && code == want {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = strconv.Itoa(code)
		}
		select {
		case <-ctx.Done():
			p.t.Fatalf("%s: /readyz never answered %d (last: %s)", p.name, want, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// current returns the current run.
func (p *relayProc) current() *relayRun {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.run
}

// kill kills the process with SIGKILL and waits for it to exit: it closes
// nothing gracefully and records nothing in Redis.
func (p *relayProc) kill() {
	r := p.current()
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// terminate sends SIGTERM, the graceful shutdown, and returns the process's
// exit error (nil for status 0). It fails the test if the process does not
// exit within stopTimeout.
func (p *relayProc) terminate() error {
	p.t.Helper()
	r := p.current()
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
		return r.err
	case <-time.After(stopTimeout):
		r.cmd.Process.Kill()
		<-r.done
		p.t.Fatalf("%s: still running %v after SIGTERM", p.name, stopTimeout)
		return nil
	}
}

// restart starts the process again, on the same address, after it exited.
func (p *relayProc) restart() {
	p.t.Helper()
	var err error
	for range 20 {
		if err = p.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger
	}
	p.t.Fatalf("%s: could not restart: %v", p.name, err)
}

// cleanup kills the process if it still runs, fails the test if any run
// reported a data race, and logs the output of every run if the test
// failed.
func (p *relayProc) cleanup() {
	p.mu.Lock()
	r := p.run
	p.mu.Unlock()
	if r == nil {
		return
	}
	select {
	case <-r.done:
	default:
		r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.done
	}
	p.mu.Lock()
	logs := append(p.logs, r.out.String())
	p.mu.Unlock()
	for i, out := range logs {
		if strings.Contains(out, "WARNING: DATA RACE") {
			p.t.Errorf("%s (run %d) reported a data race:\n%s", p.name, i+1, out)
		} else if p.t.Failed() && out != "" {
			p.t.Logf("%s (run %d) output:\n%s", p.name, i+1, out)
		}
	}
}

// metric returns the value of the Prometheus sample named series (with
// its labels, as /metrics writes them: `name{label="value"}`), or 0 if the
// relay has not reported it yet.
func (p *relayProc) metric(series string) (float64, error) {
	resp, err := httpClient.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			return strconv.ParseFloat(strings.TrimSpace(value), 64)
		}
	}
	return 0, sc.Err()
}

// killRedis kills the test's redis-server with SIGKILL, as a crash would,
// and waits until it no longer answers. redistest can only stop it with
// SIGTERM, so the process is found by its address among this test
// process's own children, and only that process is signalled.
func killRedis(t *testing.T, rs *redistest.Server) {
	t.Helper()
	pid, err := redisPID(rs.Addr)
	if err != nil {
		t.Fatalf("finding redis-server's process: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill redis-server %d: %v", pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", rs.Addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("redis-server still accepts connections after SIGKILL")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// redisPID returns the process ID of the redis-server listening on addr,
// among the children of this process: Redis shows its address in its
// command line ("redis-server 127.0.0.1:port").
func redisPID(addr string) (int, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil || len(stats) == 0 {
		return 0, fmt.Errorf("no /proc to search (%v)", err)
	}
	_, port, _ := net.SplitHostPort(addr)
	self := os.Getpid()
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the process is gone
		}
		// pid (comm) state ppid …; comm may contain spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(self) {
			continue
		}
		dir := filepath.Dir(path)
		cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte("redis-server")) {
			continue
		}
		args := strings.FieldsFunc(string(cmdline), func(r rune) bool { return r == 0 || r == ' ' })
		for _, a := range args {
			if a == port || a == addr || strings.HasSuffix(a, ":"+port) {
				return strconv.Atoi(filepath.Base(dir))
			}
		}
	}
	return 0, fmt.Errorf("no child redis-server on %s", addr)
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Len returns the number of bytes written so far.
func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
