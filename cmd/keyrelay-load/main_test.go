package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyrelay/keyrelay/internal/loadstats"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/session/redistest"
)

// testTimeout bounds every run in these tests.
const testTimeout = 60 * time.Second

// loadConfig lifts the relay's per-connection limits, which a load test
// from one address would otherwise hit at once.
var loadConfig = relay.Config{Limiter: relaytest.NoLimits(), FramesPerSecond: 1e9, FrameBurst: 1 << 30, BytesPerSecond: 1e12, ByteBurst: 1 << 40}

// startRelay starts a relay with cfg on a memory store.
func startRelay(t *testing.T, cfg relay.Config) *relaytest.Server {
	t.Helper()
	return relaytest.NewServer(t, relaytest.NewMemoryStore(), cfg)
}

// memoryRelay starts a relay with loadConfig on a memory store and
// returns its WebSocket URL.
func memoryRelay(t *testing.T) string {
	t.Helper()
	return startRelay(t, loadConfig).URL
}

func noEnv(string) string { return "" }

// runLoad calls run with args plus --json to a file, and returns the
// decoded summary and run's error.
func runLoad(t *testing.T, args ...string) (summary, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	path := filepath.Join(t.TempDir(), "summary.json")
	var stdout, stderr bytes.Buffer
	err := run(ctx, append(args, "--json", path), noEnv, &stdout, &stderr)
	var sum summary
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		t.Fatalf("run(%q) = %v, and no JSON summary: %v\nstderr: %s", args, err, rerr, stderr.String())
	}
	if jerr := json.Unmarshal(data, &sum); jerr != nil {
		t.Fatalf("summary: %v\n%s", jerr, data)
	}
	if !strings.Contains(stdout.String(), "pairs:") && !strings.Contains(stdout.String(), "connections:") {
		t.Errorf("stdout has no text summary:\n%s", stdout.String())
	}
	return sum, err
}

// checkClean checks a run that should have completed every pair.
func checkClean(t *testing.T, sum summary, pairs, messages int, metrics ...string) {
	t.Helper()
	if sum.PairsCompleted != int64(pairs) || sum.PairsAttempted != int64(pairs) || sum.PairsFailed != 0 {
		t.Errorf("pairs completed/attempted/failed = %d/%d/%d, want %d/%d/0 (errors %v)",
			sum.PairsCompleted, sum.PairsAttempted, sum.PairsFailed, pairs, pairs, sum.Errors)
	}
	if sum.MessagesDelivered != int64(messages) {
		t.Errorf("messages = %d, want %d", sum.MessagesDelivered, messages)
	}
	if len(sum.Errors) != 0 || sum.ErrorRate != 0 {
		t.Errorf("errors = %v, rate %v; want none", sum.Errors, sum.ErrorRate)
	}
	if sum.PairsPerSecond <= 0 {
		t.Errorf("pairs/s = %v, want > 0", sum.PairsPerSecond)
	}
	for _, m := range metrics {
		p, ok := sum.Latency[m]
		if !ok {
			t.Errorf("latency %q missing: %v", m, sum.Latency)
			continue
		}
		if p.Count == 0 || p.P50 <= 0 || p.P90 < p.P50 || p.P99 < p.P90 || p.P999 < p.P99 || p.Max < p.P999 {
			t.Errorf("latency %q = %+v, want positive, increasing percentiles", m, p)
		}
	}
}

func TestHandshake(t *testing.T) {
	url := memoryRelay(t)
	for _, group := range []string{"x25519", "p256", "modp14"} {
		t.Run(group, func(t *testing.T) {
			sum, err := runLoad(t, "--url", url, "--scenario", "handshake", "--group", group, "--pairs", "5", "--concurrency", "2")
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			checkClean(t, sum, 5, 0, metricConnect, metricJoin, metricHandshake)
			if sum.Group != group {
				t.Errorf("group = %q, want %q", sum.Group, group)
			}
			if got := sum.Latency[metricConnect].Count; got != 10 {
				t.Errorf("connect samples = %d, want 10 (two per pair)", got)
			}
		})
	}
}

