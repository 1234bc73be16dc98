package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/session/redistest"
)

// TestHelpGroupsEveryFlag: --help writes to stdout, returns flag.ErrHelp
// (keyrelay exits 0), says what keyrelay is, and lists every flag exactly
// once, in a group.
func TestHelpGroupsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	_, err := parseConfig([]string{"--help"}, func(string) string { return "" }, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseConfig(--help) = %v, want flag.ErrHelp", err)
	}
	help := out.String()
	for _, want := range []string{"keyrelay: a relay for end-to-end encrypted chats", "Usage:", "Examples:", "Network and HTTP:", "Limits per client:"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	seen := map[string]int{}
	for _, g := range flagGroups {
		for _, name := range g.names {
			seen[name]++
		}
	}
	var all []string
	for line := range strings.Lines(help) {
		if name, ok := strings.CutPrefix(line, "  --"); ok {
			name, _, _ = strings.Cut(strings.TrimSpace(name), " ")
			all = append(all, name)
		}
	}
	for _, name := range all {
		if seen[name] != 1 {
			t.Errorf("flag --%s is in %d groups, want 1", name, seen[name])
		}
	}
	if len(all) != len(seen) {
		t.Errorf("--help lists %d flags, the groups name %d: a group names a flag that does not exist", len(all), len(seen))
	}
}

// TestFlagErrors: a wrong flag gets one line that names the flag, says what
// is wrong and what is valid, and no usage dump.
func TestFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--room-ttl", "5"}, `"5" is not a duration: give a number and a unit, such as 30s, 2m or 1h`},
		{[]string{"--room-ttl", "-5s"}, "--room-ttl -5s: must not be negative"},
		{[]string{"--ping-interval", "-1s"}, "--ping-interval -1s: must not be negative"},
		{[]string{"--log-level", "verbose"}, `--log-level "verbose": want debug, info, warn or error`},
		{[]string{"--log-format", "xml"}, `--log-format "xml": want text or json`},
		{[]string{"--no-such-flag"}, "flag provided but not defined: -no-such-flag (keyrelay --help lists the flags)"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"--addr", "127.0.0.1:0"}, tt.args...), func(string) string { return "" }, nil, &out, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error with %q", tt.args, err, tt.want)
		}
		if strings.Contains(err.Error(), "Usage") || out.Len() > 0 {
			t.Errorf("%q: the usage was written (%d bytes) or is in the error", tt.args, out.Len())
		}
	}
}

// TestVersion: --version prints the version and exits 0.
func TestVersion(t *testing.T) {
	var out bytes.Buffer
	_, err := parseConfig([]string{"--version"}, func(string) string { return "" }, &out)
	if !errors.Is(err, errVersion) {
		t.Fatalf("parseConfig(--version) = %v, want errVersion", err)
	}
	if !strings.HasPrefix(out.String(), "keyrelay ") || !strings.Contains(out.String(), "go1.") {
		t.Errorf("--version printed %q, want keyrelay, its version and Go's", out.String())
	}
}

// TestStartupLog: the start-up log says what to open, which store and
// groups are in use, and warns about the key API's GET form.
func TestStartupLog(t *testing.T) {
	_, logs, _ := start(t)
	for _, want := range []string{"open=http://127.0.0.1:", "groups=modp14,modp15,modp16,modp17,modp18,x25519,p256", "session state in memory", "private keys in the URL"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the start-up log lacks %q:\n%s", want, logs)
		}
	}
}

// TestRedisDatabaseMissing: a --redis-url naming a database Redis does not
// have is an error at once, not 30 s of waiting as if Redis were down.
func TestRedisDatabaseMissing(t *testing.T) {
	url := redistest.StartServer(t).URL() + "/99"
	var logs bytes.Buffer
	err := run(context.Background(), []string{"--addr", "127.0.0.1:0", "--redis-url", url}, func(string) string { return "" }, nil, io.Discard, &logs)
	if err == nil || !strings.Contains(err.Error(), "DB index is out of range") {
		t.Fatalf("run with %s: %v, want the database error", url, err)
	}
	if strings.Contains(logs.String(), "waiting for Redis") {
		t.Errorf("the missing database was waited for as if Redis were down:\n%s", logs.String())
	}
}

// TestTutorialScript: scripts/tutorial.sh completes against a relay, and
// when the relay refuses (an unknown group) it shows the relay's message,
// not only curl's status line.
func TestTutorialScript(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	base, _, _ := start(t)
	out, err := exec.Command("bash", "../../scripts/tutorial.sh", base, "14").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "shared keys match") {
		t.Errorf("tutorial.sh %s 14: %v\n%s", base, err, out)
	}
	out, err = exec.Command("bash", "../../scripts/tutorial.sh", base, "13").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `Unknown group: \"13\" (use 5, 14-18`) {
		t.Errorf("tutorial.sh %s 13: %v, want the relay's message in:\n%s", base, err, out)
	}
}
