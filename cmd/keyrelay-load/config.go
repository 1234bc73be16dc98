package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/internal/loadstats"
	"github.com/keyrelay/keyrelay/relay/client"
)

// Scenario names.
const (
	scenarioHandshake = "handshake"
	scenarioChat      = "chat"
	scenarioIdle      = "idle"
	scenarioChurn     = "churn"
	scenarioFile      = "file" // --scenario-file
)

// config is the program's configuration, from flags and the environment.
type config struct {
	urls     []string
	scenario string
	group    *dh.Group
	loadstats.Shape
	messages int
	size     int
	jsonPath string // "" none, "-" stdout
	progress bool

	rate            float64       // pairs started per second; 0: closed loop
	messageRate     float64       // round trips per second per pair; 0: unpaced
	sourceAddrs     []netip.Addr  // local addresses to dial from; nil: the system's choice
	metricsURLs     []string      // relays' /metrics; nil: no scraping
	metricsInterval time.Duration // between scrapes during the run; 0: start and end only
	htmlPath        string        // "" none
	scenarioFile    string        // "" none
	script          *script       // from scenarioFile
	relayOnly       bool          // --client-crypto relay-only
	keyPool         int           // relay-only: distinct key pairs generated before the run
	resume          bool          // chat, churn: ride out unplanned drops (see peer)
	delayedAfter    time.Duration // chat, churn: a message delivered later than this after its Send is delayed
	eventLogPath    string        // "" none
}

