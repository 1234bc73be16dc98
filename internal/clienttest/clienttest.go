// Package clienttest gives the module's tests and its load tester what
// package relay/client keeps from applications: frames sent as they are,
// bypassing the client's state, to see how the relay handles input that a
// correct client never sends (an invalid key, a frame of an unknown type),
// or to hand the relay a key the client did not make (the load tester's
// pool keys). A chat application has no use for it.
package clienttest

import (
	"context"
	"encoding/json"

	"github.com/keyrelay/keyrelay/internal/clienthook"
	"github.com/keyrelay/keyrelay/relay/client"
)

// Request sends c's relay a frame made of fields plus a fresh "id" and
// returns the relay's direct reply to it as raw JSON; an error frame is
// returned as a *client.Error. It bypasses c's state: a key or room it
// sets is not known to c's Handshake or Send. It returns the errors of
// the client's other calls too (client.ErrDisconnected, ctx's error …).
func Request(ctx context.Context, c *client.Client, fields map[string]any) (json.RawMessage, error) {
	return clienthook.Request(ctx, c, fields)
}

// SendRaw writes frame to c's relay, as is, in one text frame, and waits
// for nothing. Replies without an id that matches one of c's requests are
// dropped, except error frames, which c's Next returns. It bypasses c's
// state, as Request does.
func SendRaw(ctx context.Context, c *client.Client, frame []byte) error {
	return clienthook.SendRaw(ctx, c, frame)
}
