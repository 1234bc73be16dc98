package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/keyrelay/keyrelay/internal/loadstats"
)

// The process and Go metrics the relay figures are made of.
const (
	promCPU        = "process_cpu_seconds_total"
	promRSS        = "process_resident_memory_bytes"
	promFDs        = "process_open_fds"
	promGoroutines = "go_goroutines"
	promHeapInuse  = "go_memstats_heap_inuse_bytes"
)

// keyrelayPrefix starts the relay's own metrics, whose counters and gauges
// the report lists.
const keyrelayPrefix = "keyrelay_"

// scrapeTimeout bounds one scrape of one relay.
const scrapeTimeout = 5 * time.Second

// maxMetricsBody bounds the /metrics response read.
const maxMetricsBody = 16 << 20

// parseMetricsURLs parses --metrics-url: "none" gives nil; "" derives one
// URL per relay from wsURLs (ws becomes http, wss https, path /metrics,
// same host; duplicates once); else a comma-separated list of http(s)
// URLs.
func parseMetricsURLs(s string, wsURLs []string) ([]string, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "none":
		return nil, nil
	case "":
		var out []string
		for _, u := range wsURLs {
			m, err := deriveMetricsURL(u)
			if err != nil {
				return nil, err
			}
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
		return out, nil
	}
	var out []string
	for u := range strings.SplitSeq(s, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil {
			return nil, err
		}
		if (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return nil, fmt.Errorf("%q: want http://host/metrics or https://host/metrics, or none", u)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, errors.New("no URL given (none turns scraping off)")
	}
	return out, nil
}

// deriveMetricsURL returns the /metrics URL of the relay at WebSocket URL
// ws: http for ws, https for wss, same host, path /metrics.
func deriveMetricsURL(ws string) (string, error) {
	u, err := url.Parse(ws)
	if err != nil {
		return "", err
	}
	scheme := "http"
	if u.Scheme == "wss" {
		scheme = "https"
	}
	return (&url.URL{Scheme: scheme, Host: u.Host, Path: "/metrics"}).String(), nil
}

// scrape is one reading of one relay's metrics: the unlabelled process
// and Go figures, and the keyrelay_* counters and gauges (a series with
// labels under name{label="value",…}).
type scrape struct {
	values   map[string]float64
	counters map[string]bool // which keyrelay_* keys are counters
}

func (s *scrape) get(name string) (float64, bool) {
	if s == nil {
		return 0, false
	}
	v, ok := s.values[name]
	return v, ok
}

// parseMetrics reads the Prometheus text exposition format.
func parseMetrics(r io.Reader) (*scrape, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	s := &scrape{values: make(map[string]float64), counters: make(map[string]bool)}
	for name, f := range fams {
		own := strings.HasPrefix(name, keyrelayPrefix)
		for _, m := range f.GetMetric() {
			var v float64
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				v = m.GetUntyped().GetValue()
			default:
				continue // histograms and summaries are not reported
			}
			key := name
			if len(m.GetLabel()) > 0 {
				if !own {
					continue
				}
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				sort.Strings(ls)
				key += "{" + strings.Join(ls, ",") + "}"
			}
			s.values[key] = v
			if own && f.GetType() == dto.MetricType_COUNTER {
				s.counters[key] = true
			}
		}
	}
	return s, nil
}

// relayWatch scrapes the relays' /metrics over a run: begin, every
// interval, (idle) held, and end.
type relayWatch struct {
	// Static after newRelayWatch.
	client    *http.Client
	instances []*instance

	stop func()         // ends the periodic scrapes
	wg   sync.WaitGroup // the periodic scraper
}

// instance is one relay's scrapes.
type instance struct {
	url    string
	urlIdx []int // the --url indices served by this relay; nil if unknown

	mu     sync.Mutex // guards the following
	start  *scrape
	end    *scrape
	held   *scrape
	heldN  int64     // idle: connections open to it at the held scrape
	loaded []*scrape // during the run (periodic), and held
	ok     int       // successful scrapes
	errs   []string  // failed scrapes: "phase: error"
}

