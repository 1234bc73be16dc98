package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/session/redistest"
)

// count returns how many lines of the screen are exactly line.
func (s *screen) count(line string) int {
	return len(regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(line)+`$`).FindAllString(s.String(), -1))
}

// stopChat ends an instance as Ctrl-C would (its context ends: no leave)
// and waits for it.
func stopChat(t *testing.T, in *instance, cancel context.CancelFunc) {
	t.Helper()
	cancel()
	ctx, done := context.WithTimeout(context.Background(), testTimeout)
	defer done()
	if err := in.wait(t, ctx); err != nil {
		t.Fatalf("stopped chat returned %v", err)
	}
}

// TestRestartFromState: a keyrelay-chat with --state is stopped mid-
// conversation and started again with the same file: it takes its seat
// back (no new room, no new key), gets the lines sent while it was away,
// and the conversation goes on both ways; no line shows twice on either
// side, and the file is 0600 throughout and gone after it leaves.
func TestRestartFromState(t *testing.T) {
	url := newRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	file := filepath.Join(t.TempDir(), "a.json")
	args := []string{"--url", url, "--state", file}

	ctxA, stopA := context.WithCancel(ctx)
	a := start(t, ctxA, args, config{}, nil)
	id := a.screen.waitFor(t, ctx, roomRE)[1]
	b := start(t, ctx, []string{"--url", url, "--room", id}, config{}, nil)
	sn := a.screen.waitFor(t, ctx, safetyRE)[1]
	b.screen.waitFor(t, ctx, safetyRE)
	a.typeLine(t, "one")
	b.screen.waitFor(t, ctx, `(?m)^peer: one$`)
	b.typeLine(t, "two")
	a.screen.waitFor(t, ctx, `(?m)^peer: two$`)
	checkStateFile(t, file, id)

	stopChat(t, a, stopA)
	checkNoTemporaries(t, filepath.Dir(file))
	checkStateFile(t, file, id)
	b.screen.waitFor(t, ctx, `\* the other person's connection dropped`)
	b.typeLine(t, "three")
	b.typeLine(t, "four")

	a2 := start(t, ctx, args, config{}, nil)
	a2.screen.waitFor(t, ctx, `(?m)^\* took my seat back in room `+id+` \(x25519\)$`)
	a2.screen.waitFor(t, ctx, `(?m)^peer: four$`)
	if sn2 := a2.screen.waitFor(t, ctx, safetyRE)[1]; sn2 != sn {
		t.Errorf("safety number after the restart %s, want the same %s", sn2, sn)
	}
	b.screen.waitFor(t, ctx, `\* the other person is back`)
	a2.typeLine(t, "five")
	b.screen.waitFor(t, ctx, `(?m)^peer: five$`)
	b.typeLine(t, "six")
	a2.screen.waitFor(t, ctx, `(?m)^peer: six$`)
	checkStateFile(t, file, id)

	if strings.Contains(a2.screen.String(), "created") {
		t.Errorf("the restarted chat made a new room:\n%s", a2.screen)
	}
	for _, tc := range []struct {
		s     *screen
		line  string
		count int
	}{
		{a.screen, "peer: two", 1},
		{a2.screen, "peer: two", 0}, // processed before the restart
		{a2.screen, "peer: three", 1},
		{a2.screen, "peer: four", 1},
		{a2.screen, "peer: six", 1},
		{b.screen, "peer: one", 1},
		{b.screen, "peer: five", 1},
	} {
		if n := tc.s.count(tc.line); n != tc.count {
			t.Errorf("%q shows %d times, want %d:\n%s", tc.line, n, tc.count, tc.s)
		}
	}
	if !regexp.MustCompile(`(?s)peer: three\n.*peer: four\n`).MatchString(a2.screen.String()) {
		t.Errorf("the lines sent while away are out of order:\n%s", a2.screen)
	}

	a2.stdin.Close() // leave: the seat is given up, and the file with it
	if err := a2.wait(t, ctx); err != nil {
		t.Fatalf("a2: %v", err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after leaving, the state file: %v; want it removed", err)
	}
	checkNoTemporaries(t, filepath.Dir(file))
}

// checkStateFile checks that file holds a State for room, with mode 0600.
func checkStateFile(t *testing.T, file, room string) {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("state file mode %04o, want 0600", perm)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var st client.State
	if err := json.Unmarshal(b, &st); err != nil || st.Room != room || st.PrivateKey == "" || !st.HandshakeComplete {
		t.Errorf("state file %v: room %q, key set %v, handshake %v; want room %s after the handshake", err, st.Room, st.PrivateKey != "", st.HandshakeComplete, room)
	}
}

// checkNoTemporaries checks that no temporary state file is left in dir
// (once the chat writing them has stopped).
func checkNoTemporaries(t *testing.T, dir string) {
	t.Helper()
	if matches, _ := filepath.Glob(filepath.Join(dir, ".*.tmp")); len(matches) > 0 {
		t.Errorf("temporary files left behind: %v", matches)
	}
}

// TestFailoverToOtherRelay: two relays share a real Redis; the chat is
// connected to the first of its two URLs. When that relay stops, the chat
// says so, tries it, then the other, resumes there, and the conversation
// goes on.
func TestFailoverToOtherRelay(t *testing.T) {
	addr := redistest.Start(t)
	prefix := "chat:" + t.Name() + ":"
	r1 := relaytest.NewServer(t, relaytest.NewRedisStore(t, addr, prefix), relay.Config{})
	r2 := relaytest.NewServer(t, relaytest.NewRedisStore(t, addr, prefix), relay.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	a := start(t, ctx, []string{"--url", r1.URL + "," + r2.URL}, config{}, nil)
	id := a.screen.waitFor(t, ctx, roomRE)[1]
	cmd := a.screen.waitFor(t, ctx, `(?m)^    keyrelay-chat (.*)$`)[1]
	if want := "--url " + r1.URL + "," + r2.URL + " --group x25519 --room " + id; cmd != want {
		t.Errorf("join command %q, want %q", cmd, want)
	}
	b := start(t, ctx, []string{"--url", r2.URL, "--room", id}, config{}, nil)
	a.screen.waitFor(t, ctx, safetyRE)
	b.screen.waitFor(t, ctx, safetyRE)
	a.typeLine(t, "before")
	b.screen.waitFor(t, ctx, `(?m)^peer: before$`)

	r1.Relay.Close() // as SIGTERM: close 1001 to its clients
	r1.HTTP.Close()
	a.screen.waitFor(t, ctx, `(?m)^\* connection lost; reconnecting$`)
	a.screen.waitFor(t, ctx, `(?m)^\* trying `+regexp.QuoteMeta(r1.URL)+` \((?:2m0s|1m\d\ds) left\)$`)
	a.screen.waitFor(t, ctx, `(?m)^\* trying `+regexp.QuoteMeta(r2.URL)+` \((?:2m0s|1m\d\ds) left\)$`)
	a.screen.waitFor(t, ctx, `(?m)^\* reconnected to `+regexp.QuoteMeta(r2.URL)+`$`)
	b.typeLine(t, "after the failover")
	a.screen.waitFor(t, ctx, `(?m)^peer: after the failover$`)
	a.typeLine(t, "still here")
	b.screen.waitFor(t, ctx, `(?m)^peer: still here$`)
	if n := a.screen.count("* reconnected to " + r2.URL); n != 1 {
		t.Errorf("reconnected %d times, want 1:\n%s", n, a.screen)
	}
}

// TestStateFileRules: a state file in use by another keyrelay-chat, for
// another room, or readable by others is refused; one whose seat is gone
// is removed, with an error that says so.
func TestStateFileRules(t *testing.T) {
	url := newRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	dir := t.TempDir()
	file := filepath.Join(dir, "a.json")
	getenv := func(string) string { return "" }
	runErr := func(args ...string) error {
		return run(ctx, args, getenv, strings.NewReader(""), io.Discard, io.Discard)
	}

	ctxA, stopA := context.WithCancel(ctx)
	a := start(t, ctxA, []string{"--url", url, "--state", file}, config{}, nil)
	id := a.screen.waitFor(t, ctx, roomRE)[1]
	if err := runErr("--url", url, "--state", file); err == nil || !strings.Contains(err.Error(), "in use by another keyrelay-chat") {
		t.Errorf("a second chat on the same file: %v", err)
	}
	stopChat(t, a, stopA)

	if err := runErr("--url", url, "--state", file, "--room", "6f1c9a52-3b7e-4d0a-9e57-1b2c3d4e5f60"); err == nil || !strings.Contains(err.Error(), "holds a seat in room "+id) {
		t.Errorf("a state file for another room: %v", err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := runErr("--url", url, "--state", file); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a state file readable by others: %v", err)
	}
	if err := os.Chmod(file, 0o600); err != nil {
		t.Fatal(err)
	}

	// The seat is gone (the room is unknown to a fresh relay): the file
	// goes too, and the next run starts afresh.
	other := newRelay(t)
	err := runErr("--url", other, "--state", file)
	if err == nil || !strings.Contains(err.Error(), "the seat is lost") || !strings.Contains(err.Error(), "room_not_found") {
		t.Errorf("a state file whose room is gone: %v", err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state file of a lost seat: %v; want it removed", err)
	}
	c := start(t, ctx, []string{"--url", other, "--state", file}, config{}, nil)
	c.screen.waitFor(t, ctx, roomRE)
	deadline := time.Now().Add(testTimeout)
	for {
		if _, err := os.Stat(file); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new room's state file was not written")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKilledChatTakesSeatBack runs the keyrelay-chat binary with --state
// and kills it (SIGKILL: no close, no cleanup) right after it typed a
// line, then starts it again with the same file. It takes its seat back;
// the line typed just before the kill reaches the peer at most once, the
// lines sent while it was dead reach it once, and its next line reaches
// the peer: its counters went on above every one it had used (the peer
// would drop a reused counter as a replay).
func TestKilledChatTakesSeatBack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "keyrelay-chat")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	url := newRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	file := filepath.Join(t.TempDir(), "a.json")

	type proc struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		screen *screen
	}
	startBin := func() *proc {
		p := &proc{cmd: exec.Command(bin, "--url", url, "--state", file), screen: newScreen()}
		p.cmd.Stdout, p.cmd.Stderr = p.screen, p.screen
		var err error
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
		return p
	}
	typeLine := func(p *proc, line string) {
		t.Helper()
		if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}

	a := startBin()
	id := a.screen.waitFor(t, ctx, roomRE)[1]
	b := start(t, ctx, []string{"--url", url, "--room", id}, config{}, nil)
	a.screen.waitFor(t, ctx, safetyRE)
	b.screen.waitFor(t, ctx, safetyRE)
	for _, line := range []string{"a1", "a2"} {
		typeLine(a, line)
		b.screen.waitFor(t, ctx, `(?m)^peer: `+line+`$`)
	}
	b.typeLine(t, "b1")
	a.screen.waitFor(t, ctx, `(?m)^peer: b1$`)
	typeLine(a, "a3, then killed")
	time.Sleep(2 * time.Millisecond) // somewhere in its sending
	a.cmd.Process.Kill()
	a.cmd.Wait()

	b.screen.waitFor(t, ctx, `\* the other person's connection dropped`)
	b.typeLine(t, "b2 while it was dead")
	a2 := startBin()
	a2.screen.waitFor(t, ctx, `(?m)^\* took my seat back in room `+id+` \(x25519\)$`)
	a2.screen.waitFor(t, ctx, `(?m)^peer: b2 while it was dead$`)
	a2.screen.waitFor(t, ctx, safetyRE) // shown again: lines typed before it are not sent
	typeLine(a2, "a4 after the restart")
	defer func() {
		if t.Failed() {
			st, _ := os.ReadFile(file)
			t.Logf("restarted chat's screen:\n%s\nstate: %s", a2.screen, st)
		}
	}()
	b.screen.waitFor(t, ctx, `(?m)^peer: a4 after the restart$`)
	b.typeLine(t, "b3")
	a2.screen.waitFor(t, ctx, `(?m)^peer: b3$`)

	if n := b.screen.count("peer: a3, then killed"); n > 1 {
		t.Errorf("the line typed before the kill shows %d times on the peer's screen", n)
	}
	for _, tc := range []struct {
		s    *screen
		line string
		want int
	}{
		{b.screen, "peer: a1", 1}, {b.screen, "peer: a2", 1}, {b.screen, "peer: a4 after the restart", 1},
		{a2.screen, "peer: b1", 0}, {a2.screen, "peer: b2 while it was dead", 1}, {a2.screen, "peer: b3", 1},
	} {
		if n := tc.s.count(tc.line); n != tc.want {
			t.Errorf("%q shows %d times, want %d:\n%s", tc.line, n, tc.want, tc.s)
		}
	}
	if strings.Contains(b.screen.String(), "could not be decrypted") {
		t.Errorf("the peer refused a message:\n%s", b.screen)
	}
	t.Logf("the line typed before the kill arrived %d time(s)", b.screen.count("peer: a3, then killed"))
}
