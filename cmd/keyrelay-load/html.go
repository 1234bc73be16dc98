package main

import (
	"bytes"
	"fmt"
	"html/template"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/keyrelay/keyrelay/internal/loadstats"
)

// writeHTML writes the one-page report of a run to path: configuration,
// headline figures, latency percentiles, errors by code, relay figures,
// and a latency histogram per metric as inline SVG. The page loads
// nothing: no scripts, fonts or style sheets from elsewhere. Its markup is
// also well-formed XML.
func writeHTML(path string, cfg config, sum *summary) error {
	var buf bytes.Buffer
	if err := reportTemplate.Execute(&buf, newHTMLReport(cfg, sum, time.Now())); err != nil {
		return fmt.Errorf("--html: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("--html: %w", err)
	}
	return nil
}

// htmlReport is what the report template shows.
type htmlReport struct {
	Title     string
	Generated string
	Config    []keyValue
	Headline  []keyValue
	Latency   []latencyRow
	ErrorUnit string
	ErrorRate string
	Errors    []errorRow
	Relays    []relayView
	Charts    []chart
}

type keyValue struct{ Key, Value string }

type latencyRow struct {
	Metric string
	P      loadstats.Percentiles
}

type errorRow struct {
	Code    string
	Count   int64
	Example string
}

type relayView struct {
	URL         string
	Unreachable string
	Notes       []string
	Rows        []relayRow
	Errors      []string
}

// chart is one latency histogram as SVG: bars on a logarithmic time axis.
type chart struct {
	Metric        string
	Count         int64
	Width, Height int
	Bars          []svgBar
	Ticks         []svgTick
	Marks         []svgTick // percentiles
	Left, Bottom  float64   // the plot area's left edge and baseline
	Right, Top    float64
	TickEnd       float64 // the tick marks' lower end
	MaxLabel      string
}

type svgBar struct {
	X, Y, W, H float64
	Title      string
}

type svgTick struct {
	X      float64
	Label  string
	Anchor string // the label's text-anchor: start, middle or end
}

func newHTMLReport(cfg config, sum *summary, now time.Time) *htmlReport {
	r := &htmlReport{
		Title:     "keyrelay-load: " + sum.Scenario,
		Generated: now.UTC().Format(time.RFC3339),
	}
	if sum.ScenarioName != "" {
		r.Title += " " + sum.ScenarioName
	}
	add := func(list *[]keyValue, k, format string, args ...any) {
		*list = append(*list, keyValue{k, fmt.Sprintf(format, args...)})
	}

	add(&r.Config, "scenario", "%s", sum.Scenario)
	if sum.ScenarioName != "" {
		add(&r.Config, "scenario file", "%s (%q, %d steps)", cfg.scenarioFile, sum.ScenarioName, len(cfg.script.Steps))
	}
	add(&r.Config, "group", "%s", sum.Group)
	add(&r.Config, "relay URLs", "%s", strings.Join(sum.URLs, ", "))
	if sum.Connections != nil {
		add(&r.Config, "connections", "%d, %d being opened at once, held %v", cfg.Connections, sum.Concurrency, cfg.Duration)
	} else {
		if cfg.rate > 0 {
			add(&r.Config, "load", "open loop: %g arrivals/s, at most %d pairs in flight", cfg.rate, sum.Concurrency)
		} else {
			add(&r.Config, "load", "closed loop: %d pairs in flight", sum.Concurrency)
		}
		pairs := "until the duration ends"
		if cfg.Pairs > 0 {
			pairs = fmt.Sprint(cfg.Pairs)
		}
		add(&r.Config, "pairs", "%s", pairs)
		if cfg.Duration > 0 {
			add(&r.Config, "duration", "%v", cfg.Duration)
		}
	}
	if sum.Messages > 0 {
		add(&r.Config, "messages", "%d each way per pair, %d bytes", sum.Messages, sum.Size)
	}
	if cfg.messageRate > 0 {
		add(&r.Config, "message rate", "at most %g round trips/s per pair", cfg.messageRate)
	}
	if len(cfg.sourceAddrs) > 0 {
		add(&r.Config, "source addresses", "%d (%s … %s)", len(cfg.sourceAddrs), cfg.sourceAddrs[0], cfg.sourceAddrs[len(cfg.sourceAddrs)-1])
	}
	add(&r.Config, "timeout", "%v per pair", cfg.Timeout)

	add(&r.Headline, "elapsed", "%.2f s", sum.ElapsedSeconds)
	if c := sum.Connections; c != nil {
		add(&r.Headline, "connections", "%d opened, %d failed to open, %d dropped, %d still open at the end", c.Opened, c.Failed, c.Dropped, c.OpenAtEnd)
	} else {
		add(&r.Headline, "pairs", "%d completed, %d failed, %d attempted", sum.PairsCompleted, sum.PairsFailed, sum.PairsAttempted)
		add(&r.Headline, "pairs/s", "%.1f", sum.PairsPerSecond)
	}
	if o := sum.OpenLoop; o != nil {
		add(&r.Headline, "arrivals", "%d, %d started (%.1f/s achieved of %g/s), %d missed", o.Arrivals, o.Started, o.StartRate, o.Rate, o.Missed)
	}
	if sum.MessagesDelivered > 0 {
		add(&r.Headline, "messages", "%d delivered, %.1f/s", sum.MessagesDelivered, sum.MessagesPerSecond)
	}
	if d := sum.Delivery; d != nil {
		add(&r.Headline, "delivery", "%d sent (%d confirmed, %d unconfirmed), %d refused; %d delivered, %d lost, %d duplicated, %d delayed (> %g ms; max %.0f ms)",
			d.Sent, d.Confirmed, d.Unconfirmed, d.Refused, d.Delivered, d.Lost, d.Duplicated, d.Delayed, d.DelayedAfterMS, d.MaxDelayMS)
	}
	if sum.Resumes > 0 {
		add(&r.Headline, "resumes", "%d", sum.Resumes)
	}
	if d := sum.Drops; d != nil {
		add(&r.Headline, "drops", "%d%s, %d resumed in %d attempts, %d resumes failed, %d setups started over",
			d.Drops, d.byCloseText(), d.Resumed, d.Attempts, d.Failed, d.Redials)
	}
	if sum.PairsAbandoned > 0 {
		add(&r.Headline, "abandoned", "%d (interrupted)", sum.PairsAbandoned)
	}
	add(&r.Headline, "error rate", "%.2f%%", 100*sum.ErrorRate)

	for _, m := range metrics {
		if p, ok := sum.Latency[m]; ok {
			r.Latency = append(r.Latency, latencyRow{m, p})
			r.Charts = append(r.Charts, newChart(m, p, sum.histograms[m]))
		}
	}
	r.ErrorUnit = "pairs"
	if sum.Connections != nil {
		r.ErrorUnit = "connections"
	}
	r.ErrorRate = fmt.Sprintf("%.2f%%", 100*sum.ErrorRate)
	for _, code := range slices.Sorted(maps.Keys(sum.Errors)) {
		r.Errors = append(r.Errors, errorRow{code, sum.Errors[code], sum.ErrorExamples[code]})
	}
	for _, rr := range sum.Relays {
		v := relayView{URL: rr.MetricsURL, Unreachable: rr.Unreachable, Errors: rr.ScrapeErrors}
		if rr.Unreachable == "" {
			v.Rows = relayRows(rr)
			v.Notes = append(v.Notes, fmt.Sprintf("%d scrapes", rr.Scrapes))
			if rr.CPUSeconds != nil {
				v.Notes = append(v.Notes, fmt.Sprintf("%.2f CPU seconds during the run", *rr.CPUSeconds))
			}
			if rr.HeldConnections != nil {
				note := fmt.Sprintf("%d connections held", *rr.HeldConnections)
				if rr.RSSPerConnection != nil {
					note += fmt.Sprintf(": %s RSS per connection", formatBytes(*rr.RSSPerConnection))
				}
				if rr.GoroutinesPerConnection != nil {
					note += fmt.Sprintf(", %.2f goroutines per connection", *rr.GoroutinesPerConnection)
				}
				v.Notes = append(v.Notes, note)
			}
			if rr.LoadedScrapes == 0 {
				v.Notes = append(v.Notes, "no scrape while loaded: the run was shorter than --metrics-interval")
			}
			if line := keyrelayLine(rr); line != "" {
				v.Notes = append(v.Notes, line)
			}
		}
		r.Relays = append(r.Relays, v)
	}
	return r
}

// Chart geometry, in SVG user units.
const (
	chartWidth  = 720
	chartHeight = 220
	chartLeft   = 56
	chartRight  = 16
	chartTop    = 16
	chartBottom = 36
)

// newChart lays out the histogram bars of one metric; their values are
// in microseconds.
func newChart(metric string, p loadstats.Percentiles, bars []loadstats.Bar) chart {
	c := chart{
		Metric: metric, Count: p.Count, Width: chartWidth, Height: chartHeight,
		Left: chartLeft, Right: chartWidth - chartRight, Top: chartTop, Bottom: chartHeight - chartBottom,
		TickEnd: chartHeight - chartBottom + 4,
	}
	if len(bars) == 0 {
		return c
	}
	lo, hi := float64(bars[0].From), float64(bars[len(bars)-1].To)
	plotW, plotH := c.Right-c.Left, c.Bottom-c.Top
	x := func(us float64) float64 {
		if hi <= lo {
			return c.Left
		}
		us = min(max(us, lo), hi)
		return c.Left + plotW*math.Log(us/lo)/math.Log(hi/lo)
	}
	var maxCount int64
	for _, b := range bars {
		maxCount = max(maxCount, b.Count)
	}
	c.MaxLabel = fmt.Sprint(maxCount)
	w := plotW / float64(len(bars))
	for i, b := range bars {
		if b.Count == 0 {
			continue
		}
		h := plotH * float64(b.Count) / float64(maxCount)
		c.Bars = append(c.Bars, svgBar{
			X: round1(c.Left + w*float64(i)), Y: round1(c.Bottom - h), W: round1(max(w-1, 1)), H: round1(h),
			Title: fmt.Sprintf("%s to %s: %d", formatMicros(float64(b.From)), formatMicros(float64(b.To)), b.Count),
		})
	}
	// Ticks at the powers of ten within the range, and at its ends.
	// The ends' labels are anchored inwards, so that none is clipped at
	// the chart's edge ("69.82ms" at the right end once lost its "s").
	c.Ticks = append(c.Ticks, svgTick{round1(x(lo)), formatMicros(lo), "start"})
	for d := math.Pow(10, math.Ceil(math.Log10(lo))); d < hi; d *= 10 {
		if tx := x(d); tx-c.Ticks[len(c.Ticks)-1].X > 40 && c.Right-tx > 40 {
			c.Ticks = append(c.Ticks, svgTick{round1(tx), formatMicros(d), "middle"})
		}
	}
	if hi > lo {
		c.Ticks = append(c.Ticks, svgTick{round1(x(hi)), formatMicros(hi), "end"})
	}
	for _, m := range []struct {
		name string
		ms   float64
	}{{"p50", p.P50}, {"p99", p.P99}} {
		c.Marks = append(c.Marks, svgTick{round1(x(m.ms * 1000)), m.name, "start"})
	}
	return c
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// formatMicros formats a duration in microseconds for an axis.
func formatMicros(us float64) string {
	switch {
	case us >= 1e6:
		return trimZeros(fmt.Sprintf("%.2f", us/1e6)) + "s"
	case us >= 1e3:
		return trimZeros(fmt.Sprintf("%.2f", us/1e3)) + "ms"
	}
	return trimZeros(fmt.Sprintf("%.1f", us)) + "µs"
}

func trimZeros(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// reportTemplate is the page. It is written as XHTML-compatible markup
// (every element closed, void elements self-closed) so that it is also
// well-formed XML, and its style sheet avoids the characters < > &.
var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms": func(v float64) string { return fmt.Sprintf("%.2f", v) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; }
h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 0.2em 0.8em; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th.n { text-align: right; }
.bad { color: #a00; }
svg { display: block; margin: 0.5em 0 1.5em; max-width: 100%; height: auto; }
svg text { font-size: 11px; fill: #444; }
.bar { fill: #4a7fb0; }
.axis { stroke: #888; stroke-width: 1; }
.mark { stroke: #c60; stroke-width: 1; stroke-dasharray: 4 3; }
svg text.marklabel { fill: #c60; }
footer { margin-top: 2em; color: #777; font-size: 0.85em; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>

<h2>Configuration</h2>
<table>
{{- range .Config}}
<tr><th>{{.Key}}</th><td>{{.Value}}</td></tr>
{{- end}}
</table>

<h2>Results</h2>
<table id="headline">
{{- range .Headline}}
<tr><th>{{.Key}}</th><td>{{.Value}}</td></tr>
{{- end}}
</table>

<h2>Latency (ms)</h2>
{{- if .Latency}}
<table id="latency">
<tr><th>metric</th><th class="n">count</th><th class="n">p50</th><th class="n">p90</th><th class="n">p99</th><th class="n">p99.9</th><th class="n">max</th></tr>
{{- range .Latency}}
<tr><td>{{.Metric}}</td><td class="n">{{.P.Count}}</td><td class="n">{{ms .P.P50}}</td><td class="n">{{ms .P.P90}}</td><td class="n">{{ms .P.P99}}</td><td class="n">{{ms .P.P999}}</td><td class="n">{{ms .P.Max}}</td></tr>
{{- end}}
</table>
{{- else}}
<p>No latency samples.</p>
{{- end}}

<h2>Errors</h2>
{{- if .Errors}}
<p class="bad">{{.ErrorRate}} of {{.ErrorUnit}} failed.</p>
<table id="errors">
<tr><th>code</th><th class="n">count</th><th>first occurrence</th></tr>
{{- range .Errors}}
<tr><td>{{.Code}}</td><td class="n">{{.Count}}</td><td>{{.Example}}</td></tr>
{{- end}}
</table>
{{- else}}
<p>None.</p>
{{- end}}

<h2>Relays</h2>
{{- if .Relays}}
{{- range .Relays}}
<h3>{{.URL}}</h3>
{{- if .Unreachable}}
<p class="bad">/metrics unreachable: {{.Unreachable}}</p>
{{- else}}
<ul>
{{- range .Notes}}
<li>{{.}}</li>
{{- end}}
</ul>
<table class="relay">
<tr><th></th><th class="n">start</th><th class="n">loaded</th><th class="n">peak</th><th class="n">end</th></tr>
{{- range .Rows}}
<tr><th>{{.Name}}</th>{{range .Cells}}<td class="n">{{.}}</td>{{end}}</tr>
{{- end}}
</table>
{{- range .Errors}}
<p class="bad">scrape failed: {{.}}</p>
{{- end}}
{{- end}}
{{- end}}
{{- else}}
<p>Not scraped (--metrics-url none).</p>
{{- end}}

<h2>Latency histograms</h2>
{{- range .Charts}}
<h3>{{.Metric}} ({{.Count}} samples)</h3>
<svg class="hist" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="{{.Metric}} latency histogram">
{{- $c := .}}
{{- range .Bars}}
<rect class="bar" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
{{- end}}
<line class="axis" x1="{{.Left}}" y1="{{.Bottom}}" x2="{{.Right}}" y2="{{.Bottom}}"/>
<line class="axis" x1="{{.Left}}" y1="{{.Top}}" x2="{{.Left}}" y2="{{.Bottom}}"/>
<text x="{{.Left}}" y="{{.Top}}" dx="-4" dy="4" text-anchor="end">{{.MaxLabel}}</text>
<text x="{{.Left}}" y="{{.Bottom}}" dx="-4" text-anchor="end">0</text>
{{- range .Ticks}}
<line class="axis" x1="{{.X}}" y1="{{$c.Bottom}}" x2="{{.X}}" y2="{{$c.TickEnd}}"/>
<text x="{{.X}}" y="{{$c.Bottom}}" dy="16" text-anchor="{{.Anchor}}">{{.Label}}</text>
{{- end}}
{{- range .Marks}}
<line class="mark" x1="{{.X}}" y1="{{$c.Top}}" x2="{{.X}}" y2="{{$c.Bottom}}"/>
<text class="marklabel" x="{{.X}}" y="{{$c.Top}}" dx="3" dy="-4">{{.Label}}</text>
{{- end}}
</svg>
{{- end}}

<footer>keyrelay-load, {{.Generated}}. Latency axis logarithmic; bar height: samples.</footer>
</body>
</html>
`))
