// Command keyrelay-chat is a terminal chat peer for a keyrelay relay: two
// people, end-to-end encrypted.
//
// Usage:
//
//	keyrelay-chat [flags]                                create a room
//	keyrelay-chat [flags] --group GROUP --room ROOM      join a room
//
// Without --room it creates a room in --group and prints its ID and the
// command the other person should run, which names the group: the joiner
// pins it and refuses the room if the relay reports any other group (a
// relay or proxy could otherwise downgrade the exchange, say from x25519
// to modp5). With --room and no --group (nor KEYRELAY_CHAT_GROUP) it joins
// whatever the room's group is, unless it is a legacy group. The legacy
// group modp5 (1536-bit) is refused, when creating or joining, unless
// --allow-legacy-groups is given.
//
// It then shows the key exchange as it happens and the safety number,
// which both people should compare over another channel (in person, on a
// call): if the numbers differ, someone replaced a key in transit. After
// that each line typed is sent as an encrypted message (a line typed
// before the key exchange is complete is not sent), and each line received
// is printed as "peer: text". When the connection drops, it resumes by
// itself (a few tries, with backoff); a message whose delivery was not
// confirmed is sent again, and shown once. End of input (Ctrl-D) leaves
// the room and exits, also while it waits for the other person; Ctrl-C
// quits without leaving, so the other person sees a drop.
//
// Every flag can also be set with an environment variable (the flag wins):
//
//	--url                  KEYRELAY_CHAT_URL                   the relay's WebSocket URL (default "ws://localhost:8080/v1/ws")
//	--group                KEYRELAY_CHAT_GROUP                 the group of a new room (default "x25519"), or the group a joined room must have (default: any but legacy)
//	--room                 KEYRELAY_CHAT_ROOM                  the room to join (default: create one)
//	--allow-legacy-groups  KEYRELAY_CHAT_ALLOW_LEGACY_GROUPS   accept modp5 (default false)
//
// # Output
//
// Scripts may parse what it prints. On standard output, one line per
// event, exactly as follows (ROOM is a room ID, GROUP a group name such as
// x25519, URL the --url value, KEY-GROUP the group of the key exchange,
// NNNNN five digits, TEXT the peer's line with control characters and
// invalid UTF-8 replaced by U+FFFD, REASON a message from the relay or an
// error):
//
//	On standard output:
//	* room ROOM created (GROUP)
//	* the other person runs:
//	    keyrelay-chat --url URL --group GROUP --room ROOM
//	    keyrelay-chat --url URL --group GROUP --room ROOM --allow-legacy-groups
//	* waiting for them to join
//	* joined room ROOM (GROUP)
//	* joined room ROOM (group not fixed yet)
//	* my public key (KEY-GROUP) is at the relay
//	* received the other person's public key
//	* handshake complete (KEY-GROUP); messages are end-to-end encrypted
//	* safety number: NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN
//	* compare it with the other person over another channel; if it differs, do not trust this chat
//	peer: TEXT
//	* the other person joined
//	* the other person is back
//	* the other person's connection dropped; they may come back
//	* the other person left; someone new may join
//	* the other person did not come back in time; someone new may join
//	* not sent: nobody to send to yet
//	* not sent: REASON
//	* connection lost; reconnecting
//	* reconnected
//	* a message could not be decrypted and was dropped
//	* relay: REASON
//	* key exchange failed: REASON
//	* input: REASON
//	* left the room
//	* bye
//
// The creator prints the first four lines (the join command in its second
// form for a legacy group), the joiner one "joined" line; "* bye" is the
// last line after end of input. A new person taking the place of one who
// left or did not come back brings a new key exchange: the key, handshake
// and safety-number lines again.
//
// On standard error it prints "keyrelay-chat: REASON" when it stops on an
// error, for instance:
//
//	keyrelay-chat: the relay changed the group from x25519 to modp5; refusing
//	keyrelay-chat: the group modp5 is a legacy group; refusing (--allow-legacy-groups allows it)
//	keyrelay-chat: another connection took this chat's place in the room (close 4409); not reconnecting
//
// and the usage on a flag error or --help.
//
// Exit status: 0 after end of input or Ctrl-C; 1 after an error; 2 for a
// flag error or --help.
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
	"syscall"
	"time"
	"unicode"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "keyrelay-chat:", err)
		os.Exit(1)
	}
}

