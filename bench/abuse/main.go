// Command abuse drives issue 13's findings 1, 2, 3 and 6 against a running
// keyrelay, at full scale, for bench/abuse.sh. It is not part of the
// keyrelay binaries. Every subcommand runs for a bounded time, dials only
// the relay it is given from the loopback source addresses it is given, and
// prints one JSON object of counters on stdout:
//
//	abuse mailbox  -url WS -sources A-B [-workers N] [-duration D]
//	    finding 1: per source, N workers each create a room, join both
//	    seats, send fresh x25519 keys, send the largest msg frames that fit
//	    the frame limit from both peers at the byte budget, never ack, drop
//	    both connections, and start over.
//	abuse rooms    -url WS -sources A-B [-rate R] [-duration D]
//	    finding 2: per source, one connection creates a room and leaves it,
//	    again and again (R creates a second), leaving empty rooms behind.
//	abuse create   -url WS -source A
//	    one honest create from A: the relay's answer.
//	abuse lockout  -url WS [-join-rate R] [-resume-every D] [-duration D]
//	    finding 3: an honest pair in a room, a stranger sending join frames
//	    for it, one member dropping and resuming with its token.
//	abuse flood    -addr HOST:PORT -mode ping|big|nested [-conns N] [-duration D]
//	    finding 6: N hand-written WebSocket connections write pings, 64 KiB
//	    frames or deeply nested JSON as fast as TCP takes them.
//
// Counters are named "what" or "what:code" (an error frame's code, "close:"
// and a close code, "timeout" or "conn" for a connection that failed).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "abuse:", err)
		os.Exit(1)
	}
}

// errUsage is returned for a missing or unknown subcommand.
var errUsage = errors.New("usage: abuse mailbox|rooms|create|lockout|flood [flags] (abuse CMD -h lists the flags)")

// run runs the subcommand args[0] and writes its report to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	var attack func(context.Context, []string, io.Writer) (any, error)
	switch args[0] {
	case "mailbox":
		attack = runMailbox
	case "rooms":
		attack = runRooms
	case "create":
		attack = runCreate
	case "lockout":
		attack = runLockout
	case "flood":
		attack = runFlood
	default:
		return errUsage
	}
	start, cpu0 := time.Now(), cpuTime()
	report, err := attack(ctx, args[1:], stderr)
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	// The attacker's own CPU, beside the report's fields: on a small
	// machine it competes with the relay and the honest clients.
	b, err := json.Marshal(report)
	if err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	if cpu1 := cpuTime(); cpu0 >= 0 && cpu1 >= 0 {
		pct := 100 * (cpu1 - cpu0).Seconds() / time.Since(start).Seconds()
		fields["attacker_cpu_percent"], _ = json.Marshal(math.Round(pct))
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(fields)
}

// newFlagSet returns a flag set for subcommand name that writes its usage
// to stderr.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("abuse "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// counts is a set of named counters, safe for concurrent use.
type counts struct {
	mu sync.Mutex
	m  map[string]int64 // guarded by mu
}

func newCounts() *counts { return &counts{m: map[string]int64{}} }

// add adds n to counter name.
func (c *counts) add(name string, n int64) {
	c.mu.Lock()
	c.m[name] += n
	c.mu.Unlock()
}

// get returns counter name.
func (c *counts) get(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[name]
}

// MarshalJSON writes the counters as one object (keys sorted).
func (c *counts) MarshalJSON() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return json.Marshal(c.m)
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
