// Package clienthook is the door through which package relay/client hands
// its raw-frame methods, which bypass the client's state, to
// internal/clienttest: relay/client sets these variables when it is
// initialised, and clienttest wraps them with typed functions. Nothing
// else should use this package; use internal/clienttest.
package clienthook

import (
	"context"
	"encoding/json"
)

// Set by relay/client's init; c is a *client.Client.
var (
	// Request is (*client.Client).request.
	Request func(ctx context.Context, c any, fields map[string]any) (json.RawMessage, error)
	// SendRaw is (*client.Client).sendRaw.
	SendRaw func(ctx context.Context, c any, frame []byte) error
)