// config is the program's configuration, from flags and the environment.
type config struct {
	url         string
	group       string
	groupSet    bool // --group or KEYRELAY_CHAT_GROUP was given: a joiner pins it
	room        string
	allowLegacy bool
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
	lineKeySent       = "* my public key (%s) is at the relay\n"
	linePeerKey       = "* received the other person's public key\n"
	lineHandshake     = "* handshake complete (%s); messages are end-to-end encrypted\n"
	lineSafetyNumber  = "* safety number: %s\n"
	lineCompare       = "* compare it with the other person over another channel; if it differs, do not trust this chat\n"
	lineMessage       = "peer: %s\n"
	linePeerJoined    = "* the other person joined\n"
	linePeerBack      = "* the other person is back\n"
	linePeerDropped   = "* the other person's connection dropped; they may come back\n"
	linePeerLeft      = "* the other person left; someone new may join\n"
	linePeerExpired   = "* the other person did not come back in time; someone new may join\n"
	lineNobody        = "* not sent: nobody to send to yet\n"
	lineNotSent       = "* not sent: %s\n"
	lineConnLost      = "* connection lost; reconnecting\n"
	lineReconnected   = "* reconnected\n"
	lineBadMessage    = "* a message could not be decrypted and was dropped\n"
	lineRelay         = "* relay: %s\n"
	lineRekeyFailed   = "* key exchange failed: %v\n"
	lineInput         = "* input: %v\n"
	lineLeft          = "* left the room\n"
	lineBye           = "* bye\n"
)

// outputLines is every output line with placeholders for its fields, in
// the package doc's order, for --help.
var outputLines = []struct {
	format string
	fields []any
}{
	{lineCreated, []any{"ROOM", "GROUP"}},
	{lineJoinHint, nil},
	{lineJoinCommand, []any{"URL", "GROUP", "ROOM"}},
	{lineJoinLegacy, []any{"URL", "GROUP", "ROOM"}},
	{lineWaiting, nil},
	{lineJoined, []any{"ROOM", "GROUP"}},
	{lineJoinedNoGroup, []any{"ROOM"}},
	{lineKeySent, []any{"KEY-GROUP"}},
	{linePeerKey, nil},
	{lineHandshake, []any{"KEY-GROUP"}},
	{lineSafetyNumber, []any{"NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN NNNNN"}},
	{lineCompare, nil},
	{lineMessage, []any{"TEXT"}},
	{linePeerJoined, nil},
	{linePeerBack, nil},
	{linePeerDropped, nil},
	{linePeerLeft, nil},
	{linePeerExpired, nil},
	{lineNobody, nil},
	{lineNotSent, []any{"REASON"}},
	{lineConnLost, nil},
	{lineReconnected, nil},
	{lineBadMessage, nil},
	{lineRelay, []any{"REASON"}},
	{lineRekeyFailed, []any{"REASON"}},
	{lineInput, []any{"REASON"}},
	{lineLeft, nil},
	{lineBye, nil},
}

// usage is --help's text, before the flags.
const usage = `Usage:
  keyrelay-chat [flags]                                create a room
  keyrelay-chat [flags] --group GROUP --room ROOM      join a room

Creates a room (in --group) and prints the command the other person runs,
or joins one: with --group the room must be in that group, else any group
but a legacy one (modp5, allowed by --allow-legacy-groups). Lines typed are
sent end-to-end encrypted once the key exchange is complete; compare the
safety number over another channel. End of input (Ctrl-D) leaves the room
and exits 0, also while waiting for the other person.

Flags (each also read from its environment variable; the flag wins):
`

// printUsage writes --help's text: the usage, the flags, the output lines.
func printUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprint(w, usage)
	fs.PrintDefaults()
	fmt.Fprint(w, "\nOutput lines (standard output; scripts may parse them):\n")
	for _, l := range outputLines {
		fmt.Fprintf(w, "  "+l.format, l.fields...)
	}
	fmt.Fprint(w, "\nOn an error it prints \"keyrelay-chat: REASON\" on standard error and exits 1.\n")
}

// parseConfig reads flags, each defaulting to its KEYRELAY_CHAT_* variable.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var c config
	allowEnv := false
	if v := getenv("KEYRELAY_CHAT_ALLOW_LEGACY_GROUPS"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("KEYRELAY_CHAT_ALLOW_LEGACY_GROUPS: %q is not a boolean", v)
		}
		allowEnv = b
	}
	fs := flag.NewFlagSet("keyrelay-chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printUsage(fs, stderr) }
	fs.StringVar(&c.url, "url", env("KEYRELAY_CHAT_URL", "ws://localhost:8080/v1/ws"), "the relay's WebSocket `URL` (env KEYRELAY_CHAT_URL)")
	fs.StringVar(&c.group, "group", env("KEYRELAY_CHAT_GROUP", "x25519"), "`GROUP` of a new room: x25519, p256, modp14 … modp18; with --room, the group the room must have, and if not set any group but a legacy one (env KEYRELAY_CHAT_GROUP)")
	fs.StringVar(&c.room, "room", env("KEYRELAY_CHAT_ROOM", ""), "`ROOM` ID to join; empty creates a room (env KEYRELAY_CHAT_ROOM)")
	fs.BoolVar(&c.allowLegacy, "allow-legacy-groups", allowEnv, "accept the legacy group modp5 (1536-bit), creating or joining (env KEYRELAY_CHAT_ALLOW_LEGACY_GROUPS)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.groupSet = getenv("KEYRELAY_CHAT_GROUP") != ""
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "group" {
			c.groupSet = true
		}
	})
	return c, nil
}

