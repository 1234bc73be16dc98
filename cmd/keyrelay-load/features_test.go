package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyrelay/keyrelay/internal/loadstats"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/wire"
)

// startMetricsRelay starts a relay with cfg on a memory store as
// cmd/keyrelay serves it: /v1/ws and /metrics with the Go and process
// collectors.
func startMetricsRelay(t *testing.T, cfg relay.Config) *relaytest.Server {
	t.Helper()
	rs := startRelay(t, cfg)
	rs.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rs.Mux.Handle("GET /metrics", promhttp.HandlerFor(rs.Registry, promhttp.HandlerOpts{}))
	return rs
}

// writeScenario writes a scenario file and returns its path.
func writeScenario(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "scenario.json")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenLoop(t *testing.T) {
	url := memoryRelay(t)
	sum, err := runLoad(t, "--url", url, "--scenario", "chat", "--messages", "2", "--rate", "50", "--pairs", "6", "--concurrency", "6")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	checkClean(t, sum, 6, 24, metricConnect, metricJoin, metricHandshake, metricRoundTrip)
	o := sum.OpenLoop
	if o == nil {
		t.Fatal("no open_loop in the summary")
	}
	if o.Rate != 50 || o.Arrivals != 6 || o.Started != 6 || o.Missed != 0 {
		t.Errorf("open loop = %+v, want rate 50, 6 arrivals, 6 started, 0 missed", *o)
	}
	// Six arrivals at 50/s take at least 6/50 s: the schedule holds them back.
	if o.Window < 0.12 || o.StartRate <= 0 || o.StartRate > 50.01 {
		t.Errorf("window %vs, start rate %v; want at least 0.12s and at most 50/s", o.Window, o.StartRate)
	}
}

// TestOpenLoopMissed runs pairs that each sleep for a second, arriving
// 100 a second with room for one in flight: the arrivals after the first
// find it still running and are missed, which fails the run.
func TestOpenLoopMissed(t *testing.T) {
	url := memoryRelay(t)
	path := writeScenario(t, `{"name": "slow", "steps": [{"do": "connect", "peer": "a"}, {"do": "sleep", "duration": "1s"}]}`)
	args := []string{"--url", url, "--scenario-file", path, "--rate", "100", "--pairs", "5", "--concurrency", "1"}
	sum, err := runLoad(t, args...)
	if err == nil || !strings.Contains(err.Error(), "missed arrivals") {
		t.Errorf("run = %v, want a missed-arrivals error", err)
	}
	o := sum.OpenLoop
	if o == nil || o.Arrivals != 5 || o.Started != 1 || o.Missed != 4 {
		t.Fatalf("open loop = %+v, want 5 arrivals, 1 started, 4 missed", o)
	}
	if sum.PairsCompleted != 1 || sum.PairsFailed != 0 {
		t.Errorf("pairs completed/failed = %d/%d, want 1/0", sum.PairsCompleted, sum.PairsFailed)
	}

	var stdout bytes.Buffer
	err = run(t.Context(), append(args, "--max-error-rate", "1"), noEnv, &stdout, io.Discard)
	if err != nil {
		t.Errorf("--max-error-rate 1: run = %v, want nil", err)
	}
	if !strings.Contains(stdout.String(), "4 missed") {
		t.Errorf("text summary does not show the missed arrivals:\n%s", stdout.String())
	}
}

// TestMessageRate paces 4 round trips at 20/s: the last starts at least
// 150 ms after the first.
func TestMessageRate(t *testing.T) {
	url := memoryRelay(t)
	sum, err := runLoad(t, "--url", url, "--scenario", "chat", "--pairs", "1", "--messages", "4", "--message-rate", "20")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	checkClean(t, sum, 1, 8, metricRoundTrip)
	if sum.ElapsedSeconds < 0.15 {
		t.Errorf("elapsed %.3fs, want at least 0.15s for 4 round trips at 20/s", sum.ElapsedSeconds)
	}
	if sum.MessageRate != 20 {
		t.Errorf("message_rate = %v, want 20", sum.MessageRate)
	}
}

