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
//	           per message), then close.
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
//
// With several --url values the two peers of a pair go to different relay
// instances (pair i: A to URL i mod n, B to URL i+1 mod n), which exercises
// cross-instance pairing through the relays' shared store.
//
// At the end it prints pairs per second, messages per second, latency
// percentiles (p50, p90, p99, p99.9, max, from HDR histograms) and errors
// by wire code (the relay's error code, or dial, timeout, disconnected …);
// --json writes the same summary as JSON. It exits non-zero when the failed
// pairs exceed --max-error-rate of the pairs attempted. Keys and message
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
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "keyrelay-load:", err)
		os.Exit(1)
	}
}
