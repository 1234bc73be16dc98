// Package client is the Go client of the keyrelay relay: with it a Go
// program is one side of an end-to-end encrypted chat between two people.
// It speaks the whole protocol of docs/protocol.md.
//
// The private key never leaves the client: [Client.Handshake] generates the
// key pair locally, sends only the public key, validates the peer's key
// itself (it does not trust the relay's validation), derives the message
// key with [dh.NewChannel], and returns the safety number that the two
// users compare out of band. [Client.Send] and [Client.Next] then encrypt
// and decrypt every message end to end.
//
// # Writing a chat app
//
// A chat app takes these steps; each method's example shows its step
// against a relay running in the example.
//
//  1. Dial the relay: [Dial], or [DialURLs] with the URLs of several
//     instances of one relay service. The relay's WebSocket URL
//     ("ws://localhost:8080/v1/ws") and the address of its page
//     ("http://localhost:8080/") both do: see [RelayURL].
//  2. Create a room with [Client.Create] and give its ID and group to the
//     other person out of band; or join theirs with [Client.JoinGroup],
//     with the group they gave ([Client.Join] takes the room's group,
//     whatever it is, as long as it is not a legacy group).
//  3. Exchange keys with [Client.Handshake], which waits for the other
//     person, and show [Handshake.SafetyNumber]: both users compare it
//     over another channel. [Client.SendKey] is the first half of
//     Handshake, for an app that wants to say "my key is at the relay"
//     while the other person is still away; Handshake calls it anyway.
//  4. Read the room with [Client.Next], from a goroutine of its own, for as
//     long as the room lasts: messages, the other person joining, leaving,
//     dropping and coming back, and errors that concern one event (a
//     message that does not open, a *KeyChangeError: warn the user at
//     once). After the other person left for good ([EventPeerLeft] with
//     wire.ReasonLeft or wire.ReasonExpired) someone new may take their
//     place: call Handshake again, and tell the user to compare the new
//     safety number.
//  5. Send each message with [Client.Send].
//  6. When a call fails with an error that matches [ErrDisconnected],
//     call [Client.Resume]: it takes the seat back, on any of the URLs,
//     and no message is lost or repeated. Not after [ErrSuperseded].
//  7. When the user is done, [Client.Leave] the room, then [Client.Close]
//     the client. Close alone is a drop: the other person is told that
//     the connection dropped, and waits.
//
// In short:
//
//	c, err := client.Dial(ctx, "ws://localhost:8080/v1/ws", nil)
//	room, err := c.Create(ctx, dh.X25519())   // or c.JoinGroup(ctx, id, group)
//	hs, err := c.Handshake(ctx)               // show hs.SafetyNumber
//	go func() { ev, err := c.Next(ctx); … }() // in a loop: show what happens
//	seq, err := c.Send(ctx, []byte("hello"))
//	err = c.Resume(ctx)                       // after errors.Is(err, client.ErrDisconnected)
//	err = c.Leave(ctx)
//	err = c.Close()
//
// # Next or Receive
//
// An app reads the room with Next, which returns every event. Receive is
// Next that discards every event but messages: it is for tests, bots and
// tools that only exchange messages. A chat app that used it would not
// know that the other person left, or that someone new took their place
// and the safety number changed.
//
// # Errors
//
// Each method's doc lists its errors. The relay's refusals are [*Error]
// values (the error frame's code and message); the end of the connection
// is a [*CloseError] when the relay sent a close frame, whose text names
// the close code ([CloseText]); both print ready for a user, after the
// operation: "join: the room already has two peers (room_full)", "join:
// the relay closed the connection (4429): too many connections from your
// address".
//
// # Groups
//
// The room's group is bound into the message key and the safety number
// (dh.DeriveKey, dh.SafetyNumber), and the client also pins it, so that a
// relay or proxy cannot downgrade it: Create(ctx, g) and JoinGroup(ctx,
// id, g) pin g (the creator shares the room ID together with its group),
// and the client refuses any room, key_ok, peer_key or handshake_complete
// frame whose group is not g, with a *GroupError wrapping ErrGroupChanged.
// Without a group (Create(ctx, nil), Join) the client pins the first group
// the relay reports, unless it is a legacy group. The only legacy group is
// modp5, refused (ErrLegacyGroup) unless Options.AllowLegacyGroups. After
// a refused group the room is unusable: SendKey, Handshake, Send and
// Resume return the *GroupError, and Next reports it once; Leave or Close.
// A refused room reply to Create or JoinGroup leaves the room at once.
//
// # Frames and queues
//
// One reader goroutine per connection reads every frame. Replies to the
// client's own requests (room, key_ok, sent, left, error) are matched to
// them by id. Handshake frames (peer_key, handshake_complete) update the
// client's state. Messages, peer_joined, peer_left, peer_key, and error
// frames that answer no request (room_expired, rate_limited for an ack …)
// go into one queue, in the order they arrived, that [Client.Next] reads.
// The queue holds at most Options.QueueSize messages (64 by default) and,
// separately, 64 other events, so that the events of a key exchange never
// wait behind unread messages: Handshake works even if the application
// only starts reading events afterwards.
//
// When the application does not call Next and the queue is full, the
// reader stops reading from the connection: memory never grows without
// bound. Replies to Send and the other calls then wait too, and the relay,
// whose own queue for the connection fills up, eventually closes it as a
// slow reader (close code 4408) or for missing pings; the client reports
// ErrDisconnected and can Resume once the application reads again. Read
// events from their own goroutine.
//
// # Delivery and resume
//
// The client acknowledges (ack frame) the messages Next has returned,
// batching acknowledgements so as not to spend the relay's frame rate
// limit. It drops, before decrypting, a message whose seq is not above the
// highest it has queued, and drops silently (no event, no error) a
// message whose counter it has already accepted: a copy the peer sent
// again. Both are acknowledged, as is a message that fails to open (Next
// reports ErrBadMessage), so that none comes back at every resume.
//
// When the connection drops, the room, the keys, the Channel's counters and the
// undelivered queue survive: [Client.Resume] dials again and sends resume
// with the highest seq it has queued, so the relay re-sends exactly the
// messages it has not seen; none is lost or repeated. A message handed to
// the relay without a sent reply (the connection dropped first, or the
// relay answered unavailable) may or may not have been stored: Send
// returns an error wrapping ErrUnconfirmed (and ErrDisconnected if the
// connection dropped), and the client keeps the sealed body and sends it
// again, as it was (same counter), right after the next successful
// Resume, or, after unavailable, before the next message; the peer's
// client drops the copy if the first one arrived. The application must
// not send it again itself. Messages are pipelined: if the relay answers
// unavailable to one message but stores a later one sent meanwhile
// (concurrent Sends), the peer refuses the earlier one's copy as a replay,
// so it arrives only if the first copy was stored.
//
// # Failover and restarts
//
// A relay service may run as several instances sharing one store: give
// DialURLs all their URLs. Resume then tries them in turn, with jittered
// exponential backoff (100 ms doubling to 5 s, ±20%), for as long as the
// relay keeps the seat after a drop (the room's resume grace period,
// which the room frame gives: Room.ResumeGrace), and reports each
// attempt to Options.OnResumeAttempt, so that a user can see which
// instance it tries and how long it will go on. It gives up with
// ErrResumeGaveUp once the grace has passed.
//
// A process that must survive its own restart gives Options.SaveState a
// function that stores the client's State (a secret: it holds the private
// key); Restore makes a Client from it in the new process and takes the
// seat back. The client saves the State before its key or any sealed
// message leaves the process, so that a restored client never reuses a
// message counter (a nonce): see State.
//
// The client never resumes by itself. When the relay closes the connection
// with 4409 (wire.CloseSuperseded: another connection resumed this
// client's place, with its token), errors (a *CloseError) match
// ErrSuperseded as well as ErrDisconnected, and Resume refuses with
// ErrSuperseded. When the peer's grace period ends (peer_left with
// wire.ReasonExpired), as when it leaves, the key exchange with it ends: a
// new peer may join, and Handshake then performs a new exchange with it.
//
// All methods are safe for concurrent use.
//
// The module's own tests and its load tester also send frames the client
// would never send (an invalid key, a frame of an unknown type) through
// the package internal/clienttest, which bypasses the client's state; an
// application has no use for it.
package client

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/wire"
)

