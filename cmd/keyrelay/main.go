// Command keyrelay is the keyrelay server: the WebSocket relay (/v1/ws), the
// tutorial's HTTP key API (/generate-keys, /generate-shared-key), Prometheus
// metrics (/metrics) and health endpoints (/healthz, /readyz). By default it
// keeps its state in memory and needs no other service; with --redis-url,
// many instances share their state through Redis and serve one room.
//
// Usage:
//
//	keyrelay [flags]
//
// Every flag can also be set with an environment variable (the flag wins):
//
//	--addr           KEYRELAY_ADDR           listen address (default ":8080")
//	--cors-origins   KEYRELAY_CORS_ORIGINS   comma-separated origins allowed by CORS on the key API (default "*": simple requests from any origin; preflights only for origins listed by name)
//	--key-api        KEYRELAY_KEY_API        serve the tutorial's key API (default true)
//	--key-api-addr   KEYRELAY_KEY_API_ADDR   serve the key API on this address instead of --addr (default: on --addr)
//	--key-api-get    KEYRELAY_KEY_API_GET    accept GET /generate-shared-key with keys in the URL (default true)
//	--key-api-rate   KEYRELAY_KEY_API_RATE   CPU time per second one client IP may spend on key operations (default 250ms; 0 off)
//	--key-api-burst  KEYRELAY_KEY_API_BURST  CPU time one client IP may spend at once (default 3s)
//	--key-api-slots  KEYRELAY_KEY_API_SLOTS  key operations computing at once (default 4)
//	--key-api-work   KEYRELAY_KEY_API_WORK   estimated CPU time of the key operations computing at once (default 1.6s)
//	--key-api-wait   KEYRELAY_KEY_API_WAIT   longest wait for a slot before 503 (default 2s)
//	--key-api-queue  KEYRELAY_KEY_API_QUEUE  requests waiting for a slot; more get 503 at once (default 32)
//	--metrics-addr   KEYRELAY_METRICS_ADDR   serve /metrics on this address instead of --addr; "off" for nowhere (default: on --addr)
//	--hsts-max-age   KEYRELAY_HSTS_MAX_AGE   Strict-Transport-Security max-age under --tls-cert (default 8760h, one year; 0 no header)
//	--log-level      KEYRELAY_LOG_LEVEL      debug, info, warn or error (default "info")
//	--log-format     KEYRELAY_LOG_FORMAT     text or json (default "text")
//	--redis-url      KEYRELAY_REDIS_URL      Redis for state shared by many instances (default: in memory)
//	--redis-allow-eviction KEYRELAY_REDIS_ALLOW_EVICTION run on a Redis whose maxmemory-policy evicts, with a warning (default false: refuse)
//	--allowed-origins KEYRELAY_ALLOWED_ORIGINS comma-separated origins allowed on /v1/ws, * for any (default: same origin)
//	--max-frame-bytes KEYRELAY_MAX_FRAME_BYTES largest frame a client may send (default 65536)
//	--frames-per-second KEYRELAY_FRAMES_PER_SECOND frames and pings per second per connection (default 20, burst twice that)
//	--bytes-per-second KEYRELAY_BYTES_PER_SECOND message bytes per second per connection (default 262144, burst twice that)
//	--max-conns-per-ip KEYRELAY_MAX_CONNS_PER_IP connections per client IP (default 32; -1 no limit)
//	--max-accept-per-ip KEYRELAY_MAX_ACCEPT_PER_IP TCP connections open per client IP (IPv6: /64) at accept, before any HTTP (default 64; -1 no limit)
//	--max-conns-total KEYRELAY_MAX_CONNS_TOTAL TCP connections open in all (default 0: RLIMIT_NOFILE minus headroom, within the memory plan; -1 no limit)
//	--max-rooms      KEYRELAY_MAX_ROOMS      rooms in total (default 10000; -1 no limit)
//	--joins-per-ip   KEYRELAY_JOINS_PER_IP   creates, joins and resumes per IP per --join-window (default 60; -1 no limit)
//	--join-window    KEYRELAY_JOIN_WINDOW    sliding window of --joins-per-ip (default 1m)
//	--joins-per-room KEYRELAY_JOINS_PER_ROOM joins and failed resumes per room and IP (IPv6 /64) per --room-window (default 30; -1 no limit)
//	--room-window    KEYRELAY_ROOM_WINDOW    sliding window of --joins-per-room (default 10m)
//	--rooms-per-ip   KEYRELAY_ROOMS_PER_IP   rooms created per IP (IPv6 /64) per --room-ttl (default 20; -1 no limit)
//	--key-reuse-window KEYRELAY_KEY_REUSE_WINDOW refuse a key used in another room within this window (default 10m; 0 off)
//	--debug-addr     KEYRELAY_DEBUG_ADDR     serve /debug/pprof/ on this address (default: off)
//	--client-room-ids KEYRELAY_CLIENT_ROOM_IDS let create name its room (default false)
//	--allow-legacy-groups KEYRELAY_ALLOW_LEGACY_GROUPS serve modp5 (1536-bit) rooms (default false)
//	--min-room-id-length KEYRELAY_MIN_ROOM_ID_LENGTH shortest client-chosen room ID (default 22)
//	--send-queue     KEYRELAY_SEND_QUEUE     frames queued for a slow reader before it is disconnected (default 64)
//	--max-pending    KEYRELAY_MAX_PENDING    unacknowledged messages waiting for one peer (default 256)
//	--max-pending-bytes KEYRELAY_MAX_PENDING_BYTES bytes of message bodies waiting for one peer (default 1048576)
//	--max-pending-bytes-per-ip KEYRELAY_MAX_PENDING_BYTES_PER_IP bytes of message bodies from one IP (IPv6 /64) waiting in all (default 33554432; -1 no limit)
//	--max-pending-bytes-total KEYRELAY_MAX_PENDING_BYTES_TOTAL bytes of message bodies waiting in all (default 0: 1/16 of the memory plan; -1 no limit)
//	--max-queued-bytes KEYRELAY_MAX_QUEUED_BYTES bytes of frames queued for one client (default 1048576)
//	--max-queued-bytes-total KEYRELAY_MAX_QUEUED_BYTES_TOTAL bytes of frames queued for all clients (default 0: 1/32 of the memory plan; -1 no limit)
//	--room-ttl       KEYRELAY_ROOM_TTL       idle time after which a room expires (default 10m)
//	--resume-grace   KEYRELAY_RESUME_GRACE   how long a dropped peer keeps its place (default 2m)
//	--ack-delay KEYRELAY_ACK_DELAY how long an ack may wait to be stored with the client's next message (default 50ms; 0: at once)
//	--redis-partitions KEYRELAY_REDIS_PARTITIONS on a Redis Cluster: partitions the rooms spread over, a slot each (default 0: 256)
//	--redis-wait-replicas KEYRELAY_REDIS_WAIT_REPLICAS replicas that must have a message before "sent" (Redis WAIT; default 0)
//	--redis-wait-timeout KEYRELAY_REDIS_WAIT_TIMEOUT the longest such wait (default 1s)
//	--instance-lease KEYRELAY_INSTANCE_LEASE with Redis: this instance's lease; a dead instance's peers are marked dropped within it plus a second (default 15s)
//	--ping-interval  KEYRELAY_PING_INTERVAL  keepalive ping interval (default 20s)
//	--write-timeout  KEYRELAY_WRITE_TIMEOUT  timeout of each frame write (default 10s)
//	--slow-reader-timeout KEYRELAY_SLOW_READER_TIMEOUT how long a full send queue is tolerated (default 5s)
//	--tls-cert       KEYRELAY_TLS_CERT       PEM certificate chain: serve HTTPS and WSS (with --tls-key)
//	--tls-key        KEYRELAY_TLS_KEY        PEM private key of --tls-cert
//	--trusted-proxies KEYRELAY_TRUSTED_PROXIES comma-separated CIDR prefixes whose X-Forwarded-For is honoured (default: none)
//	--http-read-header-timeout KEYRELAY_HTTP_READ_HEADER_TIMEOUT time to read a request's header (default 5s)
//	--http-read-timeout KEYRELAY_HTTP_READ_TIMEOUT time to read an HTTP request, body included (default 30s)
//	--http-write-timeout KEYRELAY_HTTP_WRITE_TIMEOUT time to write an HTTP response (default 30s)
//	--http-idle-timeout KEYRELAY_HTTP_IDLE_TIMEOUT how long an idle keep-alive connection stays open (default 120s)
//	--max-header-bytes KEYRELAY_MAX_HEADER_BYTES largest request head, request line included (default 16384; more than 4096)
//
// Memory: the defaults that bound memory across all clients derive from
// one memory plan, half the memory the process may use (its cgroup's
// limit, else the machine's RAM), within 256 MiB and 2 GiB: 1/16 of it for
// message bodies waiting (--max-pending-bytes-total), 1/32 for frames
// queued for clients (--max-queued-bytes-total), 60% for connections at
// 180 KiB each (the cap on the derived --max-conns-total), and 7/8 as the Go
// runtime's soft memory limit unless GOMEMLIMIT is set. The start-up log
// says what was chosen; SECURITY.md has the worst cases.
//
// The key API (package keyapi) estimates each request's CPU time from its
// group and exponent length, charges it to the client IP's token bucket
// (--key-api-rate, --key-api-burst: over it, 429 with Retry-After) and
// runs it in one of --key-api-slots slots within a budget of
// --key-api-work, so that the heaviest requests (modp18 with a full-length
// exponent, about 1.3 s) never run together; a request waits at most
// --key-api-wait behind at most --key-api-queue others, then gets 503 with
// Retry-After. The client IP is the one the relay's per-IP limits use
// (--trusted-proxies).
//
// /metrics is served on --addr by default, as Prometheus scrapes expect;
// when --addr is not a loopback address the start-up log warns that it is
// public. --metrics-addr serves it on a listener of its own (plain HTTP:
// bind it to a private address) and takes it off --addr.
//
// /readyz answers 200 "ready" or 503 "not ready"; why it is not ready (a
// store error, shutting down) goes to the log only.
//
// Connections are limited twice. At accept, before any byte of a request
// is read, by package acceptlimit: --max-accept-per-ip per client address
// (an IPv6 /64) and --max-conns-total in all, across every listener; a
// connection over either is closed at once, without a response, and
// counted in keyrelay_accept_refused_total{limit}. A connection counts
// until it is closed, through keep-alive requests and as a WebSocket.
// After the upgrade, by --max-conns-per-ip, counted by the client IP that
// --trusted-proxies resolves (across instances on Redis). At start the
// relay raises its soft open files limit (RLIMIT_NOFILE) to the hard one
// (Linux), logs both, derives --max-conns-total from it when 0 (the limit
// minus 64 + 10 per CPU for Redis connections, listeners and files), and
// refuses to start if a --max-conns-total given plus that headroom
// exceeds it. --http-read-header-timeout (5 s) bounds how long a
// connection may take to send its request header: an upgrade request is a
// few hundred bytes, sent at once, so 5 s is ample even over a slow mobile
// link with a TLS handshake, and a client trickling headers holds its
// place for 5 s instead of 10.
//
// Behind a reverse proxy (--trusted-proxies) the listener sees the proxy's
// address, not the client's: connections from trusted proxies are exempt
// from --max-accept-per-ip (the proxy carries many clients) and count only
// towards --max-conns-total, which then bounds what all clients together
// hold through the proxy. Per client, the proxy's own limits (e.g. nginx
// limit_conn and client_header_timeout) and --max-conns-per-ip, which
// reads X-Forwarded-For, apply.
//
// The HTTP timeouts apply to HTTP requests, the WebSocket handshake
// included; once a WebSocket is established net/http clears them, and the
// relay's ping and write timeouts govern the connection.
//
// It shuts down gracefully on SIGINT or SIGTERM. On SIGHUP it re-reads
// --tls-cert and --tls-key; if they cannot be loaded it logs an error and
// keeps serving the certificate it has.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/internal/acceptlimit"
	"github.com/keyrelay/keyrelay/internal/redisx"
	"github.com/keyrelay/keyrelay/keyapi"
	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/realip"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/web"
	"github.com/keyrelay/keyrelay/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reload, stopReload := notifyReload()
	defer stopReload()
	if err := run(ctx, os.Args[1:], os.Getenv, reload, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) || errors.Is(err, errVersion) {
			return // --help, --version: done
		}
		fmt.Fprintln(os.Stderr, "keyrelay:", err)
		os.Exit(2)
	}
}

