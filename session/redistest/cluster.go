package redistest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Slots is the number of hash slots of a Redis Cluster.
const Slots = 16384

// Timing of a sharded cluster.
const (
	formTimeout  = 30 * time.Second        // to create the cluster and see it healthy
	pollInterval = 50 * time.Millisecond   // between checks of a wait
	nodeTimeout  = 1000 * time.Millisecond // cluster-node-timeout
	logTail      = 40                      // lines of each node's log in a failure message
)

// clusterArgs are the redis-server arguments of a sharded cluster's
// nodes. A node is deemed failing after nodeTimeout without an answer, and
// a replica of a failed master then stands for election at once, however
// long ago it last heard from its master (a validity factor of 0), so a
// failover takes a few seconds. A replica's first sync starts without the
// default 5 s wait for more replicas. Notices are logged, so that a
// failure message shows the cluster's events.
var clusterArgs = []string{
	"--cluster-node-timeout", strconv.Itoa(int(nodeTimeout / time.Millisecond)),
	"--cluster-replica-validity-factor", "0",
	"--repl-diskless-sync-delay", "0",
	"--loglevel", "notice",
}

// Cluster is a Redis Cluster of redis-server processes owned by a test,
// on loopback: masters that share the 16384 hash slots, each with the
// same number of replicas. Nothing is persisted. Its methods may be
// called from several goroutines.
type Cluster struct {
	// Static after StartShardedCluster.
	nodes  []*Server          // in the order they were started
	byAddr map[string]*Server // the same, by address
}

// Shard is a master of a Cluster and the hash slots it serves.
type Shard struct {
	// ID is the master's node ID, 40 hexadecimal digits.
	ID string
	// Addr is the master's address, 127.0.0.1:port.
	Addr string
	// Slots are the hash slots the master serves, in ascending order.
	Slots []SlotRange
	// Replicas are the addresses of the master's replicas, sorted,
	// including any that have failed.
	Replicas []string
}

// Owns reports whether the shard serves the hash slot slot.
func (s Shard) Owns(slot int) bool {
	for _, r := range s.Slots {
		if r.Start <= slot && slot <= r.End {
			return true
		}
	}
	return false
}

// SlotRange is the hash slots from Start to End, both included.
type SlotRange struct {
	Start, End int
}

// StartShardedCluster starts a Redis Cluster for t, which stops it when it
// ends: masters redis-server processes sharing the 16384 hash slots, each
// with replicasPerMaster replicas, on free loopback ports whose cluster bus
// ports (port+10000) are free as well. redis-cli --cluster create forms the
// cluster; StartShardedCluster returns once every node reports
// cluster_state:ok with every slot assigned, all nodes agree on which
// master serves which slots and which replica follows which master, and
// every replica's link to its master is up.
//
// A master that stops answering is deemed failed after about a second, and
// one of its replicas takes its place a few seconds later (see KillMaster
// and WaitHealthy). Connect with redis.NewClusterClient, or with the
// project's internal/redisx.NewClient and URL.
//
// masters must be at least 3, as Redis Cluster requires (a failover needs
// a majority of masters to vote), and replicasPerMaster at least 0; else
// it fails t. Where redis-server or redis-cli is missing it skips t, or
// fails it if RequireEnv is 1. It fails t if the cluster is not healthy
// within 30 seconds, with the nodes' logs in the message.
func StartShardedCluster(t testing.TB, masters, replicasPerMaster int) *Cluster {
	t.Helper()
	if masters < 3 || replicasPerMaster < 0 {
		t.Fatalf("redistest: StartShardedCluster(%d, %d): Redis Cluster needs at least 3 masters, and replicas cannot be negative", masters, replicasPerMaster)
	}
	cli := lookPath(t, "redis-cli", "redis-tools")
	c := &Cluster{byAddr: make(map[string]*Server)}
	for range masters * (1 + replicasPerMaster) {
		s := start(t, clusterMember, "", clusterArgs...)
		c.nodes = append(c.nodes, s)
		c.byAddr[s.Addr] = s
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), formTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s\n%s", err, out, c.logs())
	}
	if _, err := c.await(formTimeout - time.Since(began)); err != nil {
		t.Fatalf("redistest: cluster not healthy within %v: %v\n%s", formTimeout, err, c.logs())
	}
	return c
}

// URL returns a URL of the cluster that lists all its nodes, the ones
// since killed included: redis://ADDR1?addr=ADDR2&addr=ADDR3…, which the
// project's internal/redisx.NewClient (and go-redis's ParseClusterURL)
// turn into a cluster client.
func (c *Cluster) URL() string {
	addrs := c.Addrs()
	return "redis://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
}

// Addrs returns the addresses of all the cluster's nodes, masters and
// replicas, the ones since killed included, in the order they were
// started.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr
	}
	return addrs
}

