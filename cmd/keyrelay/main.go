// Command keyrelay is the keyrelay server: the tutorial's HTTP key API
// (/generate-keys, /generate-shared-key) and a health endpoint. It keeps its
// state in memory and needs no other service.
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
//
// It shuts down gracefully on SIGINT or SIGTERM.
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

	"github.com/keyrelay/keyrelay/relay/keyapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
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
	fs.StringVar(&c.logLevel, "log-level", env("KEYRELAY_LOG_LEVEL", "info"), "debug, info, warn or error (env KEYRELAY_LOG_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", env("KEYRELAY_LOG_FORMAT", "text"), "text or json (env KEYRELAY_LOG_FORMAT)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
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

// run starts the server and serves until ctx is done, then shuts down.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger, err := newLogger(c, stderr)
	if err != nil {
		return err
	}
	var origins []string
	for _, o := range strings.Split(c.corsOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	if origins == nil {
		origins = []string{} // none: no CORS headers
	}
	keys, err := keyapi.New(keyapi.Config{AllowedOrigins: origins, DisableGETSharedKey: !c.keyAPIGet}, logger)
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	keys.Register(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})

	// Listen first, so that a bad address fails at once.
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           logRequests(logger, mux),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	logger.Info("listening", "addr", ln.Addr().String())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
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