func TestPacer(t *testing.T) {
	if err := (*pacer)(nil).wait(t.Context()); err != nil {
		t.Errorf("nil pacer: %v", err)
	}
	p := newPacer(100)
	t0 := time.Now()
	for range 5 {
		if err := p.wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(t0); d < 40*time.Millisecond {
		t.Errorf("5 events at 100/s took %v, want at least 40ms", d)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p = newPacer(0.001)
	_ = p.wait(ctx) // the first comes at once
	if err := p.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("wait on a cancelled context = %v, want context.Canceled", err)
	}
}

func TestParseSourceAddrs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"", nil, ""},
		{"127.0.0.2-127.0.0.4", []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}, ""},
		{"10.0.0.1, 10.0.0.3", []string{"10.0.0.1", "10.0.0.3"}, ""},
		{"10.0.0.255-10.0.1.0,192.168.1.1", []string{"10.0.0.255", "10.0.1.0", "192.168.1.1"}, ""},
		{"127.0.0.5-127.0.0.5", []string{"127.0.0.5"}, ""},
		{"127.0.0.9-127.0.0.2", nil, "ends before"},
		{"::1", nil, "IPv6"},
		{"::ffff:127.0.0.1", nil, "IPv6"},
		{"localhost", nil, "not an IPv4"},
		{"127.0.0.1-", nil, "not an IPv4"},
		{"127.0.0.1,127.0.0.1", nil, "twice"},
		{"10.0.0.0-10.1.0.0", nil, "more than"},
		{" , ", nil, "no address"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSourceAddrs(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseSourceAddrs(%q) = %v, %v; want an error mentioning %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var gotS []string
			for _, a := range got {
				gotS = append(gotS, a.String())
			}
			if !slices.Equal(gotS, tt.want) {
				t.Errorf("parseSourceAddrs(%q) = %v, want %v", tt.in, gotS, tt.want)
			}
		})
	}
}

// TestSourceAddrs runs churn pairs (whose dropped peers dial through
// transports of their own, and dial again to resume) from 127.0.0.2 and
// 127.0.0.3 against a relay on 127.0.0.1, and checks the addresses the
// relay saw.
func TestSourceAddrs(t *testing.T) {
	for _, a := range []string{"127.0.0.2", "127.0.0.3"} {
		ln, err := net.Listen("tcp", a+":0")
		if err != nil {
			t.Skipf("cannot use %s here: %v", a, err)
		}
		ln.Close()
	}
	var (
		mu   sync.Mutex
		seen = make(map[string]int)
	)
	rs := startMetricsRelay(t, loadConfig)
	// A front server on 127.0.0.1 that records who connects to the relay.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == wire.Path {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				host = r.RemoteAddr
			}
			mu.Lock()
			seen[host]++
			mu.Unlock()
		}
		rs.Mux.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	url := "ws" + strings.TrimPrefix(front.URL, "http") + wire.Path
	if !strings.HasPrefix(url, "ws://127.0.0.1:") {
		t.Fatalf("relay at %s, want 127.0.0.1", url)
	}
	sum, err := runLoad(t, "--url", url, "--scenario", "churn", "--pairs", "4", "--concurrency", "2", "--messages", "1", "--source-addrs", "127.0.0.2-127.0.0.3")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	checkClean(t, sum, 4, 4*2+2*2, metricConnect)
	if sum.SourceAddrs != 2 {
		t.Errorf("source_addrs = %d, want 2", sum.SourceAddrs)
	}
	mu.Lock()
	defer mu.Unlock()
	// 8 connections, and 2 more for the resumes.
	if seen["127.0.0.2"]+seen["127.0.0.3"] != 10 || len(seen) != 2 || seen["127.0.0.2"] < 4 || seen["127.0.0.3"] < 4 {
		t.Errorf("the relay saw connections from %v, want 10 from 127.0.0.2 and 127.0.0.3, at least 4 each", seen)
	}
}

