package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"time"

	"github.com/keyrelay/keyrelay/internal/loadstats"
)

// Latency metrics, named as keyrelay-load names the same measurements.
const (
	metricConnect   = "connect"    // one websocket.Dial: TCP and the upgrade
	metricRoundTrip = "round_trip" // forward: A sends, B receives and replies, A receives
)

var metrics = []string{metricConnect, metricRoundTrip}

func newStats() *loadstats.Stats { return loadstats.New(metrics, errorCode) }

// summary is the report of a run, as printed and as JSON. Its field names
// are keyrelay-load's where the meaning is the same.
type summary struct {
	Scenario    string   `json:"scenario"`
	Library     string   `json:"library"` // the WebSocket library and its version
	URLs        []string `json:"urls"`
	Concurrency int      `json:"concurrency"`
	Messages    int      `json:"messages_per_pair_each_way,omitempty"`
	Size        int      `json:"message_size,omitempty"`

	loadstats.Totals
	// Server has the idle scenario's server memory, from /stats.
	Server *serverMemory `json:"server,omitempty"`
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

// summarize returns the summary of a run of cfg that has lasted elapsed.
func summarize(s *loadstats.Stats, cfg config, elapsed time.Duration) *summary {
	sum := &summary{
		Scenario:    cfg.scenario,
		Library:     library(),
		URLs:        []string{cfg.baseURL.String()},
		Concurrency: cfg.Concurrency,
		Totals:      s.Totals(elapsed),
	}
	switch cfg.scenario {
	case scenarioForward:
		sum.Messages, sum.Size = cfg.messages, cfg.size
	case scenarioIdle:
		c := s.Conns()
		sum.Connections = &c
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
	sum.WriteCounts(w)
	if sum.Scenario == scenarioForward {
		fmt.Fprintf(w, "messages: %d delivered (%d bytes each): %.1f messages/s\n", sum.MessagesDelivered, sum.Size, sum.MessagesPerSecond)
	}
	if m := sum.Server; m != nil {
		fmt.Fprintf(w, "server:   RSS %.1f MiB before, %.1f MiB with %d connections: %.0f bytes per connection; %.2f goroutines per connection\n",
			float64(m.Before.RSSBytes)/(1<<20), float64(m.Held.RSSBytes)/(1<<20), m.HeldConnections, m.RSSBytesPerConnection, m.GoroutinesPerConnection)
	}
	sum.WriteLatency(w, metrics)
	if len(sum.Errors) == 0 {
		fmt.Fprintf(w, "errors:   none\n")
		return
	}
	fmt.Fprintf(w, "errors:   %.2f%%\n", 100*sum.ErrorRate)
	sum.WriteErrors(w)
}
