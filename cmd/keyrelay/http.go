package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// httpConfig bounds what one HTTP client may hold: time to send a header
// and a request, time to take a response, idle keep-alive connections and
// header size. Zero durations mean no limit, as in net/http.
//
// The read and write timeouts cover HTTP requests, the WebSocket
// handshake included, and never a WebSocket once it is established:
// net/http sets the connection's deadlines before the handler runs and
// clears both when the handler hijacks the connection
// (net/http.(*conn).hijackLocked calls SetDeadline(time.Time{})), which
// websocket.Accept does. From then on the relay's own ping and per-frame
// write timeouts govern the connection.
type httpConfig struct {
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	maxHeaderBytes    int // the largest request head accepted, exactly (HTTP/1.1)
}

// headerSlack is what net/http reads of a request head beyond
// http.Server.MaxHeaderBytes before it answers 431: it limits the request
// line and header fields together to MaxHeaderBytes+4096 bytes (measured:
// with MaxHeaderBytes 16384 a 20480-byte head is accepted, 20481 is not).
// newHTTPServer subtracts it, so that --max-header-bytes is the real
// limit. Over HTTP/2 (under TLS) net/http advertises a header list size
// of MaxHeaderBytes+320 bytes, counted as HTTP/2 counts (name, value and
// 32 bytes per field): --max-header-bytes minus 3776.
const headerSlack = 4096

func (c httpConfig) validate() error {
	if c.readHeaderTimeout < 0 || c.readTimeout < 0 || c.writeTimeout < 0 || c.idleTimeout < 0 {
		return errors.New("--http-read-header-timeout, --http-read-timeout, --http-write-timeout and --http-idle-timeout must not be negative")
	}
	if c.maxHeaderBytes <= headerSlack {
		return errors.New("--max-header-bytes must be more than 4096 (net/http reads 4096 bytes of a request head before any limit applies)")
	}
	return nil
}

// newHTTPServer returns the http.Server for h with the limits of hc, every
// request's context derived from ctx, and net/http's own errors logged as
// warnings. With a certificate it serves TLS 1.2 or newer (HTTP/2 is
// offered through ALPN; WebSocket clients use HTTP/1.1), the server being
// started with ServeTLS(ln, "", "").
func newHTTPServer(ctx context.Context, h http.Handler, hc httpConfig, cert *certificate, logger *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: hc.readHeaderTimeout,
		ReadTimeout:       hc.readTimeout,
		WriteTimeout:      hc.writeTimeout,
		IdleTimeout:       hc.idleTimeout,
		MaxHeaderBytes:    hc.maxHeaderBytes - headerSlack,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if cert != nil {
		srv.TLSConfig = cert.tlsConfig()
	}
	return srv
}

// hsts adds Strict-Transport-Security with maxAge (in whole seconds) to
// every response of next, for servers that serve TLS only: browsers then
// refuse plain HTTP to this host for maxAge. It does not add
// includeSubDomains or preload, which bind other hosts of the domain; a
// proxy in front may add them.
func hsts(maxAge time.Duration, next http.Handler) http.Handler {
	value := "max-age=" + strconv.FormatInt(int64(maxAge/time.Second), 10)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", value)
		next.ServeHTTP(w, r)
	})
}

// readyHandler answers /readyz: 200 "ready" when ready returns nil, else
// 503 "not ready". The reason (a store error, which may name internal
// addresses, or shutting down) is logged, not sent: once when readiness
// is lost or its reason changes, and once when it is back, so that a
// probe every few seconds, or a client polling, does not flood the log.
func readyHandler(ready func(context.Context) error, logger *slog.Logger) http.Handler {
	var mu sync.Mutex // guards last
	last := ""        // the last reason logged; "" while ready
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		err := ready(ctx)
		reason := ""
		if err != nil {
			reason = err.Error()
		}
		mu.Lock()
		if reason != last {
			if err != nil {
				logger.Warn("not ready", "err", err)
			} else {
				logger.Info("ready again")
			}
			last = reason
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready\n")
			return
		}
		io.WriteString(w, "ready\n")
	})
}