// Defaults of Options.
const (
	// DefaultQueueSize is Options.QueueSize's default: 64 messages.
	DefaultQueueSize = 64
	// DefaultMaxFrameSize is Options.MaxFrameSize's default, the relay's
	// default frame-size limit: 64 KiB.
	DefaultMaxFrameSize = 64 << 10
	// DefaultWriteTimeout is Options.WriteTimeout's default: 10 s.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultDialTimeout is Options.DialTimeout's default: 10 s.
	DefaultDialTimeout = 10 * time.Second
)

// Options configures a Client. A nil *Options, like every zero field, means
// the documented defaults.
type Options struct {
	// HTTPHeader is sent with the WebSocket handshake request (an Origin
	// or an Authorization header, say). Defaults to none.
	HTTPHeader http.Header
	// HTTPClient makes the handshake request; its Transport dials the
	// connection. Defaults to http.DefaultClient.
	HTTPClient *http.Client
	// Rand is the source of the private keys. Defaults to
	// crypto/rand.Reader.
	Rand io.Reader
	// Logger receives the client's diagnostics (connections, frame types,
	// protocol errors), never key material, tokens or message contents.
	// Defaults to discarding them.
	Logger *slog.Logger
	// QueueSize bounds the messages waiting for Next (the other events
	// have their own bound of 64); when either is reached the client stops
	// reading from the connection. Defaults to DefaultQueueSize.
	QueueSize int
	// MaxFrameSize is the relay's frame-size limit: Send refuses
	// plaintexts whose frame would exceed it (see MaxPlaintext), and
	// frames from the relay up to a little more are read. Defaults to
	// DefaultMaxFrameSize, the relay's default.
	MaxFrameSize int
	// WriteTimeout bounds every frame write. Writes are not interrupted by
	// the caller's context (an interrupted write would break the
	// connection), only by this timeout. Defaults to DefaultWriteTimeout.
	WriteTimeout time.Duration
	// AllowLegacyGroups lets the client use legacy groups: modp5 (1536-bit,
	// below today's recommendations), the only one. Defaults to false:
	// Create and JoinGroup refuse modp5 with ErrLegacyGroup, and a room
	// the relay reports in modp5 (to a plain Join, or to Create(ctx, nil)
	// by the first key) is refused with a *GroupError wrapping
	// ErrLegacyGroup.
	AllowLegacyGroups bool
	// DialTimeout bounds each connection attempt: each URL's dial in
	// DialURLs, and in Resume each attempt's dial and resume reply
	// together, so that one unreachable instance does not use up the
	// caller's context. Defaults to DefaultDialTimeout.
	DialTimeout time.Duration
	// OnResumeAttempt, if not nil, is called before each attempt of Resume
	// (and Restore) with the URL it tries and the time the seat has left,
	// so that an application can show what is happening. It runs in the
	// goroutine that called Resume, while Resume holds the client: it must
	// return quickly and must not call the Client's methods.
	OnResumeAttempt func(ResumeAttempt)
	// SaveState, if not nil, is given the client's State each time it
	// changes in a way a restarted process needs (the room entered, the
	// key pair made, the handshake done, a message sealed, sent or
	// processed, a resume), so that Restore can take the seat back in a
	// new process. It is called before the client's public key or a
	// sealed message leaves the process, and if it returns an error,
	// SendKey and Send fail with it and send nothing: the last State
	// given to SaveState always covers every counter used on the wire, so
	// restoring it never reuses a nonce. Elsewhere its errors are only
	// logged. Calls are serialised, in order. It must not call the
	// Client's methods. The State holds the private key: see State.
	// Defaults to nil: nothing is saved.
	SaveState func(State) error
}

