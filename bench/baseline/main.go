// Command baseline measures what the WebSocket library keyrelay is built on
// (github.com/coder/websocket) does alone, so that the relay's figures can
// be read as a fraction of it, measured on the same machine in the same
// run (bench/run.sh). It is a benchmark tool, never part of the keyrelay
// binaries.
//
// Usage:
//
//	baseline serve [--addr 127.0.0.1:8090]
//	baseline load  [--url http://127.0.0.1:8090] --scenario upgrade|forward|idle [flags]
//
// serve runs the bare server:
//
//	/upgrade        accepts a WebSocket (compression disabled) and reads
//	                until the client closes: one goroutine per connection,
//	                the handler's.
//	/forward?pair=ID
//	                pairs the two connections that present the same ID (a
//	                map under a mutex) and forwards every text message of
//	                one to the other: each handler reads its connection and
//	                writes to the partner's, with no queue and no JSON.
//	/stats          {"goroutines", "rss_bytes" (VmRSS), "heap_inuse",
//	                "connections"} as JSON.
//
// load drives it, in the scenarios that bench/run.sh sets against the
// relay's (cmd/keyrelay-load):
//
//	upgrade  per pair: dial two connections to /upgrade, close both; the
//	         bare cost of the two WebSocket upgrades of a relay pair.
//	forward  per pair: both peers connect to /forward with one pair ID,
//	         then --messages round trips of --size bytes (A sends, B
//	         receives and sends it back, A receives), each one timed.
//	idle     hold --connections connections to /upgrade for --duration,
//	         and report the server's RSS, goroutines and heap from /stats
//	         before the connections open and while they are held, and per
//	         connection.
//
// The JSON summary (--json) uses the field names of keyrelay-load's where
// the meaning is the same (pairs_per_second, messages_per_second,
// latency_ms with p50, p90, p99, p99_9 and max, errors …), so that a script
// can compare both. The figures themselves (histograms, percentiles,
// totals, errors by code, and their text and JSON) come from
// internal/loadstats, which keyrelay-load uses too, so that both compute
// them the same way; loadstats imports nothing of keyrelay's, and the
// baseline imports nothing else of keyrelay's: no relay, store or client
// code runs in it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}