func TestParseMetricsURLs(t *testing.T) {
	ws := []string{"ws://a:8080/v1/ws?x=1", "wss://b/relay/v1/ws", "ws://a:8080/other"}
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", []string{"http://a:8080/metrics", "https://b/metrics"}, false},
		{"none", nil, false},
		{"http://m1/metrics, https://m2:9/m", []string{"http://m1/metrics", "https://m2:9/m"}, false},
		{"ws://a/metrics", nil, true},
		{"http:///metrics", nil, true},
		{",", nil, true},
	}
	for _, tt := range tests {
		got, err := parseMetricsURLs(tt.in, ws)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("parseMetricsURLs(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestRelayMetrics scrapes a relay that serves /metrics during a
// handshake run, and checks figures that the run decides.
func TestRelayMetrics(t *testing.T) {
	url := startMetricsRelay(t, loadConfig).URL
	sum, err := runLoad(t, "--url", url, "--pairs", "4", "--concurrency", "2", "--metrics-interval", "10ms")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	checkClean(t, sum, 4, 0)
	if len(sum.Relays) != 1 {
		t.Fatalf("relays = %+v, want one", sum.Relays)
	}
	r := sum.Relays[0]
	if r.Unreachable != "" || r.Scrapes < 2 || len(r.ScrapeErrors) != 0 {
		t.Fatalf("relay = %+v, want reachable, at least 2 scrapes, no errors", r)
	}
	if r.MetricsURL != strings.Replace(strings.Replace(url, "ws://", "http://", 1), "/v1/ws", "/metrics", 1) {
		t.Errorf("metrics URL %s, derived from %s", r.MetricsURL, url)
	}
	if r.CPUSeconds == nil || *r.CPUSeconds < 0 {
		t.Errorf("cpu seconds = %v, want a figure", r.CPUSeconds)
	}
	for name, f := range map[string]figure{"rss": r.RSS, "goroutines": r.Goroutines, "heap": r.HeapInuse, "fds": r.OpenFDs} {
		if f.Start == nil || *f.Start <= 0 || f.End == nil || f.Peak == nil || *f.Peak < *f.End {
			t.Errorf("%s = %+v, want positive start, end, peak ≥ end", name, f)
		}
	}
	if got := r.KeyrelayCounters["keyrelay_handshakes_total"]; got != 4 {
		t.Errorf("keyrelay_handshakes_total increase = %v, want 4 (counters %v)", got, r.KeyrelayCounters)
	}
	if r.HeldConnections != nil || r.RSSPerConnection != nil {
		t.Errorf("per-connection figures outside idle: %+v", r)
	}
}

// TestRelayMetricsIdle holds 6 connections and checks the figures of the
// scrape taken while they were all open.
func TestRelayMetricsIdle(t *testing.T) {
	url := startMetricsRelay(t, loadConfig).URL
	sum, err := runLoad(t, "--url", url, "--scenario", "idle", "--connections", "6", "--concurrency", "6", "--duration", "500ms", "--metrics-interval", "0")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if len(sum.Relays) != 1 || sum.Relays[0].Unreachable != "" {
		t.Fatalf("relays = %+v, want one, reachable", sum.Relays)
	}
	r := sum.Relays[0]
	if r.Scrapes != 3 {
		t.Errorf("scrapes = %d, want 3 (start, held, end)", r.Scrapes)
	}
	if r.HeldConnections == nil || *r.HeldConnections != 6 {
		t.Fatalf("held connections = %v, want 6", r.HeldConnections)
	}
	if r.RSSPerConnection == nil || r.GoroutinesPerConnection == nil || *r.GoroutinesPerConnection <= 0 {
		t.Errorf("per connection: rss %v, goroutines %v; want figures, goroutines > 0", r.RSSPerConnection, r.GoroutinesPerConnection)
	}
	if r.Goroutines.Loaded == nil || r.Goroutines.Start == nil || *r.Goroutines.Loaded <= *r.Goroutines.Start {
		t.Errorf("goroutines = %+v, want more while held than at the start", r.Goroutines)
	}
	if got := r.KeyrelayGauges["keyrelay_connections"]; got != 6 {
		t.Errorf("keyrelay_connections peak = %v, want 6", got)
	}
}

// TestRelayMetricsUnreachable: a relay without /metrics, a port where
// nothing listens, and none.
func TestRelayMetricsUnreachable(t *testing.T) {
	url := memoryRelay(t) // no /metrics: 404
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/metrics"
	ln.Close()

	for _, tt := range []struct{ name, flag string }{{"derived, 404", ""}, {"closed port", closed}} {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"--url", url, "--pairs", "2"}
			if tt.flag != "" {
				args = append(args, "--metrics-url", tt.flag)
			}
			sum, err := runLoad(t, args...)
			if err != nil {
				t.Fatalf("run = %v, want success: an unreachable /metrics does not fail the run", err)
			}
			if len(sum.Relays) != 1 {
				t.Fatalf("relays = %+v, want one", sum.Relays)
			}
			r := sum.Relays[0]
			if r.Unreachable == "" || r.Scrapes != 0 || r.CPUSeconds != nil || r.RSS.Start != nil || r.Goroutines.End != nil {
				t.Errorf("relay = %+v, want unreachable and no figures", r)
			}
			var stdout bytes.Buffer
			if err := run(t.Context(), args, noEnv, &stdout, io.Discard); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(stdout.String(), "/metrics unreachable") {
				t.Errorf("text summary does not say unreachable:\n%s", stdout.String())
			}
		})
	}
	sum, err := runLoad(t, "--url", url, "--pairs", "1", "--metrics-url", "none")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Relays != nil {
		t.Errorf("--metrics-url none: relays = %+v, want none", sum.Relays)
	}
}

