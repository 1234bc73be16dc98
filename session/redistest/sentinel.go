package redistest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// MasterName is the name under which a Sentinel's sentinel monitors its
// master.
const MasterName = "keyrelay"

// Timing of a Sentinel.
const (
	sentinelFormTimeout = 30 * time.Second // for the sentinel to know the master and the replica
	downAfter           = 1000             // ms without an answer before the master is down
	failoverTimeout     = 3000             // ms a failover may take before another is tried
)

// replicationArgs are the redis-server arguments of a Sentinel's master
// and replica: a replica's first sync starts without the default 5 s wait
// for more replicas, and notices are logged, so that a failure message
// shows the replication's events.
var replicationArgs = []string{
	"--repl-diskless-sync-delay", "0",
	"--loglevel", "notice",
}

// Sentinel is a master, its replica and a Redis Sentinel that monitors
// them, redis-server processes owned by a test, on loopback. The sentinel
// alone decides (a quorum of 1) that the master is down, about a second
// after it stops answering, and promotes the replica. Nothing is
// persisted. Its methods may be called from several goroutines.
type Sentinel struct {
	// Static after StartSentinel.
	sentinel *Server
	nodes    []*Server // the first master and its replica

	mu     sync.Mutex
	killed string // guarded by mu; the master KillMaster killed last
}

// StartSentinel starts, for t, which stops them when it ends, a master, a
// replica of it, and a sentinel that monitors them under the name
// MasterName (down-after-milliseconds 1000, failover-timeout 3000,
// parallel-syncs 1), each on a free loopback port. The sentinel is
// redis-sentinel where it is installed, else redis-server --sentinel. It
// returns once the replica's link to the master is up and the sentinel
// knows both, with nothing amiss.
//
// Where redis-server is missing it skips t, or fails it if RequireEnv is
// 1. It fails t if the set is not ready within 30 seconds, with the logs
// in the message.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	master := start(t, standalone, "", replicationArgs...)
	host, port, _ := net.SplitHostPort(master.Addr)
	replica := start(t, standalone, "", append([]string{"--replicaof", host, port}, replicationArgs...)...)
	s := &Sentinel{nodes: []*Server{master, replica}}
	// The sentinel learns of replicas from its master's INFO, which it
	// reads at once and then every 10 s: let the replica be there first.
	began := time.Now()
	if err := await(sentinelFormTimeout, func() error { return replicaUp(master, replica) }); err != nil {
		t.Fatalf("redistest: replica not up within %v: %v\n%s", sentinelFormTimeout, err, logsOf(s.nodes...))
	}
	conf := fmt.Sprintf("sentinel monitor %[1]s %[2]s %[3]s 1\n"+
		"sentinel down-after-milliseconds %[1]s %[4]d\n"+
		"sentinel failover-timeout %[1]s %[5]d\n"+
		"sentinel parallel-syncs %[1]s 1\n",
		MasterName, host, port, downAfter, failoverTimeout)
	s.sentinel = start(t, sentinelMode, conf, "--loglevel", "notice")
	if err := await(sentinelFormTimeout-time.Since(began), func() error { return s.ready(master, replica) }); err != nil {
		t.Fatalf("redistest: sentinel not ready within %v: %v\n%s", sentinelFormTimeout, err, s.logs())
	}
	return s
}

// URL returns the URL of the sentinel and the name of its master,
// redis://127.0.0.1:port?master_name=keyrelay, which the project's
// internal/redisx.NewClient (and go-redis's ParseFailoverURL) turn into a
// failover client.
func (s *Sentinel) URL() string {
	return "redis://" + s.sentinel.Addr + "?master_name=" + MasterName
}

// MasterName returns the name under which the sentinel monitors its
// master, MasterName.
func (s *Sentinel) MasterName() string { return MasterName }

