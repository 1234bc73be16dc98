// Command keyrelay-load is a pairing-aware load tester for keyrelay relays.
// It does what real users do: pairs of clients (relay/client) meet in a
// room, perform a real Diffie-Hellman handshake that the relay validates,
// and, in the chat scenario, exchange end-to-end encrypted messages.
//
// Usage:
//
//	keyrelay-load [flags]
//
// Scenarios:
//
//	handshake  per pair: two connections, create and join, key exchange
//	           (handshake_complete on both sides), close.
//	chat       handshake, then --messages messages of --size bytes each way:
//	           A sends, B receives and replies, A receives (one round trip
//	           per message), then close. Each message carries its index, and
//	           the receiver checks that it is the one due, delivered once.
//	churn      chat, then, for even pairs (pair i mod 2 = 0), A leaves (Leave)
//	           and B must see peer_left "left"; for odd pairs, A's TCP
//	           connection is reset without a WebSocket close, B must see
//	           peer_left "dropped" and sends a message while A is away, A
//	           resumes (Resume) and must receive that message exactly once
//	           (the next one it receives, sent after the resume, must be a
//	           new one); then close. The summary counts the resumes.
//	idle       hold --connections connections (--concurrency being opened at
//	           once), each in a room of its own (create), for --duration
//	           (required), reading so that the client answers the relay's
//	           keepalive pings. Reports connections opened, failed to open,
//	           dropped (an error by close code, such as close_4408) and still
//	           open at the end, and connect latency; here the pair counts and
//	           the error rate count connections. The relay keeps a room alive
//	           while a member is connected, so holds may outlast its room TTL.
//	file       the steps of --scenario-file, a JSON file of the form
//	           {"name": "...", "steps": [{"do": "connect"}, ...]}, run in
//	           order by every pair with peers "a" and "b": connect (both, or
//	           {"peer": "a"}), create (a), join (b), handshake, send
//	           {"from": "a", "count": N, "size": S} (the other peer receives
//	           and checks each; if it has dropped, its resume checks them),
//	           chat {"count": N, "size": S} (round trips as in chat), sleep
//	           {"duration": "100ms"}, leave {"peer": "a"} (the other must see
//	           peer_left "left"), drop {"peer": "a"} (TCP reset without a
//	           close; the other must see "dropped"), resume {"peer": "a"}
//	           (it must receive what was sent meanwhile exactly once, checked
//	           with one more message from the other), close. The file is
//	           checked before any connection (unknown steps, missing,
//	           unexpected or bad arguments, an impossible order) with errors
//	           that name the step's index. testdata/example-scenario.json is
//	           an example.
//
// By default the load is a closed loop: --concurrency pairs in flight, each
// starting the next pair when it ends. --rate N makes it an open loop: N
// pair arrivals per second, evenly spaced and kept to their schedule;
// --concurrency then caps the pairs in flight, and an arrival that finds the
// cap reached is not started but counted as a missed arrival, so that an
// overloaded relay shows up instead of silently lowering the rate. The
// summary gives the arrivals, the pairs started, the achieved start rate
// and the missed arrivals. --message-rate R paces the round trips of each
// pair (chat, churn, chat steps) to at most R per second.
//
// --client-crypto relay-only (handshake scenario only) measures the relay
// rather than the generator: each peer sends a valid public key from a pool
// of --key-pool keys generated before the run and waits for the peer's key,
// so the relay validates, stores and forwards keys exactly as for real
// clients, while the generator skips its own key generation and shared
// secret (for modp14 about 1.2 ms of CPU per peer, which on a small machine
// would otherwise be most of what is measured).
//
// Delivery: in chat and churn the summary counts the messages sent
// (confirmed by the relay's sent, or unconfirmed because the connection
// dropped first, which the client sends again after its resume), refused,
// delivered, lost (confirmed and never delivered by the end of the pair),
// duplicated, and delayed (delivered more than --delayed-after, 1 s by
// default, after their Send began). A message delivered twice, out of
// order or changed fails the pair.
//
// Drops: without --resume, a connection that drops fails the pair (its
// error is the close code). With --resume (chat and churn), a peer whose
// connection drops (a relay restarting sends 1001; a killed relay or a cut
// sends nothing) resumes with relay/client's Resume, which tries every
// --url in turn, the pair's own first, with backoff for as long as the
// relay keeps the seat, and carries on where it was; before it is in a
// room, its setup starts over on a new connection. The summary counts the
// drops by close code, resumes, attempts and failures, and the "resume"
// latency: from when the client saw its connection end to the relay's
// reply to its resume. --event-log FILE writes a JSON line per resume,
// failed resume, setup started over, failed pair, and delayed, duplicated
// or lost message, with Unix times, so that a benchmark can place them
// against its own events (bench/rolling.sh: relay restarts).
//
// With several --url values the two peers of a pair go to different relay
// instances (pair i: A to URL i mod n, B to URL i+1 mod n), which exercises
// cross-instance pairing through the relays' shared store.
//
// --source-addrs (127.0.0.2-127.0.0.9, or a comma-separated list of IPv4
// addresses and ranges) spreads the connections round-robin over local
// addresses, one HTTP transport per address, so that a run can open more
// connections than one address's ephemeral ports allow.
//
// Unless --metrics-url is none, the relays' Prometheus /metrics (by default
// one per --url: ws becomes http, wss https, path /metrics) are scraped at
// the start, every --metrics-interval, at the end, and, for idle, just
// before the connections are released while all are open. The summary
// gives per relay the CPU seconds used during the run, RSS, heap in use,
// goroutines and open fds at the start, while loaded, at their peak and at
// the end, the increase of the keyrelay_* counters and the peak of its
// gauges, and for idle the RSS and goroutines per held connection
// ((value while held - value at start) / connections open). A relay whose
// /metrics cannot be read is reported as unreachable, never as zeros, and
// does not fail the run.
//
// At the end it prints pairs per second, messages per second, latency
// percentiles (p50, p90, p99, p99.9, max, from HDR histograms) and errors
// by wire code (the relay's error code, or dial, timeout, disconnected …);
// --json writes the same summary as JSON, and --html a self-contained
// one-page report (no scripts, fonts or style sheets from elsewhere) with
// the configuration, the figures, the relay figures and a latency
// histogram per metric as inline SVG. It exits non-zero when the failed
// pairs exceed --max-error-rate of the pairs attempted, or, with --rate,
// when the missed arrivals exceed it of the arrivals. Keys and message
// contents are never printed.
//
// Every flag can also be set with an environment variable KEYRELAY_LOAD_*
// (the flag wins); --help lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/keyrelay/keyrelay/internal/buildinfo"
	"github.com/keyrelay/keyrelay/internal/loadstats"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) || errors.Is(err, errVersion) {
			return // --help, --version: done
		}
		fmt.Fprintln(os.Stderr, "keyrelay-load:", err)
		os.Exit(1)
	}
}

