package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/wire"
)

// The examples run a relay in the process, with startRelay; an application
// dials the address of a relay it runs elsewhere, such as
// "ws://localhost:8080/v1/ws" or "https://relay.example/".

// startRelay starts a relay with the admission limits lim (zero: the
// defaults) on an HTTP server of its own, and returns the server's base
// URL ("http://127.0.0.1:port") and a function that stops it all.
func startRelay(lim limits.Config) (base string, stop func()) {
	store := session.NewMemoryStore(session.MemoryConfig{})
	limiter := limits.NewMemory(lim)
	r, err := relay.New(store, relay.Config{Limiter: limiter}, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(r)
	return srv.URL, func() {
		r.Close()
		srv.Close()
		limiter.Close()
		store.Close()
	}
}

// chatting returns two clients of the relay at base, Alice and Bob, in one
// room, with their keys exchanged: the steps of the Dial, Create,
// JoinGroup and Handshake examples. Options, if not nil, are Alice's.
func chatting(ctx context.Context, base string, opts *client.Options) (alice, bob *client.Client) {
	alice, err := client.Dial(ctx, base, opts)
	if err != nil {
		panic(err)
	}
	bob, err = client.Dial(ctx, base, nil)
	if err != nil {
		panic(err)
	}
	room, err := alice.Create(ctx, dh.X25519())
	if err != nil {
		panic(err)
	}
	if _, err := bob.JoinGroup(ctx, room.ID, room.Group); err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := alice.Handshake(ctx)
		done <- err
	}()
	if _, err := bob.Handshake(ctx); err != nil {
		panic(err)
	}
	if err := <-done; err != nil {
		panic(err)
	}
	return alice, bob
}

