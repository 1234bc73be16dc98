// Package loadstats gathers and reports what a load run measures: latency
// histograms per metric, the outcome of every pair (or idle connection),
// errors by code, and their totals as printed and as JSON. cmd/keyrelay-load
// and bench/baseline both use it, so that the relay's figures and the bare
// library's are computed and named the same way and can be compared.
//
// It imports nothing of keyrelay's: the baseline, which must not depend on
// the relay, its store or its client, may use it.
package loadstats

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range, in microseconds: 1 µs to 5 min, 3 significant digits.
// A sample outside it is recorded at the nearest end.
const (
	HistMin    = 1
	HistMax    = int64(5 * time.Minute / time.Microsecond)
	HistDigits = 3
)

// MaxExample bounds the length of an error example in Totals.
const MaxExample = 200

// Timings holds one pair's latency samples until the pair ends, so that a
// pair takes the Stats lock once. The zero value is empty and ready.
type Timings struct {
	samples []sample
}

type sample struct {
	metric string
	d      time.Duration
}

// Add adds a sample d of metric.
func (t *Timings) Add(metric string, d time.Duration) {
	t.samples = append(t.samples, sample{metric, d})
}

// ConnCounts are an idle scenario's connection counts.
type ConnCounts struct {
	Opened    int64 `json:"opened"`      // dialed (keyrelay-load: and in their room)
	Failed    int64 `json:"failed"`      // failed to open
	Dropped   int64 `json:"dropped"`     // opened, then ended by the server or the network before the end
	OpenAtEnd int64 `json:"open_at_end"` // still open when --duration ended
}

// Stats gathers the outcome of every pair of a run. Its methods may be
// called concurrently.
type Stats struct {
	code func(error) string // static after New

	mu         sync.Mutex // guards the following
	hists      map[string]*hdrhistogram.Histogram
	ok         int64
	failed     int64
	abandonedN int64
	messages   int64
	conns      ConnCounts
	errors     map[string]int64
	examples   map[string]string // the first error message of each code
}

// New returns Stats with a histogram per metric; Record panics on a sample
// of another metric. code classifies a failed pair's error for Totals.Errors.
func New(metrics []string, code func(error) string) *Stats {
	s := &Stats{code: code, hists: make(map[string]*hdrhistogram.Histogram), errors: make(map[string]int64), examples: make(map[string]string)}
	for _, m := range metrics {
		s.hists[m] = hdrhistogram.New(HistMin, HistMax, HistDigits)
	}
	return s
}

// Record adds a finished pair: its samples (also those of a failed pair,
// up to its failure), its delivered messages, and its error if any.
func (s *Stats) Record(t *Timings, messages int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range t.samples {
		us := max(x.d.Microseconds(), HistMin)
		_ = s.hists[x.metric].RecordValue(min(us, HistMax)) // in range: cannot fail
	}
	s.messages += int64(messages)
	if err != nil {
		s.failed++
		code := s.code(err)
		s.errors[code]++
		if _, ok := s.examples[code]; !ok {
			s.examples[code] = Truncate(err.Error(), MaxExample)
		}
		return
	}
	s.ok++
}

// RecordConn adds an idle connection's outcome: its samples, whether it
// opened, and its error (failing to open, or a drop) if any. A connection
// counts as one attempt in the pair counts and the error rate: completed
// if it was still open at the end.
func (s *Stats) RecordConn(t *Timings, opened bool, err error) {
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
	s.Record(t, 0, err)
}

// Abandoned counts a pair cut short by the end of the run.
func (s *Stats) Abandoned() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.abandonedN++
}

// Counts returns the pairs completed and failed so far.
func (s *Stats) Counts() (ok, failed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok, s.failed
}

// Conns returns the idle connection counts so far.
func (s *Stats) Conns() ConnCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Totals are the figures of a run, as printed and as JSON; a command's
// summary embeds them. Connections is nil unless the caller sets it (idle).
type Totals struct {
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
	Connections *ConnCounts `json:"connections,omitempty"`

	// Errors counts failed pairs by error code.
	Errors map[string]int64 `json:"errors"`
	// ErrorExamples has, per error code, the message of its first
	// occurrence, cut to MaxExample bytes.
	ErrorExamples map[string]string `json:"error_examples,omitempty"`
	// Latency has, per metric with samples, percentiles in milliseconds.
	Latency map[string]Percentiles `json:"latency_ms"`
}

// Percentiles of one latency metric, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

