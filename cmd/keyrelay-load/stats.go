package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency metrics, in the order the summary shows them.
const (
	metricConnect   = "connect"    // one client.Dial: TCP, WebSocket upgrade
	metricJoin      = "join"       // create or join, to the relay's room reply
	metricHandshake = "handshake"  // from B's join to handshake_complete on both peers
	metricRoundTrip = "round_trip" // chat: A sends, B receives and replies, A receives
)

var metrics = []string{metricConnect, metricJoin, metricHandshake, metricRoundTrip}

// Histogram range: 1 µs to 5 min, 3 significant digits.
const (
	histMin    = 1
	histMax    = int64(5 * time.Minute / time.Microsecond)
	histDigits = 3
)

// timings holds one pair's latency samples until the pair ends, so that
// a pair takes the stats lock once.
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

// stats gathers the outcome of every pair.
type stats struct {
	mu         sync.Mutex // guards the following
	hists      map[string]*hdrhistogram.Histogram
	ok         int64
	failed     int64
	abandonedN int64
	messages   int64
	resumes    int64 // churn
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

// record adds a finished pair: its samples (also those of a failed pair,
// up to its failure), its delivered messages, and its error if any.
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

// connCounts are the idle scenario's connection counts.
type connCounts struct {
	Opened    int64 `json:"opened"`      // dialed and in their room
	Failed    int64 `json:"failed"`      // dial or create failed
	Dropped   int64 `json:"dropped"`     // opened, then ended by the relay or the network before the end
	OpenAtEnd int64 `json:"open_at_end"` // still open when --duration ended
}

// recordConn adds an idle connection's outcome: its samples, whether it
// opened, and its error (failing to open, or a drop) if any. A connection
// counts as one attempt in the pair counts and the error rate: completed
// if it was still open at the end.
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

// resumed counts successful resumes (churn).
func (s *stats) resumed(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resumes += int64(n)
}

// abandoned counts a pair cut short by the end of the run.
func (s *stats) abandoned() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.abandonedN++
}

// counts returns the pairs completed and failed so far.
func (s *stats) counts() (ok, failed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok, s.failed
}

// summary is the report of a run, as printed and as JSON.
type summary struct {
	Scenario    string   `json:"scenario"`
	Group       string   `json:"group"`
	URLs        []string `json:"urls"`
	Concurrency int      `json:"concurrency"`
	Messages    int      `json:"messages_per_pair_each_way,omitempty"`
	Size        int      `json:"message_size,omitempty"`
	// ScenarioName is the name in --scenario-file (scenario "file").
	ScenarioName string `json:"scenario_name,omitempty"`
	// MessageRate is --message-rate, if set.
	MessageRate float64 `json:"message_rate,omitempty"`
	// SourceAddrs counts the --source-addrs addresses, if any.
	SourceAddrs int `json:"source_addrs,omitempty"`

	ElapsedSeconds    float64 `json:"elapsed_seconds"`
	PairsAttempted    int64   `json:"pairs_attempted"`
	PairsCompleted    int64   `json:"pairs_completed"`
	PairsFailed       int64   `json:"pairs_failed"`
	PairsAbandoned    int64   `json:"pairs_abandoned"`   // cut short by an interrupt; not in the error rate
	MessagesDelivered int64   `json:"messages"`          // both ways
	Resumes           int64   `json:"resumes,omitempty"` // churn: successful Resume calls
	PairsPerSecond    float64 `json:"pairs_per_second"`
	MessagesPerSecond float64 `json:"messages_per_second"`
	ErrorRate         float64 `json:"error_rate"` // failed / attempted

	// Connections has the idle scenario's connection counts; in idle the
	// pair counts above count connections (completed: open at the end).
	Connections *connCounts `json:"connections,omitempty"`

	// Errors counts failed pairs by error code.
	Errors map[string]int64 `json:"errors"`
	// ErrorExamples has, per error code, the message of its first
	// occurrence (never key material: the client's errors carry none).
	ErrorExamples map[string]string `json:"error_examples,omitempty"`
	// Latency has, per metric with samples, percentiles in milliseconds.
	Latency map[string]percentiles `json:"latency_ms"`

	// OpenLoop has the arrivals of a run with --rate.
	OpenLoop *openLoop `json:"open_loop,omitempty"`
	// Relays has each relay's figures from its /metrics.
	Relays []relayReport `json:"relays,omitempty"`

	// histograms has, per metric with samples, its distribution for the
	// HTML report.
	histograms map[string][]histBar
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
		Group:             cfg.group.Name(),
		URLs:              cfg.urls,
		Concurrency:       cfg.concurrency,
		ElapsedSeconds:    elapsed.Seconds(),
		PairsAttempted:    s.ok + s.failed,
		PairsCompleted:    s.ok,
		PairsFailed:       s.failed,
		PairsAbandoned:    s.abandonedN,
		MessagesDelivered: s.messages,
		Resumes:           s.resumes,
		Errors:            maps.Clone(s.errors),
		ErrorExamples:     maps.Clone(s.examples),
		Latency:           make(map[string]percentiles),
		MessageRate:       cfg.messageRate,
		SourceAddrs:       len(cfg.sourceAddrs),
		histograms:        make(map[string][]histBar),
	}
	switch cfg.scenario {
	case scenarioChat, scenarioChurn:
		sum.Messages, sum.Size = cfg.messages, cfg.size
	case scenarioFile:
		sum.ScenarioName = cfg.script.Name
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
		sum.histograms[name] = histBars(h)
	}
	return sum
}

