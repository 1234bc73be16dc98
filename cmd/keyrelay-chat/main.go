// Command keyrelay-chat is a terminal chat peer for a keyrelay relay: two
// people, end-to-end encrypted.
//
// Usage:
//
//	keyrelay-chat [flags]
//
// Without --room it creates a room and prints its ID and the command the
// other person should run; with --room it joins that room. It then shows
// the key exchange as it happens and the safety number, which both people
// should compare over another channel (in person, on a call): if the
// numbers differ, someone replaced a key in transit. After that each line
// typed is sent as an encrypted message, and each line received is printed
// as "peer: text". Notices (the other person joined, left, dropped or came
// back) start with "* ". When the connection drops, it resumes by itself (a
// few tries, with backoff). End of input (Ctrl-D) leaves the room; Ctrl-C
// quits without leaving, so the other person sees a drop.
//
// Every flag can also be set with an environment variable (the flag wins):
//
//	--url     KEYRELAY_CHAT_URL     the relay's WebSocket URL (default "ws://localhost:8080/v1/ws")
//	--group   KEYRELAY_CHAT_GROUP   the group of a new room: x25519, p256, modp14 … (default "x25519")
//	--room    KEYRELAY_CHAT_ROOM    the room to join (default: create one)
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
	url   string
	group string
	room  string
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
	fs := flag.NewFlagSet("keyrelay-chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.url, "url", env("KEYRELAY_CHAT_URL", "ws://localhost:8080/v1/ws"), "the relay's WebSocket URL (env KEYRELAY_CHAT_URL)")
	fs.StringVar(&c.group, "group", env("KEYRELAY_CHAT_GROUP", "x25519"), "group of a new room: x25519, p256, modp14 … (env KEYRELAY_CHAT_GROUP)")
	fs.StringVar(&c.room, "room", env("KEYRELAY_CHAT_ROOM", ""), "room ID to join; empty creates a room (env KEYRELAY_CHAT_ROOM)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
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

	wg sync.WaitGroup // the receive loop and later key exchanges

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
	out := &printer{w: stdout}
	c, err := client.Dial(ctx, cfg.url, opts)
	if err != nil {
		return err
	}
	defer c.Close()

	if cfg.room == "" {
		room, err := c.Create(ctx, group)
		if err != nil {
			return err
		}
		out.printf("* room %s created (%s)\n", room.ID, group)
		out.printf("* the other person runs:\n    keyrelay-chat --url %s --room %s\n", cfg.url, room.ID)
		out.printf("* waiting for them to join\n")
	} else {
		room, err := c.Join(ctx, cfg.room)
		if err != nil {
			return err
		}
		out.printf("* joined room %s\n", room.ID)
	}

	s := &conversation{c: c, out: out}
	ctx, cancel := context.WithCancel(ctx)
	defer s.wg.Wait()
	defer cancel()
	events := make(chan error, 1)
	s.wg.Go(func() { events <- s.receive(ctx) })

	if err := s.handshake(ctx); err != nil {
		return s.end(ctx, err)
	}

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
			out.printf("* input: %v\n", err)
		}
	}()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return s.leave(ctx)
			}
			if line == "" {
				continue
			}
			if err := s.send(ctx, line); err != nil {
				return s.end(ctx, err)
			}
		case err := <-events:
			return s.end(ctx, err)
		case <-ctx.Done():
			return nil
		}
	}
}

// end returns err, or nil when ctx is done (the user quit).
func (s *conversation) end(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, client.ErrClosed) {
		return nil
	}
	return err
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
	s.out.printf("* my public key (%s) is at the relay\n", pub.Group())
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
	s.out.printf("* handshake complete (%s); messages are end-to-end encrypted\n", hs.Group)
	s.out.printf("* safety number: %s\n", hs.SafetyNumber)
	s.out.printf("* compare it with the other person over another channel; if it differs, do not trust this chat\n")
	return nil
}

// send sends one line. After a drop it resumes and sends again, so in the
// rare case where the first copy was stored the peer sees the line twice.
func (s *conversation) send(ctx context.Context, line string) error {
	err := s.retry(ctx, func() error {
		_, err := s.c.Send(ctx, []byte(line))
		return err
	})
	var re *client.Error
	switch {
	case errors.Is(err, client.ErrHandshakeIncomplete):
		s.out.printf("* not sent: nobody to send to yet\n")
		return nil
	case errors.As(err, &re) && re.Code != wire.CodeRoomExpired:
		s.out.printf("* not sent: %s\n", re.Message)
		return nil
	}
	return err
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
	s.out.printf("* connection lost; reconnecting\n")
	backoff := firstBackoff
	var err error
	for try := 1; try <= resumeTries; try++ {
		if err = s.c.Resume(ctx); err == nil {
			s.gen++
			s.out.printf("* reconnected\n")
			return nil
		}
		var re *client.Error
		if errors.As(err, &re) && (re.Code == wire.CodeResumeExpired || re.Code == wire.CodeRoomNotFound || re.Code == wire.CodeInvalidResume) {
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
			s.out.printf("* a message could not be decrypted and was dropped\n")
		case errors.As(err, &re):
			if re.Code == wire.CodeRoomExpired {
				return errors.New("the room expired")
			}
			s.out.printf("* relay: %s\n", re.Message)
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
		s.out.printf("peer: %s\n", sanitize(string(ev.Message.Plaintext)))
	case client.EventPeerJoined:
		if ev.Resumed {
			s.out.printf("* the other person is back\n")
		} else {
			s.out.printf("* the other person joined\n")
		}
	case client.EventPeerLeft:
		if ev.Reason == wire.ReasonDropped {
			s.out.printf("* the other person's connection dropped; they may come back\n")
		} else {
			s.out.printf("* the other person left; someone new may join\n")
		}
	case client.EventPeerKey:
		s.out.printf("* received the other person's public key\n")
		s.mu.Lock()
		again := s.peerKey != nil && !s.peerKey.Equal(ev.PeerKey)
		s.mu.Unlock()
		if again {
			// A new person in the room: a new key exchange and safety
			// number.
			s.wg.Go(func() {
				if err := s.handshake(ctx); err != nil && ctx.Err() == nil {
					s.out.printf("* key exchange failed: %v\n", err)
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
	s.out.printf("* left the room\n")
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
