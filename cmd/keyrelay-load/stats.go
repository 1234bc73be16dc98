package main

import (
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/keyrelay/keyrelay/internal/loadstats"
)

// Latency metrics, in the order the summary shows them.
const (
	metricConnect   = "connect"    // one client.Dial: TCP, WebSocket upgrade
	metricJoin      = "join"       // create or join, to the relay's room reply
	metricHandshake = "handshake"  // from B's join to handshake_complete on both peers
	metricRoundTrip = "round_trip" // chat: A sends, B receives and replies, A receives
)

var metrics = []string{metricConnect, metricJoin, metricHandshake, metricRoundTrip}

// stats gathers the outcome of every pair, and the resumes of churn.
type stats struct {
	*loadstats.Stats
	resumes atomic.Int64
}

func newStats() *stats {
	return &stats{Stats: loadstats.New(metrics, errorCode)}
}

// resumed counts successful resumes (churn).
func (s *stats) resumed(n int) { s.resumes.Add(int64(n)) }

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

	loadstats.Totals
	Resumes int64 `json:"resumes,omitempty"` // churn: successful Resume calls

	// OpenLoop has the arrivals of a run with --rate.
	OpenLoop *openLoop `json:"open_loop,omitempty"`
	// Relays has each relay's figures from its /metrics.
	Relays []relayReport `json:"relays,omitempty"`

	// histograms has, per metric with samples, its distribution for the
	// HTML report.
	histograms map[string][]loadstats.Bar
}

// histBins is the number of bars of a histogram in the HTML report.
const histBins = 40

func (s *stats) summary(cfg config, elapsed time.Duration) *summary {
	sum := &summary{
		Scenario:    cfg.scenario,
		Group:       cfg.group.Name(),
		URLs:        cfg.urls,
		Concurrency: cfg.Concurrency,
		Totals:      s.Totals(elapsed),
		Resumes:     s.resumes.Load(),
		MessageRate: cfg.messageRate,
		SourceAddrs: len(cfg.sourceAddrs),
		histograms:  s.Bars(histBins),
	}
	switch cfg.scenario {
	case scenarioChat, scenarioChurn:
		sum.Messages, sum.Size = cfg.messages, cfg.size
	case scenarioFile:
		sum.ScenarioName = cfg.script.Name
	case scenarioIdle:
		c := s.Conns()
		sum.Connections = &c
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
	sum.WriteCounts(w)
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
	sum.WriteLatency(w, metrics)
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
	sum.WriteErrors(w)
}
