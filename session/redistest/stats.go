package redistest

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// CommandCount returns the number of commands the server has processed
// since it started (INFO stats, total_commands_processed). The count
// includes those a replica gets from its master, a sentinel's checks, and
// this package's own, such as the INFO of every CommandCount call, which
// counts in the next one. It fails t if the server does not answer.
func (s *Server) CommandCount(t testing.TB) int64 {
	t.Helper()
	info, err := s.info("stats")
	if err == nil {
		var n int64
		if n, err = strconv.ParseInt(info["total_commands_processed"], 10, 64); err == nil {
			return n
		}
	}
	t.Fatalf("redistest: %s: commands processed: %v", s.Addr, err)
	return 0
}

// CPUTime returns the CPU time the server's process has used since it
// started, in the kernel and in user space, all threads (INFO cpu,
// used_cpu_sys plus used_cpu_user; microsecond resolution). It fails t if
// the server does not answer.
func (s *Server) CPUTime(t testing.TB) time.Duration {
	t.Helper()
	info, err := s.info("cpu")
	if err == nil {
		var total time.Duration
		for _, field := range []string{"used_cpu_sys", "used_cpu_user"} {
			var d time.Duration
			if d, err = time.ParseDuration(info[field] + "s"); err != nil {
				break
			}
			total += d
		}
		if err == nil {
			return total
		}
	}
	t.Fatalf("redistest: %s: CPU time: %v", s.Addr, err)
	return 0
}

// info returns the fields of one section of the server's INFO, such as
// "replication", by name.
func (s *Server) info(section string) (map[string]string, error) {
	reply, err := s.do("INFO", section)
	if err != nil {
		return nil, fmt.Errorf("INFO %s: %w", section, err)
	}
	return parseFields(reply), nil
}

// parseFields parses the "name:value" lines of INFO and CLUSTER INFO,
// skipping comments and blank lines.
func parseFields(s string) map[string]string {
	m := make(map[string]string)
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if name, value, ok := strings.Cut(line, ":"); ok {
			m[name] = value
		}
	}
	return m
}