// TestHTML writes the report of a chat run and checks that it is
// well-formed, self-contained, and shows the run's figures.
func TestHTML(t *testing.T) {
	url := startMetricsRelay(t, loadConfig).URL
	path := filepath.Join(t.TempDir(), "report.html")
	sum, err := runLoad(t, "--url", url, "--scenario", "chat", "--pairs", "3", "--messages", "2", "--html", path)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	text := html.UnescapeString(page)

	// Well-formed: the whole page parses as XML, with an html root, and
	// one svg histogram with bars per latency metric.
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	var root string
	svgs, rects := 0, 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the page is not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			switch se.Name.Local {
			case "svg":
				svgs++
			case "rect":
				rects++
			}
		}
	}
	if root != "html" || !strings.HasPrefix(page, "<!DOCTYPE html>") {
		t.Errorf("root element %q, want html after a doctype", root)
	}
	if svgs != 4 || rects < 4 {
		t.Errorf("%d svg charts with %d bars, want 4 charts (one per metric) with bars", svgs, rects)
	}
	for _, banned := range []string{"<script", "src=", "href=", "@import", "url(", "<link"} {
		if strings.Contains(page, banned) {
			t.Errorf("the page contains %q: it must load nothing", banned)
		}
	}
	for _, want := range []string{
		"3 completed, 0 failed, 3 attempted",
		"round_trip", "handshake", "p99.9",
		url,
		"CPU seconds during the run",
		"handshakes_total +3",
		"open fds",
		fmt.Sprintf("%.2f", sum.Latency[metricRoundTrip].P50),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the page does not contain %q", want)
		}
	}
	if t.Failed() {
		t.Logf("the page:\n%s", page)
	}
}

