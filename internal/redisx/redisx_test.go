package redisx_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyrelay/keyrelay/internal/redisx"
	"github.com/keyrelay/keyrelay/session/redistest"
)

func TestMain(m *testing.M) {
	// go-redis logs failed dials to standard error; the tests that stop
	// Redis provoke them on purpose.
	redis.SetLogger(quietRedis{})
	os.Exit(m.Run())
}

// quietRedis is a go-redis logger that drops everything.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func startServer(t *testing.T) *redistest.Server {
	t.Helper()
	return redistest.StartServer(t)
}

// newClient returns redisx.NewClient(url), closed when the test ends.
func newClient(t *testing.T, url string) redis.UniversalClient {
	t.Helper()
	c, err := redisx.NewClient(url)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// clientOptions returns what every client's options must agree on.
func clientOptions(t *testing.T, c redis.UniversalClient) (kind string, ctxTimeout bool, retries int, addrs []string) {
	t.Helper()
	switch c := c.(type) {
	case *redis.ClusterClient:
		o := c.Options()
		return "cluster", o.ContextTimeoutEnabled, o.MaxRetries, o.Addrs
	case *redis.Client:
		o := c.Options()
		return "client", o.ContextTimeoutEnabled, o.MaxRetries, []string{o.Addr}
	}
	t.Fatalf("client of type %T", c)
	return
}

func TestNewClient(t *testing.T) {
	for _, tc := range []struct {
		url     string
		kind    string
		retries int // -1: none
		addrs   []string
	}{
		{"redis://127.0.0.1:6379", "client", -1, []string{"127.0.0.1:6379"}},
		{"redis://user:pw@127.0.0.1:6379/2?dial_timeout=2s", "client", -1, []string{"127.0.0.1:6379"}},
		{"rediss://127.0.0.1:6380", "client", -1, []string{"127.0.0.1:6380"}},
		{"redis://127.0.0.1:6379?max_retries=3", "client", 3, []string{"127.0.0.1:6379"}},
		{"redis://127.0.0.1:7000?addr=127.0.0.1:7001", "cluster", -1, []string{"127.0.0.1:7000", "127.0.0.1:7001"}},
		{"redis://127.0.0.1:7000?cluster=true", "cluster", -1, []string{"127.0.0.1:7000"}},
		{"redis://127.0.0.1:7000?cluster=1&max_retries=2", "cluster", 2, []string{"127.0.0.1:7000"}},
		// Sentinel: a failover client, whose address is the master's,
		// found through the sentinels.
		{"redis://127.0.0.1:26379?master_name=mymaster", "client", -1, []string{"FailoverClient"}},
	} {
		t.Run(tc.url, func(t *testing.T) {
			c := newClient(t, tc.url)
			kind, ctxTimeout, retries, addrs := clientOptions(t, c)
			// go-redis turns a client's -1 (none) into 0 as it starts.
			if tc.retries < 0 && retries == 0 {
				retries = -1
			}
			if kind != tc.kind || !ctxTimeout || retries != tc.retries {
				t.Errorf("NewClient(%q) = %s, ContextTimeoutEnabled %v, MaxRetries %d; want %s, true, %d",
					tc.url, kind, ctxTimeout, retries, tc.kind, tc.retries)
			}
			if strings.Join(addrs, ",") != strings.Join(tc.addrs, ",") {
				t.Errorf("NewClient(%q) addresses = %q, want %q", tc.url, addrs, tc.addrs)
			}
		})
	}
}

func TestNewClientErrors(t *testing.T) {
	for _, tc := range []struct{ name, url string }{
		{"bad URL", "redis://user:secret@127.0.0.1:1/%zz"},
		{"bad scheme", "http://user:secret@127.0.0.1:1"},
		{"bad option", "redis://user:secret@127.0.0.1:1?bogus=1"},
		{"bad cluster option", "redis://user:secret@127.0.0.1:1?cluster=maybe"},
		{"cluster off", "redis://user:secret@127.0.0.1:1?cluster=false"},
		{"bad cluster URL", "redis://user:secret@127.0.0.1:1?addr=127.0.0.1:2&bogus=1"},
		{"bad Sentinel URL", "redis://user:secret@127.0.0.1:1?master_name=m&bogus=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := redisx.NewClient(tc.url)
			if err == nil {
				c.Close()
				t.Fatal("NewClient succeeded, want an error")
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q repeats the password", err)
			}
		})
	}
}

