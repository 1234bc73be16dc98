package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/keyrelay/keyrelay/internal/loadstats"
)

const usage = `Usage:
  baseline serve [--addr 127.0.0.1:8090]
  baseline load  [--url http://127.0.0.1:8090] --scenario upgrade|forward|idle [flags]

serve runs the bare coder/websocket server (/upgrade, /forward?pair=ID,
/stats); load measures it. "baseline load --help" lists load's flags.
`

// run runs the subcommand in args[0].
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "load":
		return runLoad(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// runServe serves the baseline on --addr until ctx ends.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("baseline serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	// Listen first, so that a bad address fails at once.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           newServer().handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	fmt.Fprintf(stdout, "baseline: listening on http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// The WebSockets are hijacked: Close does not wait for them, and the
	// process ends with them.
	srv.Close()
	return nil
}

// Scenario names.
const (
	scenarioUpgrade = "upgrade"
	scenarioForward = "forward"
	scenarioIdle    = "idle"
)

// config is the load's configuration, from flags.
type config struct {
	baseURL  *url.URL // the server's, http or https
	scenario string
	loadstats.Shape
	messages int
	size     int
	jsonPath string // "" none, "-" stdout
}

func parseConfig(args []string, stderr io.Writer) (config, error) {
	var (
		c       config
		rawURL  string
		scenDoc = "upgrade (per pair: two upgrades to /upgrade, both closed), forward (per pair: two connections to /forward, then --messages round trips), or idle (hold --connections connections to /upgrade for --duration and report the server's memory)"
	)
	fs := flag.NewFlagSet("baseline load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&rawURL, "url", "http://127.0.0.1:8090", "the baseline server's URL (http, https, ws or wss)")
	fs.StringVar(&c.scenario, "scenario", scenarioUpgrade, scenDoc)
	fs.IntVar(&c.Pairs, "pairs", 100, "total pairs to run; 0 runs until --duration")
	fs.IntVar(&c.Connections, "connections", 100, "idle: connections to hold open")
	fs.IntVar(&c.Concurrency, "concurrency", 10, "pairs in flight at once (closed loop); idle: connections being opened at once")
	fs.DurationVar(&c.Duration, "duration", 0, "stop starting pairs after this long; 0 means no cap; idle: how long to hold the connections (required)")
	fs.IntVar(&c.messages, "messages", 10, "forward: round trips per pair (messages each way)")
	fs.IntVar(&c.size, "size", 256, "forward: bytes per message")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "bound on one pair's whole run")
	fs.StringVar(&c.jsonPath, "json", "", "write the summary as JSON to this file, or - for stdout (which then gets no text summary)")
	fs.Float64Var(&c.MaxErrorRate, "max-error-rate", 0.01, "exit non-zero when failed pairs / attempted pairs exceeds this (0 to 1)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return c, fmt.Errorf("--url: %w", err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	case "http", "https":
	default:
		return c, fmt.Errorf("--url %q: want http://host:port", rawURL)
	}
	if u.Host == "" {
		return c, fmt.Errorf("--url %q: want http://host:port", rawURL)
	}
	c.baseURL = u
	switch c.scenario {
	case scenarioUpgrade, scenarioForward, scenarioIdle:
	default:
		return c, fmt.Errorf("--scenario %q: want upgrade, forward or idle", c.scenario)
	}
	if err := c.Check(c.scenario == scenarioIdle); err != nil {
		return c, err
	}
	switch {
	case c.messages < 1:
		return c, fmt.Errorf("--messages %d: must be at least 1", c.messages)
	case c.size < 1 || c.size > readLimit:
		return c, fmt.Errorf("--size %d: want 1 to %d", c.size, readLimit)
	}
	return c, nil
}

// endpoint returns the URL of path on the server, with query q if not empty.
func (c config) endpoint(path, q string) string {
	u := *c.baseURL
	u.Path = path
	u.RawQuery = q
	return u.String()
}

// runLoad runs the load and prints its summary. It returns an error for
// bad flags, when the error rate exceeds --max-error-rate, or when ctx
// ends the run early.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	sum := newLoad(cfg).run(ctx, stderr)
	if cfg.jsonPath != "-" {
		sum.writeText(stdout)
	}
	if cfg.jsonPath != "" {
		if err := loadstats.WriteJSON(cfg.jsonPath, stdout, sum); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	if sum.PairsAttempted == 0 {
		return errors.New("nothing was attempted")
	}
	if sum.ErrorRate > cfg.MaxErrorRate {
		return fmt.Errorf("error rate %.4f (%d of %d failed) exceeds --max-error-rate %v",
			sum.ErrorRate, sum.PairsFailed, sum.PairsAttempted, cfg.MaxErrorRate)
	}
	return nil
}