// writeText prints the summary for people.
func (sum *summary) writeText(w io.Writer) {
	name := sum.Scenario
	if sum.ScenarioName != "" {
		name += " " + strconv.Quote(sum.ScenarioName)
	}
	inFlight := fmt.Sprintf("%d in flight", sum.Concurrency)
	if sum.OpenLoop != nil {
		inFlight = fmt.Sprintf("%g arrivals/s, at most %d in flight", sum.OpenLoop.Rate, sum.Concurrency)
	}
	fmt.Fprintf(w, "scenario %s, group %s, %s, %d relay URL(s)", name, sum.Group, inFlight, len(sum.URLs))
	if sum.SourceAddrs > 0 {
		fmt.Fprintf(w, ", %d source addresses", sum.SourceAddrs)
	}
	if sum.MessageRate > 0 {
		fmt.Fprintf(w, ", at most %g round trips/s per pair", sum.MessageRate)
	}
	fmt.Fprintln(w)
	if o := sum.OpenLoop; o != nil {
		fmt.Fprintf(w, "arrivals: %d in %.2fs, %d started (%.1f/s achieved of %g/s), %d missed (%d pairs in flight already)\n",
			o.Arrivals, o.Window, o.Started, o.StartRate, o.Rate, o.Missed, sum.Concurrency)
	}
	if c := sum.Connections; c != nil {
		fmt.Fprintf(w, "connections: %d opened, %d failed to open, %d dropped, %d still open after %.2fs\n",
			c.Opened, c.Failed, c.Dropped, c.OpenAtEnd, sum.ElapsedSeconds)
	} else {
		fmt.Fprintf(w, "pairs:    %d completed, %d failed, %d attempted in %.2fs: %.1f pairs/s\n",
			sum.PairsCompleted, sum.PairsFailed, sum.PairsAttempted, sum.ElapsedSeconds, sum.PairsPerSecond)
	}
	if sum.PairsAbandoned > 0 {
		fmt.Fprintf(w, "          %d abandoned when the run was interrupted\n", sum.PairsAbandoned)
	}
	switch sum.Scenario {
	case scenarioChat, scenarioChurn:
		fmt.Fprintf(w, "messages: %d delivered (%d bytes each): %.1f messages/s\n", sum.MessagesDelivered, sum.Size, sum.MessagesPerSecond)
	case scenarioFile:
		fmt.Fprintf(w, "messages: %d delivered: %.1f messages/s\n", sum.MessagesDelivered, sum.MessagesPerSecond)
	}
	if sum.Scenario == scenarioChurn {
		fmt.Fprintf(w, "resumes:  %d\n", sum.Resumes)
	}
	fmt.Fprintf(w, "latency (ms)  %8s %8s %8s %8s %8s %8s\n", "count", "p50", "p90", "p99", "p99.9", "max")
	for _, m := range metrics {
		p, ok := sum.Latency[m]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "  %-11s %8d %8.2f %8.2f %8.2f %8.2f %8.2f\n", m, p.Count, p.P50, p.P90, p.P99, p.P999, p.Max)
	}
	defer writeRelayText(w, sum.Relays)
	if len(sum.Errors) == 0 {
		fmt.Fprintf(w, "errors:   none\n")
		return
	}
	unit := "pairs"
	if sum.Connections != nil {
		unit = "connections"
	}
	fmt.Fprintf(w, "errors:   %.2f%% of %s\n", 100*sum.ErrorRate, unit)
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

// histBar is one bar of a latency histogram: the samples from From to To
// microseconds, inclusive.
type histBar struct {
	From, To, Count int64
}

// histBins is the number of bars of a histogram in the HTML report.
const histBins = 40

// histBars groups h's distribution into at most histBins bars of equal
// width on a logarithmic scale, from h's lowest to its highest value.
func histBars(h *hdrhistogram.Histogram) []histBar {
	lo, hi := max(h.Min(), histMin), max(h.Max(), histMin)
	if hi <= lo {
		return []histBar{{From: lo, To: hi, Count: h.TotalCount()}}
	}
	ratio := math.Log(float64(hi)/float64(lo)) / histBins
	bars := make([]histBar, histBins)
	for i := range bars {
		bars[i].From = int64(math.Round(float64(lo) * math.Exp(ratio*float64(i))))
		bars[i].To = int64(math.Round(float64(lo) * math.Exp(ratio*float64(i+1))))
	}
	for _, b := range h.Distribution() {
		if b.Count == 0 {
			continue
		}
		v := max((b.From+b.To)/2, lo)
		i := int(math.Log(float64(v)/float64(lo)) / ratio)
		bars[min(max(i, 0), histBins-1)].Count += b.Count
	}
	return bars
}