// TestScenarioFile runs testdata/example-scenario.json.
func TestScenarioFile(t *testing.T) {
	url := memoryRelay(t)
	sum, err := runLoad(t, "--url", url, "--scenario-file", "testdata/example-scenario.json", "--pairs", "3", "--concurrency", "2")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	// Per pair: chat 3 (6 messages), a→b 2, b→a 2 while a is away plus
	// the check after the resume 1, b→a 1.
	checkClean(t, sum, 3, 3*12, metricConnect, metricJoin, metricHandshake, metricRoundTrip)
	if sum.Scenario != scenarioFile || sum.ScenarioName != "chat, drop and resume, leave" {
		t.Errorf("scenario %q, name %q", sum.Scenario, sum.ScenarioName)
	}
	for m, want := range map[string]int64{metricConnect: 6, metricJoin: 6, metricHandshake: 3, metricRoundTrip: 9} {
		if got := sum.Latency[m].Count; got != want {
			t.Errorf("%s samples = %d, want %d", m, got, want)
		}
	}
	if sum.Resumes != 3 {
		t.Errorf("resumes = %d, want 3", sum.Resumes)
	}
}

// TestScenarioFileFailure: a step that fails at run time fails the pair
// with the step's index in the error and the usual error code.
func TestScenarioFileFailure(t *testing.T) {
	url := memoryRelay(t)
	// A message larger than the relay's frames, which the client refuses.
	path := writeScenario(t, `{"name": "too big", "steps": [{"do": "connect"}, {"do": "create"}, {"do": "join"}, {"do": "handshake"},
		{"do": "send", "from": "a", "count": 1, "size": 10000000}]}`)
	sum, err := runLoad(t, "--url", url, "--scenario-file", path, "--pairs", "2")
	if err == nil {
		t.Fatal("run succeeded, want an error-rate error")
	}
	if sum.Errors["too_large"] != 2 || !strings.Contains(sum.ErrorExamples["too_large"], "step 4 (send)") {
		t.Errorf("errors %v, examples %v; want too_large: 2 naming step 4 (send)", sum.Errors, sum.ErrorExamples)
	}
}