// newRelayWatch returns a watch of the relays at metricsURLs, which serve
// the WebSocket URLs wsURLs: a metrics URL derived from a WebSocket URL
// serves it; else, with as many metrics URLs as WebSocket URLs, the i-th
// serves the i-th; else one metrics URL serves all.
func newRelayWatch(metricsURLs, wsURLs []string) *relayWatch {
	w := &relayWatch{client: &http.Client{Timeout: scrapeTimeout}, stop: func() {}}
	for i, m := range metricsURLs {
		in := &instance{url: m}
		for j, ws := range wsURLs {
			if d, err := deriveMetricsURL(ws); err == nil && d == m {
				in.urlIdx = append(in.urlIdx, j)
			}
		}
		switch {
		case in.urlIdx != nil:
		case len(metricsURLs) == len(wsURLs):
			in.urlIdx = []int{i}
		case len(metricsURLs) == 1:
			for j := range wsURLs {
				in.urlIdx = append(in.urlIdx, j)
			}
		}
		w.instances = append(w.instances, in)
	}
	return w
}

// fetch scrapes in once.
func (w *relayWatch) fetch(ctx context.Context, in *instance) (*scrape, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	s, err := parseMetrics(io.LimitReader(resp.Body, maxMetricsBody))
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return s, nil
}

// scrapeAll scrapes every instance at once and hands each success to
// keep, under the instance's lock; a failure is noted under phase.
func (w *relayWatch) scrapeAll(ctx context.Context, phase string, keep func(in *instance, s *scrape)) {
	var wg sync.WaitGroup
	for _, in := range w.instances {
		wg.Go(func() {
			s, err := w.fetch(ctx, in)
			in.mu.Lock()
			defer in.mu.Unlock()
			if err != nil {
				if ctx.Err() == nil && len(in.errs) < 10 {
					in.errs = append(in.errs, phase+": "+loadstats.Truncate(err.Error(), loadstats.MaxExample))
				}
				return
			}
			in.ok++
			keep(in, s)
		})
	}
	wg.Wait()
}

// begin takes the start scrape and starts scraping every interval (if
// not 0) until end.
func (w *relayWatch) begin(ctx context.Context, interval time.Duration) {
	w.scrapeAll(ctx, "start", func(in *instance, s *scrape) { in.start = s })
	if interval <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	w.stop = cancel
	w.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				w.scrapeAll(ctx, "during the run", func(in *instance, s *scrape) { in.loaded = append(in.loaded, s) })
			}
		}
	})
}

// held takes the scrape of the idle scenario while every connection is
// open; open has the connections open by --url index.
func (w *relayWatch) held(ctx context.Context, open []int64) {
	w.scrapeAll(ctx, "held", func(in *instance, s *scrape) {
		in.held = s
		in.loaded = append(in.loaded, s)
		in.heldN = -1
		if in.urlIdx != nil {
			in.heldN = 0
			for _, j := range in.urlIdx {
				in.heldN += open[j]
			}
		}
	})
}

// end stops the periodic scrapes, takes the end scrape, and returns each
// relay's report.
func (w *relayWatch) end(ctx context.Context) []relayReport {
	w.stop()
	w.wg.Wait()
	w.scrapeAll(ctx, "end", func(in *instance, s *scrape) { in.end = s })
	var out []relayReport
	for _, in := range w.instances {
		in.mu.Lock()
		out = append(out, in.report())
		in.mu.Unlock()
	}
	return out
}

// relayReport is one relay's figures over the run. Figures that could not
// be read are absent (null), never zero.
type relayReport struct {
	MetricsURL string `json:"metrics_url"`
	// Unreachable, if set, says why no scrape succeeded; the relay then
	// has no figures.
	Unreachable string `json:"unreachable,omitempty"`
	// Scrapes counts the successful scrapes; ScrapeErrors has the failed
	// ones (at most 10).
	Scrapes      int      `json:"scrapes"`
	ScrapeErrors []string `json:"scrape_errors,omitempty"`
	// LoadedScrapes counts the successful scrapes taken while the load
	// ran (during the run, or idle's held scrape): the loaded figures and
	// the gauges' peaks come from them.
	LoadedScrapes int `json:"loaded_scrapes"`

	// CPUSeconds is the CPU time the relay process used from the start
	// scrape to the end scrape.
	CPUSeconds *float64 `json:"cpu_seconds,omitempty"`
	RSS        figure   `json:"rss_bytes"`
	Goroutines figure   `json:"goroutines"`
	OpenFDs    figure   `json:"open_fds"`
	HeapInuse  figure   `json:"heap_inuse_bytes"`

	// Idle: the connections open to this relay at the held scrape, and
	// (RSS while held − RSS at start) and (goroutines while held −
	// goroutines at start) per connection.
	HeldConnections         *int64   `json:"held_connections,omitempty"`
	RSSPerConnection        *float64 `json:"rss_bytes_per_connection,omitempty"`
	GoroutinesPerConnection *float64 `json:"goroutines_per_connection,omitempty"`

	// KeyrelayCounters has each keyrelay_* counter's increase from start
	// to end; KeyrelayGauges each keyrelay_* gauge's highest value in the
	// loaded scrapes.
	KeyrelayCounters map[string]float64 `json:"keyrelay_counters,omitempty"`
	KeyrelayGauges   map[string]float64 `json:"keyrelay_gauges_peak,omitempty"`
	// KeyrelayGaugesStart has each gauge's value before the run: a relay
	// that served earlier runs starts with their rooms, so the peak alone
	// says little about this run.
	KeyrelayGaugesStart map[string]float64 `json:"keyrelay_gauges_start,omitempty"`
}