// Node returns the process at addr, the master's, the replica's or the
// sentinel's, for Stop, Pause, CommandCount and the like, or nil if none
// has that address. The master and the replica trade roles in a failover.
func (s *Sentinel) Node(addr string) *Server {
	for _, n := range append([]*Server{s.sentinel}, s.nodes...) {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Master returns the address of the current master as the sentinel has it
// (SENTINEL GET-MASTER-ADDR-BY-NAME). It fails t if the sentinel does not
// answer.
func (s *Sentinel) Master(t testing.TB) string {
	t.Helper()
	addr, err := s.master()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return addr
}

// master returns the address of the current master as the sentinel has
// it.
func (s *Sentinel) master() (string, error) {
	reply, err := command(s.sentinel.Addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName)
	if err != nil {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME: %w", err)
	}
	a, ok := reply.([]any)
	if ok && len(a) == 2 {
		host, ok1 := a[0].(string)
		port, ok2 := a[1].(string)
		if ok1 && ok2 {
			return net.JoinHostPort(host, port), nil
		}
	}
	return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME: unexpected reply %#v", reply)
}

// KillMaster kills the current master (Master) with SIGKILL and leaves it
// dead, so that the sentinel promotes the replica (WaitFailover waits for
// that). It fails t if the master is none of the set's processes or is
// already dead.
func (s *Sentinel) KillMaster(t testing.TB) {
	t.Helper()
	addr := s.Master(t)
	n := s.Node(addr)
	if n == nil || n == s.sentinel || !n.running() {
		t.Fatalf("redistest: KillMaster: the master %s is not a running process of the set", addr)
	}
	n.Kill()
	s.mu.Lock()
	s.killed = addr
	s.mu.Unlock()
}

// WaitFailover waits until the sentinel names as master another address
// than the one KillMaster killed, the server there runs and answers ROLE
// as a master, and the sentinel has finished the failover; it returns how
// long that took. It fails t if KillMaster was not called, or if the
// failover is not done within timeout, with the logs in the message.
func (s *Sentinel) WaitFailover(t testing.TB, timeout time.Duration) time.Duration {
	t.Helper()
	s.mu.Lock()
	killed := s.killed
	s.mu.Unlock()
	if killed == "" {
		t.Fatalf("redistest: WaitFailover without KillMaster")
	}
	began := time.Now()
	err := await(timeout, func() error {
		addr, err := s.master()
		if err != nil {
			return err
		}
		if addr == killed {
			return fmt.Errorf("the sentinel still has the killed %s as master", addr)
		}
		n := s.Node(addr)
		if n == nil || !n.running() {
			return fmt.Errorf("the sentinel's master %s does not run", addr)
		}
		if err := isMaster(addr); err != nil {
			return err
		}
		return s.masterOK()
	})
	if err != nil {
		t.Fatalf("redistest: no failover within %v: %v\n%s", timeout, err, s.logs())
	}
	return time.Since(began)
}

// ready returns nil once the sentinel has master as its master, with
// nothing amiss, and knows replica as its replica, with its link up.
func (s *Sentinel) ready(master, replica *Server) error {
	if err := replicaUp(master, replica); err != nil {
		return err
	}
	if addr, err := s.master(); err != nil {
		return err
	} else if addr != master.Addr {
		return fmt.Errorf("the sentinel's master is %s, want %s", addr, master.Addr)
	}
	if err := s.masterOK(); err != nil {
		return err
	}
	reply, err := command(s.sentinel.Addr, "SENTINEL", "REPLICAS", MasterName)
	if err != nil {
		return fmt.Errorf("SENTINEL REPLICAS: %w", err)
	}
	list, _ := reply.([]any)
	for _, r := range list {
		f := pairs(r)
		if net.JoinHostPort(f["ip"], f["port"]) != replica.Addr {
			continue
		}
		if f["flags"] != "slave" || f["master-link-status"] != "ok" {
			return fmt.Errorf("the sentinel has the replica %s with flags %q, master-link-status %q", replica.Addr, f["flags"], f["master-link-status"])
		}
		return nil
	}
	return fmt.Errorf("the sentinel does not know the replica %s yet (SENTINEL REPLICAS: %v)", replica.Addr, reply)
}

// masterOK returns nil if the sentinel has its master's flags as just
// "master": not down, reachable, no failover in progress.
func (s *Sentinel) masterOK() error {
	reply, err := command(s.sentinel.Addr, "SENTINEL", "MASTER", MasterName)
	if err != nil {
		return fmt.Errorf("SENTINEL MASTER: %w", err)
	}
	if flags := pairs(reply)["flags"]; flags != "master" {
		return fmt.Errorf("the sentinel has its master with flags %q, want master", flags)
	}
	return nil
}

// logs returns the last lines of the set's logs, for a failure message.
func (s *Sentinel) logs() string {
	return logsOf(append([]*Server{s.sentinel}, s.nodes...)...)
}

// replicaUp returns nil if replica reports its link to master up and
// master reports one replica online.
func replicaUp(master, replica *Server) error {
	r, err := replica.info("replication")
	if err != nil {
		return fmt.Errorf("%s: %w", replica.Addr, err)
	}
	if r["role"] != "slave" || r["master_link_status"] != "up" {
		return fmt.Errorf("%s: role %q, master_link_status %q, want slave, up", replica.Addr, r["role"], r["master_link_status"])
	}
	m, err := master.info("replication")
	if err != nil {
		return fmt.Errorf("%s: %w", master.Addr, err)
	}
	if m["connected_slaves"] != "1" || !containsField(m["slave0"], "state=online") {
		return fmt.Errorf("%s: connected_slaves %q, slave0 %q, want one online", master.Addr, m["connected_slaves"], m["slave0"])
	}
	return nil
}

// isMaster returns nil if the server at addr answers ROLE as a master.
func isMaster(addr string) error {
	reply, err := command(addr, "ROLE")
	if err != nil {
		return fmt.Errorf("%s: ROLE: %w", addr, err)
	}
	if a, ok := reply.([]any); !ok || len(a) == 0 || a[0] != "master" {
		return fmt.Errorf("%s: ROLE is %v, want master", addr, reply)
	}
	return nil
}

// containsField reports whether the comma-separated fields of s include
// field.
func containsField(s, field string) bool {
	for f := range strings.SplitSeq(s, ",") {
		if f == field {
			return true
		}
	}
	return false
}

// pairs returns a flat array of names and values, such as SENTINEL
// MASTER's reply, as a map; values that are not strings are left out.
func pairs(reply any) map[string]string {
	a, _ := reply.([]any)
	m := make(map[string]string, len(a)/2)
	for i := 0; i+1 < len(a); i += 2 {
		k, ok1 := a[i].(string)
		v, ok2 := a[i+1].(string)
		if ok1 && ok2 {
			m[k] = v
		}
	}
	return m
}
