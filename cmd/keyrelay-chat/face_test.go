package main

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/relaytest"
)

// runExit runs keyrelay-chat with args and no input, as main does, and
// returns its exit status and what it printed.
func runExit(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var out, errOut strings.Builder
	err := run(ctx, args, func(string) string { return "" }, strings.NewReader(""), &out, &errOut)
	code = report(err, &errOut)
	return code, out.String(), errOut.String()
}

// TestHelp: --help says what the program is, shows an example, lists
// every flag once under a topic, says that Ctrl-D leaves, and exits 0
// with the help on standard output.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "-help"} {
		code, out, errOut := runExit(t, arg)
		if code != 0 || errOut != "" {
			t.Errorf("%s: exit %d, stderr %q; want 0 and nothing", arg, code, errOut)
		}
		for _, want := range []string{
			"keyrelay-chat is a chat for two people in a terminal, end-to-end encrypted",
			"\nExample, ",
			"$ keyrelay-chat --url http://localhost:8080/\n",
			"End of input (Ctrl-D) leaves the room",
			"\nRelay:\n  --url URL\n",
			"\nRoom:\n  --room ROOM\n",
			"  --group GROUP\n",
			"  --allow-legacy-groups\n",
			"\nRestarts:\n  --state FILE\n",
			"\nInformation:\n  -h, --help\n",
			"  --version\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: the help lacks %q:\n%s", arg, want, out)
			}
		}
		if want := "GROUP of a new room: x25519, p256, modp14, modp15, modp16, modp17 or modp18"; !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("%s: the help lacks %q", arg, want)
		}
		if !strings.HasPrefix(out, "keyrelay-chat is ") {
			t.Errorf("%s: the help starts %q, want what the program is", arg, strings.SplitN(out, "\n", 2)[0])
		}
	}

	// Every flag is under exactly one topic, and every topic's flag exists.
	listed := map[string]int{}
	for _, topic := range flagTopics {
		for _, name := range topic.names {
			listed[name]++
		}
	}
	_, out, _ := runExit(t, "--help")
	for _, m := range regexp.MustCompile(`(?m)^  (?:-h, )?--([a-z-]+)`).FindAllStringSubmatch(out, -1) {
		if listed[m[1]] != 1 {
			t.Errorf("--%s is listed under %d topics, want 1", m[1], listed[m[1]])
		}
		delete(listed, m[1])
	}
	for name := range listed {
		t.Errorf("topic flag --%s is not in the help", name)
	}
	for _, name := range []string{"url", "room", "group", "allow-legacy-groups", "state", "version"} {
		if !regexp.MustCompile(`(?m)^  --` + name + `\b`).MatchString(out) {
			t.Errorf("--%s is not in the help", name)
		}
	}
	// No line of the flag descriptions runs past 80 columns.
	for _, line := range strings.Split(out[:strings.Index(out, "Output lines")], "\n") {
		if len(line) > 80 && !strings.Contains(line, "keyrelay-chat --url ws://") {
			t.Errorf("help line of %d columns: %q", len(line), line)
		}
	}
}