// run parses the configuration and chats until stdin ends, the room ends
// or ctx is done (then it returns nil).
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	return chat(ctx, cfg, nil, stdin, stdout)
}

// Reconnection policy: resumeTries attempts, waiting firstBackoff, then
// twice as long each time.
const (
	resumeTries  = 5
	firstBackoff = 250 * time.Millisecond
	leaveTimeout = 5 * time.Second
)

// conversation is one chat: the client and what the goroutines share.
type conversation struct {
	c   *client.Client
	out *printer

	wg sync.WaitGroup // the receive loop, the key exchanges

	mu      sync.Mutex    // guards the following; held during a reconnection
	gen     int           // incremented by each successful Resume
	peerKey *dh.PublicKey // the peer key of the last completed exchange
}

// chat runs the chat with the client options opts (nil: defaults).
func chat(ctx context.Context, cfg config, opts *client.Options, stdin io.Reader, stdout io.Writer) error {
	group, err := dh.LookupGroup(cfg.group)
	if err != nil {
		return fmt.Errorf("--group: %w", err)
	}
	var o client.Options
	if opts != nil {
		o = *opts
	}
	o.AllowLegacyGroups = o.AllowLegacyGroups || cfg.allowLegacy
	out := &printer{w: stdout}
	c, err := client.Dial(ctx, cfg.url, &o)
	if err != nil {
		return err
	}
	defer c.Close()

	if cfg.room == "" {
		room, err := c.Create(ctx, group)
		if err != nil {
			return explain(err, group)
		}
		out.printf(lineCreated, room.ID, group)
		out.printf(lineJoinHint)
		if group == dh.MODP5() {
			out.printf(lineJoinLegacy, cfg.url, group, room.ID)
		} else {
			out.printf(lineJoinCommand, cfg.url, group, room.ID)
		}
		out.printf(lineWaiting)
	} else {
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

	s := &conversation{c: c, out: out}
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
			if err != nil {
				return s.end(ctx, err)
			}
			ready, handshook = true, nil
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
func (s *conversation) end(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, client.ErrClosed) {
		return nil
	}
	return explain(err, nil)
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
		case errors.As(err, &re) && re.Code != wire.CodeRoomExpired:
			s.out.printf(lineNotSent, re.Message)
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
// generation gen.
func (s *conversation) reconnect(ctx context.Context, gen int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return nil
	}
	s.out.printf(lineConnLost)
	backoff := firstBackoff
	var err error
	for try := 1; try <= resumeTries; try++ {
		if err = s.c.Resume(ctx); err == nil {
			s.gen++
			s.out.printf(lineReconnected)
			return nil
		}
		var re *client.Error
		var ge *client.GroupError
		switch {
		case errors.Is(err, client.ErrSuperseded), errors.As(err, &ge), errors.Is(err, client.ErrNotInRoom):
			return err
		case errors.As(err, &re) && (re.Code == wire.CodeResumeExpired || re.Code == wire.CodeRoomNotFound || re.Code == wire.CodeInvalidResume):
			return fmt.Errorf("cannot rejoin the room: %w", err)
		}
		if try == resumeTries {
			break
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff *= 2
	}
	return fmt.Errorf("reconnecting failed after %d tries: %w", resumeTries, err)
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
		case errors.As(err, &re):
			if re.Code == wire.CodeRoomExpired {
				return errors.New("the room expired")
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
		if ev.Resumed {
			s.out.printf(linePeerBack)
		} else {
			s.out.printf(linePeerJoined)
		}
	case client.EventPeerLeft:
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
				if err := s.handshake(ctx); err != nil && ctx.Err() == nil {
					s.out.printf(lineRekeyFailed, explain(err, nil))
				}
			})
		}
	}
}

// leave leaves the room at the end of input.
func (s *conversation) leave(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, leaveTimeout)
	defer cancel()
	if err := s.c.Leave(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("leaving the room: %w", err)
	}
	return nil
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
