package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency metrics, named as keyrelay-load names the same measurements.
const (
	metricConnect   = "connect"    // one websocket.Dial: TCP and the upgrade
	metricRoundTrip = "round_trip" // forward: A sends, B receives and replies, A receives
)

var metrics = []string{metricConnect, metricRoundTrip}

// Histogram range: 1 µs to 5 min, 3 significant digits (keyrelay-load's).
const (
	histMin    = 1
	histMax    = int64(5 * time.Minute / time.Microsecond)
	histDigits = 3
)

// timings holds one pair's samples until it ends, so that a pair takes the
// stats lock once.
type timings struct {
	samples []sample
}

type sample struct {
	metric string
	d      time.Duration
}

func (t *timings) add(metric string, d time.Duration) {
	t.samples = append(t.samples, sample{metric, d})
}

// stats gathers the outcome of every pair (or idle connection).
type stats struct {
	mu         sync.Mutex // guards the following
	hists      map[string]*hdrhistogram.Histogram
	ok         int64
	failed     int64
	abandonedN int64
	messages   int64
	conns      connCounts
	errors     map[string]int64
	examples   map[string]string // the first error message of each code
}

func newStats() *stats {
	s := &stats{hists: make(map[string]*hdrhistogram.Histogram), errors: make(map[string]int64), examples: make(map[string]string)}
	for _, m := range metrics {
		s.hists[m] = hdrhistogram.New(histMin, histMax, histDigits)
	}
	return s
}

// record adds a finished pair: its samples, its delivered messages, and
// its error if any.
func (s *stats) record(t *timings, messages int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range t.samples {
		us := max(x.d.Microseconds(), histMin)
		_ = s.hists[x.metric].RecordValue(min(us, histMax)) // in range: cannot fail
	}
	s.messages += int64(messages)
	if err != nil {
		s.failed++
		code := errorCode(err)
		s.errors[code]++
		if _, ok := s.examples[code]; !ok {
			s.examples[code] = truncate(err.Error(), maxExample)
		}
		return
	}
	s.ok++
}

// connCounts are the idle scenario's connection counts (keyrelay-load's).
type connCounts struct {
	Opened    int64 `json:"opened"`      // dialed
	Failed    int64 `json:"failed"`      // dial failed
	Dropped   int64 `json:"dropped"`     // opened, then ended by the server or the network before the end
	OpenAtEnd int64 `json:"open_at_end"` // still open when --duration ended
}

// recordConn adds an idle connection's outcome. A connection counts as one
// attempt in the pair counts: completed if it was still open at the end.
func (s *stats) recordConn(t *timings, opened bool, err error) {
	s.mu.Lock()
	if opened {
		s.conns.Opened++
		if err != nil {
			s.conns.Dropped++
		} else {
			s.conns.OpenAtEnd++
		}
	} else if err != nil {
		s.conns.Failed++
	}
	s.mu.Unlock()
	s.record(t, 0, err)
}

// abandoned counts a pair cut short by an interrupt.
func (s *stats) abandoned() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.abandonedN++
}

// summary is the report of a run, as printed and as JSON. Its field names
// are keyrelay-load's where the meaning is the same.
type summary struct {
	Scenario    string   `json:"scenario"`
	Library     string   `json:"library"` // the WebSocket library and its version
	URLs        []string `json:"urls"`
	Concurrency int      `json:"concurrency"`
	Messages    int      `json:"messages_per_pair_each_way,omitempty"`
	Size        int      `json:"message_size,omitempty"`

	ElapsedSeconds    float64 `json:"elapsed_seconds"`
	PairsAttempted    int64   `json:"pairs_attempted"`
	PairsCompleted    int64   `json:"pairs_completed"`
	PairsFailed       int64   `json:"pairs_failed"`
	PairsAbandoned    int64   `json:"pairs_abandoned"` // cut short by an interrupt; not in the error rate
	MessagesDelivered int64   `json:"messages"`        // both ways
	PairsPerSecond    float64 `json:"pairs_per_second"`
	MessagesPerSecond float64 `json:"messages_per_second"`
	ErrorRate         float64 `json:"error_rate"` // failed / attempted

	// Connections has the idle scenario's connection counts; in idle the
	// pair counts above count connections (completed: open at the end).
	Connections *connCounts `json:"connections,omitempty"`
	// Server has the idle scenario's server memory, from /stats.
	Server *serverMemory `json:"server,omitempty"`

	// Errors counts failed pairs by error code.
	Errors        map[string]int64  `json:"errors"`
	ErrorExamples map[string]string `json:"error_examples,omitempty"`
	// Latency has, per metric with samples, percentiles in milliseconds.
	Latency map[string]percentiles `json:"latency_ms"`
}