// Two clients meet in a room, exchange keys, compare safety numbers and
// chat: the whole of a chat app, in short.
func Example() {
	base, stop := startRelay(limits.Config{})
	defer stop()
	ctx := context.Background()

	alice, err := client.Dial(ctx, base, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer alice.Close()
	room, _ := alice.Create(ctx, dh.X25519())

	// Alice gives room.ID and room.Group to Bob out of band.
	bob, err := client.Dial(ctx, base, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bob.Close()
	bob.JoinGroup(ctx, room.ID, room.Group)

	done := make(chan *client.Handshake)
	go func() {
		hs, _ := alice.Handshake(ctx)
		done <- hs
	}()
	hsBob, err := bob.Handshake(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	hsAlice := <-done
	fmt.Println("same safety number:", hsAlice.SafetyNumber == hsBob.SafetyNumber)

	alice.Send(ctx, []byte("hello, Bob"))
	msg, _ := bob.Receive(ctx)
	fmt.Printf("Bob got %q\n", msg.Plaintext)

	alice.Leave(ctx)
	// Output:
	// same safety number: true
	// Bob got "hello, Bob"
}

// RelayURL accepts what a user may copy: the page's address or the
// WebSocket URL.
func ExampleRelayURL() {
	for _, s := range []string{
		"http://localhost:8080/",
		"https://relay.example/#room=6f1c9a52-3b7e-4d0a-9e57-1b2c3d4e5f60&group=x25519",
		"ws://localhost:8080",
		"wss://relay.example/v1/ws",
		"localhost:8080",
	} {
		u, err := client.RelayURL(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(u)
	}
	// Output:
	// ws://localhost:8080/v1/ws
	// wss://relay.example/v1/ws
	// ws://localhost:8080/v1/ws
	// wss://relay.example/v1/ws
	// relay URL "localhost:8080": want a ws://, wss://, http:// or https:// URL, such as ws://localhost:8080/v1/ws
}

// Step 1: dial the relay. The address of the relay's page does: the client
// finds the WebSocket endpoint at /v1/ws.
func ExampleDial() {
	base, stop := startRelay(limits.Config{})
	defer stop()
	ctx := context.Background()

	c, err := client.Dial(ctx, base+"/", nil) // "http://127.0.0.1:port/"
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	u, _ := url.Parse(c.URL())
	fmt.Println("connected:", u.Scheme, u.Path)
	// Output:
	// connected: ws /v1/ws
}

// Step 1, with several instances of one relay service: DialURLs connects to
// the first that answers, and Resume will try them all.
func ExampleDialURLs() {
	base, stop := startRelay(limits.Config{})
	defer stop()
	gone, stopGone := startRelay(limits.Config{})
	stopGone() // an instance that is down
	ctx := context.Background()

	c, err := client.DialURLs(ctx, []string{gone, base}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println("connected to the second:", c.URL() == strings.Replace(base, "http", "ws", 1)+wire.Path)
	// Output:
	// connected to the second: true
}

// Step 2: create a room, in the group of one's choice. Its ID and group go
// to the other person out of band (in a link, say).
func ExampleClient_Create() {
	base, stop := startRelay(limits.Config{})
	defer stop()
	ctx := context.Background()
	alice, err := client.Dial(ctx, base, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer alice.Close()

	room, err := alice.Create(ctx, dh.X25519())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("group:", room.Group)
	fmt.Println("people in the room:", room.Peers)
	// Output:
	// group: x25519
	// people in the room: 1
}

// Step 2, the other side: join the room with the group the creator gave,
// so that a relay cannot change it. A third person is refused.
func ExampleClient_JoinGroup() {
	base, stop := startRelay(limits.Config{})
	defer stop()
	ctx := context.Background()
	alice, _ := client.Dial(ctx, base, nil)
	defer alice.Close()
	created, _ := alice.Create(ctx, dh.X25519())
	id, group := created.ID, created.Group // as the link gives them

	bob, err := client.Dial(ctx, base, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bob.Close()
	room, err := bob.JoinGroup(ctx, id, group)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("people in the room:", room.Peers)

	carol, _ := client.Dial(ctx, base, nil)
	defer carol.Close()
	_, err = carol.JoinGroup(ctx, id, group)
	fmt.Println(err)
	// Output:
	// people in the room: 2
	// join: the room already has two peers (room_full)
}

// Step 3: exchange keys. Handshake waits for the other person; both
// people compare the safety number over another channel.
func ExampleClient_Handshake() {
	base, stop := startRelay(limits.Config{})
	defer stop()
	ctx := context.Background()
	alice, _ := client.Dial(ctx, base, nil)
	defer alice.Close()
	bob, _ := client.Dial(ctx, base, nil)
	defer bob.Close()
	room, _ := alice.Create(ctx, dh.X25519())
	bob.JoinGroup(ctx, room.ID, room.Group)

	done := make(chan *client.Handshake, 1)
	go func() {
		hs, err := alice.Handshake(ctx)
		if err != nil {
			fmt.Println(err)
		}
		done <- hs
	}()
	hs, err := bob.Handshake(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("key exchange in", hs.Group)
	fmt.Println("safety number: 12 groups of 5 digits:", len(strings.Fields(hs.SafetyNumber)))
	fmt.Println("the same on both sides:", (<-done).SafetyNumber == hs.SafetyNumber)
	// Output:
	// key exchange in x25519
	// safety number: 12 groups of 5 digits: 12
	// the same on both sides: true
}

// Step 3, in two halves: SendKey puts the creator's key at the relay
// while the other person is away (an app can say so); the joiner gets it
// at once, and Handshake completes when it is called.
func ExampleClient_SendKey() {
	base, stop := startRelay(limits.Config{})
	defer stop()
	ctx := context.Background()
	alice, _ := client.Dial(ctx, base, nil)
	defer alice.Close()
	room, _ := alice.Create(ctx, dh.X25519())

	pub, err := alice.SendKey(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("my public key is at the relay:", pub.Group())

	bob, _ := client.Dial(ctx, base, nil)
	defer bob.Close()
	bob.JoinGroup(ctx, room.ID, room.Group)
	ev, _ := bob.Next(ctx)
	fmt.Println("Bob's first event:", ev.Type, ev.PeerKey.Equal(pub))
	// Output:
	// my public key is at the relay: x25519
	// Bob's first event: peer_key true
}

// Step 4: read the room with Next, in a goroutine of its own: messages,
// and what the other person does.
func ExampleClient_Next() {
	base, stop := startRelay(limits.Config{})
	defer stop()
	ctx := context.Background()
	alice, bob := chatting(ctx, base, nil)
	defer alice.Close()
	defer bob.Close()

	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := alice.Next(ctx)
			var kerr *client.KeyChangeError
			switch {
			case errors.As(err, &kerr):
				fmt.Println("the other person's key changed: this room is not safe")
				continue
			case errors.Is(err, client.ErrBadMessage):
				fmt.Println("a message could not be decrypted")
				continue
			case err != nil:
				fmt.Println(err) // ErrDisconnected: Resume; see its example
				return
			}
			switch ev.Type {
			case client.EventMessage:
				fmt.Printf("peer: %s\n", ev.Message.Plaintext)
			case client.EventPeerJoined:
				fmt.Println("the other person joined; back:", ev.Resumed)
			case client.EventPeerKey:
				fmt.Println("their key arrived")
			case client.EventPeerLeft:
				fmt.Println("the other person left:", ev.Reason)
				if ev.Reason != wire.ReasonDropped {
					return // someone new may join: Handshake again
				}
			}
		}
	}()
	bob.Send(ctx, []byte("hello"))
	bob.Leave(ctx)
	<-done
	// Output:
	// the other person joined; back: false
	// their key arrived
	// peer: hello
	// the other person left: left
}

// Step 5: send a message. It is encrypted here, and Send returns once the
// relay has stored it for the other person.
func ExampleClient_Send() {
	base, stop := startRelay(limits.Config{})
	defer stop()
	ctx := context.Background()
	alice, bob := chatting(ctx, base, nil)
	defer alice.Close()
	defer bob.Close()

	seq, err := alice.Send(ctx, []byte("hello, Bob"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("stored as message", seq)
	msg, _ := bob.Receive(ctx) // a test's shortcut: an app reads with Next
	fmt.Printf("Bob got %q (message %d)\n", msg.Plaintext, msg.Seq)
	// Output:
	// stored as message 1
	// Bob got "hello, Bob" (message 1)
}

// Step 6: after the connection drops, Resume takes the seat back; the
// keys are kept and nothing is lost.
func ExampleClient_Resume() {
	base, stop := startRelay(limits.Config{})
	defer stop()
	ctx := context.Background()
	var network relaytest.Cutter // a network that fails on demand
	alice, bob := chatting(ctx, base, &client.Options{HTTPClient: network.HTTPClient()})
	defer alice.Close()
	defer bob.Close()

	network.Cut()
	for {
		_, err := alice.Next(ctx) // the events so far, then the drop
		if errors.Is(err, client.ErrDisconnected) {
			fmt.Println("connection lost")
			break
		}
	}
	bob.Send(ctx, []byte("while you were away"))
	if err := alice.Resume(ctx); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("resumed")
	msg, _ := alice.Receive(ctx)
	fmt.Printf("Alice got %q\n", msg.Plaintext)
	// Output:
	// connection lost
	// resumed
	// Alice got "while you were away"
}

// Step 7: leave the room for good, then close the client. (Close alone is
// a drop: the other person is told to wait for a resume.)
func ExampleClient_Leave() {
	base, stop := startRelay(limits.Config{})
	defer stop()
	ctx := context.Background()
	alice, bob := chatting(ctx, base, nil)
	defer bob.Close()

	if err := alice.Leave(ctx); err != nil {
		fmt.Println(err)
	}
	alice.Close()
	for {
		ev, err := bob.Next(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		if ev.Type == client.EventPeerLeft {
			fmt.Println("Bob sees:", ev.Type, ev.Reason)
			return
		}
	}
	// Output:
	// Bob sees: peer_left left
}

// A relay that ends the connection says why with a close code; the error
// names it.
func ExampleCloseError() {
	base, stop := startRelay(limits.Config{MaxConnsPerIP: 1})
	defer stop()
	ctx := context.Background()
	first, _ := client.Dial(ctx, base, nil)
	defer first.Close()

	second, err := client.Dial(ctx, base, nil) // the upgrade succeeds, then the relay closes
	if err == nil {
		defer second.Close()
		_, err = second.Create(ctx, dh.X25519())
	}
	var ce *client.CloseError
	if errors.As(err, &ce) {
		fmt.Println(ce.Code == wire.CloseTooManyConnsPerIP, client.CloseText(ce.Code))
	}
	fmt.Println(errors.Is(err, client.ErrDisconnected))
	// Output:
	// true too many connections from your address
	// true
}

// A client that must survive its own restart saves its State as it goes
// (a secret: mode 0600, written atomically), and a new process restores
// it, trying every instance of the relay until the seat's grace period
// has passed. Not run: it needs relays at those URLs.
func ExampleRestore() {
	ctx := context.Background()
	urls := []string{"wss://relay1.example/v1/ws", "wss://relay2.example/v1/ws"}
	const file = "seat.json"
	opts := &client.Options{
		SaveState: func(st client.State) error {
			b, err := json.Marshal(st)
			if err != nil {
				return err
			}
			tmp := file + ".tmp"
			if err := os.WriteFile(tmp, b, 0o600); err != nil {
				return err
			}
			return os.Rename(tmp, file) // (sync it too, where power may fail)
		},
		OnResumeAttempt: func(at client.ResumeAttempt) {
			fmt.Printf("trying %s (%s left)\n", at.URL, at.Left.Round(time.Second))
		},
	}

	var c *client.Client
	if b, err := os.ReadFile(file); err == nil {
		var st client.State
		if err := json.Unmarshal(b, &st); err != nil {
			fmt.Println(err)
			return
		}
		c, err = client.Restore(ctx, urls, st, opts) // the seat, keys and counters of before
		if err != nil {
			fmt.Println(err)
			return
		}
	} else {
		c, err = client.DialURLs(ctx, urls, opts)
		if err != nil {
			fmt.Println(err)
			return
		}
		c.Create(ctx, dh.X25519()) // saved at once, and at every change after
	}
	defer c.Close()
}
