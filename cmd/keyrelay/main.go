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
//	--cors-origins   KEYRELAY_CORS_ORIGINS   comma-separated origins allowed by CORS on the key API (default "*")
//	--key-api-get    KEYRELAY_KEY_API_GET    accept GET /generate-shared-key with keys in the URL (default true)
//	--log-level      KEYRELAY_LOG_LEVEL      debug, info, warn or error (default "info")
//	--log-format     KEYRELAY_LOG_FORMAT     text or json (default "text")
//	--redis-url      KEYRELAY_REDIS_URL      Redis for state shared by many instances (default: in memory)
//	--redis-allow-eviction KEYRELAY_REDIS_ALLOW_EVICTION run on a Redis whose maxmemory-policy evicts, with a warning (default false: refuse)
//	--allowed-origins KEYRELAY_ALLOWED_ORIGINS comma-separated origins allowed on /v1/ws, * for any (default: same origin)
//	--max-frame-bytes KEYRELAY_MAX_FRAME_BYTES largest frame a client may send (default 65536)
//	--frames-per-second KEYRELAY_FRAMES_PER_SECOND frames and pings per second per connection (default 20, burst twice that)
//	--bytes-per-second KEYRELAY_BYTES_PER_SECOND message bytes per second per connection (default 262144, burst twice that)
//	--max-conns-per-ip KEYRELAY_MAX_CONNS_PER_IP connections per client IP (default 32; -1 no limit)
//	--max-rooms      KEYRELAY_MAX_ROOMS      rooms in total (default 10000; -1 no limit)
//	--joins-per-ip   KEYRELAY_JOINS_PER_IP   creates, joins and resumes per IP per --join-window (default 60; -1 no limit)
//	--join-window    KEYRELAY_JOIN_WINDOW    sliding window of --joins-per-ip (default 1m)
//	--joins-per-room KEYRELAY_JOINS_PER_ROOM join and resume attempts per room per --room-window (default 30; -1 no limit)
//	--room-window    KEYRELAY_ROOM_WINDOW    sliding window of --joins-per-room (default 10m)
//	--key-reuse-window KEYRELAY_KEY_REUSE_WINDOW refuse a key used in another room within this window (default 10m; 0 off)
//	--debug-addr     KEYRELAY_DEBUG_ADDR     serve /debug/pprof/ on this address (default: off)
//	--client-room-ids KEYRELAY_CLIENT_ROOM_IDS let create name its room (default false)
//	--allow-legacy-groups KEYRELAY_ALLOW_LEGACY_GROUPS serve modp5 (1536-bit) rooms (default false)
//	--min-room-id-length KEYRELAY_MIN_ROOM_ID_LENGTH shortest client-chosen room ID (default 22)
//	--send-queue     KEYRELAY_SEND_QUEUE     frames queued for a slow reader before it is disconnected (default 64)
//	--max-pending    KEYRELAY_MAX_PENDING    unacknowledged messages waiting for one peer (default 256)
//	--room-ttl       KEYRELAY_ROOM_TTL       idle time after which a room expires (default 10m)
//	--resume-grace   KEYRELAY_RESUME_GRACE   how long a dropped peer keeps its place (default 2m)
//	--ping-interval  KEYRELAY_PING_INTERVAL  keepalive ping interval (default 20s)
//	--write-timeout  KEYRELAY_WRITE_TIMEOUT  timeout of each frame write (default 10s)
//	--slow-reader-timeout KEYRELAY_SLOW_READER_TIMEOUT how long a full send queue is tolerated (default 5s)
//	--tls-cert       KEYRELAY_TLS_CERT       PEM certificate chain: serve HTTPS and WSS (with --tls-key)
//	--tls-key        KEYRELAY_TLS_KEY        PEM private key of --tls-cert
//	--trusted-proxies KEYRELAY_TRUSTED_PROXIES comma-separated CIDR prefixes whose X-Forwarded-For is honoured (default: none)
//	--http-read-header-timeout KEYRELAY_HTTP_READ_HEADER_TIMEOUT time to read a request's header (default 10s)
//	--http-read-timeout KEYRELAY_HTTP_READ_TIMEOUT time to read an HTTP request, body included (default 30s)
//	--http-write-timeout KEYRELAY_HTTP_WRITE_TIMEOUT time to write an HTTP response (default 30s)
//	--http-idle-timeout KEYRELAY_HTTP_IDLE_TIMEOUT how long an idle keep-alive connection stays open (default 120s)
//	--max-header-bytes KEYRELAY_MAX_HEADER_BYTES largest request header (default 16384)
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

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
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "keyrelay:", err)
		}
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

	debugAddr       string // "" none
	tlsCert, tlsKey string
	trustedProxies  *realip.Resolver // nil: trust no proxy
	http            httpConfig
}

