// Package faults holds keyrelay's fault tests: automated tests against real
// processes. Each test builds the keyrelay binary (once, in TestMain), starts
// a real redis-server (session/redistest) and keyrelay processes on free
// loopback ports, drives them with the Go client (relay/client) or raw
// WebSocket connections, and then breaks something for real: it kills Redis
// or a relay with SIGKILL, kills the master of a Redis Cluster or of a
// Sentinel's set so that a replica takes its place, stops a relay with
// SIGTERM, cuts or freezes a client's TCP connection, or stops reading
// from one. It then checks what the clients see against docs/protocol.md
// and counts every message sent, confirmed (sent), refused, delivered and
// lost.
//
// The package has no non-test code. Its tests need redis-server (and
// redis-cli for a Cluster) and skip without it, unless
// KEYRELAY_REQUIRE_REDIS=1 (as in CI), which makes them fail instead.
package faults