// errVersion is parseConfig's answer to --version: run prints the version,
// and keyrelay-load exits 0.
var errVersion = errors.New("version printed")

// run parses the configuration, runs the load, and prints the summary.
// It returns an error for bad flags, when the error rate exceeds
// --max-error-rate, or when ctx ends the run early.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	tty := isTerminal(stderr)
	cfg, err := parseConfig(args, getenv, stderr, tty)
	if errors.Is(err, errVersion) {
		fmt.Fprintln(stdout, buildinfo.Line("keyrelay-load"))
		return err
	}
	if err != nil {
		return err
	}
	var progress io.Writer
	if cfg.progress {
		progress = stderr
	}
	// Check before the run, not after it, that the reports can be written.
	for _, out := range []struct{ flag, path string }{{"--json", cfg.jsonPath}, {"--html", cfg.htmlPath}} {
		if out.path != "" && out.path != "-" {
			if err := checkWritable(out.path); err != nil {
				return fmt.Errorf("%s: %w", out.flag, err)
			}
		}
	}
	l := newLoad(cfg, nil)
	if cfg.eventLogPath != "" {
		if l.events, err = openEventLog(cfg.eventLogPath); err != nil {
			return err
		}
	}
	sum := l.run(ctx, progress, tty)
	if err := l.events.close(); err != nil {
		return err
	}

	if cfg.jsonPath != "-" {
		sum.writeText(stdout)
	}
	if cfg.jsonPath != "" {
		if err := loadstats.WriteJSON(cfg.jsonPath, stdout, sum); err != nil {
			return err
		}
	}
	if cfg.htmlPath != "" {
		if err := writeHTML(cfg.htmlPath, cfg, sum); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	if cfg.scenario == scenarioIdle {
		if sum.ErrorRate > cfg.MaxErrorRate {
			return fmt.Errorf("error rate %.4f (%d of %d connections failed or dropped) exceeds --max-error-rate %v",
				sum.ErrorRate, sum.PairsFailed, sum.PairsAttempted, cfg.MaxErrorRate)
		}
		return nil
	}
	if sum.PairsAttempted == 0 {
		return errors.New("no pair was attempted")
	}
	if sum.ErrorRate > cfg.MaxErrorRate {
		return fmt.Errorf("error rate %.4f (%d of %d pairs failed) exceeds --max-error-rate %v",
			sum.ErrorRate, sum.PairsFailed, sum.PairsAttempted, cfg.MaxErrorRate)
	}
	if o := sum.OpenLoop; o != nil && o.Arrivals > 0 {
		if missed := float64(o.Missed) / float64(o.Arrivals); missed > cfg.MaxErrorRate {
			return fmt.Errorf("missed arrivals %.4f (%d of %d found --concurrency %d pairs in flight) exceed --max-error-rate %v",
				missed, o.Missed, o.Arrivals, cfg.Concurrency, cfg.MaxErrorRate)
		}
	}
	return nil
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// checkWritable reports whether a file can be written at path: its
// directory exists and takes a new file (made and removed at once).
func checkWritable(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".keyrelay-load-check-*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	f.Close()
	return os.Remove(f.Name())
}
