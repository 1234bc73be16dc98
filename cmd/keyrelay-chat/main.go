// Command keyrelay-chat is a terminal chat peer for a keyrelay relay: two
// people, end-to-end encrypted.
//
// Usage:
//
//	keyrelay-chat [flags]                                create a room
//	keyrelay-chat [flags] --group GROUP --room ROOM      join a room
//	keyrelay-chat --help | --version
//
// Without --room it creates a room in --group and prints its ID and the
// command the other person should run, which names the group: the joiner
// pins it and refuses the room if the relay reports any other group (a
// relay or proxy could otherwise downgrade the exchange, say from x25519
// to modp5). With --room and no --group (nor KEYRELAY_CHAT_GROUP) it joins
// whatever the room's group is, unless it is a legacy group. The legacy
// group modp5 (1536-bit) is refused, when creating or joining, unless
// --allow-legacy-groups is given. An unknown --group is a flag error that
// lists the groups.
//
// --url takes the relay's address as a browser shows it (the page,
// http://localhost:8080/ or https://…) or its WebSocket URL (ws://… or
// wss://…); an empty path or "/" means the relay's endpoint, /v1/ws (see
// client.RelayURL).
//
// It then shows the key exchange as it happens and the safety number,
// which both people should compare over another channel (in person, on a
// call): if the numbers differ, someone replaced a key in transit. After
// that each line typed is sent as an encrypted message (a line typed
// before the key exchange is complete is not sent), and each line received
// is printed as "peer: TEXT". End of input (Ctrl-D) leaves the room and
// exits, also while it waits for the other person; Ctrl-C quits without
// leaving, so the other person sees a drop.
//
// # Warnings
//
// When the other person left (or did not come back in time) and someone
// new takes the seat, it says so ("* someone new joined: compare the new
// safety number before trusting them", as the browser page does) before
// the new key exchange and its safety number. When the relay forwards
// another key for the other person (after a reconnection, say), which the
// relay never does on its own, it warns at once ("* the other person's
// key changed: this room is not safe; start a new one") and shows the
// safety number with the new key, which differs from the other person's.
// Like the page, it then sends nothing more in that room (each line typed
// gets "* not sent: this room is not safe; start a new one") and stays
// until end of input, which leaves the room.
//
// # Failover and restarts
//
// --url takes several URLs of one relay service (instances sharing one
// Redis), comma-separated or repeated: it connects to the first that
// answers. When the connection drops, it resumes by itself, trying the
// URLs in turn with growing waits (100 ms doubling to 5 s, ±20%), for as
// long as the relay keeps its seat (the grace period the relay gave, 2
// minutes by default), and prints each attempt ("* trying URL (1m52s
// left)"); a message whose delivery was not confirmed is sent again, and
// shown once.
//
// With --state FILE it keeps in FILE what taking its seat back needs,
// written after it enters the room and after every change that matters
// (its key, the handshake, each message sent or processed), atomically
// (a new file renamed over the old) and readable by the user only (mode
// 0600; a FILE readable by others is refused). The file holds the private
// key of the conversation and the seat's resume token: keep it secret. On
// start, if FILE exists, it takes that seat back instead of creating or
// joining (with --room, FILE must be for that room), so a keyrelay-chat
// that was stopped or killed comes back to its conversation within the
// grace period: the messages sent meanwhile arrive, none twice, and its
// encryption counters go on where they were (a counter is saved before a
// message sealed with it leaves, so none is ever used twice). Leaving the
// room (end of input), or losing the seat for good, removes FILE. Two
// keyrelay-chat processes cannot use one FILE at once (FILE.lock is
// locked); never copy FILE to run the same seat twice.
//
// Every flag can also be set with an environment variable (the flag wins):
//
//	--url                  KEYRELAY_CHAT_URL                   the relay's address, or several, comma-separated (default "ws://localhost:8080/v1/ws")
//	--group                KEYRELAY_CHAT_GROUP                 the group of a new room (default "x25519"), or the group a joined room must have (default: any but legacy)
//	--room                 KEYRELAY_CHAT_ROOM                  the room to join (default: create one)
//	--state                KEYRELAY_CHAT_STATE                 the file that keeps the seat across restarts (default: none)
//	--allow-legacy-groups  KEYRELAY_CHAT_ALLOW_LEGACY_GROUPS   accept modp5 (default false)
//
// --help prints the usage, the flags by topic and the output lines, and
// --version the module version and VCS revision it was built from, both
// on standard output.
//
// # Output
//
// Scripts may parse what it prints. On standard output, one line per
// event, exactly as follows (ROOM is a room ID, GROUP a group name such as
// x25519, URLS the relay URLs (the --url value, each URL as
// client.RelayURL makes it, comma-separated), URL one relay URL, LEFT how
// long the relay keeps the seat yet (such as 1m52s), KEY-GROUP the group
// of the key exchange, NNNNN five digits, TEXT the peer's line with
// control characters and invalid UTF-8 replaced by U+FFFD, REASON a
// message from the relay or an error):
//
//	On standard output:
//	* room ROOM created (GROUP)
//	* the other person runs:
//	    keyrelay-chat --url URLS --group GROUP --room ROOM
//	    keyrelay-chat --url URLS --group GROUP --room ROOM --allow-legacy-groups
//	* waiting for them to join
//	* joined room ROOM (GROUP)
//	* joined room ROOM (group not fixed yet)
//	* took my seat back in room ROOM (GROUP)
//	* took my seat back in room ROOM (group not fixed yet)
//	* my public key (KEY-GROUP) is at the relay
//	* received the other person's public key
//	* handshake complete (KEY-GROUP); messages are end-to-end encrypted
//	* safety number: NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN
//	* compare it with the other person over another channel; if it differs, do not trust this chat
//	peer: TEXT
//	* the other person joined
//	* someone new joined: compare the new safety number before trusting them
//	* the other person is back
//	* the other person's connection dropped; they may come back
//	* the other person left; someone new may join
//	* the other person did not come back in time; someone new may join
//	* the other person's key changed: this room is not safe; start a new one
//	* safety number with the new key: NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN
//	* it differs from the other person's; nothing more is sent in this room (end of input leaves)
//	* not sent: nobody to send to yet
//	* not sent: REASON
//	* connection lost; reconnecting
//	* trying URL (LEFT left)
//	* reconnected to URL
//	* state not saved: REASON
//	* a message could not be decrypted and was dropped
//	* relay: REASON
//	* key exchange failed: REASON
//	* input: REASON
//	* left the room
//	* bye
//
// The creator prints the first four lines (the join command in its second
// form for a legacy group), the joiner one "joined" line, and one that
// took its seat back from --state one "took my seat back" line (after
// "trying" lines); "* bye" is the last line after end of input. A new
// person taking the place of one who left or did not come back brings
// "someone new joined" and a new key exchange: the key, handshake and
// safety-number lines again. A changed key brings the three lines of the
// warning (the second only if the new key is valid).
//
// On standard error it prints "keyrelay-chat: REASON" when it stops on an
// error, for instance:
//
//	keyrelay-chat: join: the room already has two peers (room_full)
//	keyrelay-chat: create: the relay closed the connection (4429): too many connections from your address
//	keyrelay-chat: the relay changed the group from x25519 to modp5; refusing
//	keyrelay-chat: the group modp5 is a legacy group; refusing (--allow-legacy-groups allows it)
//	keyrelay-chat: another connection took this chat's place in the room (close 4409); not reconnecting
//	keyrelay-chat: the seat is lost: ... (the state file was removed; run again to start afresh)
//
// and on a flag error the error and a pointer to --help.
//
// Exit status: 0 after end of input, Ctrl-C, --help or --version; 1 after
// an error; 2 for a flag error.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/internal/buildinfo"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(report(err, os.Stderr))
}

