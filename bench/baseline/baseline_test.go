package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// testTimeout bounds every run in these tests.
const testTimeout = 60 * time.Second

// startServer serves the baseline on 127.0.0.1 and returns its URL.
func startServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(newServer().handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// runBaseline calls run with "load", args and --json to a file, and returns
// the decoded summary and run's error.
func runBaseline(t *testing.T, args ...string) (summary, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	path := filepath.Join(t.TempDir(), "summary.json")
	var stdout, stderr bytes.Buffer
	err := run(ctx, append(append([]string{"load"}, args...), "--json", path), &stdout, &stderr)
	var sum summary
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		t.Fatalf("run(%q) = %v, and no JSON summary: %v\nstderr: %s", args, err, rerr, stderr.String())
	}
	if jerr := json.Unmarshal(data, &sum); jerr != nil {
		t.Fatalf("summary JSON: %v\n%s", jerr, data)
	}
	return sum, err
}

func TestScenarios(t *testing.T) {
	tests := []struct {
		name                        string
		args                        []string
		wantPairs, wantMessages     int64
		wantConnects, wantRoundTrip int64
	}{
		{
			name:         "upgrade",
			args:         []string{"--scenario", "upgrade", "--pairs", "7", "--concurrency", "3"},
			wantPairs:    7,
			wantConnects: 14,
		},
		{
			name:          "forward",
			args:          []string{"--scenario", "forward", "--pairs", "5", "--concurrency", "2", "--messages", "4", "--size", "40000"},
			wantPairs:     5,
			wantMessages:  5 * 4 * 2,
			wantConnects:  10,
			wantRoundTrip: 5 * 4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := startServer(t)
			sum, err := runBaseline(t, append(tt.args, "--url", url)...)
			if err != nil {
				t.Fatalf("run: %v (errors %v, e.g. %v)", err, sum.Errors, sum.ErrorExamples)
			}
			if sum.PairsCompleted != tt.wantPairs || sum.PairsFailed != 0 || len(sum.Errors) != 0 {
				t.Errorf("pairs completed %d, failed %d, errors %v; want %d, 0, none", sum.PairsCompleted, sum.PairsFailed, sum.Errors, tt.wantPairs)
			}
			if sum.MessagesDelivered != tt.wantMessages {
				t.Errorf("messages = %d, want %d", sum.MessagesDelivered, tt.wantMessages)
			}
			if got := sum.Latency[metricConnect].Count; got != tt.wantConnects {
				t.Errorf("connect samples = %d, want %d", got, tt.wantConnects)
			}
			if got := sum.Latency[metricRoundTrip].Count; got != tt.wantRoundTrip {
				t.Errorf("round_trip samples = %d, want %d", got, tt.wantRoundTrip)
			}
			if sum.PairsPerSecond <= 0 {
				t.Errorf("pairs_per_second = %v, want > 0", sum.PairsPerSecond)
			}
			if !strings.HasPrefix(sum.Library, "github.com/coder/websocket") {
				t.Errorf("library = %q", sum.Library)
			}
		})
	}
}

func TestIdle(t *testing.T) {
	url := startServer(t)
	const conns = 20
	sum, err := runBaseline(t, "--url", url, "--scenario", "idle", "--connections", "20", "--concurrency", "5", "--duration", "1500ms")
	if err != nil {
		t.Fatalf("run: %v (errors %v, e.g. %v)", err, sum.Errors, sum.ErrorExamples)
	}
	c := sum.Connections
	if c == nil || c.Opened != conns || c.OpenAtEnd != conns || c.Failed != 0 || c.Dropped != 0 {
		t.Fatalf("connections = %+v, want %d opened and open at the end", c, conns)
	}
	m := sum.Server
	if m == nil {
		t.Fatal("no server memory in the summary")
	}
	if m.HeldConnections != conns {
		t.Errorf("held connections = %d, want %d", m.HeldConnections, conns)
	}
	// The server runs in this process, so the client's goroutines are in
	// the count too: at least the server's handler per connection.
	if m.GoroutinesPerConnection < 1 {
		t.Errorf("goroutines per connection = %v, want at least 1", m.GoroutinesPerConnection)
	}
	if m.Before.RSSBytes <= 0 || m.Held.RSSBytes <= 0 {
		t.Errorf("RSS before %d, held %d; want both positive", m.Before.RSSBytes, m.Held.RSSBytes)
	}
}

// TestForwardIntact checks the forwarder by hand: each message reaches the
// partner unchanged and in order, and nothing goes back to its sender.
func TestForwardIntact(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	u := startServer(t) + "/forward?pair=intact"
	a, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.CloseNow()
	b, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.CloseNow()
	b.SetReadLimit(readLimit)

	msgs := []string{"one", strings.Repeat("x", 50000), "three"}
	for _, m := range msgs {
		if err := a.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range msgs {
		typ, got, err := b.Read(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if typ != websocket.MessageText || string(got) != want {
			t.Fatalf("message %d: got %v of %d bytes, want text of %d bytes", i, typ, len(got), len(want))
		}
	}
	if err := b.Write(ctx, websocket.MessageText, []byte("back")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := a.Read(ctx); err != nil || string(got) != "back" {
		t.Fatalf("A read %q, %v; want %q", got, err, "back")
	}
	// A leaves: the server closes B.
	a.Close(websocket.StatusNormalClosure, "")
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	if _, _, err := b.Read(rctx); err == nil || rctx.Err() != nil {
		t.Fatalf("B read after A left: %v, want the connection closed", err)
	}
}

func TestLoadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"unknown scenario", []string{"--scenario", "chat"}, "--scenario"},
		{"idle without duration", []string{"--scenario", "idle"}, "--duration"},
		{"pairs 0 without duration", []string{"--pairs", "0"}, "--duration"},
		{"bad URL", []string{"--url", "ftp://x"}, "--url"},
		{"size over the read limit", []string{"--size", "70000"}, "--size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, new(bytes.Buffer))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseConfig(%q) = %v, want an error about %s", tt.args, err, tt.want)
			}
		})
	}
}