func TestChat(t *testing.T) {
	url := memoryRelay(t)
	sum, err := runLoad(t, "--url", url, "--scenario", "chat", "--pairs", "5", "--concurrency", "3", "--messages", "3", "--size", "100")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	checkClean(t, sum, 5, 30, metricConnect, metricJoin, metricHandshake, metricRoundTrip)
	if got := sum.Latency[metricRoundTrip].Count; got != 15 {
		t.Errorf("round trips = %d, want 15", got)
	}
	if sum.MessagesPerSecond <= 0 {
		t.Errorf("messages/s = %v, want > 0", sum.MessagesPerSecond)
	}
}

// TestChurn runs 4 pairs: pairs 0 and 2 leave, pairs 1 and 3 drop and
// resume, each receiving the message sent while away exactly once.
func TestChurn(t *testing.T) {
	url := memoryRelay(t)
	sum, err := runLoad(t, "--url", url, "--scenario", "churn", "--pairs", "4", "--concurrency", "2", "--messages", "2", "--size", "50")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	// 2 round trips per pair (4 messages), plus 2 after the drop in odd pairs.
	checkClean(t, sum, 4, 4*4+2*2, metricConnect, metricJoin, metricHandshake, metricRoundTrip)
	if sum.Resumes != 2 {
		t.Errorf("resumes = %d, want 2", sum.Resumes)
	}
}

// TestIdle holds 5 connections for about a second against a relay that
// pings every 100 ms, so that the client answers several pings.
func TestIdle(t *testing.T) {
	cfg := loadConfig
	cfg.PingInterval = 100 * time.Millisecond
	cfg.PingTimeout = 500 * time.Millisecond
	url := startRelay(t, cfg).URL
	sum, err := runLoad(t, "--url", url, "--scenario", "idle", "--connections", "5", "--concurrency", "5", "--duration", "1s")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	want := loadstats.ConnCounts{Opened: 5, OpenAtEnd: 5}
	if sum.Connections == nil || *sum.Connections != want {
		t.Errorf("connections = %+v, want %+v (errors %v)", sum.Connections, want, sum.Errors)
	}
	if sum.PairsAttempted != 5 || sum.PairsCompleted != 5 || len(sum.Errors) != 0 || sum.ErrorRate != 0 {
		t.Errorf("attempted/completed %d/%d, errors %v, rate %v; want 5/5, none, 0", sum.PairsAttempted, sum.PairsCompleted, sum.Errors, sum.ErrorRate)
	}
	if got := sum.Latency[metricConnect].Count; got != 5 {
		t.Errorf("connect samples = %d, want 5", got)
	}
	if sum.ElapsedSeconds < 0.9 || sum.ElapsedSeconds > 10 {
		t.Errorf("elapsed %vs, want about 1s", sum.ElapsedSeconds)
	}
}

// TestIdleDropped holds connections on a relay that is closed meanwhile:
// every connection counts as dropped, an error.
func TestIdleDropped(t *testing.T) {
	rs := startRelay(t, loadConfig)
	time.AfterFunc(500*time.Millisecond, func() { rs.Relay.Close(); rs.HTTP.CloseClientConnections() })
	url := rs.URL
	sum, err := runLoad(t, "--url", url, "--scenario", "idle", "--connections", "3", "--duration", "2s")
	if err == nil {
		t.Fatal("run succeeded, want an error-rate error")
	}
	if sum.Connections == nil || sum.Connections.Opened != 3 || sum.Connections.Dropped != 3 || sum.Connections.OpenAtEnd != 0 {
		t.Errorf("connections = %+v, want 3 opened, 3 dropped (errors %v)", sum.Connections, sum.Errors)
	}
	t.Logf("errors: %v", sum.Errors)
}