// parseConfig reads flags, each defaulting to its KEYRELAY_* variable.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var c config
	fs := flag.NewFlagSet("keyrelay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", env("KEYRELAY_ADDR", ":8080"), "listen address (env KEYRELAY_ADDR)")
	fs.StringVar(&c.corsOrigins, "cors-origins", env("KEYRELAY_CORS_ORIGINS", "*"), "comma-separated origins allowed by CORS on the key API, or * (env KEYRELAY_CORS_ORIGINS)")
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
	durFlag := func(p *time.Duration, name, envName string, def time.Duration, usage string) {
		v, err := time.ParseDuration(env(envName, def.String()))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", envName, err))
		}
		fs.DurationVar(p, name, v, usage+" (env "+envName+")")
	}
	var maxFrame, fps, bps int
	intFlag(&maxFrame, "max-frame-bytes", "KEYRELAY_MAX_FRAME_BYTES", 64<<10, "largest frame a client may send")
	intFlag(&fps, "frames-per-second", "KEYRELAY_FRAMES_PER_SECOND", 20, "frames (and pings) per second per connection, bursts of twice that")
	intFlag(&bps, "bytes-per-second", "KEYRELAY_BYTES_PER_SECOND", 256<<10, "message bytes per second per connection, bursts of twice that (at least --max-frame-bytes); over it the relay reads more slowly")
	intFlag(&c.limits.MaxConnsPerIP, "max-conns-per-ip", "KEYRELAY_MAX_CONNS_PER_IP", 32, "connections per client IP, counted across instances sharing Redis; -1 for no limit")
	intFlag(&c.limits.JoinsPerIP, "joins-per-ip", "KEYRELAY_JOINS_PER_IP", 60, "creates, joins and resumes per client IP per --join-window (over: join_rate_limited); -1 for no limit")
	durFlag(&c.limits.JoinWindow, "join-window", "KEYRELAY_JOIN_WINDOW", time.Minute, "window of --joins-per-ip (sliding)")
	intFlag(&c.limits.JoinsPerRoom, "joins-per-room", "KEYRELAY_JOINS_PER_ROOM", 30, "join and resume attempts on one room per --room-window, from anyone (over: too_many_attempts); -1 for no limit")
	durFlag(&c.limits.RoomWindow, "room-window", "KEYRELAY_ROOM_WINDOW", 10*time.Minute, "window of --joins-per-room (sliding)")
	durFlag(&c.limits.KeyReuseWindow, "key-reuse-window", "KEYRELAY_KEY_REUSE_WINDOW", 10*time.Minute, "refuse a public key used in another room within this window (key_reused: ephemeral keys should be ephemeral); 0 turns the check off")
	intFlag(&c.relay.MaxRooms, "max-rooms", "KEYRELAY_MAX_ROOMS", 10000, "rooms in total; -1 for no limit")
	intFlag(&c.relay.MinRoomIDLength, "min-room-id-length", "KEYRELAY_MIN_ROOM_ID_LENGTH", 22, "shortest client-chosen room ID, with --client-room-ids")
	intFlag(&c.relay.SendQueue, "send-queue", "KEYRELAY_SEND_QUEUE", 64, "frames queued for a slow reader before it is disconnected")
	intFlag(&c.relay.MaxPending, "max-pending", "KEYRELAY_MAX_PENDING", 256, "unacknowledged messages waiting for one peer")
	durFlag(&c.relay.RoomTTL, "room-ttl", "KEYRELAY_ROOM_TTL", 10*time.Minute, "idle time after which a room expires")
	durFlag(&c.relay.ResumeGrace, "resume-grace", "KEYRELAY_RESUME_GRACE", 2*time.Minute, "how long a dropped peer keeps its place")
	durFlag(&c.relay.PingInterval, "ping-interval", "KEYRELAY_PING_INTERVAL", 20*time.Second, "keepalive ping interval")
	durFlag(&c.relay.WriteTimeout, "write-timeout", "KEYRELAY_WRITE_TIMEOUT", 10*time.Second, "timeout of each frame write")
	durFlag(&c.relay.SlowReaderTimeout, "slow-reader-timeout", "KEYRELAY_SLOW_READER_TIMEOUT", 5*time.Second, "how long a client's send queue may stay full before it is disconnected")
	fs.StringVar(&c.tlsCert, "tls-cert", env("KEYRELAY_TLS_CERT", ""), "PEM certificate (chain) file; with --tls-key, serve HTTPS and WSS; re-read on SIGHUP (env KEYRELAY_TLS_CERT)")
	fs.StringVar(&c.tlsKey, "tls-key", env("KEYRELAY_TLS_KEY", ""), "PEM private key file of --tls-cert (env KEYRELAY_TLS_KEY)")
	var trusted string
	fs.StringVar(&trusted, "trusted-proxies", env("KEYRELAY_TRUSTED_PROXIES", ""), "comma-separated CIDR prefixes of reverse proxies whose X-Forwarded-For gives the client IP; empty: trust none (env KEYRELAY_TRUSTED_PROXIES)")
	durFlag(&c.http.readHeaderTimeout, "http-read-header-timeout", "KEYRELAY_HTTP_READ_HEADER_TIMEOUT", 10*time.Second, "time to read a request's header; 0 for none")
	durFlag(&c.http.readTimeout, "http-read-timeout", "KEYRELAY_HTTP_READ_TIMEOUT", 30*time.Second, "time to read an HTTP request, body included (not WebSocket traffic); 0 for none")
	durFlag(&c.http.writeTimeout, "http-write-timeout", "KEYRELAY_HTTP_WRITE_TIMEOUT", 30*time.Second, "time to write an HTTP response (not WebSocket traffic); 0 for none")
	durFlag(&c.http.idleTimeout, "http-idle-timeout", "KEYRELAY_HTTP_IDLE_TIMEOUT", 120*time.Second, "how long an idle keep-alive connection stays open; 0 for none")
	intFlag(&c.http.maxHeaderBytes, "max-header-bytes", "KEYRELAY_MAX_HEADER_BYTES", 16<<10, "largest request header, in bytes")
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if maxFrame <= 0 || fps <= 0 || bps <= 0 {
		return c, errors.New("--max-frame-bytes, --frames-per-second and --bytes-per-second must be positive")
	}
	c.relay.MaxFrameBytes = int64(maxFrame)
	c.relay.FramesPerSecond = float64(fps)
	c.relay.FrameBurst = 2 * fps
	c.relay.BytesPerSecond = float64(bps)
	c.relay.ByteBurst = max(2*bps, maxFrame)
	c.relay.AllowedOrigins = splitList(c.origins)
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return c, errors.New("--tls-cert and --tls-key go together: set both or neither")
	}
	if err := c.http.validate(); err != nil {
		return c, err
	}
	if trusted != "" {
		r, err := realip.Parse(trusted)
		if err != nil {
			return c, fmt.Errorf("--trusted-proxies: %w", err)
		}
		if len(r.Prefixes()) > 0 {
			c.trustedProxies = r
			c.relay.ClientIP = r.ClientIP
		}
	}
	return c, nil
}

