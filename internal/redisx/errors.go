package redisx

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// transientReplies are the Redis error replies that mean "not now": Redis
// cannot serve at the moment, rather than the call being wrong.
var transientReplies = []string{
	"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN",
	"BUSY", "NOREPLICAS", "MISCONF", "OOM",
}

// configReplies are the Redis error replies that mean the client is set
// up wrong (a database that does not exist, a wrong or missing password):
// retrying cannot help. go-redis may return them from a connection's
// set-up without their type.
var configReplies = []string{
	"ERR DB index is out of range", "NOAUTH", "WRONGPASS", "NOPERM",
	"ERR invalid password", "ERR AUTH", "ERR Client sent AUTH",
}

// IsConfig reports whether err is a Redis reply saying that the client's
// settings are wrong (see configReplies), however it is wrapped.
func IsConfig(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, p := range configReplies {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// IsTransient reports whether err is a Redis error reply that means "not
// now" (LOADING, READONLY, MASTERDOWN, CLUSTERDOWN, TRYAGAIN, BUSY,
// NOREPLICAS, MISCONF, OOM): Redis is there but cannot serve the call at
// the moment.
func IsTransient(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	for _, p := range transientReplies {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// Wrap returns the error for a Redis call that failed with err, made under
// ctx; op names the call in the message (such as "redis join"; the
// package's name is in unavailable's message, so it is not repeated).
//
//   - A Redis error reply that is not transient (a script's error, or
//     redis.Nil: a bug of the caller's), or one that says the client is
//     set up wrong ([IsConfig]: no such database, a wrong password), is
//     returned as "op: err".
//   - Anything else (Redis could not be reached, did not answer in time, or
//     answered with a transient reply; see [IsTransient]) is unavailability:
//     the error wraps unavailable, the caller's own sentinel, and err, and,
//     if ctx has ended (or its deadline has passed, its timer yet to fire),
//     ctx's error too, so that errors.Is(err, context.DeadlineExceeded)
//     holds for a call cut short by its deadline even when go-redis
//     reports the deadline as a socket timeout.
//
// Wrap returns nil if err is nil.
func Wrap(ctx context.Context, op string, unavailable, err error) error {
	if err == nil {
		return nil
	}
	var rerr redis.Error
	if (errors.As(err, &rerr) && !IsTransient(err)) || IsConfig(err) {
		return fmt.Errorf("%s: %w", op, err)
	}
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); ok && cerr == nil && !time.Now().Before(dl) {
		cerr = context.DeadlineExceeded // its timer has yet to fire
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%s: %w: %w (%w)", op, unavailable, err, cerr)
	}
	return fmt.Errorf("%s: %w: %w", op, unavailable, err)
}