// TestTwoRelaysOnRedis splits every pair across two relays sharing one
// real redis-server.
func TestTwoRelaysOnRedis(t *testing.T) {
	addr := redistest.Start(t)
	cfg := loadConfig
	cfg.PingInterval = 100 * time.Millisecond
	url1 := relaytest.NewServer(t, relaytest.NewRedisStore(t, addr, "loadtest:"), cfg).URL
	url2 := relaytest.NewServer(t, relaytest.NewRedisStore(t, addr, "loadtest:"), cfg).URL
	urls := url1 + "," + url2
	// Every scenario, at small scale, with the peers of each pair on
	// different instances.
	for _, tt := range []struct {
		name     string
		args     []string
		pairs    int
		messages int
		metrics  []string
	}{
		{"handshake", []string{"--scenario", "handshake", "--pairs", "4"}, 4, 0, []string{metricConnect, metricJoin, metricHandshake}},
		{"handshake relay-only modp14", []string{"--scenario", "handshake", "--group", "modp14", "--client-crypto", "relay-only", "--key-pool", "8", "--pairs", "4"}, 4, 0, []string{metricHandshake}},
		{"chat", []string{"--scenario", "chat", "--pairs", "5", "--messages", "3"}, 5, 30, []string{metricConnect, metricJoin, metricHandshake, metricRoundTrip}},
		{"chat open loop", []string{"--scenario", "chat", "--pairs", "4", "--messages", "2", "--rate", "20", "--message-rate", "50"}, 4, 16, []string{metricRoundTrip}},
		{"churn", []string{"--scenario", "churn", "--pairs", "4", "--messages", "2"}, 4, 4*4 + 2*2, []string{metricRoundTrip}},
		{"scenario file", []string{"--scenario-file", "testdata/example-scenario.json", "--pairs", "2"}, 2, 2 * 12, []string{metricHandshake, metricRoundTrip}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sum, err := runLoad(t, append([]string{"--url", urls, "--concurrency", "2"}, tt.args...)...)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			checkClean(t, sum, tt.pairs, tt.messages, tt.metrics...)
			if len(sum.URLs) != 2 {
				t.Errorf("urls = %v, want 2", sum.URLs)
			}
		})
	}
	t.Run("idle", func(t *testing.T) {
		sum, err := runLoad(t, "--url", urls, "--scenario", "idle", "--connections", "6", "--concurrency", "3", "--duration", "1s")
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		if want := (loadstats.ConnCounts{Opened: 6, OpenAtEnd: 6}); sum.Connections == nil || *sum.Connections != want {
			t.Errorf("connections = %+v, want %+v (errors %v)", sum.Connections, want, sum.Errors)
		}
	})
}

func TestURLsFor(t *testing.T) {
	l := newLoad(config{urls: []string{"ws://a", "ws://b", "ws://c"}}, nil)
	for i := range 6 {
		a, b := l.urlsFor(i)
		if a == b {
			t.Errorf("pair %d: both peers on %s", i, a)
		}
	}
	l = newLoad(config{urls: []string{"ws://a"}}, nil)
	if a, b := l.urlsFor(3); a != "ws://a" || b != "ws://a" {
		t.Errorf("one URL: got %s, %s", a, b)
	}
}

// TestMaxErrorRate points the tester at a port where nothing listens:
// every dial fails, and run reports the error rate.
func TestMaxErrorRate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "ws://" + ln.Addr().String() + "/v1/ws"
	ln.Close()

	sum, err := runLoad(t, "--url", url, "--pairs", "4", "--concurrency", "2", "--max-error-rate", "0.5")
	if err == nil || !strings.Contains(err.Error(), "max-error-rate") {
		t.Fatalf("run = %v, want an error-rate error", err)
	}
	if sum.ErrorExamples["dial"] == "" {
		t.Errorf("no example of the dial error: %v", sum.ErrorExamples)
	}
	if sum.PairsFailed != 4 || sum.Errors["dial"] != 4 || sum.ErrorRate != 1 {
		t.Errorf("failed %d, errors %v, rate %v; want 4, dial:4, 1", sum.PairsFailed, sum.Errors, sum.ErrorRate)
	}

	// A wrong path on a live relay: the upgrade is refused, also a dial error.
	good := memoryRelay(t)
	if _, err := runLoad(t, "--url", strings.TrimSuffix(good, "/v1/ws")+"/nowhere", "--pairs", "2"); err == nil {
		t.Error("run against a wrong path succeeded, want an error")
	}
	// With the threshold at 1 the failures are reported but do not fail the run.
	if _, err := runLoad(t, "--url", url, "--pairs", "2", "--max-error-rate", "1"); err != nil {
		t.Errorf("--max-error-rate 1: run = %v, want nil", err)
	}
}