// Client is a connection to a relay and the client's place in at most one
// room. It survives reconnections: see Resume.
type Client struct {
	// Static after Dial.
	urls   []string // the relay's URLs, tried in turn by Resume
	opts   Options
	logger *slog.Logger
	events *queue        // what Next reads
	closed chan struct{} // closed by Close
	nextID atomic.Uint64

	closeOnce sync.Once
	resumeMu  sync.Mutex // serialises Resume
	saveMu    sync.Mutex // serialises the calls of Options.SaveState
	keyMu     sync.Mutex // serialises SendKey, also when Handshake calls it
	sendMu    sync.Mutex // makes Seal and the msg write one step, so counters go out in order

	// mu guards the following and every roomState and peerState. Methods
	// named …Locked (notifyLocked, channelLocked, the frame handlers in
	// handlers.go, roomState's) must be called with it held.
	mu      sync.Mutex
	conn    *conn
	urlIdx  int           // the index in urls of conn's URL
	room    *roomState    // nil outside a room
	changed chan struct{} // closed and replaced whenever the room's state changes
}

// conn is one WebSocket connection and its reader goroutine.
type conn struct {
	ws   *websocket.Conn
	done chan struct{} // closed when the reader has exited
	err  error         // why the reader exited; written before done is closed
	stop chan struct{} // closed to make the reader give up a blocked queue push
	once sync.Once

	mu      sync.Mutex // guards pending
	pending map[string]*call
}