// report writes err, if any, to stderr and returns the exit status: 0 for
// nil, 2 for a flag error (with a pointer to --help), 1 for any other.
func report(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "keyrelay-chat: %v\nRun 'keyrelay-chat --help' for the flags.\n", err)
		return 2
	}
	fmt.Fprintln(stderr, "keyrelay-chat:", err)
	return 1
}

// usageError is a flag error: a bad flag, a bad value, an extra argument.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a *usageError.
func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// config is the program's configuration, from flags and the environment.
type config struct {
	urls        []string // at least one, each as client.RelayURL makes it
	group       string
	groupSet    bool // --group or KEYRELAY_CHAT_GROUP was given: a joiner pins it
	room        string
	state       string // --state: the state file, "" for none
	allowLegacy bool
}

// urlList is --url's value: URLs, comma-separated or repeated. The first
// use of the flag replaces the default.
type urlList struct {
	urls []string
	set  bool
}

func (l *urlList) String() string { return strings.Join(l.urls, ",") }

func (l *urlList) Set(v string) error {
	if !l.set {
		l.urls, l.set = nil, true
	}
	urls := splitURLs(v)
	if len(urls) == 0 {
		return errors.New("no URL")
	}
	l.urls = append(l.urls, urls...)
	return nil
}

// splitURLs splits a comma-separated list of URLs, dropping spaces and
// empty entries.
func splitURLs(v string) []string {
	var urls []string
	for u := range strings.SplitSeq(v, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}

// The lines printed on standard output (see the package doc, which lists
// them, and outputLines, which --help prints). Every line goes through one
// of these formats.
const (
	lineCreated       = "* room %s created (%s)\n"
	lineJoinHint      = "* the other person runs:\n"
	lineJoinCommand   = "    keyrelay-chat --url %s --group %s --room %s\n"
	lineJoinLegacy    = "    keyrelay-chat --url %s --group %s --room %s --allow-legacy-groups\n"
	lineWaiting       = "* waiting for them to join\n"
	lineJoined        = "* joined room %s (%s)\n"
	lineJoinedNoGroup = "* joined room %s (group not fixed yet)\n"
	lineRestored      = "* took my seat back in room %s (%s)\n"
	lineRestoredNoGrp = "* took my seat back in room %s (group not fixed yet)\n"
	lineKeySent       = "* my public key (%s) is at the relay\n"
	linePeerKey       = "* received the other person's public key\n"
	lineHandshake     = "* handshake complete (%s); messages are end-to-end encrypted\n"
	lineSafetyNumber  = "* safety number: %s\n"
	lineCompare       = "* compare it with the other person over another channel; if it differs, do not trust this chat\n"
	lineMessage       = "peer: %s\n"
	linePeerJoined    = "* the other person joined\n"
	lineSomeoneNew    = "* someone new joined: compare the new safety number before trusting them\n"
	linePeerBack      = "* the other person is back\n"
	linePeerDropped   = "* the other person's connection dropped; they may come back\n"
	linePeerLeft      = "* the other person left; someone new may join\n"
	linePeerExpired   = "* the other person did not come back in time; someone new may join\n"
	lineKeyChanged    = "* the other person's key changed: this room is not safe; start a new one\n"
	lineChangedNumber = "* safety number with the new key: %s\n"
	lineChangedHint   = "* it differs from the other person's; nothing more is sent in this room (end of input leaves)\n"
	lineNobody        = "* not sent: nobody to send to yet\n"
	lineNotSent       = "* not sent: %s\n"
	lineConnLost      = "* connection lost; reconnecting\n"
	lineTrying        = "* trying %s (%s left)\n"
	lineReconnected   = "* reconnected to %s\n"
	lineStateNotSaved = "* state not saved: %v\n"
	lineBadMessage    = "* a message could not be decrypted and was dropped\n"
	lineRelay         = "* relay: %s\n"
	lineRekeyFailed   = "* key exchange failed: %v\n"
	lineInput         = "* input: %v\n"
	lineLeft          = "* left the room\n"
	lineBye           = "* bye\n"
)

// notSafe is the REASON of lineNotSent after the peer's key changed.
const notSafe = "this room is not safe; start a new one"

// outputLines is every output line with placeholders for its fields, in
// the package doc's order, for --help.
var outputLines = []struct {
	format string
	fields []any
}{
	{lineCreated, []any{"ROOM", "GROUP"}},
	{lineJoinHint, nil},
	{lineJoinCommand, []any{"URLS", "GROUP", "ROOM"}},
	{lineJoinLegacy, []any{"URLS", "GROUP", "ROOM"}},
	{lineWaiting, nil},
	{lineJoined, []any{"ROOM", "GROUP"}},
	{lineJoinedNoGroup, []any{"ROOM"}},
	{lineRestored, []any{"ROOM", "GROUP"}},
	{lineRestoredNoGrp, []any{"ROOM"}},
	{lineKeySent, []any{"KEY-GROUP"}},
	{linePeerKey, nil},
	{lineHandshake, []any{"KEY-GROUP"}},
	{lineSafetyNumber, []any{safetyNumberShape}},
	{lineCompare, nil},
	{lineMessage, []any{"TEXT"}},
	{linePeerJoined, nil},
	{lineSomeoneNew, nil},
	{linePeerBack, nil},
	{linePeerDropped, nil},
	{linePeerLeft, nil},
	{linePeerExpired, nil},
	{lineKeyChanged, nil},
	{lineChangedNumber, []any{safetyNumberShape}},
	{lineChangedHint, nil},
	{lineNobody, nil},
	{lineNotSent, []any{"REASON"}},
	{lineConnLost, nil},
	{lineTrying, []any{"URL", "LEFT"}},
	{lineReconnected, []any{"URL"}},
	{lineStateNotSaved, []any{"REASON"}},
	{lineBadMessage, nil},
	{lineRelay, []any{"REASON"}},
	{lineRekeyFailed, []any{"REASON"}},
	{lineInput, []any{"REASON"}},
	{lineLeft, nil},
	{lineBye, nil},
}

// safetyNumberShape is a safety number's placeholder in the output lines.
const safetyNumberShape = "NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN"

// usageHead is --help's text before the flags.
const usageHead = `keyrelay-chat is a chat for two people in a terminal, end-to-end encrypted:
the keys are made here and the relay sees only public keys and ciphertext.

Usage:
  keyrelay-chat [flags]                                create a room
  keyrelay-chat [flags] --group GROUP --room ROOM      join a room

Example, with a relay at localhost:8080 (go run ./cmd/keyrelay):
  $ keyrelay-chat --url http://localhost:8080/
  * room 0fd449aa-1ac1-44ad-a2b4-bc3b356e0b71 created (x25519)
  * the other person runs:
      keyrelay-chat --url ws://localhost:8080/v1/ws --group x25519 --room 0fd449aa-1ac1-44ad-a2b4-bc3b356e0b71
  * waiting for them to join

Once the other person has joined, both screens show a safety number: compare
them over another channel (in person, on a call); if they differ, do not
trust the chat. Then each line typed is sent, encrypted, and each line
received is shown as "peer: TEXT". End of input (Ctrl-D) leaves the room
and exits, also while waiting for the other person; Ctrl-C quits without
leaving (the other person sees a drop; --state can take the seat back).
`

// flagTopics orders --help's flags by topic; every flag is in one
// (TestHelp checks it).
var flagTopics = []struct {
	title string
	names []string
}{
	{"Relay", []string{"url"}},
	{"Room", []string{"room", "group", "allow-legacy-groups"}},
	{"Restarts", []string{"state"}},
	{"Information", []string{"help", "version"}},
}

// printUsage writes --help's text: what the program is, an example, the
// flags by topic, the output lines.
func printUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprint(w, usageHead)
	for _, topic := range flagTopics {
		fmt.Fprintf(w, "\n%s:\n", topic.title)
		for _, name := range topic.names {
			if name == "help" {
				fmt.Fprint(w, "  -h, --help\n        print this help and exit\n")
				continue
			}
			f := fs.Lookup(name)
			arg, text := flag.UnquoteUsage(f)
			if arg != "" {
				arg = " " + arg
			}
			fmt.Fprintf(w, "  --%s%s\n", f.Name, arg)
			for _, line := range wrap(text, 70) {
				fmt.Fprintf(w, "        %s\n", line)
			}
		}
	}
	fmt.Fprint(w, "\nA flag given wins over its environment variable.\n")
	fmt.Fprint(w, "\nOutput lines (standard output; scripts may parse them):\n")
	for _, l := range outputLines {
		fmt.Fprintf(w, "  "+l.format, l.fields...)
	}
	fmt.Fprint(w, "\nOn an error it prints \"keyrelay-chat: REASON\" on standard error and exits 1;\na flag error exits 2.\n")
}