// config is the server's configuration, from flags and the environment.
type config struct {
	addr        string
	corsOrigins string
	keyAPIGet   bool
	logLevel    string
	logFormat   string
	origins     string
	redisURL    string
	redisEvict  bool // --redis-allow-eviction
	relay       relay.Config
	limits      limits.Config
	budget      session.Budget // the store's: bytes waiting per source and in total
	lease       time.Duration  // --instance-lease
	partitions  int            // --redis-partitions
	waitReplica int            // --redis-wait-replicas
	waitTimeout time.Duration  // --redis-wait-timeout
	mem         memoryPlan     // what the derived memory limits come from

	debugAddr       string // "" none
	metricsAddr     string // "" on addr; "off" nowhere
	tlsCert, tlsKey string
	hstsMaxAge      time.Duration
	trustedProxies  *realip.Resolver // nil: trust no proxy
	http            httpConfig

	version    bool // --version
	keyAPI     bool
	keyAPIAddr string // "" on addr
	keys       keyapi.Config

	acceptPerIP int // --max-accept-per-ip; -1 none
	connsTotal  int // --max-conns-total; 0 derived, -1 none
}

// parseConfig reads flags, each defaulting to its KEYRELAY_* variable.
// --help writes the usage to stdout and returns flag.ErrHelp; --version
// writes the version there and returns errVersion. A flag error is
// returned without the usage (main prints it in one line).
func parseConfig(args []string, getenv func(string) string, stdout io.Writer) (config, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var c config
	fs := flag.NewFlagSet("keyrelay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&c.addr, "addr", env("KEYRELAY_ADDR", ":8080"), "listen address (env KEYRELAY_ADDR)")
	fs.StringVar(&c.corsOrigins, "cors-origins", env("KEYRELAY_CORS_ORIGINS", "*"), "comma-separated origins allowed by CORS on the key API; * for any, which covers simple requests (GET) but not preflights (a JSON POST): those need the origin listed by name (env KEYRELAY_CORS_ORIGINS)")
	keyAPIDefault, err := strconv.ParseBool(env("KEYRELAY_KEY_API", "true"))
	if err != nil {
		return c, fmt.Errorf("KEYRELAY_KEY_API: %w", err)
	}
	fs.BoolVar(&c.keyAPI, "key-api", keyAPIDefault, "serve the tutorial's key API (/generate-keys, /generate-shared-key) (env KEYRELAY_KEY_API)")
	fs.StringVar(&c.keyAPIAddr, "key-api-addr", env("KEYRELAY_KEY_API_ADDR", ""), "serve the key API on this address, apart from --addr (which then does not serve it); empty: on --addr (env KEYRELAY_KEY_API_ADDR)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", env("KEYRELAY_METRICS_ADDR", ""), "serve /metrics on this address (plain HTTP; bind it to a private address), apart from --addr (which then does not serve it); \"off\": nowhere; empty: on --addr (env KEYRELAY_METRICS_ADDR)")
	getDefault, err := strconv.ParseBool(env("KEYRELAY_KEY_API_GET", "true"))
	if err != nil {
		return c, fmt.Errorf("KEYRELAY_KEY_API_GET: %w", err)
	}
	fs.BoolVar(&c.keyAPIGet, "key-api-get", getDefault, "accept GET /generate-shared-key, with private keys in the URL (env KEYRELAY_KEY_API_GET)")
	fs.StringVar(&c.debugAddr, "debug-addr", env("KEYRELAY_DEBUG_ADDR", ""), "serve Go's profiles (/debug/pprof/) on this address, apart from --addr; bind it to loopback (e.g. 127.0.0.1:6060); empty: off (env KEYRELAY_DEBUG_ADDR)")
	clientRooms, err := strconv.ParseBool(env("KEYRELAY_CLIENT_ROOM_IDS", "false"))
	if err != nil {
		return c, fmt.Errorf("KEYRELAY_CLIENT_ROOM_IDS: %w", err)
	}
	fs.BoolVar(&c.relay.ClientRoomIDs, "client-room-ids", clientRooms, "let create name its room (IDs of --min-room-id-length to 64 characters A-Z a-z 0-9 - _); off: the relay's random IDs only (env KEYRELAY_CLIENT_ROOM_IDS)")
	legacy, err := strconv.ParseBool(env("KEYRELAY_ALLOW_LEGACY_GROUPS", "false"))
	if err != nil {
		return c, fmt.Errorf("KEYRELAY_ALLOW_LEGACY_GROUPS: %w", err)
	}
	fs.BoolVar(&c.relay.AllowLegacyGroups, "allow-legacy-groups", legacy, "serve rooms in the legacy group modp5 (1536-bit MODP); off: create and key in modp5 get group_not_allowed (env KEYRELAY_ALLOW_LEGACY_GROUPS)")
	fs.StringVar(&c.logLevel, "log-level", env("KEYRELAY_LOG_LEVEL", "info"), "debug, info, warn or error (env KEYRELAY_LOG_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", env("KEYRELAY_LOG_FORMAT", "text"), "text or json (env KEYRELAY_LOG_FORMAT)")
	fs.StringVar(&c.redisURL, "redis-url", env("KEYRELAY_REDIS_URL", ""), "Redis for shared session state (redis://, rediss://, Sentinel or Cluster URLs); empty: in memory, one process (env KEYRELAY_REDIS_URL)")
	allowEvict, err := strconv.ParseBool(env("KEYRELAY_REDIS_ALLOW_EVICTION", "false"))
	if err != nil {
		return c, fmt.Errorf("KEYRELAY_REDIS_ALLOW_EVICTION: %w", err)
	}
	fs.BoolVar(&c.redisEvict, "redis-allow-eviction", allowEvict, "run on a Redis whose maxmemory-policy is not noeviction, with a warning; off: refuse to start (a full Redis would drop rooms and confirmed messages) (env KEYRELAY_REDIS_ALLOW_EVICTION)")
	fs.StringVar(&c.origins, "allowed-origins", env("KEYRELAY_ALLOWED_ORIGINS", ""), "comma-separated origins (host patterns) allowed to open /v1/ws from a browser; * for any; empty: same origin only (env KEYRELAY_ALLOWED_ORIGINS)")
	var errs []error
	intFlag := func(p *int, name, envName string, def int, usage string) {
		v, err := strconv.Atoi(env(envName, strconv.Itoa(def)))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", envName, err))
		}
		fs.IntVar(p, name, v, usage+" (env "+envName+")")
	}
	var durations []string // the duration flags, none of which may be negative
	durFlag := func(p *time.Duration, name, envName string, def time.Duration, usage string) {
		v, err := parseDuration(env(envName, def.String()))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", envName, err))
		}
		*p = v
		fs.Var((*durationValue)(p), name, usage+" (env "+envName+")")
		durations = append(durations, name)
	}
	var maxFrame, fps, bps, maxPendingBytes, pendingPerIP, pendingTotal, queuedBytes, queuedTotal int
	intFlag(&maxFrame, "max-frame-bytes", "KEYRELAY_MAX_FRAME_BYTES", 64<<10, "largest frame a client may send")
	intFlag(&fps, "frames-per-second", "KEYRELAY_FRAMES_PER_SECOND", 20, "frames (and pings) per second per connection, bursts of twice that")
	intFlag(&bps, "bytes-per-second", "KEYRELAY_BYTES_PER_SECOND", 256<<10, "message bytes per second per connection, bursts of twice that (at least --max-frame-bytes); over it the relay reads more slowly")
	intFlag(&c.limits.MaxConnsPerIP, "max-conns-per-ip", "KEYRELAY_MAX_CONNS_PER_IP", 32, "connections per client IP, counted across instances sharing Redis; -1 for no limit")
	intFlag(&c.acceptPerIP, "max-accept-per-ip", "KEYRELAY_MAX_ACCEPT_PER_IP", defaultAcceptPerIP, "TCP connections open at once per client IP (IPv6: per /64), HTTP and WebSocket, counted at accept before any request is read; over it the connection is closed at once; trusted proxies are exempt; -1 for no limit")
	intFlag(&c.connsTotal, "max-conns-total", "KEYRELAY_MAX_CONNS_TOTAL", 0, "TCP connections open at once in all, on every listener; over it new connections are closed at once; 0: the open files limit (RLIMIT_NOFILE, raised to its hard limit) minus 64 + 10 per CPU of headroom, at most 65536 and at most 60% of the memory plan at 180 KiB a connection (6990 for the 2 GiB plan); -1 for no limit")
	intFlag(&c.limits.JoinsPerIP, "joins-per-ip", "KEYRELAY_JOINS_PER_IP", 60, "creates, joins and resumes per client IP per --join-window (over: join_rate_limited); -1 for no limit")
	durFlag(&c.limits.JoinWindow, "join-window", "KEYRELAY_JOIN_WINDOW", time.Minute, "window of --joins-per-ip (sliding)")
	intFlag(&c.limits.JoinsPerRoom, "joins-per-room", "KEYRELAY_JOINS_PER_ROOM", 30, "joins, and resumes that failed for a wrong token or unknown peer, on one room from one client IP (IPv6: /64) per --room-window (over: too_many_attempts); a resume with its token is never refused; -1 for no limit")
	durFlag(&c.limits.RoomWindow, "room-window", "KEYRELAY_ROOM_WINDOW", 10*time.Minute, "window of --joins-per-room (sliding)")
	intFlag(&c.limits.RoomsPerIP, "rooms-per-ip", "KEYRELAY_ROOMS_PER_IP", 20, "rooms one client IP (IPv6: /64) may create per --room-ttl (sliding; over: too_many_rooms), counted across instances sharing Redis; -1 for no limit")
	durFlag(&c.limits.KeyReuseWindow, "key-reuse-window", "KEYRELAY_KEY_REUSE_WINDOW", 10*time.Minute, "refuse a public key used in another room within this window (key_reused: ephemeral keys should be ephemeral); 0 turns the check off")
	intFlag(&c.relay.MaxRooms, "max-rooms", "KEYRELAY_MAX_ROOMS", 10000, "rooms in total; -1 for no limit")
	intFlag(&c.relay.MinRoomIDLength, "min-room-id-length", "KEYRELAY_MIN_ROOM_ID_LENGTH", 22, "shortest client-chosen room ID, with --client-room-ids")
	intFlag(&c.relay.SendQueue, "send-queue", "KEYRELAY_SEND_QUEUE", 64, "frames queued for a slow reader before it is disconnected")
	intFlag(&c.relay.MaxPending, "max-pending", "KEYRELAY_MAX_PENDING", 256, "unacknowledged messages waiting for one peer")
	intFlag(&pendingPerIP, "max-pending-bytes-per-ip", "KEYRELAY_MAX_PENDING_BYTES_PER_IP", 32<<20, "bytes of unacknowledged message bodies sent from one client IP (IPv6: /64) waiting in all rooms, across instances sharing Redis (over: mailbox_full); -1 for no limit")
	intFlag(&pendingTotal, "max-pending-bytes-total", "KEYRELAY_MAX_PENDING_BYTES_TOTAL", 0, "bytes of unacknowledged message bodies waiting in all (in memory: on this instance; with Redis: in Redis, for all instances) (over: mailbox_full); 0: 1/16 of the memory plan (half the machine's memory, within 256 MiB and 2 GiB); -1 for no limit")
	intFlag(&queuedBytes, "max-queued-bytes", "KEYRELAY_MAX_QUEUED_BYTES", 1<<20, "bytes of frames queued for one client before the relay waits for it to read (a client that does not read within --slow-reader-timeout is closed with 4408)")
	intFlag(&queuedTotal, "max-queued-bytes-total", "KEYRELAY_MAX_QUEUED_BYTES_TOTAL", 0, "bytes of frames queued for all clients of this instance; over it, clients that do not read are closed with 4408 within --slow-reader-timeout; 0: 1/32 of the memory plan; -1 for no limit")
	intFlag(&maxPendingBytes, "max-pending-bytes", "KEYRELAY_MAX_PENDING_BYTES", 1<<20, "bytes of unacknowledged message bodies waiting for one peer (over: mailbox_full); at least --max-frame-bytes")
	durFlag(&c.relay.RoomTTL, "room-ttl", "KEYRELAY_ROOM_TTL", 10*time.Minute, "idle time after which a room expires")
	intFlag(&c.partitions, "redis-partitions", "KEYRELAY_REDIS_PARTITIONS", 0, "on a Redis Cluster: the partitions rooms are spread over, a hash slot each, spaced evenly (every instance must use the same number); 0: 256; at most 16384; must be 0 or 1 on one Redis or Sentinel")
	intFlag(&c.waitReplica, "redis-wait-replicas", "KEYRELAY_REDIS_WAIT_REPLICAS", 0, "replicas that must have a message (Redis WAIT) before its sender gets sent, so that a master failing over loses none; costs a replication round trip per message; 0: none (asynchronous replication: a failover may lose the last confirmed messages)")
	durFlag(&c.waitTimeout, "redis-wait-timeout", "KEYRELAY_REDIS_WAIT_TIMEOUT", time.Second, "with --redis-wait-replicas: the longest wait for the replicas; after it the message is confirmed all the same, with a warning in the log")
	durFlag(&c.relay.AckDelay, "ack-delay", "KEYRELAY_ACK_DELAY", 50*time.Millisecond, "how long the relay may hold a client's ack: one followed by a message from the same client is stored with it, in one Redis script instead of two; acknowledged messages stay up to this long in the mailbox; 0: store every ack at once")
	durFlag(&c.lease, "instance-lease", "KEYRELAY_INSTANCE_LEASE", 15*time.Second, "with --redis-url: this instance's lease in Redis, renewed every third of it; when an instance dies, the others mark its peers dropped (their partners get peer_left) within the lease plus a second; at least 3s")
	durFlag(&c.relay.ResumeGrace, "resume-grace", "KEYRELAY_RESUME_GRACE", 2*time.Minute, "how long a dropped peer keeps its place; when it ends the peer and its mailbox go, and a room whose peers are all dropped goes when the last grace ends (plus 5 s)")
	durFlag(&c.relay.EmptyRoomTTL, "empty-room-ttl", "KEYRELAY_EMPTY_ROOM_TTL", 2*time.Minute, "idle time after which a room with no peer (all left) expires; at most --room-ttl")
	durFlag(&c.relay.PingInterval, "ping-interval", "KEYRELAY_PING_INTERVAL", 20*time.Second, "keepalive ping interval")
	durFlag(&c.relay.WriteTimeout, "write-timeout", "KEYRELAY_WRITE_TIMEOUT", 10*time.Second, "timeout of each frame write")
	durFlag(&c.relay.SlowReaderTimeout, "slow-reader-timeout", "KEYRELAY_SLOW_READER_TIMEOUT", 5*time.Second, "how long a client's send queue may stay full before it is disconnected")
	fs.StringVar(&c.tlsCert, "tls-cert", env("KEYRELAY_TLS_CERT", ""), "PEM certificate (chain) file; with --tls-key, serve HTTPS and WSS; re-read on SIGHUP (env KEYRELAY_TLS_CERT)")
	fs.StringVar(&c.tlsKey, "tls-key", env("KEYRELAY_TLS_KEY", ""), "PEM private key file of --tls-cert (env KEYRELAY_TLS_KEY)")
	var trusted string
	fs.StringVar(&trusted, "trusted-proxies", env("KEYRELAY_TRUSTED_PROXIES", ""), "comma-separated CIDR prefixes of reverse proxies whose X-Forwarded-For gives the client IP; empty: trust none (env KEYRELAY_TRUSTED_PROXIES)")
	durFlag(&c.http.readHeaderTimeout, "http-read-header-timeout", "KEYRELAY_HTTP_READ_HEADER_TIMEOUT", 5*time.Second, "time to read a request's header (and, under TLS, the handshake before it); a connection holds its place under --max-accept-per-ip meanwhile; 0 for none")
	durFlag(&c.http.readTimeout, "http-read-timeout", "KEYRELAY_HTTP_READ_TIMEOUT", 30*time.Second, "time to read an HTTP request, body included (not WebSocket traffic); 0 for none")
	durFlag(&c.http.writeTimeout, "http-write-timeout", "KEYRELAY_HTTP_WRITE_TIMEOUT", 30*time.Second, "time to write an HTTP response (not WebSocket traffic); 0 for none")
	durFlag(&c.http.idleTimeout, "http-idle-timeout", "KEYRELAY_HTTP_IDLE_TIMEOUT", 120*time.Second, "how long an idle keep-alive connection stays open; 0 for none")
	intFlag(&c.http.maxHeaderBytes, "max-header-bytes", "KEYRELAY_MAX_HEADER_BYTES", 16<<10, "largest request head (request line and header fields) accepted over HTTP/1.1, in bytes, exactly; more than 4096 (larger: 431)")
	durFlag(&c.hstsMaxAge, "hsts-max-age", "KEYRELAY_HSTS_MAX_AGE", 365*24*time.Hour, "with --tls-cert, send Strict-Transport-Security with this max-age (rounded down to seconds) on every response; 0: no header")
	durFlag(&c.keys.RatePerIP, "key-api-rate", "KEYRELAY_KEY_API_RATE", 250*time.Millisecond, "CPU time per second one client IP may spend on key operations, estimated from group and exponent length (token bucket; over it: 429 with Retry-After); 0 turns the limit off")
	durFlag(&c.keys.BurstPerIP, "key-api-burst", "KEYRELAY_KEY_API_BURST", 3*time.Second, "CPU time one client IP may spend on key operations at once (the bucket of --key-api-rate)")
	intFlag(&c.keys.MaxConcurrent, "key-api-slots", "KEYRELAY_KEY_API_SLOTS", 4, "key operations computing at once")
	durFlag(&c.keys.MaxWork, "key-api-work", "KEYRELAY_KEY_API_WORK", 1600*time.Millisecond, "estimated CPU time of the key operations computing at once; the default keeps two of the heaviest (modp18, full-length exponent, ~1.3 s) from running together")
	durFlag(&c.keys.SlotWait, "key-api-wait", "KEYRELAY_KEY_API_WAIT", 2*time.Second, "longest wait for a key API slot; then 503 with Retry-After")
	intFlag(&c.keys.MaxWaiting, "key-api-queue", "KEYRELAY_KEY_API_QUEUE", 32, "key API requests waiting for a slot at most; more get 503 at once")
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			writeUsage(stdout, fs)
			return c, err
		}
		return c, fmt.Errorf("%w (keyrelay --help lists the flags)", err)
	}
	if c.version {
		fmt.Fprintln(stdout, version())
		return c, errVersion
	}
	for _, name := range durations {
		if d := fs.Lookup(name).Value.(*durationValue); *d < 0 {
			return c, fmt.Errorf("--%s %v: must not be negative", name, time.Duration(*d))
		}
	}
	if maxFrame <= 0 || fps <= 0 || bps <= 0 || maxPendingBytes <= 0 {
		return c, errors.New("--max-frame-bytes, --frames-per-second, --bytes-per-second and --max-pending-bytes must be positive")
	}
	c.relay.MaxFrameBytes = int64(maxFrame)
	c.relay.MaxPendingBytes = int64(maxPendingBytes)
	c.mem = planMemory(machineMemory())
	derive := func(name string, v int, derived int64) (int64, error) {
		switch {
		case v == 0:
			return derived, nil
		case v == -1:
			return 0, nil // no bound
		case v < 0:
			return 0, fmt.Errorf("--%s must be positive, 0 (derived) or -1 (no limit)", name)
		}
		return int64(v), nil
	}
	var derr []error
	var err2 error
	c.budget.PerSource, err2 = derive("max-pending-bytes-per-ip", pendingPerIP, 32<<20)
	derr = append(derr, err2)
	c.budget.Total, err2 = derive("max-pending-bytes-total", pendingTotal, c.mem.pendingTotal)
	derr = append(derr, err2)
	c.relay.MaxQueuedBytesTotal, err2 = derive("max-queued-bytes-total", queuedTotal, c.mem.queuedTotal)
	derr = append(derr, err2)
	if c.relay.MaxQueuedBytesTotal == 0 {
		c.relay.MaxQueuedBytesTotal = -1 // relay.Config's "no bound"
	}
	if err := errors.Join(derr...); err != nil {
		return c, err
	}
	if queuedBytes <= 0 {
		return c, errors.New("--max-queued-bytes must be positive")
	}
	c.relay.MaxQueuedBytes = int64(queuedBytes)
	c.relay.FramesPerSecond = float64(fps)
	c.relay.FrameBurst = 2 * fps
	c.relay.BytesPerSecond = float64(bps)
	c.relay.ByteBurst = max(2*bps, maxFrame)
	c.relay.AllowedOrigins = splitList(c.origins)
	c.limits.RoomsWindow = c.relay.RoomTTL // a create counts as long as an idle room it made lives
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return c, errors.New("--tls-cert and --tls-key go together: set both or neither")
	}
	if err := c.http.validate(); err != nil {
		return c, err
	}
	if c.hstsMaxAge < 0 {
		return c, errors.New("--hsts-max-age must not be negative")
	}
	if c.keys.RatePerIP < 0 || c.keys.BurstPerIP <= 0 || c.keys.MaxConcurrent <= 0 || c.keys.MaxWork <= 0 || c.keys.SlotWait <= 0 || c.keys.MaxWaiting < 0 {
		return c, errors.New("--key-api-rate and --key-api-queue must not be negative; --key-api-burst, --key-api-slots, --key-api-work and --key-api-wait must be positive")
	}
	if c.keys.RatePerIP == 0 {
		c.keys.RatePerIP = -1 // off
	}
	if c.keys.MaxWaiting == 0 {
		c.keys.MaxWaiting = -1 // none wait (keyapi's zero means its default)
	}
	if c.acceptPerIP == 0 || c.acceptPerIP < -1 || c.connsTotal < -1 {
		return c, errors.New("--max-accept-per-ip must be positive or -1; --max-conns-total must be positive, 0 (derived) or -1")
	}
	if c.keyAPIAddr != "" && !c.keyAPI {
		return c, errors.New("--key-api-addr with --key-api=false: choose one")
	}
	if trusted != "" {
		r, err := realip.Parse(trusted)
		if err != nil {
			return c, fmt.Errorf("--trusted-proxies: %w", err)
		}
		if len(r.Prefixes()) > 0 {
			c.trustedProxies = r
			c.relay.ClientIP = r.ClientIP
			c.keys.ClientIP = r.ClientIP
		}
	}
	return c, nil
}