// TestScenarioFileErrors checks that bad files are refused, naming the
// step, before any connection is made.
func TestScenarioFileErrors(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/ws"

	const start = `{"do": "connect"}, {"do": "create"}, {"do": "join"}, {"do": "handshake"}`
	tests := []struct {
		name, file, want string
	}{
		{"not json", `{"name": "x", "steps": [`, "want {"},
		{"unknown field", `{"name": "x", "stepz": []}`, "stepz"},
		{"no steps", `{"name": "x", "steps": []}`, "no steps"},
		{"unknown step", `{"steps": [` + start + `, {"do": "dance"}]}`, `step 4: unknown step "dance"`},
		{"no do", `{"steps": [{"peer": "a"}]}`, `step 0: no "do"`},
		{"step not object", `{"steps": [42]}`, "step 0: want an object"},
		{"missing argument", `{"steps": [` + start + `, {"do": "send", "from": "a", "count": 1}]}`, `step 4 (send): missing argument "size"`},
		{"unexpected argument", `{"steps": [{"do": "connect", "count": 2}]}`, `step 0 (connect): unexpected argument "count"`},
		{"bad peer", `{"steps": [{"do": "connect", "peer": "c"}]}`, `step 0 (connect): "peer"`},
		{"bad count", `{"steps": [` + start + `, {"do": "chat", "count": 0, "size": 1}]}`, `step 4 (chat): "count"`},
		{"fractional size", `{"steps": [` + start + `, {"do": "chat", "count": 1, "size": 1.5}]}`, `step 4 (chat): "size"`},
		{"bad duration", `{"steps": [{"do": "sleep", "duration": "soon"}]}`, `step 0 (sleep): "duration"`},
		{"numeric duration", `{"steps": [{"do": "sleep", "duration": 100}]}`, `step 0 (sleep): "duration"`},
		{"too much data", `{"steps": [` + start + `, {"do": "send", "from": "a", "count": 100000, "size": 100000}]}`, "step 4 (send): count × size"},
		{"create before connect", `{"steps": [{"do": "create"}]}`, "step 0 (create): peer a is not connected"},
		{"join before create", `{"steps": [{"do": "connect"}, {"do": "join"}]}`, "step 1 (join): no room"},
		{"chat before handshake", `{"steps": [{"do": "connect"}, {"do": "create"}, {"do": "join"}, {"do": "chat", "count": 1, "size": 1}]}`, "step 3 (chat): needs a handshake"},
		{"resume without drop", `{"steps": [` + start + `, {"do": "resume", "peer": "a"}]}`, "step 4 (resume): peer a has not dropped"},
		{"chat while dropped", `{"steps": [` + start + `, {"do": "drop", "peer": "b"}, {"do": "chat", "count": 1, "size": 1}]}`, "step 5 (chat): both peers"},
		{"after close", `{"steps": [{"do": "connect"}, {"do": "close"}, {"do": "sleep", "duration": "1ms"}]}`, "step 2 (sleep): comes after close"},
		{"connect twice", `{"steps": [{"do": "connect"}, {"do": "connect", "peer": "b"}]}`, "step 1 (connect): peer b is connected already"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeScenario(t, tt.file)
			err := run(t.Context(), []string{"--url", url, "--scenario-file", path}, noEnv, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "--scenario-file") {
				t.Errorf("run = %v, want a --scenario-file error containing %q", err, tt.want)
			}
		})
	}
	if err := run(t.Context(), []string{"--url", url, "--scenario-file", filepath.Join(t.TempDir(), "nope.json")}, noEnv, io.Discard, io.Discard); err == nil {
		t.Error("a missing file was accepted")
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the relay got %d requests, want none: files are checked before connecting", n)
	}
}

func TestNewFlags(t *testing.T) {
	var stderr bytes.Buffer
	if err := run(t.Context(), []string{"--help"}, noEnv, io.Discard, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help = %v", err)
	}
	help := stderr.String()
	for _, f := range []string{"rate", "message-rate", "source-addrs", "metrics-url", "metrics-interval", "html", "scenario-file", "resume", "delayed-after", "event-log"} {
		if !strings.Contains(help, "-"+f+" ") || !strings.Contains(help, envName(f)) {
			t.Errorf("--help does not document --%s and %s", f, envName(f))
		}
	}
	for _, s := range []string{"connect", "create", "join", "handshake", "send", "chat", "sleep", "leave", "drop", "resume", "close", "missed arrival", "  file "} {
		if !strings.Contains(help, s) {
			t.Errorf("--help does not mention %q", s)
		}
	}

	getenv := func(name string) string {
		return map[string]string{"KEYRELAY_LOAD_RATE": "12.5", "KEYRELAY_LOAD_SOURCE_ADDRS": "127.0.0.2-127.0.0.3", "KEYRELAY_LOAD_METRICS_URL": "none", "KEYRELAY_LOAD_MESSAGE_RATE": "3"}[name]
	}
	cfg, err := parseConfig(nil, getenv, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.rate != 12.5 || cfg.messageRate != 3 || len(cfg.sourceAddrs) != 2 || cfg.sourceAddrs[1] != netip.MustParseAddr("127.0.0.3") || cfg.metricsURLs != nil {
		t.Errorf("from the environment: rate %v, message rate %v, sources %v, metrics %v", cfg.rate, cfg.messageRate, cfg.sourceAddrs, cfg.metricsURLs)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "-1"}, "--rate"},
		{[]string{"--rate", "NaN"}, "--rate"},
		{[]string{"--rate", "5", "--scenario", "idle", "--duration", "1s"}, "--rate does not apply"},
		{[]string{"--message-rate", "-2"}, "--message-rate"},
		{[]string{"--source-addrs", "::1"}, "--source-addrs"},
		{[]string{"--metrics-url", "ftp://x/metrics"}, "--metrics-url"},
		{[]string{"--metrics-interval", "-1s"}, "--metrics-interval"},
	} {
		err := run(t.Context(), tt.args, noEnv, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want an error mentioning %s", tt.args, err, tt.want)
		}
	}
}

