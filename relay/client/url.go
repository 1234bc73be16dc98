package client

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/keyrelay/keyrelay/wire"
)

// RelayURL returns the relay's WebSocket URL for s, which may be the
// relay's WebSocket URL or the address of the page the relay serves, as a
// user copies it from a browser:
//
//   - the scheme must be ws, wss, http or https (any case); http becomes ws
//     and https becomes wss;
//   - an empty path or "/" becomes wire.Path ("/v1/ws"), where the relay
//     serves its WebSocket endpoint; any other path is kept as it is (a
//     proxy may serve the relay elsewhere);
//   - the fragment (the page's "#room=…") is dropped: it is never sent;
//   - the host, port, user information and query are kept.
//
// For instance "http://localhost:8080/" and "ws://localhost:8080" give
// "ws://localhost:8080/v1/ws", and "https://relay.example" gives
// "wss://relay.example/v1/ws". It returns an error for a URL that does
// not parse, has another scheme or none (such as "localhost:8080"), or
// has no host. Dial, DialURLs and Restore apply it to every URL they are
// given.
func RelayURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL
		}
		return "", fmt.Errorf("relay URL %q: %w", s, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("relay URL %q: want a ws://, wss://, http:// or https:// URL, such as ws://localhost:8080/v1/ws", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("relay URL %q has no host", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path, u.RawPath = wire.Path, ""
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String(), nil
}