// Client crypto modes.
const (
	cryptoFull      = "full"
	cryptoRelayOnly = "relay-only"
)

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
		c           config
		urls        string
		group       string
		sourceAddrs string
		metricsURLs string
		progress    = stderrTTY
	)
	fs := flag.NewFlagSet("keyrelay-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: keyrelay-load [flags]\n\n"+
			"Runs pairs of keyrelay clients against one or more relays (create/join,\n"+
			"validated Diffie-Hellman handshake, encrypted chat) and reports rates,\n"+
			"latency percentiles and errors by code. Every flag also reads the\n"+
			"environment variable shown in its description; the flag wins.\n\n"+
			"Examples:\n"+
			"  keyrelay-load --url http://localhost:8080/ --pairs 100\n"+
			"      100 handshakes, 10 at a time, against a relay on this machine\n"+
			"  keyrelay-load --url ws://r1:8080/v1/ws,ws://r2:8080/v1/ws --scenario chat --rate 20 --duration 1m --resume\n"+
			"      20 chat pairs a second for a minute across two instances, riding out restarts\n"+
			"  keyrelay-load --scenario idle --connections 10000 --duration 30s --source-addrs 127.0.0.2-127.0.0.9\n"+
			"      hold 10 000 connections for 30 s\n"+
			"The flags most runs need: --url, --scenario, --pairs or --duration, --concurrency\n"+
			"or --rate, --messages and --size, --json or --html for the report.\n\n"+
			"A relay's default limits (20 frames/s per connection, 32 connections per\n"+
			"IP, 60 joins a minute per IP, no key in two rooms, 10000 rooms) are meant\n"+
			"for the public: a load from one address meets them at once (the summary\n"+
			"then says so). Start the relay under test with\n"+
			"  keyrelay --max-conns-per-ip -1 --joins-per-ip -1 --key-reuse-window 0 --frames-per-second 100000 --bytes-per-second 1073741824 --max-rooms -1\n"+
			"or spread the load with --source-addrs.\n\n"+
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
			"             and still open at the end\n"+
			"  file       the steps of --scenario-file (see below)\n\n"+
			"Load shape: by default the run is a closed loop, --concurrency pairs in\n"+
			"flight, each starting the next pair when it ends. --rate N makes it an open\n"+
			"loop: N pair arrivals per second, evenly spaced, whatever the relay's\n"+
			"speed; --concurrency then caps the pairs in flight, and an arrival that\n"+
			"finds the cap reached is not started but counted as a missed arrival (an\n"+
			"overloaded relay shows up there rather than as a lower rate). --pairs then\n"+
			"counts arrivals. --message-rate R paces each pair's round trips (chat,\n"+
			"churn, chat steps) to at most R per second.\n\n"+
			"Past one address's ~28000 ephemeral ports: --source-addrs spreads the\n"+
			"connections round-robin over local IPv4 addresses (on Linux every address\n"+
			"of 127.0.0.0/8 works against a relay on loopback; elsewhere, addresses of\n"+
			"the machine's interfaces).\n\n"+
			"Delivery (chat, churn): every message carries its index (so --size is at\n"+
			"least 8) and the receiving peer checks that it is the one due, delivered\n"+
			"once. The summary counts messages sent (confirmed with the relay's sent,\n"+
			"or unconfirmed: the connection dropped first and the client sends it again\n"+
			"after its resume), refused, delivered, lost (confirmed, never delivered by\n"+
			"the end of the pair), duplicated and delayed (delivered more than\n"+
			"--delayed-after after its Send began). A message delivered twice, out of\n"+
			"order or changed fails the pair.\n\n"+
			"Drops (chat, churn): without --resume a dropped connection fails the pair\n"+
			"(its close code is the error). With --resume the peer resumes (Resume tries\n"+
			"every --url in turn, the pair's own first, with backoff for as long as the\n"+
			"relay keeps the seat) and carries on; before it is in a room (dial, create,\n"+
			"join) it starts over on a new connection. The summary counts the drops by\n"+
			"close code, the resumes, their attempts and failures, and the latency\n"+
			"\"resume\": from when the client saw its connection end to the relay's reply\n"+
			"to its resume. --event-log FILE writes one JSON line per resume, failed\n"+
			"resume, setup started over, failed pair, and delayed, duplicated or lost\n"+
			"message, with Unix times (\"t\"; for resumes also \"drop_t\"), to match\n"+
			"against outside events such as a relay restart.\n\n"+
			"Relay figures: unless --metrics-url none, the relays' Prometheus /metrics\n"+
			"(by default derived from each --url: ws becomes http, wss https, path\n"+
			"/metrics) are scraped at the start, every --metrics-interval, and at the\n"+
			"end (idle: also just before the connections are released, while all are\n"+
			"open). The summary gives per relay: CPU seconds used, RSS, goroutines,\n"+
			"open fds and heap at the start and while loaded, keyrelay_* counters'\n"+
			"increase, and for idle the RSS and goroutines per held connection. A relay\n"+
			"whose /metrics cannot be read is reported as unreachable; the run goes on.\n\n"+
			"Scenario file (--scenario-file, JSON): {\"name\": \"...\", \"steps\": [...]},\n"+
			"steps run in order by every pair, with peers \"a\" and \"b\":\n"+
			"  {\"do\": \"connect\"}                     dial both peers; {\"peer\": \"a\"} only one\n"+
			"  {\"do\": \"create\"}                      a creates a room (--group)\n"+
			"  {\"do\": \"join\"}                        b joins a's room\n"+
			"  {\"do\": \"handshake\"}                   key exchange on both peers\n"+
			"  {\"do\": \"send\", \"from\": \"a\", \"count\": N, \"size\": S}\n"+
			"                                        N messages of S bytes; the other peer\n"+
			"                                        receives and checks each (if it has\n"+
			"                                        dropped, they wait for its resume)\n"+
			"  {\"do\": \"chat\", \"count\": N, \"size\": S}\n"+
			"                                        N round trips, as in chat (each message\n"+
			"                                        at least 8 bytes: it carries its index)\n"+
			"  {\"do\": \"sleep\", \"duration\": \"100ms\"}  wait\n"+
			"  {\"do\": \"leave\", \"peer\": \"a\"}          leave; the other must see peer_left \"left\"\n"+
			"  {\"do\": \"drop\", \"peer\": \"a\"}           reset the TCP connection without a close;\n"+
			"                                        the other must see peer_left \"dropped\"\n"+
			"  {\"do\": \"resume\", \"peer\": \"a\"}         resume; it must receive what was sent\n"+
			"                                        while it was away, exactly once (checked\n"+
			"                                        with one more message from the other)\n"+
			"  {\"do\": \"close\"}                       close both connections (also implied at the end)\n"+
			"The arguments shown are required (connect's peer is optional) and no\n"+
			"others are accepted; the file is checked (step kinds, arguments, and an\n"+
			"order that can work) before any connection, and an error names the step\n"+
			"by its index (from 0). Latencies: connect, join (create and join),\n"+
			"handshake (from the step's start to both completions), round_trip (chat\n"+
			"steps); send steps add no latency sample.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	doc := func(name, text string) string { return text + " (env " + envName(name) + ")" }
	fs.StringVar(&urls, "url", "ws://localhost:8080/v1/ws", doc("url", "relay WebSocket URL(s), comma-separated; with several, the two peers of a pair go to different URLs"))
	fs.StringVar(&c.scenario, "scenario", scenarioHandshake, doc("scenario", "what each pair does: handshake (create, join, key exchange, close), chat (handshake, then --messages round trips), churn (chat, then pair i leaves if i is even, else drops its connection without close and resumes), or idle (hold --connections connections, each in its own room, for --duration)"))
	fs.StringVar(&group, "group", "x25519", doc("group", "Diffie-Hellman group of the rooms: x25519, p256, modp14 … modp18, modp5"))
	fs.IntVar(&c.Pairs, "pairs", 100, doc("pairs", "total pairs to run (with --rate: arrivals, started or missed); 0 runs until --duration"))
	fs.IntVar(&c.Connections, "connections", 100, doc("connections", "idle: connections to hold open, each in a room of its own"))
	fs.IntVar(&c.Concurrency, "concurrency", 10, doc("concurrency", "pairs in flight at once (closed loop); with --rate, the cap on pairs in flight; idle: connections being opened at once"))
	fs.DurationVar(&c.Duration, "duration", 0, doc("duration", "stop starting pairs after this long (e.g. 30s); 0 means no cap; idle: how long to hold the connections (required)"))
	fs.IntVar(&c.messages, "messages", 10, doc("messages", "chat, churn: messages each way per pair"))
	fs.IntVar(&c.size, "size", 256, doc("size", "chat, churn: plaintext bytes per message"))
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, doc("timeout", "bound on one pair's whole run; a pair that exceeds it fails with \"timeout\""))
	fs.StringVar(&c.jsonPath, "json", "", doc("json", "write the summary as JSON to this file, or - for stdout (which then gets no text summary)"))
	fs.Float64Var(&c.MaxErrorRate, "max-error-rate", 0.01, doc("max-error-rate", "exit non-zero when failed pairs / attempted pairs exceeds this (0 to 1), or, with --rate, missed arrivals / arrivals"))
	fs.BoolVar(&progress, "progress", progress, doc("progress", "show a live progress line on stderr at most once a second (default: when stderr is a terminal)"))
	fs.Float64Var(&c.rate, "rate", 0, doc("rate", "open loop: pair arrivals per second, evenly spaced; --concurrency caps the pairs in flight and arrivals beyond it are counted as missed; 0 runs a closed loop (not for idle)"))
	fs.Float64Var(&c.messageRate, "message-rate", 0, doc("message-rate", "chat, churn, chat steps: at most this many round trips per second per pair; 0 means as fast as possible"))
	fs.StringVar(&sourceAddrs, "source-addrs", "", doc("source-addrs", "local IPv4 addresses to dial from, round-robin: a range (127.0.0.2-127.0.0.9) or a comma-separated list (ranges allowed); default: the system's choice"))
	fs.StringVar(&metricsURLs, "metrics-url", "", doc("metrics-url", "relays' Prometheus endpoints to scrape, comma-separated, one per relay; default: from each --url (ws→http, wss→https, path /metrics); none turns scraping off"))
	fs.DurationVar(&c.metricsInterval, "metrics-interval", 500*time.Millisecond, doc("metrics-interval", "time between /metrics scrapes during the run, for peaks; 0 scrapes only at the start and the end (idle: and while the connections are held)"))
	fs.StringVar(&c.htmlPath, "html", "", doc("html", "write a self-contained HTML report (configuration, figures, percentiles, errors, relay figures, latency histograms) to this file"))
	fs.StringVar(&c.scenarioFile, "scenario-file", "", doc("scenario-file", "run the steps of this JSON scenario file for every pair instead of --scenario (format above)"))

	clientCrypto := cryptoFull
	fs.StringVar(&clientCrypto, "client-crypto", cryptoFull, doc("client-crypto", "handshake: full (each client generates a key pair, validates the peer's key, derives the shared key and safety number, as users do) or relay-only (each client sends a valid public key from a pool generated before the run and waits for the peer's key: the relay does all it does for a handshake while the load generator skips its own Diffie-Hellman, which on a small machine would otherwise measure the generator; modp14 costs ~1.2 ms of client CPU per peer)"))
	fs.BoolVar(&c.resume, "resume", false, doc("resume", "chat, churn: when a connection drops (a relay restarting, close 1001, a cut), resume it across the --url values and carry on, counting drops and resume times; without it a drop fails the pair"))
	fs.DurationVar(&c.delayedAfter, "delayed-after", time.Second, doc("delayed-after", "chat, churn: a message delivered more than this after its Send began counts as delayed"))
	fs.StringVar(&c.eventLogPath, "event-log", "", doc("event-log", "write one JSON line per resume, failed resume, setup started over, failed pair, and delayed, duplicated or lost message (with Unix times) to this file"))
	fs.IntVar(&c.keyPool, "key-pool", 1024, doc("key-pool", "relay-only: distinct key pairs in the pool, reused round-robin across pairs (a relay refusing reused keys needs more than the pairs run, or its reuse check off)"))

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
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *showVersion {
		return c, errVersion
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
		// The page's URL, http(s):// or ws(s)://, as keyrelay-chat takes
		// them: an empty path or / means /v1/ws.
		ru, err := client.RelayURL(u)
		if err != nil {
			return c, fmt.Errorf("--url %q: %w", u, err)
		}
		c.urls = append(c.urls, ru)
	}
	if len(c.urls) == 0 {
		return c, errors.New("--url: no URL given")
	}
	switch c.scenario {
	case scenarioHandshake, scenarioChat, scenarioChurn, scenarioIdle:
	default:
		return c, fmt.Errorf("--scenario %q: want handshake, chat, churn or idle", c.scenario)
	}
	if c.scenarioFile != "" {
		s, err := loadScript(c.scenarioFile)
		if err != nil {
			return c, fmt.Errorf("--scenario-file: %w", err)
		}
		c.scenario, c.script = scenarioFile, s
	}
	g, err := dh.LookupGroup(group)
	if err != nil {
		return c, fmt.Errorf("--group: %w", err)
	}
	c.group = g
	if err := c.Check(c.scenario == scenarioIdle); err != nil {
		return c, err
	}
	switch {
	case c.messages < 1 && (c.scenario == scenarioChat || c.scenario == scenarioChurn):
		return c, fmt.Errorf("--messages %d: must be at least 1", c.messages)
	case c.size < 1:
		return c, fmt.Errorf("--size %d: must be at least 1", c.size)
	case c.size < indexBytes && (c.scenario == scenarioChat || c.scenario == scenarioChurn):
		return c, fmt.Errorf("--size %d: chat and churn messages carry an index of %d bytes: must be at least %d", c.size, indexBytes, indexBytes)
	case c.resume && c.scenario != scenarioChat && c.scenario != scenarioChurn:
		return c, errors.New("--resume applies to --scenario chat and churn only")
	case c.delayedAfter <= 0:
		return c, fmt.Errorf("--delayed-after %v: must be positive", c.delayedAfter)
	case c.rate < 0 || math.IsNaN(c.rate) || math.IsInf(c.rate, 0):
		return c, fmt.Errorf("--rate %v: want a positive number of pairs per second, or 0", c.rate)
	case c.rate > 0 && c.scenario == scenarioIdle:
		return c, errors.New("--rate does not apply to --scenario idle (use --concurrency to pace the opening)")
	case c.messageRate < 0 || math.IsNaN(c.messageRate) || math.IsInf(c.messageRate, 0):
		return c, fmt.Errorf("--message-rate %v: want a positive number of round trips per second, or 0", c.messageRate)
	case clientCrypto != cryptoFull && clientCrypto != cryptoRelayOnly:
		return c, fmt.Errorf("--client-crypto %q: want full or relay-only", clientCrypto)
	case clientCrypto == cryptoRelayOnly && (c.scenario != scenarioHandshake || c.scenarioFile != ""):
		return c, errors.New("--client-crypto relay-only applies to --scenario handshake only (the other scenarios need the shared key)")
	case c.keyPool < 2:
		return c, fmt.Errorf("--key-pool %d: must be at least 2", c.keyPool)
	case c.metricsInterval < 0:
		return c, fmt.Errorf("--metrics-interval %v: must not be negative", c.metricsInterval)
	}
	c.relayOnly = clientCrypto == cryptoRelayOnly
	if c.sourceAddrs, err = parseSourceAddrs(sourceAddrs); err != nil {
		return c, fmt.Errorf("--source-addrs: %w", err)
	}
	if c.metricsURLs, err = parseMetricsURLs(metricsURLs, c.urls); err != nil {
		return c, fmt.Errorf("--metrics-url: %w", err)
	}
	return c, nil
}
