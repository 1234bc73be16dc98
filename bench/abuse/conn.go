package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/wire"
)

// writeTimeout bounds every frame write.
const writeTimeout = 10 * time.Second

// dialer opens WebSocket connections to one relay URL from one local
// address.
type dialer struct {
	url    string
	client *http.Client
}

// newDialer returns a dialer of url from src.
func newDialer(url string, src netip.Addr) *dialer {
	nd := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 10 * time.Second}
	return &dialer{url: url, client: &http.Client{Transport: &http.Transport{DialContext: nd.DialContext}}}
}

// wsConn is one connection to the relay and the goroutine that reads it.
// The reader hands every frame to frames, except the other peer's
// forwarded msg frames when skipMsgs is set: those it only counts in
// forwarded (they are large, and an attacker has no use for them).
type wsConn struct {
	ws       *websocket.Conn
	skipMsgs bool
	frames   chan *wire.ServerFrame // closed when the reader ends
	err      error                  // why the reader ended; set before frames is closed
	// forwarded counts the msg frames skipped; owned by the reader until
	// frames is closed.
	forwarded int64
}

// dial opens a connection; see wsConn for skipMsgs.
func (d *dialer) dial(ctx context.Context, skipMsgs bool) (*wsConn, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, d.url, &websocket.DialOptions{
		HTTPClient:   d.client,
		Subprotocols: []string{wire.Subprotocol},
	})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	c := &wsConn{ws: ws, skipMsgs: skipMsgs, frames: make(chan *wire.ServerFrame, 256)}
	go c.read()
	return c, nil
}

// msgPrefix starts every msg frame the relay sends.
var msgPrefix = []byte(`{"type":"msg"`)

func (c *wsConn) read() {
	defer close(c.frames)
	for {
		_, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		if c.skipMsgs && bytes.HasPrefix(data, msgPrefix) {
			c.forwarded++
			continue
		}
		var f wire.ServerFrame
		if err := json.Unmarshal(data, &f); err != nil {
			c.err = fmt.Errorf("bad frame from the relay: %w", err)
			c.ws.CloseNow()
			return
		}
		c.frames <- &f
	}
}

// send writes frame f.
func (c *wsConn) send(ctx context.Context, f *wire.ClientFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return c.sendRaw(ctx, b)
}

// sendRaw writes b as one text message.
func (c *wsConn) sendRaw(ctx context.Context, b []byte) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, b)
}

// next returns the next frame read, or why there is none.
func (c *wsConn) next(ctx context.Context) (*wire.ServerFrame, error) {
	select {
	case f, ok := <-c.frames:
		if !ok {
			return nil, c.err
		}
		return f, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// expect returns the next frame of one of types, skipping the others; an
// error frame returns a codeError.
func (c *wsConn) expect(ctx context.Context, types ...wire.FrameType) (*wire.ServerFrame, error) {
	for {
		f, err := c.next(ctx)
		if err != nil {
			return nil, err
		}
		if f.Type == wire.TypeError {
			return f, codeError(f.Code)
		}
		for _, t := range types {
			if f.Type == t {
				return f, nil
			}
		}
	}
}

// close drops the connection without a closing handshake.
func (c *wsConn) close() { c.ws.CloseNow() }

// codeError is an error frame's code.
type codeError wire.Code

func (e codeError) Error() string { return "relay error " + string(e) }

// outcome names err for a counter: the error frame's code, "close:" and
// the relay's close code, "timeout", or "conn" for any other failure of
// the connection.
func outcome(err error) string {
	var ce codeError
	switch {
	case errors.As(err, &ce):
		return string(ce)
	case websocket.CloseStatus(err) != -1:
		return fmt.Sprintf("close:%d", websocket.CloseStatus(err))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "timeout"
	case err != nil && strings.Contains(err.Error(), "status code"):
		return "refused_upgrade" // HTTP answer instead of 101
	default:
		return "conn"
	}
}

// ptr returns a pointer to v, for the optional fields of a frame.
func ptr[T any](v T) *T { return &v }