// TestVersion: --version prints one line with what the build information
// has, and exits 0.
func TestVersion(t *testing.T) {
	code, out, errOut := runExit(t, "--version")
	if code != 0 || errOut != "" || !regexp.MustCompile(`^keyrelay-chat \S+.*, go\d`).MatchString(out) || strings.Count(out, "\n") != 1 {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestFlagErrors: a flag error says what is wrong in one line, points at
// --help, and exits 2, without the whole usage; an unknown group lists the
// groups.
func TestFlagErrors(t *testing.T) {
	groups := "the groups are x25519, p256, modp14, modp15, modp16, modp17 or modp18 (and modp5, with --allow-legacy-groups)"
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--group", "modp13"}, "keyrelay-chat: --group modp13: unknown group; " + groups},
		{[]string{"--nonsense"}, "keyrelay-chat: flag provided but not defined: -nonsense"},
		{[]string{"--url"}, "keyrelay-chat: flag needs an argument: -url"},
		{[]string{"--url", "localhost:8080"}, `keyrelay-chat: --url: relay URL "localhost:8080": want a ws://, wss://, http:// or https:// URL, such as ws://localhost:8080/v1/ws`},
		{[]string{"now"}, `keyrelay-chat: unexpected argument "now"`},
	}
	for _, tt := range tests {
		code, out, errOut := runExit(t, tt.args...)
		if want := tt.want + "\nRun 'keyrelay-chat --help' for the flags.\n"; code != 2 || out != "" || errOut != want {
			t.Errorf("%q: exit %d, stdout %q, stderr\n%s\nwant exit 2 and\n%s", tt.args, code, out, errOut, want)
		}
	}
	// From the environment, the message names the variable.
	ctx := context.Background()
	err := run(ctx, nil, func(k string) string {
		if k == "KEYRELAY_CHAT_GROUP" {
			return "modp13"
		}
		return ""
	}, strings.NewReader(""), io.Discard, io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "KEYRELAY_CHAT_GROUP modp13: unknown group; ") {
		t.Errorf("KEYRELAY_CHAT_GROUP=modp13: %v", err)
	}
	// Every group the message lists is one.
	for _, name := range strings.FieldsFunc(groupNames(), func(r rune) bool { return r == ',' || r == ' ' }) {
		if name == "or" {
			continue
		}
		if _, err := dh.LookupGroup(name); err != nil {
			t.Errorf("listed group %q: %v", name, err)
		}
	}
}

// TestErrorChain: an error the relay gives reaches the user once per
// layer: the operation, the relay's words, the code.
func TestErrorChain(t *testing.T) {
	url := newRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := start(t, ctx, []string{"--url", url}, config{}, nil)
	id := a.screen.waitFor(t, ctx, roomRE)[1]
	b := start(t, ctx, []string{"--url", url, "--room", id}, config{}, nil)
	b.screen.waitFor(t, ctx, `(?m)^\* joined room `)

	code, _, errOut := runExit(t, "--url", url, "--room", id)
	if want := "keyrelay-chat: join: the room already has two peers (room_full)\n"; code != 1 || errOut != want {
		t.Errorf("a third person: exit %d, stderr %q; want 1 and %q", code, errOut, want)
	}
}

// TestTooManyConnections: a relay that refuses the connection (close
// 4429) is named in words.
func TestTooManyConnections(t *testing.T) {
	srv := relaytest.NewServer(t, relaytest.NewMemoryStore(), relay.Config{Limiter: relaytest.NewLimiter(t, limits.Config{MaxConnsPerIP: 1, JoinsPerIP: -1, JoinsPerRoom: -1, RoomsPerIP: -1})})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := start(t, ctx, []string{"--url", srv.URL}, config{}, nil)
	a.screen.waitFor(t, ctx, roomRE)
	code, _, errOut := runExit(t, "--url", srv.URL)
	if want := "keyrelay-chat: create: the relay closed the connection (4429): too many connections from your address\n"; code != 1 || errOut != want {
		t.Errorf("over the connection limit: exit %d, stderr %q; want 1 and %q", code, errOut, want)
	}
}

// TestPageURL: keyrelay-chat takes the page's address, as a browser shows
// it, and prints the relay's WebSocket URL in the join command.
func TestPageURL(t *testing.T) {
	url := newRelay(t) // ws://127.0.0.1:port/v1/ws
	page := "http" + strings.TrimSuffix(strings.TrimPrefix(url, "ws"), "/v1/ws") + "/"
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := start(t, ctx, []string{"--url", page}, config{}, nil)
	id := a.screen.waitFor(t, ctx, roomRE)[1]
	cmd := a.screen.waitFor(t, ctx, `(?m)^    keyrelay-chat (.*)$`)[1]
	if want := "--url " + url + " --group x25519 --room " + id; cmd != want {
		t.Errorf("join command %q, want %q", cmd, want)
	}
	wsNoPath := strings.TrimSuffix(url, "/v1/ws") + "/"
	b := start(t, ctx, []string{"--url", wsNoPath, "--room", id}, config{}, nil)
	b.screen.waitFor(t, ctx, `(?m)^\* joined room `+id)
}
