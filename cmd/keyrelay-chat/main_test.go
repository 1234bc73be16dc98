package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/relay/relaytest"
)

// testTimeout bounds each test; it only keeps a broken relay from hanging
// the suite.
const testTimeout = 30 * time.Second

// newRelay starts the real relay on loopback and returns its WebSocket URL.
func newRelay(t *testing.T) string {
	t.Helper()
	return relaytest.NewServer(t, relaytest.NewMemoryStore(), relay.Config{}).URL
}

// screen is a terminal the test can watch: a goroutine-safe buffer that
// wakes waiters on every write.
type screen struct {
	mu      sync.Mutex
	buf     strings.Builder
	changed chan struct{}
}

func newScreen() *screen { return &screen{changed: make(chan struct{})} }

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	close(s.changed)
	s.changed = make(chan struct{})
	return len(p), nil
}

func (s *screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// waitFor waits until the screen matches re and returns the submatches of
// the last match.
func (s *screen) waitFor(t *testing.T, ctx context.Context, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	for {
		s.mu.Lock()
		all := rx.FindAllStringSubmatch(s.buf.String(), -1)
		ch := s.changed
		s.mu.Unlock()
		if len(all) > 0 {
			return all[len(all)-1]
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("no %q on the screen:\n%s", re, s)
		}
	}
}

// instance is one keyrelay-chat running in-process.
type instance struct {
	stdin  *io.PipeWriter
	screen *screen
	done   chan struct{} // closed when it has returned
	err    error         // what it returned
}

func (in *instance) wait(t *testing.T, ctx context.Context) error {
	t.Helper()
	select {
	case <-in.done:
		return in.err
	case <-ctx.Done():
		t.Fatalf("still running; screen:\n%s", in.screen)
		return nil
	}
}

func (in *instance) typeLine(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(in.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// start runs keyrelay-chat with args, or chat with cfg and opts if args is
// nil.
func start(t *testing.T, ctx context.Context, args []string, cfg config, opts *client.Options) *instance {
	t.Helper()
	r, w := io.Pipe()
	in := &instance{stdin: w, screen: newScreen(), done: make(chan struct{})}
	getenv := func(string) string { return "" }
	go func() {
		defer close(in.done)
		if args != nil {
			in.err = run(ctx, args, getenv, r, in.screen, io.Discard)
		} else {
			in.err = chat(ctx, cfg, opts, r, in.screen)
		}
		r.Close()
	}()
	t.Cleanup(func() {
		w.Close()
		select {
		case <-in.done:
		case <-time.After(testTimeout):
			t.Error("keyrelay-chat did not stop")
		}
	})
	return in
}

const (
	roomRE   = `room ([0-9a-f-]{36}) created`
	safetyRE = `safety number: ((?:\d{5} ){11}\d{5})`
)

// TestTwoPeers runs two keyrelay-chat instances against a relay: same
// safety number on both screens, each line arrives on the other side, and
// end of input leaves the room.
func TestTwoPeers(t *testing.T) {
	url := newRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	a := start(t, ctx, []string{"--url", url, "--group", "p256"}, config{}, nil)
	id := a.screen.waitFor(t, ctx, roomRE)[1]
	// The joiner runs the command the creator printed, group included.
	cmd := a.screen.waitFor(t, ctx, `(?m)^    keyrelay-chat (.*)$`)[1]
	if want := "--url " + url + " --group p256 --room " + id; cmd != want {
		t.Errorf("join command %q, want %q", cmd, want)
	}
	b := start(t, ctx, strings.Fields(cmd), config{}, nil)
	b.screen.waitFor(t, ctx, `(?m)^\* joined room `+id+` \(p256\)$`)

	snA := a.screen.waitFor(t, ctx, safetyRE)[1]
	snB := b.screen.waitFor(t, ctx, safetyRE)[1]
	if snA != snB {
		t.Errorf("safety numbers differ: %s and %s", snA, snB)
	}
	a.screen.waitFor(t, ctx, `\* the other person joined`)
	b.screen.waitFor(t, ctx, `handshake complete \(p256\)`)

	a.typeLine(t, "hello from a")
	b.screen.waitFor(t, ctx, `(?m)^peer: hello from a$`)
	b.typeLine(t, "hello from b \x1b[2J")
	a.screen.waitFor(t, ctx, "(?m)^peer: hello from b \uFFFD\\[2J$")

	a.stdin.Close()
	if err := a.wait(t, ctx); err != nil {
		t.Errorf("a: %v", err)
	}
	a.screen.waitFor(t, ctx, `\* left the room\n\* bye\n$`)
	b.screen.waitFor(t, ctx, `\* the other person left`)
	b.stdin.Close()
	if err := b.wait(t, ctx); err != nil {
		t.Errorf("b: %v", err)
	}
}

// TestReconnect cuts one side's connection: it reconnects by itself and the
// chat goes on, with the lines sent meanwhile delivered.
func TestReconnect(t *testing.T) {
	url := newRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	var tr relaytest.Cutter
	a := start(t, ctx, nil, config{urls: []string{url}, group: "x25519"}, &client.Options{HTTPClient: tr.HTTPClient()})
	id := a.screen.waitFor(t, ctx, roomRE)[1]
	b := start(t, ctx, []string{"--url", url, "--room", id}, config{}, nil)
	a.screen.waitFor(t, ctx, safetyRE)
	b.screen.waitFor(t, ctx, safetyRE)

	tr.Cut()
	a.screen.waitFor(t, ctx, `\* reconnected`)
	b.typeLine(t, "while you were away")
	a.screen.waitFor(t, ctx, `(?m)^peer: while you were away$`)
	a.typeLine(t, "back")
	b.screen.waitFor(t, ctx, `(?m)^peer: back$`)
	b.screen.waitFor(t, ctx, `\* the other person is back`)
	if n := strings.Count(a.screen.String(), "safety number:"); n != 1 {
		t.Errorf("a shows the safety number %d times:\n%s", n, a.screen)
	}

	// Ctrl-C: run returns nil without leaving.
	cancel()
	waitCtx, waitCancel := context.WithTimeout(context.Background(), testTimeout)
	defer waitCancel()
	if err := a.wait(t, waitCtx); err != nil {
		t.Errorf("a after cancel: %v", err)
	}
}

func TestRunErrors(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	deadURL := "ws" + strings.TrimPrefix(closed.URL, "http") + "/v1/ws"
	closed.Close()
	url := newRelay(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown group", []string{"--url", url, "--group", "modp13"}, "--group modp13: unknown group"},
		{"no relay", []string{"--url", deadURL}, "dial"},
		{"no such room", []string{"--url", url, "--room", "6f1c9a52-3b7e-4d0a-9e57-1b2c3d4e5f60"}, "room_not_found"},
		{"extra argument", []string{"--url", url, "now"}, "unexpected argument"},
		{"legacy group", []string{"--url", url, "--group", "modp5"}, "the group modp5 is a legacy group; refusing (--allow-legacy-groups allows it)"},
		{"legacy group to join", []string{"--url", url, "--group", "modp5", "--room", "6f1c9a52-3b7e-4d0a-9e57-1b2c3d4e5f60"}, "the group modp5 is a legacy group; refusing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			err := run(ctx, tt.args, func(string) string { return "" }, strings.NewReader(""), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	env := map[string]string{
		"KEYRELAY_CHAT_URL":                 "ws://relay.example:9000/v1/ws, ws://relay2.example:9000/v1/ws",
		"KEYRELAY_CHAT_GROUP":               "modp14",
		"KEYRELAY_CHAT_ROOM":                "6f1c9a52-3b7e-4d0a-9e57-1b2c3d4e5f60",
		"KEYRELAY_CHAT_STATE":               "/tmp/chat.json",
		"KEYRELAY_CHAT_ALLOW_LEGACY_GROUPS": "true",
	}
	envURLs := []string{"ws://relay.example:9000/v1/ws", "ws://relay2.example:9000/v1/ws"}
	def := []string{"ws://localhost:8080/v1/ws"}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want config
	}{
		{"defaults", nil, nil, config{urls: def, group: "x25519"}},
		{"environment", nil, env, config{urls: envURLs, group: "modp14", groupSet: true, room: env["KEYRELAY_CHAT_ROOM"], state: "/tmp/chat.json", allowLegacy: true}},
		{"flags win", []string{"--url", "ws://x/v1/ws", "--group", "p256", "--room", "r", "--state", "s.json", "--allow-legacy-groups=false"}, env, config{urls: []string{"ws://x/v1/ws"}, group: "p256", groupSet: true, room: "r", state: "s.json"}},
		{"join without group", []string{"--room", "r"}, nil, config{urls: def, group: "x25519", room: "r"}},
		{"join with group", []string{"--room", "r", "--group", "x25519", "--allow-legacy-groups"}, nil, config{urls: def, group: "x25519", groupSet: true, room: "r", allowLegacy: true}},
		{"urls comma-separated", []string{"--url", "ws://a/v1/ws,ws://b/v1/ws"}, nil, config{urls: []string{"ws://a/v1/ws", "ws://b/v1/ws"}, group: "x25519"}},
		{"urls repeated", []string{"--url", "ws://a/v1/ws", "--url", "ws://b/v1/ws, ws://c/v1/ws"}, env, config{urls: []string{"ws://a/v1/ws", "ws://b/v1/ws", "ws://c/v1/ws"}, group: "modp14", groupSet: true, room: env["KEYRELAY_CHAT_ROOM"], state: "/tmp/chat.json", allowLegacy: true}},
		// The page's address and WebSocket URLs without a path mean /v1/ws.
		{"page URL", []string{"--url", "http://relay.example:8080/"}, nil, config{urls: []string{"ws://relay.example:8080/v1/ws"}, group: "x25519"}},
		{"https page URL", []string{"--url", "https://relay.example"}, nil, config{urls: []string{"wss://relay.example/v1/ws"}, group: "x25519"}},
		{"ws URL without a path", []string{"--url", "ws://relay.example:8080/,wss://relay2.example"}, nil, config{urls: []string{"ws://relay.example:8080/v1/ws", "wss://relay2.example/v1/ws"}, group: "x25519"}},
		{"page URL from the environment", nil, map[string]string{"KEYRELAY_CHAT_URL": "http://localhost:8080/"}, config{urls: def, group: "x25519"}},
		{"group by number", []string{"--group", "14"}, nil, config{urls: def, group: "14", groupSet: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, done, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil || done || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseConfig = %+v, %v, %v; want %+v", got, done, err, tt.want)
			}
		})
	}
	for _, args := range [][]string{{"--url", ""}, {"--url", " , "}} {
		if _, _, err := parseConfig(args, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("parseConfig(%q) accepted no URL", args)
		}
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"hello", "hello"},
		{"tab\there", "tab\there"},
		{"héllo wörld ✓", "héllo wörld ✓"},
		{"\x1b[31mred", "\uFFFD[31mred"},
		{"bell\a", "bell\uFFFD"},
		{"cr\rnl\n", "cr\uFFFDnl\uFFFD"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{"right-to-left \u202e override", "right-to-left \uFFFD override"},
	}
	for _, tt := range tests {
		if got := sanitize(tt.in); got != tt.want {
			t.Errorf("sanitize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