// wrap breaks text into lines of at most width bytes, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) > width:
			lines = append(lines, line)
			line = word
		default:
			line += " " + word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// groupNames lists the groups a room may have, the legacy one apart: the
// curves first (x25519 is the default), then the MODP groups by size.
func groupNames() string {
	var curves, modp []string
	for _, g := range dh.Groups() {
		switch {
		case g == dh.MODP5():
		case strings.HasPrefix(g.Name(), "modp"):
			modp = append(modp, g.Name())
		default:
			curves = append(curves, g.Name())
		}
	}
	names := append(curves, modp...)
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// parseConfig reads the flags, each defaulting to its KEYRELAY_CHAT_*
// variable. For --help and --version it writes the help or the version to
// stdout and returns done. Its errors are *usageError.
func parseConfig(args []string, getenv func(string) string, stdout io.Writer) (c config, done bool, err error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	urls := urlList{urls: splitURLs(env("KEYRELAY_CHAT_URL", "ws://localhost:8080/v1/ws"))}
	allowEnv := false
	if v := getenv("KEYRELAY_CHAT_ALLOW_LEGACY_GROUPS"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, false, usagef("KEYRELAY_CHAT_ALLOW_LEGACY_GROUPS: %q is not a boolean", v)
		}
		allowEnv = b
	}
	var showVersion bool
	fs := flag.NewFlagSet("keyrelay-chat", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, and printed once by main
	fs.Usage = func() {}
	fs.Var(&urls, "url", "the relay's `URL`: its page as a browser shows it (http://localhost:8080/, https://…) or its WebSocket URL (ws://localhost:8080/v1/ws); several instances of one relay comma-separated or repeated, tried in turn. Env KEYRELAY_CHAT_URL; default ws://localhost:8080/v1/ws")
	fs.StringVar(&c.room, "room", env("KEYRELAY_CHAT_ROOM", ""), "the `ROOM` to join, as the other person's command gives it; without it, a new room is created. Env KEYRELAY_CHAT_ROOM")
	fs.StringVar(&c.group, "group", env("KEYRELAY_CHAT_GROUP", "x25519"), "the `GROUP` of a new room: "+groupNames()+" (default x25519); with --room, the group the room must have (without it, any group but a legacy one). Env KEYRELAY_CHAT_GROUP")
	fs.BoolVar(&c.allowLegacy, "allow-legacy-groups", allowEnv, "accept the legacy group modp5 (1536-bit), to create or join. Env KEYRELAY_CHAT_ALLOW_LEGACY_GROUPS")
	fs.StringVar(&c.state, "state", env("KEYRELAY_CHAT_STATE", ""), "keep the seat in `FILE` across restarts: written as the chat goes (mode 0600; it holds the private key: keep it secret); if it exists at start, its seat is taken back instead of creating or joining. Env KEYRELAY_CHAT_STATE")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, stdout)
			return c, true, nil
		}
		return c, false, &usageError{err}
	}
	if showVersion {
		fmt.Fprintln(stdout, buildinfo.Line("keyrelay-chat"))
		return c, true, nil
	}
	if fs.NArg() > 0 {
		return c, false, usagef("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	source := func(flagName, envName string) string {
		if set[flagName] {
			return "--" + flagName
		}
		return envName
	}
	if len(urls.urls) == 0 {
		return c, false, usagef("KEYRELAY_CHAT_URL: no URL")
	}
	for _, u := range urls.urls {
		ru, err := client.RelayURL(u)
		if err != nil {
			return c, false, usagef("%s: %w", source("url", "KEYRELAY_CHAT_URL"), err)
		}
		c.urls = append(c.urls, ru)
	}
	if _, err := dh.LookupGroup(c.group); err != nil {
		return c, false, usagef("%s %s: unknown group; the groups are %s (and modp5, with --allow-legacy-groups)",
			source("group", "KEYRELAY_CHAT_GROUP"), c.group, groupNames())
	}
	c.groupSet = set["group"] || getenv("KEYRELAY_CHAT_GROUP") != ""
	return c, false, nil
}

