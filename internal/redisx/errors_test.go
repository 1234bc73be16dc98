package redisx_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/internal/redisx"
)

// errUnavailable stands for a caller's own sentinel.
var errUnavailable = errors.New("test: unavailable")

// replyErr is a Redis error reply, as go-redis returns them.
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

// pastDeadline is a context whose deadline has passed but whose timer has
// yet to fire: Err is still nil.
type pastDeadline struct{ context.Context }

func (pastDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"LOADING", replyErr("LOADING Redis is loading the dataset in memory"), true},
		{"READONLY", replyErr("READONLY You can't write against a read only replica."), true},
		{"MASTERDOWN", replyErr("MASTERDOWN Link with MASTER is down"), true},
		{"CLUSTERDOWN", replyErr("CLUSTERDOWN The cluster is down"), true},
		{"TRYAGAIN", replyErr("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{"BUSY", replyErr("BUSY Redis is busy running a script"), true},
		{"NOREPLICAS", replyErr("NOREPLICAS Not enough good replicas to write."), true},
		{"MISCONF", replyErr("MISCONF Redis is configured to save RDB snapshots"), true},
		{"OOM", replyErr("OOM command not allowed when used memory > 'maxmemory'."), true},
		{"wrapped LOADING", wrap(replyErr("LOADING")), true},
		{"script error", replyErr("ERR user_script:1: Script attempted to access nonexistent global variable"), false},
		{"redis.Nil", redis.Nil, false},
		{"not a reply", errors.New("LOADING"), false},
		{"EOF", io.EOF, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := redisx.IsTransient(tc.err); got != tc.want {
				t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func wrap(err error) error { return errors.Join(errors.New("outer"), err) }

func TestWrap(t *testing.T) {
	live := context.Background()
	timedOut, cancel := context.WithDeadline(live, time.Now().Add(-time.Second))
	defer cancel()
	canceled, cancel2 := context.WithCancel(live)
	cancel2()
	sockTimeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}

	for _, tc := range []struct {
		name        string
		ctx         context.Context
		err         error
		unavailable bool  // wraps errUnavailable
		ctxErr      error // wraps this context error too; nil: neither
		msg         string
	}{
		{"script error", live, replyErr("ERR bad script"), false, nil, "test: redis op: ERR bad script"},
		{"redis.Nil", live, redis.Nil, false, nil, "test: redis op: redis: nil"},
		{"script error after the deadline", timedOut, replyErr("ERR bad script"), false, nil, "test: redis op: ERR bad script"},
		{"transient reply", live, replyErr("LOADING Redis is loading"), true, nil, "test: redis op: test: unavailable: LOADING Redis is loading"},
		{"connection refused", live, refused, true, nil, "test: redis op: test: unavailable: dial tcp: connection refused"},
		{"EOF", live, io.EOF, true, nil, "test: redis op: test: unavailable: EOF"},
		{"client closed", live, redis.ErrClosed, true, nil, "test: redis op: test: unavailable: redis: client is closed"},
		{"the deadline, as go-redis's socket timeout", timedOut, sockTimeout, true, context.DeadlineExceeded,
			"test: redis op: test: unavailable: read tcp: i/o timeout (context deadline exceeded)"},
		{"the deadline, its timer yet to fire", pastDeadline{live}, sockTimeout, true, context.DeadlineExceeded,
			"test: redis op: test: unavailable: read tcp: i/o timeout (context deadline exceeded)"},
		{"the deadline, as the context's error", timedOut, context.DeadlineExceeded, true, context.DeadlineExceeded,
			"test: redis op: test: unavailable: context deadline exceeded"},
		{"canceled", canceled, context.Canceled, true, context.Canceled, "test: redis op: test: unavailable: context canceled"},
		{"canceled, another error", canceled, io.EOF, true, context.Canceled, "test: redis op: test: unavailable: EOF (context canceled)"},
		{"transient reply after the deadline", timedOut, replyErr("BUSY"), true, context.DeadlineExceeded,
			"test: redis op: test: unavailable: BUSY (context deadline exceeded)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := redisx.Wrap(tc.ctx, "test: redis op", errUnavailable, tc.err)
			if !errors.Is(got, tc.err) {
				t.Errorf("Wrap = %v, does not wrap %v", got, tc.err)
			}
			if errors.Is(got, errUnavailable) != tc.unavailable {
				t.Errorf("Wrap = %v; wraps the unavailable sentinel: %v, want %v", got, !tc.unavailable, tc.unavailable)
			}
			for _, cerr := range []error{context.DeadlineExceeded, context.Canceled} {
				if want := cerr == tc.ctxErr; errors.Is(got, cerr) != want {
					t.Errorf("Wrap = %v; wraps %v: %v, want %v", got, cerr, !want, want)
				}
			}
			if got.Error() != tc.msg {
				t.Errorf("Wrap = %q, want %q", got, tc.msg)
			}
		})
	}

	if err := redisx.Wrap(live, "op", errUnavailable, nil); err != nil {
		t.Errorf("Wrap(nil) = %v, want nil", err)
	}
}

// TestWrapHungRedis runs calls against a real, frozen Redis: each must
// end at its context's deadline with an error wrapping the caller's
// sentinel and context.DeadlineExceeded.
func TestWrapHungRedis(t *testing.T) {
	srv := startServer(t)
	client := newClient(t, srv.URL())
	if err := client.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	srv.Pause()
	defer srv.Resume()
	for _, tc := range []struct {
		name string
		call func(context.Context) error
	}{
		{"PING", func(ctx context.Context) error { return client.Ping(ctx).Err() }},
		{"GET", func(ctx context.Context) error { return client.Get(ctx, "k").Err() }},
		{"script", func(ctx context.Context) error {
			return redis.NewScript("return 1").Run(ctx, client, nil).Err()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const timeout = 200 * time.Millisecond
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			start := time.Now()
			err := redisx.Wrap(ctx, "test: redis "+strings.ToLower(tc.name), errUnavailable, tc.call(ctx))
			if !errors.Is(err, errUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s with Redis hung = %v, want an error wrapping %v and %v", tc.name, err, errUnavailable, context.DeadlineExceeded)
			}
			if d := time.Since(start); d > timeout+time.Second {
				t.Errorf("%s with Redis hung took %v, want about its %v deadline", tc.name, d, timeout)
			}
		})
	}
}

// TestWrapStoppedRedis: a Redis that is not there is unavailable, without
// any context error while the context lasts.
func TestWrapStoppedRedis(t *testing.T) {
	srv := startServer(t)
	client := newClient(t, srv.URL()+"?dial_timeout=200ms")
	srv.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	err := redisx.Wrap(ctx, "test: redis ping", errUnavailable, client.Ping(ctx).Err())
	if !errors.Is(err, errUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PING with Redis stopped = %v, want an error wrapping %v alone", err, errUnavailable)
	}
}