// figure is one metric over the run. Loaded is, for idle, its value while
// the connections were held, else its highest value in the scrapes taken
// during the run (none if the run was shorter than --metrics-interval);
// Peak is the highest value of every scrape.
type figure struct {
	Start  *float64 `json:"start,omitempty"`
	Loaded *float64 `json:"loaded,omitempty"`
	Peak   *float64 `json:"peak,omitempty"`
	End    *float64 `json:"end,omitempty"`
}

// figureOf builds the figure of metric name.
func (in *instance) figureOf(name string) figure {
	var f figure
	val := func(s *scrape) *float64 {
		if v, ok := s.get(name); ok {
			return &v
		}
		return nil
	}
	maxOf := func(a, b *float64) *float64 {
		if a == nil || (b != nil && *b > *a) {
			return b
		}
		return a
	}
	f.Start, f.End = val(in.start), val(in.end)
	if in.held != nil {
		f.Loaded = val(in.held)
	} else {
		for _, s := range in.loaded {
			f.Loaded = maxOf(f.Loaded, val(s))
		}
	}
	f.Peak = maxOf(f.Start, f.End)
	for _, s := range in.loaded {
		f.Peak = maxOf(f.Peak, val(s))
	}
	return f
}

func (in *instance) report() relayReport {
	r := relayReport{MetricsURL: in.url, Scrapes: in.ok, ScrapeErrors: slices.Clone(in.errs)}
	if in.ok == 0 {
		r.Unreachable = "no scrape succeeded"
		if len(in.errs) > 0 {
			r.Unreachable = in.errs[0]
		}
		return r
	}
	if a, ok := in.start.get(promCPU); ok {
		if b, ok := in.end.get(promCPU); ok && b >= a {
			d := b - a
			r.CPUSeconds = &d
		}
	}
	r.RSS = in.figureOf(promRSS)
	r.Goroutines = in.figureOf(promGoroutines)
	r.OpenFDs = in.figureOf(promFDs)
	r.HeapInuse = in.figureOf(promHeapInuse)
	if in.held != nil && in.heldN >= 0 {
		n := in.heldN
		r.HeldConnections = &n
		if n > 0 {
			perConn := func(name string) *float64 {
				a, okA := in.start.get(name)
				b, okB := in.held.get(name)
				if !okA || !okB {
					return nil
				}
				v := (b - a) / float64(n)
				return &v
			}
			r.RSSPerConnection = perConn(promRSS)
			r.GoroutinesPerConnection = perConn(promGoroutines)
		}
	}
	r.LoadedScrapes = len(in.loaded)
	for key := range in.keyrelayKeys() {
		if in.isCounter(key) {
			if in.start == nil || in.end == nil {
				continue // no increase without both ends
			}
			a, _ := in.start.get(key) // 0 if absent: a labelled series appears on its first increment
			b, ok := in.end.get(key)
			if !ok {
				continue
			}
			if r.KeyrelayCounters == nil {
				r.KeyrelayCounters = make(map[string]float64)
			}
			r.KeyrelayCounters[key] = b - a
			continue
		}
		for _, s := range in.loaded {
			if v, ok := s.get(key); ok {
				if r.KeyrelayGauges == nil {
					r.KeyrelayGauges = make(map[string]float64)
				}
				if old, seen := r.KeyrelayGauges[key]; !seen || v > old {
					r.KeyrelayGauges[key] = v
				}
			}
		}
		if in.start != nil {
			if v, ok := in.start.get(key); ok {
				if r.KeyrelayGaugesStart == nil {
					r.KeyrelayGaugesStart = make(map[string]float64)
				}
				r.KeyrelayGaugesStart[key] = v
			}
		}
	}
	return r
}

