package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
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
	maxHeaderBytes    int
}

func (c httpConfig) validate() error {
	if c.readHeaderTimeout < 0 || c.readTimeout < 0 || c.writeTimeout < 0 || c.idleTimeout < 0 {
		return errors.New("--http-read-header-timeout, --http-read-timeout, --http-write-timeout and --http-idle-timeout must not be negative")
	}
	if c.maxHeaderBytes <= 0 {
		return errors.New("--max-header-bytes must be positive")
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
		MaxHeaderBytes:    hc.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if cert != nil {
		srv.TLSConfig = cert.tlsConfig()
	}
	return srv
}
