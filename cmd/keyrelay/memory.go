package main

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// The relay's memory plan: the defaults of the limits that bound memory
// across all clients derive from one size, so that together they keep the
// relay's RSS under it however many sources attack (SECURITY.md has the
// computation, BENCHMARKS.md the measurements).
const (
	// maxPlannedRelay is the largest planned size: 2 GiB, whatever the
	// machine. An operator with more memory to give raises the limits.
	maxPlannedRelay = 2 << 30
	// minPlannedRelay is the smallest: below it the defaults would serve
	// too little to be useful; a smaller machine sets the limits itself.
	minPlannedRelay = 256 << 20
	// connCost is what one connection may hold at worst: an idle
	// WebSocket measured 28.4 KiB of RSS (BENCHMARKS.md), a frame of up to
	// 64 KiB being read, and one outgoing frame of up to 88 KiB (a 64 KiB
	// body in base64 and JSON) that a producer may queue past the queue
	// bounds before it waits.
	connCost = 180 << 10
)

// memoryPlan is what the derived memory defaults come from.
type memoryPlan struct {
	machine      int64 // memory the process may use (cgroup limit, else RAM); 0 unknown
	relay        int64 // the planned RSS ceiling: half the machine, within [256 MiB, 2 GiB]
	pendingTotal int64 // --max-pending-bytes-total: relay/16 of message bodies waiting
	queuedTotal  int64 // --max-queued-bytes-total: relay/32 of frames queued for clients
	conns        int   // the cap on derived --max-conns-total: 60% of relay at connCost each
	goMemLimit   int64 // the Go runtime's soft memory limit: 7/8 of relay
}

// planMemory returns the plan for a machine with the given memory (0:
// unknown, planned as 4 GiB).
func planMemory(machine int64) memoryPlan {
	m := machine
	if m <= 0 {
		m = 4 << 30
	}
	relay := min(max(m/2, minPlannedRelay), maxPlannedRelay)
	return memoryPlan{
		machine:      machine,
		relay:        relay,
		pendingTotal: relay / 16,
		queuedTotal:  relay / 32,
		conns:        int(relay * 60 / 100 / connCost),
		goMemLimit:   relay / 8 * 7,
	}
}

// machineMemory returns the memory this process may use: its cgroup's
// limit (v2 memory.max, or v1 memory.limit_in_bytes) when there is one,
// else the machine's RAM (MemTotal); 0 if neither can be read (not Linux).
func machineMemory() int64 {
	total := memTotal()
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
		if err != nil || v <= 0 {
			continue // "max": no limit
		}
		if total == 0 || v < total {
			return v
		}
	}
	return total
}

// memTotal returns /proc/meminfo's MemTotal in bytes, or 0.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kib, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			return kib << 10
		}
	}
	return 0
}