func newLogger(c config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is neither text nor json", c.logFormat)
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
	c, err := parseConfig(args, getenv, stderr)
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
	keys, err := keyapi.New(keyapi.Config{AllowedOrigins: origins, DisableGETSharedKey: !c.keyAPIGet}, logger)
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
	store, err := newStore(ctx, client, c.redisEvict, logger)
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
	c.relay.Registerer = reg
	rl, err := relay.New(store, c.relay, logger)
	if err != nil {
		return err
	}
	defer rl.Close()

	mux := http.NewServeMux()
	// The chat page. Every other pattern is more specific than "/", so the
	// page never shadows the relay, the key API, metrics or health checks.
	mux.Handle("/", web.Handler())
	keys.Register(mux)
	mux.Handle(wire.Path, rl)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := rl.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready: "+err.Error()+"\n")
			return
		}
		io.WriteString(w, "ok\n")
	})

	// Listen first, so that a bad address fails at once.
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	if c.debugAddr != "" {
		if err := startDebug(ctx, c.debugAddr, logger); err != nil {
			ln.Close()
			return fmt.Errorf("--debug-addr: %w", err)
		}
	}
	srv := newHTTPServer(ctx, logRequests(logger, mux), c.http, cert, logger)
	scheme := "http"
	if cert != nil {
		scheme = "https"
	}
	logger.Info("listening", "addr", ln.Addr().String(), "scheme", scheme)

	errc := make(chan error, 1)
	go func() {
		if cert != nil {
			errc <- srv.ServeTLS(ln, "", "") // the certificate comes from TLSConfig
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	for done := false; !done; {
		select {
		case err := <-errc:
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
	// (going away: clients resume elsewhere), then the HTTP server.
	rl.Close()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
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
// one, else in memory. The store does not own client. A Redis whose
// maxmemory-policy evicts keys is refused unless allowEviction.
func newStore(ctx context.Context, client redis.UniversalClient, allowEviction bool, logger *slog.Logger) (session.Store, error) {
	if client == nil {
		logger.Info("session state in memory (one instance)")
		return session.NewMemoryStore(session.MemoryConfig{}), nil
	}
	// Redis may start after the relay (docker compose): wait for it, up to
	// 30 s, then give up with the last error.
	deadline := time.Now().Add(30 * time.Second)
	for {
		dialCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := session.NewRedisStore(dialCtx, session.RedisConfig{Client: client, AllowEviction: allowEviction, Logger: logger})
		cancel()
		if err == nil {
			logger.Info("session state in Redis")
			return s, nil
		}
		if errors.Is(err, session.ErrEvictingRedis) {
			return nil, fmt.Errorf("--redis-url: %w (or start with --redis-allow-eviction to run with a warning)", err)
		}
		if !errors.Is(err, session.ErrUnavailable) || time.Now().After(deadline) {
			return nil, fmt.Errorf("--redis-url: %w", err)
		}
		logger.Warn("waiting for Redis", "err", err)
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