// keyrelayKeys returns the keyrelay_* series seen in any scrape.
func (in *instance) keyrelayKeys() map[string]bool {
	keys := make(map[string]bool)
	for _, s := range append([]*scrape{in.start, in.end}, in.loaded...) {
		if s == nil {
			continue
		}
		for k := range s.values {
			if strings.HasPrefix(k, keyrelayPrefix) {
				keys[k] = true
			}
		}
	}
	return keys
}

func (in *instance) isCounter(key string) bool {
	for _, s := range append([]*scrape{in.start, in.end}, in.loaded...) {
		if s != nil && s.counters[key] {
			return true
		}
	}
	return false
}

// writeRelayText prints the relay figures for people.
func writeRelayText(w io.Writer, relays []relayReport) {
	for _, r := range relays {
		if r.Unreachable != "" {
			fmt.Fprintf(w, "relay %s: /metrics unreachable (%s)\n", r.MetricsURL, r.Unreachable)
			continue
		}
		fmt.Fprintf(w, "relay %s: %d scrapes", r.MetricsURL, r.Scrapes)
		if r.CPUSeconds != nil {
			fmt.Fprintf(w, ", %.2f CPU seconds during the run", *r.CPUSeconds)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  %-15s %10s %10s %10s %10s\n", "", "start", "loaded", "peak", "end")
		for _, row := range relayRows(r) {
			fmt.Fprintf(w, "  %-15s %10s %10s %10s %10s\n", row.Name, row.Cells[0], row.Cells[1], row.Cells[2], row.Cells[3])
		}
		if r.HeldConnections != nil {
			fmt.Fprintf(w, "  held %d connections:", *r.HeldConnections)
			if r.RSSPerConnection != nil {
				fmt.Fprintf(w, " %s RSS per connection", formatBytes(*r.RSSPerConnection))
			}
			if r.GoroutinesPerConnection != nil {
				fmt.Fprintf(w, ", %.2f goroutines per connection", *r.GoroutinesPerConnection)
			}
			fmt.Fprintln(w)
		}
		if r.LoadedScrapes == 0 {
			fmt.Fprintf(w, "  no scrape while loaded: the run was shorter than --metrics-interval\n")
		}
		if line := keyrelayLine(r); line != "" {
			fmt.Fprintf(w, "  %s\n", line)
		}
		for _, e := range r.ScrapeErrors {
			fmt.Fprintf(w, "  scrape failed: %s\n", e)
		}
	}
}

// relayRow is one line of the relay table: start, loaded, peak, end.
type relayRow struct {
	Name  string
	Cells [4]string
}

func relayRows(r relayReport) []relayRow {
	row := func(name string, f figure, format func(float64) string) relayRow {
		out := relayRow{Name: name}
		for i, v := range []*float64{f.Start, f.Loaded, f.Peak, f.End} {
			out.Cells[i] = "n/a"
			if v != nil {
				out.Cells[i] = format(*v)
			}
		}
		return out
	}
	count := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	return []relayRow{
		row("RSS", r.RSS, formatBytes),
		row("heap in use", r.HeapInuse, formatBytes),
		row("goroutines", r.Goroutines, count),
		row("open fds", r.OpenFDs, count),
	}
}

// keyrelayLine summarises the keyrelay_* counters and gauges on one line.
func keyrelayLine(r relayReport) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.KeyrelayCounters)) {
		if v := r.KeyrelayCounters[k]; v != 0 {
			parts = append(parts, fmt.Sprintf("%s +%.0f", strings.TrimPrefix(k, keyrelayPrefix), v))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r.KeyrelayGauges)) {
		part := fmt.Sprintf("%s peak %.0f", strings.TrimPrefix(k, keyrelayPrefix), r.KeyrelayGauges[k])
		if start, ok := r.KeyrelayGaugesStart[k]; ok {
			part += fmt.Sprintf(" (%+.0f over the start)", r.KeyrelayGauges[k]-start)
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return ""
	}
	return "keyrelay: " + strings.Join(parts, ", ")
}

// formatBytes formats a byte count in KiB, MiB or GiB.
func formatBytes(v float64) string {
	neg := ""
	if v < 0 {
		neg, v = "-", -v
	}
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%s%.2f GiB", neg, v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%s%.1f MiB", neg, v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%s%.1f KiB", neg, v/(1<<10))
	}
	return fmt.Sprintf("%s%.0f B", neg, v)
}