// run parses the configuration and chats until stdin ends, the room ends
// or ctx is done (then it returns nil).
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, done, err := parseConfig(args, getenv, stdout)
	if err != nil || done {
		return err
	}
	return chat(ctx, cfg, nil, stdin, stdout)
}

// leaveTimeout bounds the leave at the end of input.
const leaveTimeout = 5 * time.Second

// conversation is one chat: the client and what the goroutines share.
type conversation struct {
	c     *client.Client
	out   *printer
	state *stateFile // nil without --state

	wg sync.WaitGroup // the receive loop, the key exchanges

	// Not under mu, which a reconnection holds for as long as it lasts:
	peerGone atomic.Bool // the other person left or expired: the next to join is someone new
	unsafe   atomic.Bool // the other person's key changed: nothing more is sent

	mu      sync.Mutex    // guards the following; held during a reconnection
	gen     int           // incremented by each successful Resume
	peerKey *dh.PublicKey // the peer key of the last completed exchange
}

// chat runs the chat with the client options opts (nil: defaults).
func chat(ctx context.Context, cfg config, opts *client.Options, stdin io.Reader, stdout io.Writer) error {
	group, err := dh.LookupGroup(cfg.group)
	if err != nil {
		return usagef("--group: %w", err) // parseConfig checked it
	}
	var o client.Options
	if opts != nil {
		o = *opts
	}
	o.AllowLegacyGroups = o.AllowLegacyGroups || cfg.allowLegacy
	out := &printer{w: stdout}
	o.OnResumeAttempt = func(at client.ResumeAttempt) {
		out.printf(lineTrying, at.URL, at.Left.Round(time.Second))
	}
	var sf *stateFile
	var saved *client.State
	if cfg.state != "" {
		if sf, err = openState(cfg.state); err != nil {
			return err
		}
		defer sf.close()
		if saved, err = sf.load(); err != nil {
			return err
		}
		if saved != nil && cfg.room != "" && saved.Room != cfg.room {
			return fmt.Errorf("--state %s holds a seat in room %s, not %s: remove it, or give another file", cfg.state, saved.Room, cfg.room)
		}
		if saved != nil && cfg.room != "" && cfg.groupSet && saved.Group != "" && saved.Group != group.Name() {
			return fmt.Errorf("--state %s is for a room in %s, not %s", cfg.state, saved.Group, group)
		}
		o.SaveState = func(st client.State) error {
			if err := sf.save(st); err != nil {
				out.printf(lineStateNotSaved, err)
				return fmt.Errorf("%w: %w", errStateNotSaved, err)
			}
			return nil
		}
	}

	var c *client.Client
	switch {
	case saved != nil:
		c, err = client.Restore(ctx, cfg.urls, *saved, &o)
		if err != nil {
			if seatLost(err) {
				return sf.lost(explain(err, nil))
			}
			return explain(err, nil)
		}
		defer c.Close()
		room, _ := c.Room()
		if room.Group != nil {
			out.printf(lineRestored, room.ID, room.Group)
		} else {
			out.printf(lineRestoredNoGrp, room.ID)
		}
	case cfg.room == "":
		if c, err = client.DialURLs(ctx, cfg.urls, &o); err != nil {
			return err
		}
		defer c.Close()
		room, err := c.Create(ctx, group)
		if err != nil {
			return explain(err, group)
		}
		urls := strings.Join(cfg.urls, ",")
		out.printf(lineCreated, room.ID, group)
		out.printf(lineJoinHint)
		if group == dh.MODP5() {
			out.printf(lineJoinLegacy, urls, group, room.ID)
		} else {
			out.printf(lineJoinCommand, urls, group, room.ID)
		}
		out.printf(lineWaiting)
	default:
		if c, err = client.DialURLs(ctx, cfg.urls, &o); err != nil {
			return err
		}
		defer c.Close()
		var want *dh.Group
		if cfg.groupSet {
			want = group
		}
		room, err := c.JoinGroup(ctx, cfg.room, want)
		if err != nil {
			return explain(err, want)
		}
		if room.Group != nil {
			out.printf(lineJoined, room.ID, room.Group)
		} else {
			out.printf(lineJoinedNoGroup, room.ID)
		}
	}

	s := &conversation{c: c, out: out, state: sf}
	ctx, cancel := context.WithCancel(ctx)
	defer s.wg.Wait()
	defer cancel()
	events := make(chan error, 1)
	s.wg.Go(func() { events <- s.receive(ctx) })
	handshook := make(chan error, 1)
	s.wg.Go(func() { handshook <- s.handshake(ctx) })

	lines := make(chan string)
	go func() {
		// This goroutine ends when stdin does; a terminal's stdin ends
		// with the process.
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 4096), c.MaxPlaintext())
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		if err := sc.Err(); err != nil {
			out.printf(lineInput, err)
		}
	}()
	ready := false // the first key exchange is complete
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				err := s.leave(ctx)
				// Nothing may print after bye: stop the other goroutines first.
				cancel()
				s.wg.Wait()
				if err == nil {
					out.printf(lineLeft)
					out.printf(lineBye)
				}
				return err
			}
			if line == "" {
				continue
			}
			if s.unsafe.Load() {
				out.printf(lineNotSent, notSafe)
				continue
			}
			if !ready && s.handshakeDone() {
				// The handshake printed its lines before its result
				// reached handshook: a line typed in between is sent.
				ready = true
			}
			if !ready {
				out.printf(lineNobody)
				continue
			}
			if err := s.send(ctx, line); err != nil {
				return s.end(ctx, err)
			}
		case err := <-handshook:
			switch {
			case errors.Is(err, client.ErrPeerKeyChanged):
				handshook = nil // the receive loop warns; stay until end of input
			case err != nil:
				return s.end(ctx, err)
			default:
				ready, handshook = true, nil
			}
		case err := <-events:
			return s.end(ctx, err)
		case <-ctx.Done():
			return nil
		}
	}
}