// Node returns the cluster's node at addr, for Stop, Kill, Pause,
// CommandCount and the like, or nil if none of its nodes has that address.
// (A node restarted after it was killed comes back with its slots and
// peers, from its nodes.conf, and rejoins as a replica if another node
// took its place.)
func (c *Cluster) Node(addr string) *Server {
	return c.byAddr[addr]
}

// Masters returns the masters that serve hash slots, with their slots and
// replicas, ordered by their first slot, as a live node sees them (CLUSTER
// NODES). A master that has died keeps its slots until a replica takes its
// place. It fails t if no node answers.
func (c *Cluster) Masters(t testing.TB) []Shard {
	t.Helper()
	var errs []error
	for _, s := range c.nodes {
		if !s.running() {
			continue
		}
		nodes, err := clusterNodes(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return shards(nodes)
	}
	t.Fatalf("redistest: no cluster node answers CLUSTER NODES: %v", errors.Join(errs...))
	return nil
}

// MasterOf returns the address of the master that serves key's hash slot
// (SlotOf), per Masters. It fails t if no master does.
func (c *Cluster) MasterOf(t testing.TB, key string) string {
	t.Helper()
	slot := SlotOf(key)
	for _, m := range c.Masters(t) {
		if m.Owns(slot) {
			return m.Addr
		}
	}
	t.Fatalf("redistest: no master serves slot %d", slot)
	return ""
}

// KillMaster kills the master at addr (SIGKILL) and leaves it dead, so
// that one of its replicas takes its place (WaitHealthy waits for that).
// It fails t if addr is not a master that serves slots.
func (c *Cluster) KillMaster(t testing.TB, addr string) {
	t.Helper()
	i := slices.IndexFunc(c.Masters(t), func(m Shard) bool { return m.Addr == addr })
	if i < 0 || c.Node(addr) == nil {
		t.Fatalf("redistest: KillMaster(%s): not a master of the cluster", addr)
	}
	c.Node(addr).Kill()
}

// WaitHealthy waits until the cluster is healthy again, after a failover,
// and returns how long that took: every live node reports cluster_state:ok
// with all 16384 slots served, every slot by a live master; all live nodes
// agree on which master serves which slots and which replica follows which
// master; every live replica's link to its master is up. It fails t if the
// cluster is not healthy within timeout, with the nodes' logs in the
// message.
func (c *Cluster) WaitHealthy(t testing.TB, timeout time.Duration) time.Duration {
	t.Helper()
	d, err := c.await(timeout)
	if err != nil {
		t.Fatalf("redistest: cluster not healthy within %v: %v\n%s", timeout, err, c.logs())
	}
	return d
}

// await waits up to timeout until health reports nothing, and returns how
// long it took, or health's last error.
func (c *Cluster) await(timeout time.Duration) (time.Duration, error) {
	began := time.Now()
	err := await(timeout, c.health)
	return time.Since(began), err
}

// await calls check every pollInterval until it returns nil, for up to
// timeout, and returns its last error if it never did.
func await(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(pollInterval)
	}
}

// health returns nil if the cluster is healthy as WaitHealthy says, and
// otherwise what is not.
func (c *Cluster) health() error {
	var view, viewer string
	live := 0
	for _, s := range c.nodes {
		if !s.running() {
			continue
		}
		live++
		info, err := s.do("CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("%s: CLUSTER INFO: %w", s.Addr, err)
		}
		f := parseFields(info)
		for name, want := range map[string]string{
			"cluster_state":          "ok",
			"cluster_slots_assigned": strconv.Itoa(Slots),
			"cluster_slots_ok":       strconv.Itoa(Slots),
			"cluster_known_nodes":    strconv.Itoa(len(c.nodes)),
		} {
			if f[name] != want {
				return fmt.Errorf("%s: %s is %q, want %q", s.Addr, name, f[name], want)
			}
		}
		nodes, err := clusterNodes(s)
		if err != nil {
			return err
		}
		v, err := c.view(nodes)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Addr, err)
		}
		switch {
		case viewer == "":
			view, viewer = v, s.Addr
		case v != view:
			return fmt.Errorf("%s and %s disagree:\n%s\nversus\n%s", viewer, s.Addr, view, v)
		}
		if me := myself(nodes); me != nil && me.has("slave") {
			repl, err := s.info("replication")
			if err != nil {
				return fmt.Errorf("%s: %w", s.Addr, err)
			}
			if st := repl["master_link_status"]; st != "up" {
				return fmt.Errorf("%s: replica's master_link_status is %q, want up", s.Addr, st)
			}
		}
	}
	if live == 0 {
		return errors.New("no node runs")
	}
	return nil
}