// TestChartLabelsFit: every axis label of a histogram lies within the
// chart, at the width of a 12 px sans-serif digit (7 px a character): the
// right end's "69.82ms" once lost its "s" beyond the edge.
func TestChartLabelsFit(t *testing.T) {
	const charW = 7
	for _, bars := range [][]loadstats.Bar{
		{{From: 100, To: 200, Count: 3}, {From: 200, To: 69820, Count: 5}},
		{{From: 1200, To: 1500, Count: 1}, {From: 1500, To: 2_345_678, Count: 9}},
	} {
		c := newChart("connect", loadstats.Percentiles{Count: 8, P50: 1, P99: 2}, bars)
		for _, tk := range c.Ticks {
			w := float64(len([]rune(tk.Label)) * charW)
			lo, hi := tk.X-w/2, tk.X+w/2
			switch tk.Anchor {
			case "start":
				lo, hi = tk.X, tk.X+w
			case "end":
				lo, hi = tk.X-w, tk.X
			}
			if lo < 0 || hi > float64(c.Width) {
				t.Errorf("label %q (anchor %s at %.1f) spans %.1f to %.1f, outside the chart's 0 to %d", tk.Label, tk.Anchor, tk.X, lo, hi, c.Width)
			}
		}
	}
}

// TestSummaryExplains: the summary says when errors are the relay's
// limits, and how far a gauge rose in this run, not only its peak.
func TestSummaryExplains(t *testing.T) {
	hint := limitHint(map[string]int64{"join: join_rate_limited": 61, "dial: refused": 1})
	if !strings.Contains(hint, "join: join_rate_limited: 61") || !strings.Contains(hint, "--source-addrs") || strings.Contains(hint, "refused: 1") {
		t.Errorf("limitHint = %q, want the limit error named and the way out", hint)
	}
	if hint := limitHint(map[string]int64{"dial: refused": 3}); hint != "" {
		t.Errorf("limitHint without limit errors = %q, want none", hint)
	}
	line := keyrelayLine(relayReport{
		KeyrelayGauges:      map[string]float64{keyrelayPrefix + "rooms": 2845},
		KeyrelayGaugesStart: map[string]float64{keyrelayPrefix + "rooms": 2645},
	})
	if !strings.Contains(line, "rooms peak 2845 (+200 over the start)") {
		t.Errorf("keyrelayLine = %q, want the rise over the start", line)
	}
}

// TestURLForms: --url takes the page's URL and http(s):// as well as
// ws(s)://, as keyrelay-chat does, and derives /v1/ws.
func TestURLForms(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080/":        "ws://127.0.0.1:8080/v1/ws",
		"https://relay.example":         "wss://relay.example/v1/ws",
		"ws://127.0.0.1:8080/":          "ws://127.0.0.1:8080/v1/ws",
		"wss://relay.example/v1/ws":     "wss://relay.example/v1/ws",
		"http://127.0.0.1:8080/#room=x": "ws://127.0.0.1:8080/v1/ws",
	} {
		c, err := parseConfig([]string{"--url", in}, noEnv, io.Discard, false)
		if err != nil || len(c.urls) != 1 || c.urls[0] != want {
			t.Errorf("--url %s: %v, %v; want %s", in, c.urls, err, want)
		}
	}
	if _, err := parseConfig([]string{"--url", "ftp://x"}, noEnv, io.Discard, false); err == nil {
		t.Error("--url ftp://x was accepted")
	}
}