// serverMemory is the server's state before the idle connections opened
// and while they were held, and the difference per held connection.
type serverMemory struct {
	Before                  serverStats `json:"before"`
	Held                    serverStats `json:"held"`
	HeldConnections         int64       `json:"held_connections"` // the server's count at the held sample
	RSSBytesPerConnection   float64     `json:"rss_bytes_per_connection"`
	HeapBytesPerConnection  float64     `json:"heap_inuse_bytes_per_connection"`
	GoroutinesPerConnection float64     `json:"goroutines_per_connection"`
}

// percentiles of one latency metric, in milliseconds.
type percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

func (s *stats) summary(cfg config, elapsed time.Duration) *summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := &summary{
		Scenario:          cfg.scenario,
		Library:           library(),
		URLs:              []string{cfg.baseURL.String()},
		Concurrency:       cfg.concurrency,
		ElapsedSeconds:    elapsed.Seconds(),
		PairsAttempted:    s.ok + s.failed,
		PairsCompleted:    s.ok,
		PairsFailed:       s.failed,
		PairsAbandoned:    s.abandonedN,
		MessagesDelivered: s.messages,
		Errors:            maps.Clone(s.errors),
		ErrorExamples:     maps.Clone(s.examples),
		Latency:           make(map[string]percentiles),
	}
	switch cfg.scenario {
	case scenarioForward:
		sum.Messages, sum.Size = cfg.messages, cfg.size
	case scenarioIdle:
		c := s.conns
		sum.Connections = &c
	}
	if secs := elapsed.Seconds(); secs > 0 {
		sum.PairsPerSecond = float64(s.ok) / secs
		sum.MessagesPerSecond = float64(s.messages) / secs
	}
	if sum.PairsAttempted > 0 {
		sum.ErrorRate = float64(s.failed) / float64(sum.PairsAttempted)
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	for name, h := range s.hists {
		if h.TotalCount() == 0 {
			continue
		}
		sum.Latency[name] = percentiles{
			Count: h.TotalCount(),
			P50:   ms(h.ValueAtPercentile(50)),
			P90:   ms(h.ValueAtPercentile(90)),
			P99:   ms(h.ValueAtPercentile(99)),
			P999:  ms(h.ValueAtPercentile(99.9)),
			Max:   ms(h.Max()),
		}
	}
	return sum
}

// library returns the WebSocket library's module path and version, as
// built into this binary.
func library() string {
	const path = "github.com/coder/websocket"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return path + " " + d.Version
			}
		}
	}
	return path
}

// writeText prints the summary for people.
func (sum *summary) writeText(w io.Writer) {
	fmt.Fprintf(w, "baseline %s (%s), %d in flight\n", sum.Scenario, sum.Library, sum.Concurrency)
	if c := sum.Connections; c != nil {
		fmt.Fprintf(w, "connections: %d opened, %d failed to open, %d dropped, %d still open after %.2fs\n",
			c.Opened, c.Failed, c.Dropped, c.OpenAtEnd, sum.ElapsedSeconds)
	} else {
		fmt.Fprintf(w, "pairs:    %d completed, %d failed, %d attempted in %.2fs: %.1f pairs/s\n",
			sum.PairsCompleted, sum.PairsFailed, sum.PairsAttempted, sum.ElapsedSeconds, sum.PairsPerSecond)
	}
	if sum.Scenario == scenarioForward {
		fmt.Fprintf(w, "messages: %d delivered (%d bytes each): %.1f messages/s\n", sum.MessagesDelivered, sum.Size, sum.MessagesPerSecond)
	}
	if m := sum.Server; m != nil {
		fmt.Fprintf(w, "server:   RSS %.1f MiB before, %.1f MiB with %d connections: %.0f bytes per connection; %.2f goroutines per connection\n",
			float64(m.Before.RSSBytes)/(1<<20), float64(m.Held.RSSBytes)/(1<<20), m.HeldConnections, m.RSSBytesPerConnection, m.GoroutinesPerConnection)
	}
	fmt.Fprintf(w, "latency (ms)  %8s %8s %8s %8s %8s %8s\n", "count", "p50", "p90", "p99", "p99.9", "max")
	for _, m := range metrics {
		p, ok := sum.Latency[m]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "  %-11s %8d %8.2f %8.2f %8.2f %8.2f %8.2f\n", m, p.Count, p.P50, p.P90, p.P99, p.P999, p.Max)
	}
	if len(sum.Errors) == 0 {
		fmt.Fprintf(w, "errors:   none\n")
		return
	}
	fmt.Fprintf(w, "errors:   %.2f%%\n", 100*sum.ErrorRate)
	for _, code := range slices.Sorted(maps.Keys(sum.Errors)) {
		fmt.Fprintf(w, "  %-20s %8d  e.g. %s\n", code, sum.Errors[code], sum.ErrorExamples[code])
	}
}

// writeJSON writes sum as indented JSON to the file path, or to stdout if
// path is "-".
func writeJSON(path string, stdout io.Writer, sum *summary) error {
	data, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if path == "-" {
		_, err = stdout.Write(data)
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("--json: %w", err)
	}
	return nil
}

// maxExample bounds the length of an error example in the summary.
const maxExample = 200

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