// TestNewClientServes checks clients made from URLs against real servers.
func TestNewClientServes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		url   func(t *testing.T) string
		kind  string
		slots bool
	}{
		{"one server", func(t *testing.T) string { return redistest.StartServer(t).URL() + "/3" }, "client", false},
		{"cluster", func(t *testing.T) string { return redistest.StartCluster(t).URL() + "?cluster=true" }, "cluster", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, tc.url(t))
			if kind, _, _, _ := clientOptions(t, c); kind != tc.kind {
				t.Errorf("client kind %s, want %s", kind, tc.kind)
			}
			ctx := t.Context()
			if err := c.Set(ctx, "{k}a", "v", time.Minute).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			if v, err := c.Get(ctx, "{k}a").Result(); v != "v" || err != nil {
				t.Errorf("GET = %q, %v; want v", v, err)
			}
		})
	}
}

// scripts is a package's script files, as its embed.FS would hold them.
var scripts = fstest.MapFS{
	"lua/lib.lua":    {Data: []byte("local greeting = 'hello ' .. KEYS[1]\n")},
	"lua/hello.lua":  {Data: []byte("redis.call('SET', KEYS[1], int(now))\nreturn {greeting, int(now), int(2^53)}\n")},
	"lua/broken.lua": {Data: []byte("return undefined_global.x\n")},
}

// TestLoadScript runs a script made of the prelude, lib.lua and its own
// file on a real Redis.
func TestLoadScript(t *testing.T) {
	t.Parallel()
	c := newClient(t, "redis://"+redistest.Start(t))
	ctx := t.Context()
	before := time.Now()
	v, err := redisx.LoadScript(scripts, "lua", "hello").Run(ctx, c, []string{"k"}).StringSlice()
	if err != nil {
		t.Fatalf("hello.lua: %v", err)
	}
	if len(v) != 3 || v[0] != "hello k" || v[2] != "9007199254740992" {
		t.Fatalf("hello.lua = %q, want hello k, now, 9007199254740992", v)
	}
	ms, err := strconv.ParseInt(v[1], 10, 64)
	if err != nil {
		t.Fatalf("now = %q: %v", v[1], err)
	}
	// The server runs on this machine: its clock is this one.
	if now := time.UnixMilli(ms); now.Before(before.Add(-time.Second)) || now.After(time.Now().Add(time.Second)) {
		t.Errorf("now = %v, want about %v", now, before)
	}
	if got, err := c.Get(ctx, "k").Result(); got != v[1] || err != nil {
		t.Errorf("GET k = %q, %v; want %q", got, err, v[1])
	}

	// A script's error is no unavailability.
	err = redisx.Wrap(ctx, "test: redis broken", errUnavailable, redisx.LoadScript(scripts, "lua", "broken").Run(ctx, c, []string{"k"}).Err())
	if err == nil || errors.Is(err, errUnavailable) {
		t.Errorf("broken.lua = %v, want an error not wrapping %v", err, errUnavailable)
	}
}

func TestLoadScriptMissing(t *testing.T) {
	for _, tc := range []struct {
		name string
		fsys fstest.MapFS
	}{
		{"no script", scripts},
		{"no lib.lua", fstest.MapFS{"lua/missing.lua": {Data: []byte("return 1")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("LoadScript did not panic")
				}
			}()
			redisx.LoadScript(tc.fsys, "lua", "missing")
		})
	}
}