func TestDuration(t *testing.T) {
	url := memoryRelay(t)
	sum, err := runLoad(t, "--url", url, "--pairs", "0", "--duration", "300ms", "--concurrency", "2")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if sum.PairsCompleted == 0 || sum.PairsFailed != 0 {
		t.Errorf("completed %d, failed %d (%v); want some, none", sum.PairsCompleted, sum.PairsFailed, sum.Errors)
	}
	if sum.ElapsedSeconds > 10 {
		t.Errorf("elapsed %vs, want about 0.3s", sum.ElapsedSeconds)
	}
}

func TestJSONToStdout(t *testing.T) {
	url := memoryRelay(t)
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"--url", url, "--pairs", "2", "--json", "-"}, noEnv, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	var sum summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("stdout is not the JSON summary: %v\n%s", err, stdout.String())
	}
	if sum.PairsCompleted != 2 {
		t.Errorf("pairs completed = %d, want 2", sum.PairsCompleted)
	}
}

func TestProgress(t *testing.T) {
	url := memoryRelay(t)
	var stdout, stderr bytes.Buffer
	args := []string{"--url", url, "--pairs", "0", "--duration", "1200ms", "--concurrency", "1", "--progress"}
	if err := run(t.Context(), args, noEnv, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(stderr.String(), "in flight") {
		t.Errorf("stderr has no progress line: %q", stderr.String())
	}
}

func TestEnv(t *testing.T) {
	getenv := func(name string) string {
		return map[string]string{"KEYRELAY_LOAD_PAIRS": "7", "KEYRELAY_LOAD_GROUP": "p256", "KEYRELAY_LOAD_URL": "ws://x/v1/ws"}[name]
	}
	cfg, err := parseConfig([]string{"--pairs", "3"}, getenv, new(bytes.Buffer), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Pairs != 3 || cfg.group.Name() != "p256" || cfg.urls[0] != "ws://x/v1/ws" {
		t.Errorf("got pairs %d, group %s, urls %v; want 3 (flag wins), p256, ws://x/v1/ws", cfg.Pairs, cfg.group.Name(), cfg.urls)
	}
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"--nope"}, nil, "not defined"},
		{"scenario", []string{"--scenario", "dance"}, nil, "--scenario"},
		{"group", []string{"--group", "modp99"}, nil, "--group"},
		{"url scheme", []string{"--url", "ftp://localhost/v1/ws"}, nil, "--url"},
		{"no url", []string{"--url", " , "}, nil, "--url"},
		{"negative pairs", []string{"--pairs", "-1"}, nil, "--pairs"},
		{"no pairs nor duration", []string{"--pairs", "0"}, nil, "--duration"},
		{"concurrency", []string{"--concurrency", "0"}, nil, "--concurrency"},
		{"messages", []string{"--scenario", "chat", "--messages", "0"}, nil, "--messages"},
		{"churn messages", []string{"--scenario", "churn", "--messages", "0"}, nil, "--messages"},
		{"idle without duration", []string{"--scenario", "idle"}, nil, "--duration"},
		{"idle connections", []string{"--scenario", "idle", "--duration", "1s", "--connections", "0"}, nil, "--connections"},
		{"bad connections env", nil, map[string]string{"KEYRELAY_LOAD_CONNECTIONS": "lots"}, "KEYRELAY_LOAD_CONNECTIONS"},
		{"size", []string{"--size", "0"}, nil, "--size"},
		{"error rate", []string{"--max-error-rate", "1.5"}, nil, "--max-error-rate"},
		{"argument", []string{"extra"}, nil, "unexpected argument"},
		{"bad env", nil, map[string]string{"KEYRELAY_LOAD_PAIRS": "many"}, "KEYRELAY_LOAD_PAIRS"},
		{"client crypto", []string{"--client-crypto", "none"}, nil, "--client-crypto"},
		{"relay-only chat", []string{"--scenario", "chat", "--client-crypto", "relay-only"}, nil, "relay-only"},
		{"key pool", []string{"--client-crypto", "relay-only", "--key-pool", "1"}, nil, "--key-pool"},
		{"chat size below an index", []string{"--scenario", "chat", "--size", "7"}, nil, "--size"},
		{"resume handshake", []string{"--resume"}, nil, "--resume"},
		{"resume file", []string{"--resume", "--scenario-file", "testdata/example-scenario.json"}, nil, "--resume"},
		{"delayed after", []string{"--scenario", "chat", "--delayed-after", "0s"}, nil, "--delayed-after"},
		{"event log", []string{"--url", "ws://127.0.0.1:1/v1/ws", "--event-log", "/nonexistent/dir/events"}, nil, "--event-log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			getenv := func(name string) string { return tt.env[name] }
			err := run(t.Context(), tt.args, getenv, &stdout, &stderr)
			if err == nil {
				t.Fatal("run succeeded, want an error")
			}
			if msg := err.Error() + stderr.String(); !strings.Contains(msg, tt.want) {
				t.Errorf("error %q (stderr %q), want it to mention %q", err, stderr.String(), tt.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"--help"}, noEnv, &stdout, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run --help = %v, want flag.ErrHelp", err)
	}
	for _, f := range []string{"url", "scenario", "group", "pairs", "concurrency", "duration", "messages", "size", "json", "max-error-rate", "progress", "timeout", "connections"} {
		if !strings.Contains(stderr.String(), "-"+f) || !strings.Contains(stderr.String(), envName(f)) {
			t.Errorf("--help does not document --%s and %s", f, envName(f))
		}
	}
	for _, sc := range []string{"handshake", "chat", "churn", "idle"} {
		if !strings.Contains(stderr.String(), "  "+sc+" ") {
			t.Errorf("--help does not describe the %s scenario", sc)
		}
	}
}

// TestRelayOnly: --client-crypto relay-only completes handshakes with pool
// keys, which the relay validates and counts as handshakes (TestBadFlags:
// it is refused where a scenario needs the shared key).
func TestRelayOnly(t *testing.T) {
	rs := startRelay(t, relay.Config{})
	url, reg := rs.URL, rs.Registry
	for _, group := range []string{"x25519", "modp14"} {
		t.Run(group, func(t *testing.T) {
			before := handshakesCounted(t, reg)
			sum, err := runLoad(t, "--url", url, "--group", group, "--client-crypto", "relay-only", "--key-pool", "4", "--pairs", "6", "--concurrency", "3")
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			checkClean(t, sum, 6, 0, metricConnect, metricJoin, metricHandshake)
			if got := handshakesCounted(t, reg) - before; got != 6 {
				t.Errorf("the relay counted %v handshakes, want 6", got)
			}
		})
	}
}

// handshakesCounted reads keyrelay_handshakes_total from reg.
func handshakesCounted(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "keyrelay_handshakes_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("keyrelay_handshakes_total not registered")
	return 0
}

// TestReportPathsCheckedFirst: a --json or --html file that cannot be
// written is an error before the run, which would otherwise be lost at
// its end; the relay sees no connection.
func TestReportPathsCheckedFirst(t *testing.T) {
	for _, flag := range []string{"--json", "--html"} {
		var stdout, stderr bytes.Buffer
		// No relay listens at this URL: a run would fail its pairs.
		err := run(context.Background(), []string{"--url", "ws://127.0.0.1:1/v1/ws", "--pairs", "1", flag, "/nonexistent-dir/x"}, noEnv, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), flag+": cannot write /nonexistent-dir/x") {
			t.Errorf("%s /nonexistent-dir/x: %v, want the path refused", flag, err)
		}
		if strings.Contains(stdout.String(), "pairs:") {
			t.Errorf("%s /nonexistent-dir/x: the run happened:\n%s", flag, stdout.String())
		}
	}
}

// TestVersion: --version prints the build and is not an error for main.
func TestVersion(t *testing.T) {
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"--version"}, noEnv, &stdout, io.Discard)
	if !errors.Is(err, errVersion) || !strings.HasPrefix(stdout.String(), "keyrelay-load ") || !strings.Contains(stdout.String(), "go1.") {
		t.Errorf("--version: %v, %q; want errVersion and the build", err, stdout.String())
	}
}