// Totals returns the figures so far of a run that has lasted elapsed.
func (s *Stats) Totals(elapsed time.Duration) Totals {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := Totals{
		ElapsedSeconds:    elapsed.Seconds(),
		PairsAttempted:    s.ok + s.failed,
		PairsCompleted:    s.ok,
		PairsFailed:       s.failed,
		PairsAbandoned:    s.abandonedN,
		MessagesDelivered: s.messages,
		Errors:            maps.Clone(s.errors),
		ErrorExamples:     maps.Clone(s.examples),
		Latency:           make(map[string]Percentiles),
	}
	if secs := elapsed.Seconds(); secs > 0 {
		t.PairsPerSecond = float64(s.ok) / secs
		t.MessagesPerSecond = float64(s.messages) / secs
	}
	if t.PairsAttempted > 0 {
		t.ErrorRate = float64(s.failed) / float64(t.PairsAttempted)
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	for name, h := range s.hists {
		if h.TotalCount() == 0 {
			continue
		}
		t.Latency[name] = Percentiles{
			Count: h.TotalCount(),
			P50:   ms(h.ValueAtPercentile(50)),
			P90:   ms(h.ValueAtPercentile(90)),
			P99:   ms(h.ValueAtPercentile(99)),
			P999:  ms(h.ValueAtPercentile(99.9)),
			Max:   ms(h.Max()),
		}
	}
	return t
}

// WriteCounts prints the connection counts (idle) or the pair counts and
// rate, one line.
func (t *Totals) WriteCounts(w io.Writer) {
	if c := t.Connections; c != nil {
		fmt.Fprintf(w, "connections: %d opened, %d failed to open, %d dropped, %d still open after %.2fs\n",
			c.Opened, c.Failed, c.Dropped, c.OpenAtEnd, t.ElapsedSeconds)
		return
	}
	fmt.Fprintf(w, "pairs:    %d completed, %d failed, %d attempted in %.2fs: %.1f pairs/s\n",
		t.PairsCompleted, t.PairsFailed, t.PairsAttempted, t.ElapsedSeconds, t.PairsPerSecond)
}

// WriteLatency prints a table of the percentiles of metrics, in that
// order, leaving out those without samples.
func (t *Totals) WriteLatency(w io.Writer, metrics []string) {
	fmt.Fprintf(w, "latency (ms)  %8s %8s %8s %8s %8s %8s\n", "count", "p50", "p90", "p99", "p99.9", "max")
	for _, m := range metrics {
		p, ok := t.Latency[m]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "  %-11s %8d %8.2f %8.2f %8.2f %8.2f %8.2f\n", m, p.Count, p.P50, p.P90, p.P99, p.P999, p.Max)
	}
}

// WriteErrors prints a line per error code, in order: the count and the
// example.
func (t *Totals) WriteErrors(w io.Writer) {
	for _, code := range slices.Sorted(maps.Keys(t.Errors)) {
		fmt.Fprintf(w, "  %-20s %8d  e.g. %s\n", code, t.Errors[code], t.ErrorExamples[code])
	}
}

// WriteJSON writes v as indented JSON to the file path, or to stdout if
// path is "-". A file it cannot write is an error that names --json.
func WriteJSON(path string, stdout io.Writer, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
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

// Truncate returns s cut to n bytes and marked "…" if it is longer.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Bar is one bar of a latency histogram: the samples from From to To
// microseconds, inclusive.
type Bar struct {
	From, To, Count int64
}

// Bars returns, per metric with samples, its distribution in at most n
// bars of equal width on a logarithmic scale, from its lowest to its
// highest value.
func (s *Stats) Bars(n int) map[string][]Bar {
	s.mu.Lock()
	defer s.mu.Unlock()
	bars := make(map[string][]Bar)
	for name, h := range s.hists {
		if h.TotalCount() > 0 {
			bars[name] = histBars(h, n)
		}
	}
	return bars
}

func histBars(h *hdrhistogram.Histogram, n int) []Bar {
	lo, hi := max(h.Min(), HistMin), max(h.Max(), HistMin)
	if hi <= lo {
		return []Bar{{From: lo, To: hi, Count: h.TotalCount()}}
	}
	ratio := math.Log(float64(hi)/float64(lo)) / float64(n)
	bars := make([]Bar, n)
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
		bars[min(max(i, 0), n-1)].Count += b.Count
	}
	return bars
}

// ErrMismatch reports a message that differs from the one sent.
var ErrMismatch = errors.New("message differs from the one sent")

// StageError is an error of one step of a pair, such as dial, send or
// receive; a command's error classifier reads Stage.
type StageError struct {
	Stage string
	Err   error
}

// Error returns "stage: err".
// It does not repeat the stage when Err already begins with it (the
// client says "join: …" itself).
func (e StageError) Error() string {
	msg := e.Err.Error()
	if strings.HasPrefix(msg, e.Stage+": ") {
		return msg
	}
	return e.Stage + ": " + msg
}

// Unwrap returns Err.
func (e StageError) Unwrap() error { return e.Err }

// Stage returns the Stage of the StageError in err's chain, or "other".
func Stage(err error) string {
	var se StageError
	if errors.As(err, &se) {
		return se.Stage
	}
	return "other"
}