func newLogger(c config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	switch strings.ToLower(c.logLevel) {
	case "debug", "info", "warn", "error":
		level.UnmarshalText([]byte(c.logLevel))
	default:
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", c.logFormat)
}

// notifyReload returns the channel on which SIGHUP, the signal to re-read
// the TLS certificate, arrives, and a function that stops the
// notification. While it is installed SIGHUP no longer terminates the
// process.
func notifyReload() (<-chan os.Signal, func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	return c, func() { signal.Stop(c) }
}

// run starts the server and serves until ctx is done, then shuts down.
// Each value received from reload (nil: never) re-reads the TLS
// certificate.
func run(ctx context.Context, args []string, getenv func(string) string, reload <-chan os.Signal, stdout, stderr io.Writer) error {
	c, err := parseConfig(args, getenv, stdout)
	if err != nil {
		return err
	}
	logger, err := newLogger(c, stderr)
	if err != nil {
		return err
	}
	var cert *certificate
	if c.tlsCert != "" {
		if cert, err = loadCertificate(c.tlsCert, c.tlsKey); err != nil {
			return fmt.Errorf("--tls-cert, --tls-key: %w", err)
		}
		logger.Info("tls certificate loaded", cert.logAttrs()...)
	}
	if c.trustedProxies != nil {
		logger.Info("client IPs from X-Forwarded-For", "trusted_proxies", fmt.Sprint(c.trustedProxies.Prefixes()))
	}
	origins := splitList(c.corsOrigins)
	if origins == nil {
		origins = []string{} // none: no CORS headers
	}
	c.keys.AllowedOrigins = origins
	c.keys.DisableGETSharedKey = !c.keyAPIGet
	keys, err := keyapi.New(c.keys, logger)
	if err != nil {
		return err
	}

	// One Redis client, if any, for the session store and the limiter;
	// closed last, after both.
	client, err := newRedisClient(c, logger)
	if err != nil {
		return err
	}
	if client != nil {
		defer client.Close()
	}
	if getenv("GOMEMLIMIT") == "" {
		// The Go runtime's soft limit: the garbage collector works harder
		// near it rather than let the heap double (GOGC) past the plan.
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(c.mem.goMemLimit))
	}
	logger.Info("memory plan", "machine_bytes", c.mem.machine, "planned_rss_bytes", c.mem.relay,
		"go_memory_limit", debug.SetMemoryLimit(-1), "max_pending_bytes_total", c.budget.Total,
		"max_pending_bytes_per_ip", c.budget.PerSource, "max_queued_bytes_total", c.relay.MaxQueuedBytesTotal)
	var relayp atomic.Pointer[relay.Server] // for the store's OnLeaseLost, set once the relay exists
	onLeaseLost := func() {
		if rl := relayp.Load(); rl != nil {
			rl.DisconnectAll("this relay lost its lease in Redis; resume")
		}
	}
	store, err := newStore(ctx, client, storeOptions{allowEviction: c.redisEvict, budget: c.budget, lease: c.lease, onLeaseLost: onLeaseLost, partitions: c.partitions, waitReplicas: c.waitReplica, waitTimeout: c.waitTimeout}, logger)
	if err != nil {
		return err
	}
	defer store.Close()
	lim, err := newLimiter(client, c.limits, logger)
	if err != nil {
		return err
	}
	defer lim.Close() // after rl.Close (deferred below), which releases every connection
	c.relay.Limiter = lim
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	acfg, err := acceptConfig(c, logger)
	if err != nil {
		return err
	}
	acfg.Registerer = reg
	accepts, err := acceptlimit.New(acfg)
	if err != nil {
		return err
	}
	c.relay.Registerer = reg
	rl, err := relay.New(store, c.relay, logger)
	if err != nil {
		return err
	}
	defer rl.Close()
	relayp.Store(rl)

	mux := http.NewServeMux()
	// The chat page. Every other pattern is more specific than "/", so the
	// page never shadows the relay, the key API, metrics or health checks.
	mux.Handle("/", web.Handler())
	if c.keyAPI && c.keyAPIAddr == "" {
		keys.Register(mux)
	}
	mux.Handle(wire.Path, rl)
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if c.metricsAddr == "" {
		mux.Handle("GET /metrics", metrics)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /readyz", readyHandler(rl.Ready, logger))

	// Listen first, so that a bad address fails at once.
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	servers := []*server{{name: "main", ln: ln, handler: mux, tls: cert != nil}}
	if c.keyAPI && c.keyAPIAddr != "" {
		kmux := http.NewServeMux()
		keys.Register(kmux)
		servers = append(servers, &server{name: "key api", flag: "--key-api-addr", addr: c.keyAPIAddr, handler: kmux, tls: cert != nil})
	}
	if c.metricsAddr != "" && c.metricsAddr != "off" {
		mmux := http.NewServeMux()
		mmux.Handle("GET /metrics", metrics)
		servers = append(servers, &server{name: "metrics", flag: "--metrics-addr", addr: c.metricsAddr, handler: mmux})
	}
	for _, s := range servers[1:] {
		if s.ln, err = net.Listen("tcp", s.addr); err != nil {
			for _, s := range servers {
				if s.ln != nil {
					s.ln.Close()
				}
			}
			return fmt.Errorf("%s: %w", s.flag, err)
		}
	}
	if c.debugAddr != "" {
		if err := startDebug(ctx, c.debugAddr, logger); err != nil {
			for _, s := range servers {
				s.ln.Close()
			}
			return fmt.Errorf("--debug-addr: %w", err)
		}
	}
	if c.metricsAddr == "" && !isLoopback(ln.Addr()) {
		logger.Warn("/metrics is served on the public address; set --metrics-addr to serve it apart (or block /metrics at the proxy)", "addr", ln.Addr().String())
	}
	if !c.keyAPI {
		logger.Info("key api off")
	} else if c.keyAPIGet {
		logger.Warn("the key API accepts GET /generate-shared-key, with private keys in the URL (where proxies and browsers may log them); --key-api-get=false turns it off")
	}
	for _, s := range servers {
		s.ln = accepts.Listen(s.ln) // every listener, one budget
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		h := s.handler
		if s.tls && c.hstsMaxAge > 0 {
			h = hsts(c.hstsMaxAge, h)
		}
		scheme, sc := "http", (*certificate)(nil)
		if s.tls {
			scheme, sc = "https", cert
		}
		s.srv = newHTTPServer(ctx, logRequests(logger, h), c.http, sc, logger)
		msg := "listening" // the main address; tests look for this line
		if s.name != "main" {
			msg = s.name + " listening"
		}
		if s.name == "main" {
			logger.Info(msg, "addr", s.ln.Addr().String(), "scheme", scheme, "open", openURL(scheme, s.ln.Addr()), "groups", groupNames(c.relay.AllowLegacyGroups))
		} else {
			logger.Info(msg, "addr", s.ln.Addr().String(), "scheme", scheme)
		}
		go func() {
			if s.tls {
				errc <- s.srv.ServeTLS(s.ln, "", "") // the certificate comes from TLSConfig
			} else {
				errc <- s.srv.Serve(s.ln)
			}
		}()
	}
	for done := false; !done; {
		select {
		case err := <-errc:
			for _, s := range servers {
				s.srv.Close()
			}
			return err
		case <-reload:
			if cert == nil {
				logger.Info("SIGHUP: no TLS certificate to reload")
				continue
			}
			if err := cert.reload(); err != nil {
				logger.Error("tls certificate reload failed; serving the previous one", "err", err)
				continue
			}
			logger.Info("tls certificate loaded", cert.logAttrs()...)
		case <-ctx.Done():
			done = true
		}
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// http.Server.Shutdown does not wait for WebSockets: close them first
	// (going away: clients resume elsewhere), then the HTTP servers.
	rl.Close()
	var errs []error
	for _, s := range servers {
		if err := s.srv.Shutdown(shutdownCtx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown: %w", err))
		}
	}
	for range servers {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// server is one of the HTTP servers run serves: the main one on --addr,
// and the key API's and the metrics' when they have addresses of their own.
type server struct {
	name, flag string // for logs and errors
	addr       string
	ln         net.Listener
	handler    http.Handler
	tls        bool // serve with the certificate (and HSTS)
	srv        *http.Server
}

// isLoopback reports whether a listener's address is a loopback address
// (not the unspecified one, which listens everywhere).
func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// newRedisClient returns the Redis client for --redis-url, shared by the
// session store and the limiter, or nil without --redis-url. It does not
// connect (newStore waits for Redis); the caller closes it, after the
// store and the limiter.
func newRedisClient(c config, logger *slog.Logger) (redis.UniversalClient, error) {
	if c.redisURL == "" {
		return nil, nil
	}
	redisx.SetLogger(logger)
	client, err := redisx.NewClient(c.redisURL)
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	return client, nil
}

// newLimiter returns the admission limits: in Redis beside the session
// state when there is a Redis client (every instance then shares one
// budget per client), else in memory.
func newLimiter(client redis.UniversalClient, cfg limits.Config, logger *slog.Logger) (limiter, error) {
	if client != nil {
		return limits.NewRedis(client, cfg, limits.RedisOptions{Logger: logger})
	}
	return limits.NewMemory(cfg), nil
}

// limiter is the admission control the relay asks (limits.Memory or
// limits.Redis), and Close, which run calls.
type limiter interface {
	relay.Limiter
	Close() error
}

// newStore returns the session store: in Redis on client when there is
// one, else in memory, with budget. The store does not own client. A Redis whose
// maxmemory-policy evicts keys is refused unless o.allowEviction.
// redisWait is how long the relay waits for Redis at start.
const redisWait = 30 * time.Second

// storeOptions are newStore's settings.
type storeOptions struct {
	allowEviction bool           // --redis-allow-eviction
	budget        session.Budget // --max-pending-bytes-per-ip, --max-pending-bytes-total
	lease         time.Duration  // --instance-lease
	partitions    int            // --redis-partitions
	waitReplicas  int            // --redis-wait-replicas
	waitTimeout   time.Duration  // --redis-wait-timeout
	onLeaseLost   func()         // called when this instance's lease in Redis ended unrenewed
}

func newStore(ctx context.Context, client redis.UniversalClient, o storeOptions, logger *slog.Logger) (session.Store, error) {
	if client == nil {
		logger.Info("session state in memory (one instance)")
		return session.NewMemoryStore(session.MemoryConfig{Budget: o.budget}), nil
	}
	// Redis may start after the relay (docker compose): wait for it, up to
	// 30 s, then give up with the last error. The wait is logged when it
	// starts and every 5 s, not at every try.
	start := time.Now()
	deadline := start.Add(redisWait)
	var lastLog time.Time
	for {
		dialCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := session.NewRedisStore(dialCtx, session.RedisConfig{Client: client, AllowEviction: o.allowEviction, Budget: o.budget, LeaseTTL: o.lease, OnLeaseLost: o.onLeaseLost, Partitions: o.partitions, WaitReplicas: o.waitReplicas, WaitTimeout: o.waitTimeout, Logger: logger})
		cancel()
		if err == nil {
			logger.Info("session state in Redis")
			return s, nil
		}
		if errors.Is(err, session.ErrEvictingRedis) {
			return nil, fmt.Errorf("--redis-url: %w (or start with --redis-allow-eviction to run with a warning)", err)
		}
		if !errors.Is(err, session.ErrUnavailable) {
			return nil, fmt.Errorf("--redis-url: %w", err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("--redis-url: Redis did not answer within %v: %w", redisWait, err)
		}
		if time.Since(lastLog) >= 5*time.Second {
			logger.Warn("waiting for Redis", "waited", time.Since(start).Round(time.Second), "gives_up_after", redisWait, "err", err)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// splitList splits a comma-separated list, dropping empty items; nil if none.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// logRequests logs each request's method, path, status and duration at debug
// level. It never logs the query string, which may carry a private key.
func logRequests(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		logger.LogAttrs(r.Context(), slog.LevelDebug, "http request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", sw.status),
			slog.Duration("duration", time.Since(start)),
		)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