// call is a request waiting for its reply.
type call struct {
	// apply, if not nil, runs in the reader with Client.mu held when a
	// non-error reply arrives, before any later frame is handled, so that
	// state changes follow the order of the frames.
	apply func(*inFrame)
	// msg, for a msg frame, is the message whose outcome the reply
	// decides (onMsgReplyLocked), in room.
	msg  *outMsg
	room *roomState
	// keep leaves the call pending when its waiter gives up (ctx), so that
	// a late reply still settles msg.
	keep  bool
	reply chan *inFrame // buffered, 1
}

// Dial connects to the relay's WebSocket endpoint at relayURL, offering
// the keyrelay.v1 subprotocol with compression off. relayURL is the
// WebSocket URL ("ws://localhost:8080/v1/ws") or the address of the page
// the relay serves ("http://localhost:8080/"): see RelayURL. It returns an
// error if relayURL is not a relay URL, if the dial fails, or if the relay
// does not select keyrelay.v1. opts may be nil. It is DialURLs with the
// one URL.
func Dial(ctx context.Context, relayURL string, opts *Options) (*Client, error) {
	return DialURLs(ctx, []string{relayURL}, opts)
}

// DialURLs connects, as Dial does, to the first of urls that answers:
// several instances of one relay service (relays sharing one store), each
// tried once, in order, for at most Options.DialTimeout. The client keeps
// the list: Resume tries them all in turn, so that a client whose
// instance stops takes its seat back on another. Each URL goes through
// RelayURL first. It returns RelayURL's error for the first URL that is
// not a relay URL, an error for an empty list, and an error that joins
// every URL's error if none answers, each starting "dial URL: ". opts may
// be nil.
func DialURLs(ctx context.Context, urls []string, opts *Options) (*Client, error) {
	c, err := newClient(urls, opts)
	if err != nil {
		return nil, err
	}
	var errs []error
	for i, u := range c.urls {
		actx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
		cn, err := c.dial(actx, u)
		cancel()
		if err == nil {
			c.mu.Lock() // the reader may already look at c.conn
			c.conn, c.urlIdx = cn, i
			c.mu.Unlock()
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// newClient returns a Client for urls with opts's defaults filled in, not
// connected yet.
func newClient(urls []string, opts *Options) (*Client, error) {
	if len(urls) == 0 {
		return nil, errors.New("no relay URL")
	}
	norm := make([]string, len(urls))
	for i, u := range urls {
		var err error
		if norm[i], err = RelayURL(u); err != nil {
			return nil, err
		}
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.MaxFrameSize <= 0 {
		o.MaxFrameSize = DefaultMaxFrameSize
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	return &Client{
		urls:    norm,
		opts:    o,
		logger:  o.Logger,
		events:  newQueue(o.QueueSize),
		closed:  make(chan struct{}),
		changed: make(chan struct{}),
	}, nil
}

// URL returns the URL of the relay the client is connected to, or was
// last connected to, without its query and user information.
func (c *Client) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return redactURL(c.urls[c.urlIdx])
}

// redactURL returns the URL without its query and user information, for
// logs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// dial opens a connection to relayURL and starts its reader.
func (c *Client) dial(ctx context.Context, relayURL string) (*conn, error) {
	ws, resp, err := websocket.Dial(ctx, relayURL, &websocket.DialOptions{
		HTTPClient:      c.opts.HTTPClient,
		HTTPHeader:      c.opts.HTTPHeader,
		Subprotocols:    []string{wire.Subprotocol},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			// Something answered over HTTP, but not a relay's endpoint.
			return nil, fmt.Errorf("dial %s: HTTP %s instead of a WebSocket upgrade: is this the relay's WebSocket URL? (the relay serves it at %s)",
				redactURL(relayURL), resp.Status, wire.Path)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			// "failed to WebSocket dial: failed to send handshake request:
			// Get URL: dial tcp …": the URL is said once, below.
			err = ue.Err
		}
		return nil, fmt.Errorf("dial %s: %w", redactURL(relayURL), err)
	}
	if p := ws.Subprotocol(); p != wire.Subprotocol {
		ws.Close(websocket.StatusPolicyViolation, wire.Subprotocol+" required")
		return nil, fmt.Errorf("dial %s: the relay selected subprotocol %q, not %s", redactURL(relayURL), p, wire.Subprotocol)
	}
	// A relayed msg frame is the sender's frame plus a seq.
	ws.SetReadLimit(int64(c.opts.MaxFrameSize) + 1024)
	cn := &conn{
		ws:      ws,
		done:    make(chan struct{}),
		stop:    make(chan struct{}),
		pending: make(map[string]*call),
	}
	c.logger.Debug("connected", "relay", redactURL(relayURL))
	go c.readLoop(cn)
	return cn, nil
}

// shutdown closes the connection, with a close handshake if graceful, and
// waits for its reader to exit.
func (cn *conn) shutdown(graceful bool) {
	cn.once.Do(func() {
		close(cn.stop)
		if graceful {
			cn.ws.Close(websocket.StatusNormalClosure, "")
		} else {
			cn.ws.CloseNow()
		}
	})
	<-cn.done
}

// Close closes the connection (with a normal close, so the relay treats it
// as a drop: the peer sees peer_left "dropped"; call Leave first to leave
// the room for good). Calls waiting on the Client return ErrClosed or
// ErrDisconnected. Close returns nil, also when called again.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	c.mu.Lock()
	cn := c.conn
	c.mu.Unlock()
	if cn != nil {
		cn.shutdown(true)
	}
	return nil
}

// isClosed reports whether Close has been called.
func (c *Client) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// current returns the current connection.
func (c *Client) current() *conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// connErr returns the error for a call whose connection ended.
func (c *Client) connErr(cn *conn) error {
	if c.isClosed() {
		return ErrClosed
	}
	select {
	case <-cn.done:
		if ce := closeError(cn.err); ce != nil {
			return ce
		}
		if cn.err != nil {
			return fmt.Errorf("%w: %w", ErrDisconnected, cn.err)
		}
	default:
	}
	return ErrDisconnected
}

// closeError returns err as a *CloseError if it carries the relay's close
// frame, else nil.
func closeError(err error) *CloseError {
	var wce websocket.CloseError
	if !errors.As(err, &wce) {
		return nil
	}
	return &CloseError{Code: wce.Code, Reason: wce.Reason, err: err}
}

// closeReasonWait bounds how long a failed write waits for the reader to
// see the relay's close frame, if one is coming.
const closeReasonWait = 250 * time.Millisecond

// write sends one frame on cn, bounded by WriteTimeout only.
func (c *Client) write(cn *conn, data []byte) error {
	if c.isClosed() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.WriteTimeout)
	defer cancel()
	if err := cn.ws.Write(ctx, websocket.MessageText, data); err != nil {
		if c.isClosed() {
			return ErrClosed
		}
		// A write fails when the relay has just closed the connection: the
		// reader is then about to return the close frame, which says why.
		t := time.NewTimer(closeReasonWait)
		select {
		case <-cn.done:
			if ce := closeError(cn.err); ce != nil {
				t.Stop()
				return ce
			}
		case <-t.C:
		}
		t.Stop()
		cn.ws.CloseNow() // a failed or timed-out write leaves the connection unusable
		return fmt.Errorf("%w: write: %w", ErrDisconnected, err)
	}
	return nil
}

// start registers a request under a fresh id and writes it; wait then
// waits for its reply. They are separate so that Send can write under
// sendMu and wait outside it. cl, if not nil, is the call to register
// (Send's, with its msg); else a new one with apply.
func (c *Client) start(f *outFrame, fields map[string]any, apply func(*inFrame), cl *call) (*conn, string, *call, error) {
	cn := c.current()
	id := c.nextID.Add(1)
	key := fmt.Sprint(id)
	var data []byte
	var err error
	if fields != nil {
		m := make(map[string]any, len(fields)+1)
		for k, v := range fields {
			m[k] = v
		}
		m["id"] = id
		data, err = json.Marshal(m)
	} else {
		data, err = f.marshal(id)
	}
	if err != nil {
		return nil, "", nil, fmt.Errorf("encode frame: %w", err)
	}
	if cl == nil {
		cl = &call{apply: apply}
	}
	cl.reply = make(chan *inFrame, 1)
	cn.mu.Lock()
	cn.pending[key] = cl
	cn.mu.Unlock()
	if err := c.write(cn, data); err != nil {
		cn.forget(key)
		return nil, "", nil, err
	}
	return cn, key, cl, nil
}

// forget removes a pending request.
func (cn *conn) forget(key string) {
	cn.mu.Lock()
	delete(cn.pending, key)
	cn.mu.Unlock()
}

// wait waits for the reply to a request started with start. An error frame
// is returned as *Error.
func (c *Client) wait(ctx context.Context, cn *conn, key string, cl *call) (*inFrame, error) {
	if !cl.keep {
		defer cn.forget(key)
	}
	var f *inFrame
	select {
	case f = <-cl.reply:
	case <-cn.done:
		select {
		case f = <-cl.reply: // the reply came just before the end
		default:
			return nil, c.connErr(cn)
		}
	case <-c.closed:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if f.Type == wire.TypeError {
		return nil, f.relayError()
	}
	return f, nil
}

// roundTrip sends f and waits for its reply.
func (c *Client) roundTrip(ctx context.Context, f *outFrame, apply func(*inFrame)) (*inFrame, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cn, key, cl, err := c.start(f, nil, apply, nil)
	if err != nil {
		return nil, err
	}
	return c.wait(ctx, cn, key, cl)
}

// request sends a frame made of fields plus a fresh "id" and returns the
// relay's direct reply to it as raw JSON; an error frame is returned as
// *Error. It bypasses the client's state (a key or room it sets is not
// known to Handshake or Send): it is the escape hatch for tests of the
// relay's handling of bad input, such as an invalid public key, and for
// the load tester's pool keys. internal/clienttest exports it.
func (c *Client) request(ctx context.Context, fields map[string]any) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cn, key, cl, err := c.start(nil, fields, nil, nil)
	if err != nil {
		return nil, err
	}
	f, err := c.wait(ctx, cn, key, cl)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(f.raw), nil
}

// sendRaw writes frame, as is, in one text frame, and does not wait for
// anything. Replies without an id that matches a request are dropped,
// except error frames, which Next returns. Like request, it bypasses the
// client's state; internal/clienttest exports it, for tests.
func (c *Client) sendRaw(ctx context.Context, frame []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.write(c.current(), frame)
}

// readLoop reads and dispatches cn's frames until the connection ends or
// the reader is stopped.
func (c *Client) readLoop(cn *conn) {
	defer close(cn.done)
	for {
		typ, data, err := cn.ws.Read(context.Background())
		if err != nil {
			cn.err = err
			code := websocket.CloseStatus(err)
			c.logger.Debug("connection ended", "close_code", int(code))
			c.mu.Lock()
			if code == wire.CloseSuperseded && c.conn == cn && c.room != nil {
				c.logger.Warn("another connection resumed this client's place (close 4409)")
				c.room.superseded = true
			}
			if c.conn == cn && c.room != nil && c.room.droppedAt.IsZero() {
				c.room.droppedAt = time.Now() // the seat's grace runs from here
			}
			c.notifyLocked()
			c.mu.Unlock()
			return
		}
		if typ != websocket.MessageText {
			c.logger.Warn("relay sent a binary frame; ignored")
			continue
		}
		f, err := parseFrame(data)
		if err != nil {
			c.logger.Warn("relay sent a malformed frame; ignored", "err", err)
			continue
		}
		if !c.dispatch(cn, f) {
			cn.err = errors.New("connection closed by the client")
			return
		}
	}
}

// notifyLocked wakes the goroutines waiting for a state change. The
// caller holds c.mu.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}
