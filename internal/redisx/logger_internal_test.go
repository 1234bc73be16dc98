package redisx

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// TestLoggerOnceEvery: go-redis's lines are logged at most once every
// logEvery, with a count of the ones dropped, and "redis: " once.
func TestLoggerOnceEvery(t *testing.T) {
	var buf bytes.Buffer
	l := &slogLogger{l: slog.New(slog.NewTextHandler(&buf, nil))}
	for range 5 {
		l.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts", 5)
	}
	if got := strings.Count(buf.String(), "\n"); got != 1 {
		t.Fatalf("%d lines for 5 calls within %v, want 1:\n%s", got, logEvery, buf.String())
	}
	if strings.Contains(buf.String(), "redis: redis:") {
		t.Errorf("the prefix is doubled: %s", buf.String())
	}
	l.last = l.last.Add(-logEvery) // as if logEvery had passed
	l.Printf(context.Background(), "pool: %s", "again")
	if !strings.Contains(buf.String(), `msg="redis: pool: again" similar_lines_dropped=4`) {
		t.Errorf("the next line does not count the 4 dropped:\n%s", buf.String())
	}
}
