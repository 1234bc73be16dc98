package main

import (
	"io"
	"strings"
	"testing"
)

func TestPlanMemory(t *testing.T) {
	const MiB, GiB = 1 << 20, 1 << 30
	for _, tt := range []struct {
		machine     int64
		relay       int64
		wantConns   int
		wantPending int64
	}{
		{24 * GiB, 2 * GiB, 6990, 128 * MiB},
		{2 * GiB, 1 * GiB, 3495, 64 * MiB},
		{256 * MiB, 256 * MiB, 873, 16 * MiB}, // the floor
		{0, 2 * GiB, 6990, 128 * MiB},         // unknown: planned as 4 GiB
	} {
		p := planMemory(tt.machine)
		if p.relay != tt.relay || p.conns != tt.wantConns || p.pendingTotal != tt.wantPending || p.queuedTotal != tt.relay/32 || p.goMemLimit != tt.relay/8*7 {
			t.Errorf("planMemory(%d) = %+v, want relay %d, conns %d, pending %d", tt.machine, p, tt.relay, tt.wantConns, tt.wantPending)
		}
		// What the plan promises: connections, bodies and queues within
		// the Go limit, which is within the plan.
		if used := int64(p.conns)*connCost + p.pendingTotal + p.queuedTotal; used > p.goMemLimit || p.goMemLimit > p.relay {
			t.Errorf("planMemory(%d): %d bytes of worst cases, Go limit %d, plan %d", tt.machine, used, p.goMemLimit, p.relay)
		}
	}
}

// TestMemoryFlags: the derived budgets and their explicit values, -1 and
// invalid ones.
func TestMemoryFlags(t *testing.T) {
	plan := planMemory(machineMemory())
	for _, tt := range []struct {
		args                      []string
		perIP, total, queuedTotal int64
		wantErr                   string
	}{
		{nil, 32 << 20, plan.pendingTotal, plan.queuedTotal, ""},
		{[]string{"--max-pending-bytes-per-ip", "-1", "--max-pending-bytes-total", "-1", "--max-queued-bytes-total", "-1"}, 0, 0, -1, ""},
		{[]string{"--max-pending-bytes-per-ip", "1000", "--max-pending-bytes-total", "5000", "--max-queued-bytes-total", "7000"}, 1000, 5000, 7000, ""},
		{[]string{"--max-pending-bytes-total", "-2"}, 0, 0, 0, "--max-pending-bytes-total must be"},
		{[]string{"--max-queued-bytes", "0"}, 0, 0, 0, "--max-queued-bytes must be positive"},
	} {
		c, err := parseConfig(tt.args, func(string) string { return "" }, io.Discard)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseConfig(%q): %v, want an error with %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseConfig(%q): %v", tt.args, err)
			continue
		}
		if c.budget.PerSource != tt.perIP || c.budget.Total != tt.total || c.relay.MaxQueuedBytesTotal != tt.queuedTotal {
			t.Errorf("parseConfig(%q): per IP %d, total %d, queued total %d; want %d, %d, %d", tt.args,
				c.budget.PerSource, c.budget.Total, c.relay.MaxQueuedBytesTotal, tt.perIP, tt.total, tt.queuedTotal)
		}
	}
}
