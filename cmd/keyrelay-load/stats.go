package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyrelay/keyrelay/internal/loadstats"
	"github.com/keyrelay/keyrelay/wire"
)

// Latency metrics, in the order the summary shows them.
const (
	metricConnect   = "connect"    // one client.Dial: TCP, WebSocket upgrade
	metricJoin      = "join"       // create or join, to the relay's room reply
	metricHandshake = "handshake"  // from B's join to handshake_complete on both peers
	metricRoundTrip = "round_trip" // chat: A sends, B receives and replies, A receives
	// metricResume (--resume) runs from when a client saw its connection
	// drop (unplanned) to the relay's reply to its resume: the time the
	// client spent reconnecting, backoff included.
	metricResume = "resume"
)

var metrics = []string{metricConnect, metricJoin, metricHandshake, metricRoundTrip, metricResume}

// stats gathers the outcome of every pair, the resumes of churn, and the
// deliveries and drops of chat and churn.
type stats struct {
	*loadstats.Stats
	resumes atomic.Int64

	mu       sync.Mutex // guards the following
	delivery deliveryCounts
	drops    dropCounts
}

func newStats() *stats {
	return &stats{Stats: loadstats.New(metrics, errorCode), drops: dropCounts{ByClose: map[string]int64{}}}
}

// resumed counts successful resumes (churn).
func (s *stats) resumed(n int) { s.resumes.Add(int64(n)) }

// delivered adds the delivery figures of one flow of a pair that ended.
func (s *stats) delivered(d deliveryCounts) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delivery.add(d)
}

// Outcomes of a resume after an unplanned drop.
const (
	dropResumed   = iota // Resume succeeded
	dropFailed           // it failed: the pair fails
	dropCancelled        // the pair ended meanwhile for another reason
)

// dropped counts an unplanned drop that ended its connection with close
// (see closeLabel), the outcome of its resume, and the resume's attempts.
func (s *stats) dropped(close string, outcome, attempts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drops.Drops++
	s.drops.ByClose[close]++
	s.drops.Attempts += int64(attempts)
	switch outcome {
	case dropResumed:
		s.drops.Resumed++
	case dropFailed:
		s.drops.Failed++
	}
}

// dropsSoFar returns the drops and resumes counted so far.
func (s *stats) dropsSoFar() (drops, resumed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drops.Drops, s.drops.Resumed
}

// redialed counts a setup started over on a new connection.
func (s *stats) redialed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drops.Redials++
}

// dropCounts are the unplanned drops that --resume rode out.
type dropCounts struct {
	// Drops counts connections that ended while their client was in a room
	// (a relay going away, a connection cut), other than churn's planned
	// drop.
	Drops int64 `json:"drops"`
	// ByClose splits Drops by the close code the client got: "1001" (going
	// away), "none" (no close frame: a cut, a killed relay) …
	ByClose map[string]int64 `json:"by_close"`
	// Resumed counts the drops whose client took its seat back; Failed
	// those whose Resume failed (the pair failed). The rest ended when
	// their pair failed for another reason.
	Resumed int64 `json:"resumed"`
	Failed  int64 `json:"resume_failed"`
	// Attempts counts the resume attempts (one per URL tried), all told.
	Attempts int64 `json:"resume_attempts"`
	// Redials counts peers that started their setup (dial, create or
	// join) over on a new connection after a dial error or a drop.
	Redials int64 `json:"redials"`
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

	loadstats.Totals
	Resumes int64 `json:"resumes,omitempty"` // churn: successful Resume calls

	// Delivery has chat's and churn's message figures (see
	// deliveryCounts).
	Delivery *deliveryCounts `json:"delivery,omitempty"`
	// Drops has the unplanned drops ridden out with --resume.
	Drops *dropCounts `json:"drops,omitempty"`

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
		s.mu.Lock()
		d := s.delivery
		d.DelayedAfterMS, d.MaxDelayMS = ms(cfg.delayedAfter), ms(d.maxLag)
		sum.Delivery = &d
		if cfg.resume {
			dr := s.drops
			dr.ByClose = maps.Clone(dr.ByClose)
			sum.Drops = &dr
		}
		s.mu.Unlock()
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
	if d := sum.Delivery; d != nil {
		fmt.Fprintf(w, "delivery: %d sent (%d confirmed, %d unconfirmed: sent again after a resume), %d refused;\n"+
			"          %d delivered, %d lost, %d duplicated, %d delayed (> %gms; max %.0fms); %d unconfirmed never delivered\n",
			d.Sent, d.Confirmed, d.Unconfirmed, d.Refused, d.Delivered, d.Lost, d.Duplicated, d.Delayed, d.DelayedAfterMS, d.MaxDelayMS, d.UnconfirmedLost)
	}
	if sum.Scenario == scenarioChurn {
		fmt.Fprintf(w, "resumes:  %d (churn's planned drops)\n", sum.Resumes)
	}
	if d := sum.Drops; d != nil {
		fmt.Fprintf(w, "drops:    %d%s, %d resumed in %d attempts, %d resumes failed; %d setups started over\n",
			d.Drops, d.byCloseText(), d.Resumed, d.Attempts, d.Failed, d.Redials)
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
	if hint := limitHint(sum.Errors); hint != "" {
		fmt.Fprintln(w, hint)
	}
}

// limitCodes are the relay's answers that mean a per-client limit, not a
// fault: a load from few addresses meets them first.
var limitCodes = []string{
	string(wire.CodeJoinRateLimited), string(wire.CodeTooManyRooms), string(wire.CodeTooManyAttempts),
	string(wire.CodeRateLimited), string(wire.CodeKeyReused), "4429",
}

// limitHint returns a line saying which errors are the relay's limits and
// what to do about them, or "" if none is.
func limitHint(errs map[string]int64) string {
	var seen []string
	for _, k := range slices.Sorted(maps.Keys(errs)) {
		for _, code := range limitCodes {
			if strings.Contains(k, code) {
				seen = append(seen, fmt.Sprintf("%s: %d", k, errs[k]))
				break
			}
		}
	}
	if len(seen) == 0 {
		return ""
	}
	return "hint:     the relay refused by its per-client limits (" + strings.Join(seen, ", ") + "), not for a fault.\n" +
		"          Spread the load over more source addresses (--source-addrs 127.0.0.2-127.0.0.50), or\n" +
		"          start the relay with higher limits (--joins-per-ip, --rooms-per-ip, --max-conns-per-ip,\n" +
		"          --frames-per-second; -1 lifts one)."
}

// byCloseText returns " (close 1001: 3, none: 1)", or "" without drops.
func (d *dropCounts) byCloseText() string {
	if len(d.ByClose) == 0 {
		return ""
	}
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(d.ByClose)) {
		parts = append(parts, fmt.Sprintf("%s: %d", c, d.ByClose[c]))
	}
	return " (close " + strings.Join(parts, ", ") + ")"
}