// view returns the cluster as nodes (one node's CLUSTER NODES) have it,
// in a form that two nodes that agree render the same: which master
// serves which slots, and which replica follows which master; failed
// nodes left out. It returns an error if a node is still in handshake, is
// not one of c's, or if a master that serves slots is failed or dead.
func (c *Cluster) view(nodes []clusterNode) (string, error) {
	addrOf := make(map[string]string, len(nodes))
	for _, n := range nodes {
		addrOf[n.id] = n.addr
	}
	var lines []string
	for _, n := range nodes {
		switch {
		case n.has("handshake") || n.has("noaddr"):
			return "", fmt.Errorf("node %s (%s) is in handshake", n.id, n.addr)
		case c.Node(n.addr) == nil:
			return "", fmt.Errorf("node %s (%s) is not one of the cluster's", n.id, n.addr)
		case len(n.slots) > 0 && (n.has("fail") || n.has("fail?") || !c.Node(n.addr).running()):
			return "", fmt.Errorf("master %s serves slots but has failed", n.addr)
		case n.has("fail") || n.has("fail?"):
		case len(n.slots) > 0:
			lines = append(lines, fmt.Sprintf("master %s %s slots %v", n.id, n.addr, n.slots))
		case n.has("slave"):
			lines = append(lines, fmt.Sprintf("replica %s %s of %s", n.id, n.addr, addrOf[n.master]))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n"), nil
}

// logs returns the last lines of every node's log, for a failure message.
func (c *Cluster) logs() string {
	return logsOf(c.nodes...)
}

// logsOf returns the last lines of each server's log, for a failure
// message.
func logsOf(servers ...*Server) string {
	var b strings.Builder
	for _, s := range servers {
		state := "running"
		if !s.running() {
			state = "stopped"
		}
		fmt.Fprintf(&b, "--- %s (%s), log:\n", s.Addr, state)
		lines := strings.Split(strings.TrimRight(s.output(), "\n"), "\n")
		if len(lines) > logTail {
			lines = lines[len(lines)-logTail:]
		}
		for _, l := range lines {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	return b.String()
}

// clusterNode is a line of CLUSTER NODES: one node as another sees it.
type clusterNode struct {
	id     string
	addr   string   // 127.0.0.1:port
	flags  []string // such as myself, master, slave, fail?, fail, handshake
	master string   // for a replica, its master's ID
	slots  []SlotRange
}

// has reports whether n has the flag flag.
func (n clusterNode) has(flag string) bool { return slices.Contains(n.flags, flag) }

// clusterNodes returns s's CLUSTER NODES.
func clusterNodes(s *Server) ([]clusterNode, error) {
	reply, err := s.do("CLUSTER", "NODES")
	if err != nil {
		return nil, fmt.Errorf("%s: CLUSTER NODES: %w", s.Addr, err)
	}
	nodes, err := parseClusterNodes(reply)
	if err != nil {
		return nil, fmt.Errorf("%s: CLUSTER NODES: %w", s.Addr, err)
	}
	return nodes, nil
}

// parseClusterNodes parses the reply to CLUSTER NODES, whose lines read
//
//	<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot> <slot> …
//
// where a slot is N or N-M, or [N->-ID] or [N-<-ID] for one being
// migrated (which is left out: its owner is still the node).
func parseClusterNodes(reply string) ([]clusterNode, error) {
	var nodes []clusterNode
	for line := range strings.SplitSeq(strings.TrimSpace(reply), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("short line %q", line)
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := clusterNode{id: f[0], addr: addr, flags: strings.Split(f[2], ","), master: f[3]}
		for _, sl := range f[8:] {
			if strings.HasPrefix(sl, "[") {
				continue
			}
			lo, hi, isRange := strings.Cut(sl, "-")
			if !isRange {
				hi = lo
			}
			start, err1 := strconv.Atoi(lo)
			end, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("bad slot %q in line %q", sl, line)
			}
			n.slots = append(n.slots, SlotRange{start, end})
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// myself returns the node of nodes that answered, or nil.
func myself(nodes []clusterNode) *clusterNode {
	for i := range nodes {
		if nodes[i].has("myself") {
			return &nodes[i]
		}
	}
	return nil
}

// shards returns the masters of nodes that serve slots, ordered by their
// first slot.
func shards(nodes []clusterNode) []Shard {
	var ms []Shard
	for _, n := range nodes {
		if !n.has("master") || len(n.slots) == 0 {
			continue
		}
		m := Shard{ID: n.id, Addr: n.addr, Slots: slices.Clone(n.slots)}
		slices.SortFunc(m.Slots, func(a, b SlotRange) int { return a.Start - b.Start })
		for _, r := range nodes {
			if r.has("slave") && r.master == n.id {
				m.Replicas = append(m.Replicas, r.addr)
			}
		}
		slices.Sort(m.Replicas)
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Shard) int { return a.Slots[0].Start - b.Slots[0].Start })
	return ms
}

// SlotOf returns the hash slot of key in a Redis Cluster, as CLUSTER
// KEYSLOT does: the CRC16 (XMODEM) of the key modulo 16384, where a key
// that holds a hash tag, a non-empty part between its first "{" and the
// first "}" after it, is hashed by that part alone (so "{room1}:a" and
// "{room1}:b" share a slot).
func SlotOf(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key)) % Slots
}

// crc16 returns the CRC-16/XMODEM of s (polynomial 0x1021, initial value
// 0), the checksum Redis Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := range len(s) {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
