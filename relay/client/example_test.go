package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/session"
)

// Two clients meet in a room, exchange keys, compare safety numbers and
// chat. The relay here runs in-process; normally it is at
// ws://host/v1/ws.
func Example() {
	store := session.NewMemoryStore(session.MemoryConfig{})
	defer store.Close()
	lim := limits.NewMemory(limits.Config{})
	defer lim.Close()
	r, _ := relay.New(store, relay.Config{Limiter: lim}, slog.New(slog.DiscardHandler))
	defer r.Close()
	srv := httptest.NewServer(r)
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx := context.Background()

	alice, err := client.Dial(ctx, url, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer alice.Close()
	room, _ := alice.Create(ctx, dh.X25519())

	// Alice shares room.ID with Bob out of band.
	bob, err := client.Dial(ctx, url, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bob.Close()
	bob.Join(ctx, room.ID)

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
	// Output:
	// same safety number: true
	// Bob got "hello, Bob"
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
