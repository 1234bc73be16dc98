package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"

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
