package client

import (
	"context"
	"encoding/json"

	"github.com/keyrelay/keyrelay/internal/clienthook"
)

// init hands request and sendRaw to internal/clienttest, for tests and the
// load tester, without making them part of the package's API.
func init() {
	clienthook.Request = func(ctx context.Context, c any, fields map[string]any) (json.RawMessage, error) {
		return c.(*Client).request(ctx, fields)
	}
	clienthook.SendRaw = func(ctx context.Context, c any, frame []byte) error {
		return c.(*Client).sendRaw(ctx, frame)
	}
}
