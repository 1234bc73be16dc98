// Package redisx is the Redis plumbing that the Redis implementations of
// session.Store and of the admission limits share: one way to make a
// client from a URL, one loader for their Lua scripts, and one mapping of
// Redis and context errors to each package's "unavailable" sentinel.
//
// It knows nothing of sessions or limits: callers pass their own sentinel
// errors and script files.
package redisx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// NewClient returns a go-redis client for rawURL:
//
//	redis://[user:password@]host:port[/db][?options]   one server
//	rediss://…                                          the same over TLS
//	redis://host:port?master_name=NAME[&addr=…]         Sentinel: the
//	                                                    addresses are the
//	                                                    sentinels'
//	redis://host:port?addr=host2:port2[&addr=…]         Cluster
//	redis://host:port?cluster=true                      Cluster, one seed
//
// The options are go-redis's (redis.ParseURL, ParseFailoverURL,
// ParseClusterURL), such as dial_timeout=2s or read_timeout=1s. The client
// has ContextTimeoutEnabled set, so that calls give up at their context's
// deadline, and, unless the URL sets max_retries, go-redis's retries off
// (MaxRetries -1): a retried script whose reply was lost would run twice.
//
// It does not connect; the caller closes the client. It returns an error if
// the URL does not parse, has an unknown scheme or option, or sets cluster
// to anything but true. Its errors never repeat the URL, which may hold a
// password.
func NewClient(rawURL string) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	q := u.Query()
	retries := q.Has("max_retries")
	invalid := func(err error) error { return fmt.Errorf("redis URL: %w", err) }
	switch {
	case q.Has("master_name"):
		opt, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, invalid(err)
		}
		opt.ContextTimeoutEnabled = true
		if !retries {
			opt.MaxRetries = -1
		}
		return redis.NewFailoverClient(opt), nil
	case q.Has("addr") || q.Has("cluster"):
		if q.Has("cluster") {
			if on, err := strconv.ParseBool(q.Get("cluster")); err != nil || !on {
				return nil, fmt.Errorf("redis URL: cluster=%q, want true", q.Get("cluster"))
			}
			q.Del("cluster")
			c := *u
			c.RawQuery = q.Encode()
			rawURL = c.String()
		}
		opt, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, invalid(err)
		}
		// go-redis reloads its map of the slots on MOVED and ASK, not
		// when a master it knows stops answering: after a failover it
		// would try the dead master for up to a minute (its default).
		opt.ClusterStateReloadInterval = ClusterStateReload
		opt.ContextTimeoutEnabled = true
		if !retries {
			opt.MaxRetries = -1
		}
		return redis.NewClusterClient(opt), nil
	default:
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, invalid(err)
		}
		opt.ContextTimeoutEnabled = true
		if !retries {
			opt.MaxRetries = -1
		}
		return redis.NewClient(opt), nil
	}
}

// ClusterStateReload is how often a Cluster client of NewClient reloads
// its map of the slots (CLUSTER SLOTS, one small call) when it is used;
// callers that see a connection fail should also ask for a reload at
// once (redis.ClusterClient.ReloadState), as the session store does.
const ClusterStateReload = 5 * time.Second

// SetLogger sends go-redis's own log lines (connection failures and the
// like; never keys or values) to logger at warn level instead of the
// standard error stream. It affects every go-redis client in the process;
// call it once, before creating clients.
func SetLogger(logger *slog.Logger) {
	redis.SetLogger(&slogLogger{l: logger})
}

// slogLogger adapts a *slog.Logger to go-redis's logging interface. It
// logs at most one line every logEvery and counts the ones it drops: with
// Redis down, go-redis reports every failed dial of every pool.
type slogLogger struct {
	l *slog.Logger

	mu      sync.Mutex
	last    time.Time
	dropped int
}

// logEvery is how often go-redis's lines are logged at most.
const logEvery = 10 * time.Second

func (s *slogLogger) Printf(ctx context.Context, format string, v ...any) {
	s.mu.Lock()
	now := time.Now()
	if now.Sub(s.last) < logEvery {
		s.dropped++
		s.mu.Unlock()
		return
	}
	dropped := s.dropped
	s.last, s.dropped = now, 0
	s.mu.Unlock()
	msg := fmt.Sprintf(format, v...)
	if !strings.HasPrefix(msg, "redis: ") {
		msg = "redis: " + msg
	}
	if dropped > 0 {
		s.l.WarnContext(ctx, msg, "similar_lines_dropped", dropped)
		return
	}
	s.l.WarnContext(ctx, msg)
}
