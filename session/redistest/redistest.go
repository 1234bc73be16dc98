// Package redistest starts a real redis-server for tests: on a free
// loopback port, without persistence, stopped when the test ends. Nothing
// is mocked.
//
// Besides one server (Start, StartServer) or a one-node cluster
// (StartCluster), it starts the deployments whose failures a client must
// survive: a Redis Cluster of several masters with replicas
// (StartShardedCluster), and a master, a replica and a Sentinel
// (StartSentinel). Each can lose its master (KillMaster) and report when a
// replica has taken its place (WaitHealthy, WaitFailover).
//
// Where redis-server (or, for StartShardedCluster, redis-cli) is not
// installed, tests that start one are skipped, unless the environment
// sets KEYRELAY_REQUIRE_REDIS=1 (as CI does), which makes them fail
// instead.
//
//	func TestSomething(t *testing.T) {
//		addr := redistest.Start(t) // "127.0.0.1:port"
//		…
//	}
package redistest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireEnv is the environment variable that, set to 1, turns a missing
// redis-server from a skip into a failure.
const RequireEnv = "KEYRELAY_REQUIRE_REDIS"

// Timing of starting and stopping a server.
const (
	startTimeout = 10 * time.Second // for a started server to answer PING
	stopTimeout  = 5 * time.Second  // for SIGTERM, before SIGKILL
	portTries    = 5                // free ports tried before giving up
)

// Server is a redis-server process owned by a test.
type Server struct {
	// Addr is the server's address, 127.0.0.1:port. It stays the same
	// across Restart.
	Addr string

	// Static after StartServer.
	t     testing.TB
	bin   string
	dir   string
	mode  mode
	conf  string   // config file, the first argument, if any
	extra []string // more redis-server arguments

	mu   sync.Mutex
	proc *process    // guarded by mu; nil while stopped
	out  *syncBuffer // guarded by mu; the latest process's output, kept after it ends
}

// mode is what a Server runs as.
type mode int

const (
	standalone    mode = iota // a plain redis-server
	soloCluster               // a cluster node serving every slot alone (StartCluster)
	clusterMember             // a cluster node whose slots its Cluster assigns
	sentinelMode              // a Redis Sentinel, configured by its conf file
)

// process is one run of redis-server.
type process struct {
	cmd    *exec.Cmd
	out    *syncBuffer   // its stdout and stderr
	exited chan struct{} // closed once it has exited
}

// Start starts a redis-server for t and returns its address,
// "127.0.0.1:port". The server stops when t ends.
func Start(t testing.TB) string {
	t.Helper()
	return StartServer(t).Addr
}

// StartServer starts a redis-server for t, which stops it when it ends,
// and returns it, for tests that stop and restart it. The server keeps
// nothing on disk (--save "" --appendonly no): a restart loses all data.
func StartServer(t testing.TB) *Server {
	t.Helper()
	return start(t, standalone, "")
}

// StartServerArgs is StartServer with more redis-server arguments, such
// as "--maxmemory", "2mb", "--maxmemory-policy", "volatile-lru", or
// "--rename-command", "CONFIG", "" to refuse CONFIG as a managed Redis
// does. Restart keeps them.
func StartServerArgs(t testing.TB, args ...string) *Server {
	t.Helper()
	return start(t, standalone, "", args...)
}

// StartCluster starts a redis-server in cluster mode that serves all 16384
// hash slots alone: a one-node Redis Cluster, which refuses multi-key
// commands and scripts whose keys lie in different slots, as a real
// Cluster does. Connect with redis.NewClusterClient.
func StartCluster(t testing.TB) *Server {
	t.Helper()
	return start(t, soloCluster, "")
}

// start starts a server in mode m, stopped when t ends. A sentinel's conf
// is the content of its config file (which Sentinel rewrites as it learns).
func start(t testing.TB, m mode, conf string, extra ...string) *Server {
	t.Helper()
	bin := lookPath(t, "redis-server", "redis-server")
	if m == sentinelMode {
		// Debian's redis-sentinel package; else the same binary, told.
		if b, err := exec.LookPath("redis-sentinel"); err == nil {
			bin = b
		} else {
			extra = append([]string{"--sentinel"}, extra...)
		}
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), mode: m, extra: extra}
	if m == sentinelMode {
		s.conf = filepath.Join(s.dir, "sentinel.conf")
		if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
			t.Fatalf("redistest: %v", err)
		}
	}
	var errs []error
	for range portTries {
		port, err := freePort(m == soloCluster || m == clusterMember)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err = s.launch(); err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		errs = append(errs, err) // most likely the port was taken meanwhile
	}
	t.Fatalf("redistest: could not start redis-server: %v", errors.Join(errs...))
	return nil
}

