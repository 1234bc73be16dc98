// Package relaytest starts a real relay for tests: a relay.Server on a
// store, served by an httptest.Server on loopback at wire.Path, with its
// metrics on a registry of its own, all closed when the test ends.
//
// It is the one way the relay's, its client's and the commands' tests
// start a relay, so that a change to how a relay is built (relay.New's
// arguments, a default limiter) is made here once.
package relaytest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/wire"
)

// LogEnv is the environment variable that, set to anything, sends the
// relay's logs to stderr at debug level; unset, they are discarded.
const LogEnv = "KEYRELAY_TEST_LOG"

// sweepInterval is the test stores' sweep interval: short, so that an
// expired room is removed soon after its TTL.
const sweepInterval = 50 * time.Millisecond

// Server is a relay served over HTTP on a loopback port for one test.
type Server struct {
	// URL is the relay's WebSocket URL, ws://127.0.0.1:port/v1/ws.
	URL string
	// HTTP is the HTTP server; its handler is Mux.
	HTTP *httptest.Server
	// Mux routes HTTP's requests: the relay at wire.Path. A test may add
	// handlers to it, such as /metrics; nothing else is served.
	Mux *http.ServeMux
	// Relay is the relay.
	Relay *relay.Server
	// Store is the relay's store.
	Store session.Store
	// Registry holds the relay's metrics (relay.Config.Registerer).
	Registry *prometheus.Registry
}

// Limits are the admission limits of a test relay whose Config has no
// Limiter: 32 connections per IP, as cmd/keyrelay's default, and no join,
// room or key limits, which tests that make many rooms from one address
// would run into.
var Limits = limits.Config{JoinsPerIP: -1, JoinsPerRoom: -1, RoomsPerIP: -1}

// NoLimits returns an in-memory limiter with every limit off, for load
// tests from one address. It is made once per test binary, shared, and
// never closed.
var NoLimits = sync.OnceValue(func() relay.Limiter {
	return limits.NewMemory(limits.Config{MaxConnsPerIP: -1, JoinsPerIP: -1, JoinsPerRoom: -1, RoomsPerIP: -1})
})

// NewLimiter returns an in-memory limiter enforcing cfg, closed when the
// test ends.
func NewLimiter(t testing.TB, cfg limits.Config) *limits.Memory {
	l := limits.NewMemory(cfg)
	t.Cleanup(func() { l.Close() })
	return l
}

// NewServer starts a relay on store with cfg, whose Registerer it replaces
// with a fresh Registry, and serves it at wire.Path; a nil cfg.Limiter
// means NewLimiter(t, Limits). When the test ends it closes the relay,
// then the HTTP server, then store. relay.New's errors fail the test.
func NewServer(t testing.TB, store session.Store, cfg relay.Config) *Server {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if cfg.Limiter == nil {
		cfg.Limiter = NewLimiter(t, Limits)
	}
	r, err := relay.New(store, cfg, logger())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(wire.Path, r)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		r.Close()
		srv.Close()
		store.Close()
	})
	return &Server{
		URL:      "ws" + strings.TrimPrefix(srv.URL, "http") + wire.Path,
		HTTP:     srv,
		Mux:      mux,
		Relay:    r,
		Store:    store,
		Registry: reg,
	}
}

// logger returns the relay's logger, as LogEnv says.
func logger() *slog.Logger {
	if os.Getenv(LogEnv) == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// NewMemoryStore returns a memory store that sweeps expired rooms every
// 50 ms. NewServer closes the store it is given.
func NewMemoryStore() session.Store {
	return session.NewMemoryStore(session.MemoryConfig{SweepInterval: sweepInterval})
}

// NewRedisStore returns a store on the Redis at addr (host:port, such as
// redistest.Start returns) under prefix, which sweeps expired rooms every
// 50 ms. An empty prefix means one of the test's own, made from t.Name(),
// so that stores share rooms only when given the same prefix. It fails
// the test if Redis cannot be reached within 10 s. NewServer closes the
// store it is given.
func NewRedisStore(t testing.TB, addr, prefix string) session.Store {
	t.Helper()
	return NewRedisStoreURL(t, "redis://"+addr, prefix)
}

// NewRedisStoreURL is NewRedisStore on the Redis that url locates: one
// server, a Sentinel set or a Cluster (see session.RedisConfig.URL).
func NewRedisStoreURL(t testing.TB, url, prefix string) session.Store {
	t.Helper()
	if prefix == "" {
		prefix = "test:" + strings.ReplaceAll(t.Name(), "/", ":") + ":"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := session.NewRedisStore(ctx, session.RedisConfig{URL: url, Prefix: prefix, SweepInterval: sweepInterval})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