// explain turns the client's refusals of a group into the message the
// user sees; want is the group asked for, if any. Other errors are
// returned as they are.
func explain(err error, want *dh.Group) error {
	var ge *client.GroupError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ge) && errors.Is(err, client.ErrLegacyGroup):
		return fmt.Errorf("the group %s is a legacy group; refusing (--allow-legacy-groups allows it)", ge.Got)
	case errors.As(err, &ge) && ge.Want != "":
		got := ge.Got
		if got == "" {
			got = "none"
		}
		return fmt.Errorf("the relay changed the group from %s to %s; refusing", ge.Want, got)
	case errors.As(err, &ge):
		return fmt.Errorf("the relay gave the unknown group %q; refusing", ge.Got)
	case errors.Is(err, client.ErrLegacyGroup) && want != nil:
		return fmt.Errorf("the group %s is a legacy group; refusing (--allow-legacy-groups allows it)", want)
	case errors.Is(err, client.ErrSuperseded):
		return errors.New("another connection took this chat's place in the room (close 4409); not reconnecting")
	}
	return err
}

// end returns err, explained, or nil when ctx is done (the user quit).
// When the seat is gone for good it removes the state file.
func (s *conversation) end(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, client.ErrClosed) {
		return nil
	}
	if seatLost(err) {
		return s.state.lost(explain(err, nil))
	}
	return explain(err, nil)
}