// lookPath returns the path of the program prog, from the Debian package
// pkg. Where it is missing it skips t, or fails it if RequireEnv is 1.
func lookPath(t testing.TB, prog, pkg string) string {
	t.Helper()
	bin, err := exec.LookPath(prog)
	if err != nil {
		msg := fmt.Sprintf("%s is not installed (%v): install it (Debian: apt-get install %s) to run the Redis tests", prog, err, pkg)
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s; %s=1 requires them", msg, RequireEnv)
		}
		t.Skipf("%s, or set %s=1 to fail instead of skipping", msg, RequireEnv)
	}
	return bin
}

// freePort returns a loopback TCP port that was free a moment ago. For a
// cluster node, port+10000 (its cluster bus) must be free as well.
func freePort(cluster bool) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !cluster {
			return port, nil
		}
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		if err != nil {
			continue
		}
		bus.Close()
		return port, nil
	}
	return 0, errors.New("no free port pair for a cluster node")
}

// launch starts redis-server on s.Addr and waits until it answers.
func (s *Server) launch() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	var args []string
	if s.conf != "" {
		args = append(args, s.conf)
	}
	args = append(args,
		"--port", port,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "",
		"--loglevel", "warning",
	)
	if s.mode == soloCluster || s.mode == clusterMember {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.dir, "nodes-"+port+".conf"))
	}
	args = append(args, s.extra...)
	out := new(syncBuffer)
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	if err := s.awaitReady(p); err != nil {
		p.kill()
		return fmt.Errorf("%s: %w (output: %q)", s.Addr, err, out.String())
	}
	s.mu.Lock()
	s.proc, s.out = p, out
	s.mu.Unlock()
	return nil
}

// awaitReady waits until p answers PING and, for a cluster node, serves
// every slot.
func (s *Server) awaitReady(p *process) error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-p.exited:
			return errors.New("redis-server exited")
		default:
		}
		if reply, err := s.do("PING"); err == nil && reply == "PONG" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG within %v", startTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.mode != soloCluster {
		return nil
	}
	if info, err := s.do("CLUSTER", "INFO"); err != nil {
		return err
	} else if !strings.Contains(info, "cluster_slots_assigned:16384") {
		// A fresh node (a restarted one keeps its slots in nodes.conf).
		if reply, err := s.do("CLUSTER", "ADDSLOTSRANGE", "0", "16383"); err != nil || reply != "OK" {
			return fmt.Errorf("CLUSTER ADDSLOTSRANGE: %q, %v", reply, err)
		}
	}
	for {
		if info, err := s.do("CLUSTER", "INFO"); err == nil && strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ok within %v", startTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// do sends one command to the server on a new connection and returns the
// reply, a simple or bulk string; an error reply is an error.
func (s *Server) do(args ...string) (string, error) {
	reply, err := command(s.Addr, args...)
	if err != nil {
		return "", err
	}
	str, ok := reply.(string)
	if !ok {
		return "", fmt.Errorf("unexpected reply %#v", reply)
	}
	return str, nil
}

// URL returns the server's URL, redis://127.0.0.1:port.
func (s *Server) URL() string { return "redis://" + s.Addr }

// Stop stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it
// to exit. Clients then get connection errors. Stopping a stopped server
// does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		p.kill()
	}
}

// Kill kills the server (SIGKILL), as a crash or the kernel's OOM killer
// would, and waits for it to exit: unlike Stop, it gives the server no
// chance to close its connections or tell its replicas (the kernel resets
// the connections). Restart starts it again; killing a stopped server does
// nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// running reports whether the server's process runs (it may be paused).
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// output returns the output of the server's latest process, which is
// kept after it has ended; "" if it never started.
func (s *Server) output() string {
	s.mu.Lock()
	out := s.out
	s.mu.Unlock()
	if out == nil {
		return ""
	}
	return out.String()
}

// Pause freezes the server (SIGSTOP): it keeps its connections and the
// kernel still accepts new ones, but it answers nothing, like a hung Redis
// or one behind a network partition. Resume undoes it; Stop works either
// way.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server go on; it then answers what it was sent.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

// signal sends sig to the server's process, if it runs.
func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.cmd.Process.Signal(sig)
	}
}

// Restart starts the server again on the same port, empty, stopping it
// first if it runs. It fails the test if the server does not come up.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for range 20 {
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger
	}
	s.t.Fatalf("redistest: could not restart redis-server: %v", err)
}

// kill kills p and waits for it to exit.
func (p *process) kill() {
	p.cmd.Process.Kill()
	<-p.exited
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

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
