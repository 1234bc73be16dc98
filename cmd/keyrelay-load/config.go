package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/keyrelay/keyrelay/dh"
)

// Scenario names.
const (
	scenarioHandshake = "handshake"
	scenarioChat      = "chat"
	scenarioIdle      = "idle"
	scenarioChurn     = "churn"
)

// config is the program's configuration, from flags and the environment.
type config struct {
	urls         []string
	scenario     string
	group        *dh.Group
	pairs        int
	connections  int // idle
	concurrency  int
	duration     time.Duration // 0: no cap
	messages     int
	size         int
	timeout      time.Duration // per pair
	jsonPath     string        // "" none, "-" stdout
	maxErrorRate float64
	progress     bool
}

// envPrefix starts the environment variable of every flag.
const envPrefix = "KEYRELAY_LOAD_"

// envName returns the environment variable of flag name: "max-error-rate"
// gives KEYRELAY_LOAD_MAX_ERROR_RATE.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// parseConfig reads the flags, each defaulting to its KEYRELAY_LOAD_*
// variable. stderrTTY says whether progress is shown by default.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer, stderrTTY bool) (config, error) {
	var (
		c        config
		urls     string
		group    string
		progress = stderrTTY
	)
	fs := flag.NewFlagSet("keyrelay-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: keyrelay-load [flags]\n\n"+
			"Runs pairs of keyrelay clients against one or more relays (create/join,\n"+
			"validated Diffie-Hellman handshake, encrypted chat) and reports rates,\n"+
			"latency percentiles and errors by code. Every flag also reads the\n"+
			"environment variable shown in its description; the flag wins.\n\n"+
			"Scenarios (--scenario):\n"+
			"  handshake  per pair: connect both peers, create and join, key exchange, close\n"+
			"  chat       handshake, then --messages messages of --size bytes each way\n"+
			"  churn      chat, then even pairs leave (Leave; the peer must see \"left\"),\n"+
			"             odd pairs drop A's connection without a close, B sends while A\n"+
			"             is away, A resumes and must get that message exactly once;\n"+
			"             the summary counts resumes\n"+
			"  idle       hold --connections connections, each in a room of its own, for\n"+
			"             --duration (required), answering the relay's keepalive pings;\n"+
			"             reports connections opened, failed, dropped (by close code)\n"+
			"             and still open at the end\n\n"+
			"A relay's default limits (20 frames/s per connection, 32 connections per\n"+
			"IP, 10000 rooms) are meant for the public; start the relay under test with\n"+
			"  keyrelay --max-conns-per-ip -1 --frames-per-second 100000 --max-rooms -1\n\nFlags:\n")
		fs.PrintDefaults()
	}
	doc := func(name, text string) string { return text + " (env " + envName(name) + ")" }
	fs.StringVar(&urls, "url", "ws://localhost:8080/v1/ws", doc("url", "relay WebSocket URL(s), comma-separated; with several, the two peers of a pair go to different URLs"))
	fs.StringVar(&c.scenario, "scenario", scenarioHandshake, doc("scenario", "what each pair does: handshake (create, join, key exchange, close), chat (handshake, then --messages round trips), churn (chat, then pair i leaves if i is even, else drops its connection without close and resumes), or idle (hold --connections connections, each in its own room, for --duration)"))
	fs.StringVar(&group, "group", "x25519", doc("group", "Diffie-Hellman group of the rooms: x25519, p256, modp14 … modp18, modp5"))
	fs.IntVar(&c.pairs, "pairs", 100, doc("pairs", "total pairs to run; 0 runs until --duration"))
	fs.IntVar(&c.connections, "connections", 100, doc("connections", "idle: connections to hold open, each in a room of its own"))
	fs.IntVar(&c.concurrency, "concurrency", 10, doc("concurrency", "pairs in flight at once (closed loop); idle: connections being opened at once"))
	fs.DurationVar(&c.duration, "duration", 0, doc("duration", "stop starting pairs after this long (e.g. 30s); 0 means no cap; idle: how long to hold the connections (required)"))
	fs.IntVar(&c.messages, "messages", 10, doc("messages", "chat, churn: messages each way per pair"))
	fs.IntVar(&c.size, "size", 256, doc("size", "chat, churn: plaintext bytes per message"))
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, doc("timeout", "bound on one pair's whole run; a pair that exceeds it fails with \"timeout\""))
	fs.StringVar(&c.jsonPath, "json", "", doc("json", "write the summary as JSON to this file, or - for stdout (which then gets no text summary)"))
	fs.Float64Var(&c.maxErrorRate, "max-error-rate", 0.01, doc("max-error-rate", "exit non-zero when failed pairs / attempted pairs exceeds this (0 to 1)"))
	fs.BoolVar(&progress, "progress", progress, doc("progress", "show a live progress line on stderr at most once a second (default: when stderr is a terminal)"))

	var envErrs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
		}
	})
	if len(envErrs) > 0 {
		return c, errors.Join(envErrs...)
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.progress = progress

	for u := range strings.SplitSeq(urls, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil {
			return c, fmt.Errorf("--url: %w", err)
		}
		if (pu.Scheme != "ws" && pu.Scheme != "wss") || pu.Host == "" {
			return c, fmt.Errorf("--url %q: want ws://host/path or wss://host/path", u)
		}
		c.urls = append(c.urls, u)
	}
	if len(c.urls) == 0 {
		return c, errors.New("--url: no URL given")
	}
	switch c.scenario {
	case scenarioHandshake, scenarioChat, scenarioChurn, scenarioIdle:
	default:
		return c, fmt.Errorf("--scenario %q: want handshake, chat, churn or idle", c.scenario)
	}
	g, err := dh.LookupGroup(group)
	if err != nil {
		return c, fmt.Errorf("--group: %w", err)
	}
	c.group = g
	switch {
	case c.pairs < 0:
		return c, fmt.Errorf("--pairs %d: must not be negative", c.pairs)
	case c.scenario == scenarioIdle && c.duration == 0:
		return c, errors.New("--scenario idle needs a --duration (how long to hold the connections)")
	case c.scenario == scenarioIdle && c.connections < 1:
		return c, fmt.Errorf("--connections %d: must be at least 1", c.connections)
	case c.pairs == 0 && c.duration == 0:
		return c, errors.New("--pairs 0 needs a --duration")
	case c.concurrency < 1:
		return c, fmt.Errorf("--concurrency %d: must be at least 1", c.concurrency)
	case c.duration < 0:
		return c, fmt.Errorf("--duration %v: must not be negative", c.duration)
	case c.timeout <= 0:
		return c, fmt.Errorf("--timeout %v: must be positive", c.timeout)
	case c.messages < 1 && (c.scenario == scenarioChat || c.scenario == scenarioChurn):
		return c, fmt.Errorf("--messages %d: must be at least 1", c.messages)
	case c.size < 1:
		return c, fmt.Errorf("--size %d: must be at least 1", c.size)
	case c.maxErrorRate < 0 || c.maxErrorRate > 1:
		return c, fmt.Errorf("--max-error-rate %v: want a fraction from 0 to 1", c.maxErrorRate)
	}
	if c.scenario == scenarioIdle {
		c.concurrency = min(c.concurrency, c.connections)
	} else if c.pairs > 0 && c.concurrency > c.pairs {
		c.concurrency = c.pairs
	}
	return c, nil
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

// run parses the configuration, runs the load, and prints the summary.
// It returns an error for bad flags, when the error rate exceeds
// --max-error-rate, or when ctx ends the run early.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	tty := isTerminal(stderr)
	cfg, err := parseConfig(args, getenv, stderr, tty)
	if err != nil {
		return err
	}
	var progress io.Writer
	if cfg.progress {
		progress = stderr
	}
	sum := newLoad(cfg, nil).run(ctx, progress, tty)

	if cfg.jsonPath != "-" {
		sum.writeText(stdout)
	}
	if cfg.jsonPath != "" {
		if err := writeJSON(cfg.jsonPath, stdout, sum); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	if cfg.scenario == scenarioIdle {
		if sum.ErrorRate > cfg.maxErrorRate {
			return fmt.Errorf("error rate %.4f (%d of %d connections failed or dropped) exceeds --max-error-rate %v",
				sum.ErrorRate, sum.PairsFailed, sum.PairsAttempted, cfg.maxErrorRate)
		}
		return nil
	}
	if sum.PairsAttempted == 0 {
		return errors.New("no pair was attempted")
	}
	if sum.ErrorRate > cfg.maxErrorRate {
		return fmt.Errorf("error rate %.4f (%d of %d pairs failed) exceeds --max-error-rate %v",
			sum.ErrorRate, sum.PairsFailed, sum.PairsAttempted, cfg.maxErrorRate)
	}
	return nil
}
