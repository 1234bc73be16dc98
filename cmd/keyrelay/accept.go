package main

import (
	"fmt"
	"log/slog"
	"runtime"

	"github.com/keyrelay/keyrelay/internal/acceptlimit"
)

// Defaults of --max-accept-per-ip and of the derived --max-conns-total.
const (
	// defaultAcceptPerIP is twice the default --max-conns-per-ip (32
	// WebSockets): room for a client's WebSockets, its browser's six
	// HTTP/1.1 connections and WebSockets that are reconnecting while the
	// old ones close.
	defaultAcceptPerIP = 64
	// maxDerivedTotal caps the derived --max-conns-total where the file
	// limit is very high: about 4 KiB of buffers and 8 KiB of stack per
	// connection waiting for its header, under 1 GiB in all.
	maxDerivedTotal = 65536
	// defaultTotalUnknown is the derived --max-conns-total where the file
	// limit is not known (not Linux).
	defaultTotalUnknown = 10000
)

// fileHeadroom is the file descriptors kept apart from connections: Redis
// connections (go-redis pools 10 per CPU by default), the listeners,
// the debug server, log files and the Go runtime's own (epoll, pipes).
func fileHeadroom() int { return 64 + 10*runtime.GOMAXPROCS(0) }

// acceptConfig raises RLIMIT_NOFILE's soft limit to the hard one, logs
// both, and returns the accept limits of c: --max-conns-total as given or,
// when 0, derived from the file limit. It returns an error if a
// --max-conns-total given explicitly, plus the headroom, exceeds the file
// limit: the relay would fail with "too many open files" before the limit
// held, which is the failure the limit exists to prevent.
func acceptConfig(c config, logger *slog.Logger) (acceptlimit.Config, error) {
	cfg := acceptlimit.Config{PerAddr: c.acceptPerIP, Total: c.connsTotal}
	if c.trustedProxies != nil {
		cfg.Exempt = c.trustedProxies.Trusted
	}
	before, soft, hard, ok, err := acceptlimit.RaiseFileLimit()
	headroom := fileHeadroom()
	switch {
	case !ok:
		if cfg.Total == 0 {
			cfg.Total = min(defaultTotalUnknown, c.mem.conns)
		}
	case err != nil:
		logger.Warn("cannot raise the open files limit", "soft", soft, "hard", hard, "err", err)
		fallthrough
	default:
		logger.Info("open files limit", "soft_before", before, "soft", soft, "hard", hard)
		limit := int(min(soft, 1<<30))
		if cfg.Total > 0 && cfg.Total+headroom > limit {
			return cfg, fmt.Errorf("--max-conns-total %d plus %d file descriptors of headroom exceeds the open files limit (RLIMIT_NOFILE) %d: raise the limit (ulimit -n, LimitNOFILE=, docker --ulimit nofile=) or lower --max-conns-total", cfg.Total, headroom, limit)
		}
		if cfg.Total == 0 {
			cfg.Total = min(limit-headroom, maxDerivedTotal, c.mem.conns)
			if cfg.Total < 256 {
				cfg.Total = max(limit/2, 1)
				logger.Warn("open files limit is low: few connections can be served", "soft", soft, "max_conns_total", cfg.Total)
			}
		}
	}
	if cfg.PerAddr > 0 && c.limits.MaxConnsPerIP > 0 && cfg.PerAddr <= c.limits.MaxConnsPerIP {
		logger.Warn("--max-accept-per-ip is not above --max-conns-per-ip: a client's HTTP requests compete with its WebSockets", "max_accept_per_ip", cfg.PerAddr, "max_conns_per_ip", c.limits.MaxConnsPerIP)
	}
	logger.Info("accept limits", "max_accept_per_ip", cfg.PerAddr, "max_conns_total", cfg.Total)
	return cfg, nil
}
