package client_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/wire"
)

// TestErrorText: the errors read once per layer, the operation first,
// ready to follow a program's name.
func TestErrorText(t *testing.T) {
	url := newRelay(t)
	ctx := testContext(t)
	a, b, c := dial(t, ctx, url, nil), dial(t, ctx, url, nil), dial(t, ctx, url, nil)
	room, err := a.Create(ctx, dh.X25519())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Join(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	_, err = c.Join(ctx, room.ID)
	if want := "join: the room already has two peers (room_full)"; err == nil || err.Error() != want {
		t.Errorf("third peer's Join = %v, want %q", err, want)
	}
	tests := []struct {
		err  error
		want string
	}{
		{&client.Error{Code: wire.CodeRoomFull, Message: "the room already has two peers"}, "the room already has two peers (room_full)"},
		{&client.Error{Code: wire.CodeInternal}, "internal"},
		{&client.GroupError{Frame: wire.TypeRoom, Want: "x25519", Got: "modp5", Err: client.ErrGroupChanged},
			"the relay changed the group from x25519 to modp5 (room frame); refusing"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// TestCloseError: a relay's close frame comes out as a *CloseError that
// names its code, matches ErrDisconnected, and still gives
// websocket.CloseStatus its code.
func TestCloseError(t *testing.T) {
	srv := relaytest.NewServer(t, relaytest.NewMemoryStore(), relay.Config{
		Limiter: relaytest.NewLimiter(t, limits.Config{MaxConnsPerIP: 1, JoinsPerIP: -1, JoinsPerRoom: -1, RoomsPerIP: -1}),
	})
	ctx := testContext(t)
	dial(t, ctx, srv.URL, nil) // the address's one connection
	var err error
	if c, derr := client.Dial(ctx, srv.URL, nil); derr != nil {
		err = derr // the close came before the upgrade completed
	} else {
		defer c.Close()
		_, err = c.Create(ctx, dh.X25519())
	}
	var ce *client.CloseError
	if !errors.As(err, &ce) || ce.Code != wire.CloseTooManyConnsPerIP {
		t.Fatalf("over the connection limit: %v, want a *CloseError with code 4429", err)
	}
	if want := "create: the relay closed the connection (4429): too many connections from your address"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if !errors.Is(err, client.ErrDisconnected) || errors.Is(err, client.ErrSuperseded) {
		t.Errorf("errors.Is(ErrDisconnected, ErrSuperseded) = %v, %v; want true, false",
			errors.Is(err, client.ErrDisconnected), errors.Is(err, client.ErrSuperseded))
	}
	if code := websocket.CloseStatus(err); code != wire.CloseTooManyConnsPerIP {
		t.Errorf("websocket.CloseStatus = %d, want 4429", code)
	}

	superseded := &client.CloseError{Code: wire.CloseSuperseded}
	if !errors.Is(superseded, client.ErrSuperseded) || !errors.Is(superseded, client.ErrDisconnected) {
		t.Error("a 4409 CloseError does not match ErrSuperseded and ErrDisconnected")
	}
	for _, tt := range []struct {
		err  *client.CloseError
		want string
	}{
		{&client.CloseError{Code: wire.CloseSlowReader}, "the relay closed the connection (4408): frames were not read fast enough (slow reader)"},
		{&client.CloseError{Code: wire.CloseGoingAway, Reason: "relay shutting down"}, "the relay closed the connection (1001): the relay is shutting down (going away)"},
		{&client.CloseError{Code: 4999, Reason: "something new"}, "the relay closed the connection (4999): something new"},
		{&client.CloseError{Code: 4999}, "the relay closed the connection (4999)"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// TestCloseText: every close code the relay sends (package wire's) has a
// description.
func TestCloseText(t *testing.T) {
	for _, code := range []websocket.StatusCode{
		wire.CloseNormal, wire.CloseGoingAway, wire.CloseTooBig, wire.CloseStoreUnavailable,
		wire.CloseNoSubprotocol, wire.CloseSlowReader, wire.CloseSuperseded, wire.CloseTooManyConnsPerIP,
	} {
		if client.CloseText(code) == "" {
			t.Errorf("CloseText(%d) is empty", int(code))
		}
	}
	if got := client.CloseText(4999); got != "" {
		t.Errorf("CloseText(4999) = %q, want \"\"", got)
	}
}

func TestRelayURL(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"ws://localhost:8080/v1/ws", "ws://localhost:8080/v1/ws"},
		{"ws://localhost:8080/", "ws://localhost:8080/v1/ws"},
		{"ws://localhost:8080", "ws://localhost:8080/v1/ws"},
		{"wss://relay.example", "wss://relay.example/v1/ws"},
		{"http://localhost:8080/", "ws://localhost:8080/v1/ws"},
		{"http://localhost:8080", "ws://localhost:8080/v1/ws"},
		{"https://relay.example/", "wss://relay.example/v1/ws"},
		{"HTTPS://relay.example/", "wss://relay.example/v1/ws"},
		{"https://relay.example/#room=6f1c9a52-3b7e-4d0a-9e57-1b2c3d4e5f60&group=x25519", "wss://relay.example/v1/ws"},
		{"https://relay.example/v1/ws", "wss://relay.example/v1/ws"},
		{"wss://proxy.example/keyrelay/v1/ws", "wss://proxy.example/keyrelay/v1/ws"},
		{"ws://[::1]:8080/", "ws://[::1]:8080/v1/ws"},
		{"ws://u:p@relay.example/?token=x", "ws://u:p@relay.example/v1/ws?token=x"},
	}
	for _, tt := range tests {
		got, err := client.RelayURL(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("RelayURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "localhost:8080", "localhost", "ftp://relay.example/", "ws:///v1/ws", "http://%zz/", "/v1/ws"} {
		if got, err := client.RelayURL(in); err == nil {
			t.Errorf("RelayURL(%q) = %q, want an error", in, got)
		}
	}
}

// TestDialPageURL: Dial takes the page's address, and a URL where
// something answers over HTTP but no relay is says so.
func TestDialPageURL(t *testing.T) {
	ctx := testContext(t)
	url := newRelay(t)
	page := "http" + strings.TrimSuffix(strings.TrimPrefix(url, "ws"), wire.Path) + "/"
	c := dial(t, ctx, page, nil)
	if c.URL() != url {
		t.Errorf("URL() = %s, want %s", c.URL(), url)
	}
	if _, err := c.Create(ctx, dh.X25519()); err != nil {
		t.Errorf("Create through the page's URL: %v", err)
	}

	notRelay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html>a page</html>"))
	}))
	defer notRelay.Close()
	_, err := client.Dial(ctx, notRelay.URL+"/index.html", nil)
	if err == nil || !strings.Contains(err.Error(), "HTTP 200 OK instead of a WebSocket upgrade") || !strings.Contains(err.Error(), wire.Path) {
		t.Errorf("Dial of a page = %v, want a hint at %s", err, wire.Path)
	}
	if _, err := client.Dial(ctx, "localhost:8080", nil); err == nil || !strings.Contains(err.Error(), "ws://") {
		t.Errorf("Dial without a scheme = %v, want an error naming the schemes", err)
	}
}