// errRoomExpired ends the chat when the relay reports that the room
// expired.
var errRoomExpired = errors.New("the room expired")

// seatLost reports whether err means that the seat is gone for good: the
// room expired or is unknown, the relay refused the resume, or the
// client gave up after the grace period.
func seatLost(err error) bool {
	var re *client.Error
	if errors.As(err, &re) {
		switch re.Code {
		case wire.CodeResumeExpired, wire.CodeRoomNotFound, wire.CodeInvalidResume, wire.CodeRoomExpired:
			return true
		}
	}
	return errors.Is(err, client.ErrResumeGaveUp) || errors.Is(err, errRoomExpired)
}

// handshakeDone reports whether the first key exchange is complete (its
// peer key is recorded before anything about it is printed).
func (s *conversation) handshakeDone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peerKey != nil
}

// handshake exchanges keys and shows the safety number.
func (s *conversation) handshake(ctx context.Context) error {
	var pub *dh.PublicKey
	if err := s.retry(ctx, func() error {
		var err error
		pub, err = s.c.SendKey(ctx)
		return err
	}); err != nil {
		return err
	}
	s.out.printf(lineKeySent, pub.Group())
	var hs *client.Handshake
	err := s.retry(ctx, func() error {
		var err error
		hs, err = s.c.Handshake(ctx)
		return err
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.peerKey = hs.PeerKey
	s.mu.Unlock()
	s.out.printf(lineHandshake, hs.Group)
	s.out.printf(lineSafetyNumber, hs.SafetyNumber)
	s.out.printf(lineCompare)
	return nil
}

// send sends one line. After a drop it resumes; a line the relay had
// not confirmed is then sent again by the client itself, as it was (the
// peer shows it once), and a line that was not sent at all is sent now.
func (s *conversation) send(ctx context.Context, line string) error {
	for {
		gen := s.generation()
		_, err := s.c.Send(ctx, []byte(line))
		var re *client.Error
		switch {
		case errors.Is(err, client.ErrUnconfirmed) && errors.Is(err, client.ErrDisconnected):
			return s.reconnect(ctx, gen) // Resume sends it again
		case errors.Is(err, client.ErrUnconfirmed):
			return nil // the relay answered unavailable: sent again with the next line
		case errors.Is(err, client.ErrDisconnected):
			if err := s.reconnect(ctx, gen); err != nil {
				return err
			}
			continue
		case errors.Is(err, client.ErrHandshakeIncomplete):
			s.out.printf(lineNobody)
			return nil
		case errors.Is(err, client.ErrPeerKeyChanged):
			s.out.printf(lineNotSent, notSafe) // the receive loop warned
			return nil
		case errors.As(err, &re) && re.Code != wire.CodeRoomExpired:
			s.out.printf(lineNotSent, re.Message)
			return nil
		case errors.Is(err, errStateNotSaved):
			// Sending it could reuse its counter after a restart.
			s.out.printf(lineNotSent, "the state file could not be written")
			return nil
		}
		return err
	}
}

// retry runs op, and again after a successful reconnection if op failed
// because the connection dropped.
func (s *conversation) retry(ctx context.Context, op func() error) error {
	for {
		gen := s.generation()
		err := op()
		if !errors.Is(err, client.ErrDisconnected) {
			return err
		}
		if err := s.reconnect(ctx, gen); err != nil {
			return err
		}
	}
}

func (s *conversation) generation() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// reconnect resumes the session unless another goroutine already did since
// generation gen. The client tries every URL, with backoff, for as long as
// the relay keeps the seat; its attempts are printed as they go.
func (s *conversation) reconnect(ctx context.Context, gen int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return nil
	}
	s.out.printf(lineConnLost)
	err := s.c.Resume(ctx)
	if err == nil {
		s.gen++
		s.out.printf(lineReconnected, s.c.URL())
		return nil
	}
	return err
}

// receive prints the room's events until the session ends.
func (s *conversation) receive(ctx context.Context) error {
	for {
		gen := s.generation()
		ev, err := s.c.Next(ctx)
		var re *client.Error
		switch {
		case err == nil:
			s.show(ctx, ev)
		case errors.Is(err, client.ErrBadMessage):
			s.out.printf(lineBadMessage)
		case errors.Is(err, client.ErrPeerKeyChanged):
			s.keyChanged(err)
		case errors.As(err, &re):
			if re.Code == wire.CodeRoomExpired {
				return errRoomExpired
			}
			s.out.printf(lineRelay, re.Message)
		case errors.Is(err, client.ErrSuperseded):
			return err
		case errors.Is(err, client.ErrDisconnected):
			if err := s.reconnect(ctx, gen); err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// show prints one event.
func (s *conversation) show(ctx context.Context, ev client.Event) {
	switch ev.Type {
	case client.EventMessage:
		s.out.printf(lineMessage, sanitize(string(ev.Message.Plaintext)))
	case client.EventPeerJoined:
		someoneNew := s.peerGone.Swap(false) && !ev.Resumed
		switch {
		case ev.Resumed:
			s.out.printf(linePeerBack)
		case someoneNew:
			// As the page says it: the new key exchange and safety number
			// follow.
			s.out.printf(lineSomeoneNew)
		default:
			s.out.printf(linePeerJoined)
		}
	case client.EventPeerLeft:
		if ev.Reason == wire.ReasonLeft || ev.Reason == wire.ReasonExpired {
			s.peerGone.Store(true)
		}
		switch ev.Reason {
		case wire.ReasonDropped:
			s.out.printf(linePeerDropped)
		case wire.ReasonExpired:
			s.out.printf(linePeerExpired)
		default:
			s.out.printf(linePeerLeft)
		}
	case client.EventPeerKey:
		s.out.printf(linePeerKey)
		s.mu.Lock()
		again := s.peerKey != nil && !s.peerKey.Equal(ev.PeerKey)
		s.mu.Unlock()
		if again {
			// A new person in the room: a new key exchange and safety
			// number.
			s.wg.Go(func() {
				// A changed key is the receive loop's to report.
				if err := s.handshake(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, client.ErrPeerKeyChanged) {
					s.out.printf(lineRekeyFailed, explain(err, nil))
				}
			})
		}
	}
}

// keyChanged warns that the relay forwarded another key for the other
// person (a *client.KeyChangeError): the room is not safe. Like the page,
// it sends nothing more in the room, and stays until end of input.
func (s *conversation) keyChanged(err error) {
	s.unsafe.Store(true)
	s.out.printf(lineKeyChanged)
	var kerr *client.KeyChangeError
	if errors.As(err, &kerr) && kerr.SafetyNumber != "" {
		s.out.printf(lineChangedNumber, kerr.SafetyNumber)
	}
	s.out.printf(lineChangedHint)
}

// leave leaves the room at the end of input.
func (s *conversation) leave(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, leaveTimeout)
	defer cancel()
	if err := s.c.Leave(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("leaving the room: %w", err)
	}
	return s.state.remove()
}

// sanitize makes text from the peer safe to print on a terminal: invalid
// UTF-8 and control characters (escape sequences could rewrite the screen)
// become U+FFFD; tabs stay.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || unicode.IsPrint(r) {
			return r
		}
		return '\uFFFD'
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// printer serialises writes to the terminal from several goroutines.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}
