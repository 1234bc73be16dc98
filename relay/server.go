package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/wire"
)

// Limiter is the admission control the relay asks before it admits a
// connection, a create, join or resume, and a public key. limits.Memory
// and limits.Redis implement it; their errors (limits.ErrConnLimit,
// ErrJoinRate, ErrRoomAttempts, ErrRoomsPerIP, ErrKeyReused, ErrClosed,
// and errors wrapping limits.ErrUnavailable) are what the relay maps to
// wire codes.
//
// A create asks JoinIP, then CreateRoom; a join JoinIP, then RoomAttempt;
// a resume JoinIP, then the store (which checks the token), and
// RoomAttempt only if the resume failed for a wrong token or an unknown
// peer. So an attempt refused by the IP's rate spends no room's budget,
// and a member resuming with its token is never refused by its room's
// budget, however many strangers knocked.
type Limiter interface {
	// Connect counts a connection from ip and returns the function that
	// releases it, or an error (nothing counted).
	Connect(ctx context.Context, ip string) (release func(), err error)
	// JoinIP counts a create, join or resume by ip (limits.ErrJoinRate).
	JoinIP(ctx context.Context, ip string) error
	// RoomAttempt counts a join, or a failed resume, on room by ip's
	// source (limits.ErrRoomAttempts).
	RoomAttempt(ctx context.Context, ip, room string) error
	// CreateRoom counts a room created by ip's source
	// (limits.ErrRoomsPerIP).
	CreateRoom(ctx context.Context, ip string) error
	// UseKey records that public key key (hex) is used in room, and
	// refuses a key recently used in another room.
	UseKey(ctx context.Context, key, room string) error
}

// Config configures a Server. The zero value is valid: every zero field
// means the default its comment gives.
type Config struct {
	// MaxFrameBytes is the largest message (all its WebSocket fragments
	// together) a client may send; a larger one closes the connection with
	// 1009. Zero means 64 KiB.
	MaxFrameBytes int64
	// FramesPerSecond and FrameBurst rate-limit each connection's frames
	// (a token bucket); frames over the limit get a rate_limited error and
	// are ignored. WebSocket pings from the client spend the same tokens;
	// a ping over the limit gets no pong. Zero means 20 per second and a
	// burst of 40.
	FramesPerSecond float64
	FrameBurst      int
	// BytesPerSecond and ByteBurst bound the bytes each connection's
	// messages may carry (a token bucket that may go into debt by one
	// message): once a connection has spent its bytes, the relay reads
	// nothing more from it until it has earned them back, so a flood is
	// pushed back by TCP instead of read. ByteBurst must be at least
	// MaxFrameBytes. Zero means 256 KiB per second and a burst of 512 KiB.
	BytesPerSecond float64
	ByteBurst      int
	// MaxRooms bounds the rooms in the store. Zero means 10000; negative
	// means no limit.
	MaxRooms int
	// SendQueue is how many frames may wait for a client; when it stays
	// full for SlowReaderTimeout the client is a slow reader and its
	// connection is closed with 4408. Zero means 64 frames and 5 s.
	SendQueue         int
	SlowReaderTimeout time.Duration
	// MaxQueuedBytes bounds the bytes of the frames waiting for one
	// client the same way: producers wait while more are queued, and a
	// client that keeps them waiting SlowReaderTimeout is closed with 4408.
	// Zero means 1 MiB; a frame larger than it is still queued alone.
	MaxQueuedBytes int64
	// MaxQueuedBytesTotal bounds the frames waiting for all clients
	// together: while the queues hold more, every producer with frames
	// queued waits for its queue to empty, so the clients that do not read
	// are closed as slow readers within SlowReaderTimeout and the ones that
	// do read go on. Zero means 64 MiB; negative means no bound.
	MaxQueuedBytesTotal int64
	// WriteTimeout bounds each frame's write. Zero means 10 s.
	WriteTimeout time.Duration
	// PingInterval is how often the relay pings each connection; a pong
	// must come back within PingTimeout or the connection is closed. Zero
	// means 20 s and 10 s.
	PingInterval time.Duration
	PingTimeout  time.Duration
	// RoomTTL is how long a room lives without activity. Zero means 10 min.
	RoomTTL time.Duration
	// ResumeGrace is how long a dropped peer keeps its place. Zero means
	// 2 min. A peer whose grace is over is removed, with the messages
	// waiting for it, when it ends; a room whose peers are all dropped
	// expires when the last grace ends (plus session.GraceMargin), however
	// long RoomTTL.
	ResumeGrace time.Duration
	// EmptyRoomTTL is how long a room with no peer (every peer left)
	// lives without activity. Zero means 2 min, or RoomTTL if shorter; a
	// value above RoomTTL acts as RoomTTL. A room whose creator waits
	// alone, connected, for its peer keeps RoomTTL.
	EmptyRoomTTL time.Duration
	// MaxPending bounds the unacknowledged messages waiting for one peer.
	// Zero means 256.
	MaxPending int
	// MaxPendingBytes bounds the bytes of the unacknowledged message
	// bodies (decoded ciphertext) waiting for one peer; a message that
	// would go over it is refused with mailbox_full, as one over
	// MaxPending is. Zero means 1 MiB. It must be at least MaxFrameBytes,
	// so that the largest message always fits an empty mailbox.
	MaxPendingBytes int64
	// StoreTimeout bounds each call to the session store. Zero means 5 s.
	StoreTimeout time.Duration
	// AckDelay, if positive, lets the relay hold a client's ack for up to
	// that long before storing it: an ack followed within AckDelay by a
	// message from the same client is stored with the message, in one
	// call (stores that offer AppendAck, such as the Redis store, do both
	// in one script), and acks that follow one another are stored once,
	// as the last. Acknowledged messages then stay in the store up to
	// AckDelay longer, counting against the mailbox's bounds, and a
	// client that resumes gets nothing twice (it sends last_seq). Acks
	// held when a connection ends are stored then. Zero (the default)
	// stores every ack at once.
	AckDelay time.Duration
	// AllowedOrigins lists the origins browsers may connect from, as
	// host patterns ("example.com", "*.example.com") or
	// "scheme://host" patterns, matched with path.Match. Nil or empty means
	// the relay's own origin only; "*" allows any origin.
	AllowedOrigins []string
	// Limiter counts connections, join attempts and public keys against
	// the admission limits: limits.NewMemory for one process; with many
	// instances, one that shares its counts (limits.NewRedis), so that ten
	// instances do not give a client ten times the budget. Required: the
	// caller chooses the limits, and closes the Limiter after the Server.
	Limiter Limiter
	// AllowLegacyGroups lets clients use modp5 (1536-bit MODP), which is
	// below the strength clients accept by default; off, create and key in
	// modp5 get group_not_allowed. Off by default.
	AllowLegacyGroups bool
	// ClientRoomIDs lets create name its room (a "room" field): IDs of
	// MinRoomIDLength to 64 characters from A-Z, a-z, 0-9, "-" and "_".
	// Off by default: the relay's own IDs are random UUIDs (122 random
	// bits), which nobody can guess; a client's may be weaker, so the
	// minimum length is the operator's guard. Zero MinRoomIDLength means
	// 22 (the length of 128 random bits in base64url).
	ClientRoomIDs   bool
	MinRoomIDLength int
	// Registerer receives the relay's Prometheus metrics. Nil means none
	// are registered (they are still counted).
	Registerer prometheus.Registerer
	// ClientIP returns the client address a request's connection is
	// counted under by the Limiter, for a relay behind proxies (see
	// package realip: its Resolver.ClientIP honours X-Forwarded-For from
	// trusted proxies only). It must not trust headers from just anyone,
	// or clients choose their own address. Nil, or an empty result, means
	// the host part of the request's RemoteAddr.
	ClientIP func(*http.Request) string
}

func (c *Config) setDefaults() error {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = 64 << 10
	}
	if c.FramesPerSecond == 0 {
		c.FramesPerSecond = 20
	}
	if c.FrameBurst == 0 {
		c.FrameBurst = 40
	}
	if c.BytesPerSecond == 0 {
		c.BytesPerSecond = 256 << 10
	}
	if c.ByteBurst == 0 {
		c.ByteBurst = 512 << 10
	}
	if c.MaxRooms == 0 {
		c.MaxRooms = 10000
	}
	if c.MinRoomIDLength == 0 {
		c.MinRoomIDLength = 22
	}
	if c.SendQueue == 0 {
		c.SendQueue = 64
	}
	if c.MaxPending == 0 {
		c.MaxPending = 256
	}
	if c.MaxPendingBytes == 0 {
		c.MaxPendingBytes = 1 << 20
	}
	if c.MaxQueuedBytes == 0 {
		c.MaxQueuedBytes = 1 << 20
	}
	if c.MaxQueuedBytesTotal == 0 {
		c.MaxQueuedBytesTotal = 64 << 20
	}
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.SlowReaderTimeout, 5*time.Second)
	def(&c.PingInterval, 20*time.Second)
	def(&c.PingTimeout, 10*time.Second)
	def(&c.RoomTTL, 10*time.Minute)
	def(&c.ResumeGrace, 2*time.Minute)
	def(&c.EmptyRoomTTL, min(2*time.Minute, c.RoomTTL))
	c.EmptyRoomTTL = min(c.EmptyRoomTTL, c.RoomTTL)
	def(&c.StoreTimeout, 5*time.Second)
	switch {
	case c.MaxFrameBytes < 1024:
		return fmt.Errorf("relay: MaxFrameBytes %d is below 1024", c.MaxFrameBytes)
	case c.MinRoomIDLength < 1 || c.MinRoomIDLength > maxRoomIDLength:
		return fmt.Errorf("relay: MinRoomIDLength %d: want 1 to %d", c.MinRoomIDLength, maxRoomIDLength)
	case c.FramesPerSecond < 0 || c.FrameBurst < 1 || c.SendQueue < 1 || c.MaxPending < 1 || c.BytesPerSecond < 0 || c.MaxQueuedBytes < 1:
		return errors.New("relay: FramesPerSecond, FrameBurst, BytesPerSecond, SendQueue, MaxPending and MaxQueuedBytes must be positive")
	case c.MaxPendingBytes < c.MaxFrameBytes:
		return fmt.Errorf("relay: MaxPendingBytes %d is below MaxFrameBytes %d: a largest message would never fit", c.MaxPendingBytes, c.MaxFrameBytes)
	case int64(c.ByteBurst) < c.MaxFrameBytes:
		return fmt.Errorf("relay: ByteBurst %d is below MaxFrameBytes %d: a largest message would never fit", c.ByteBurst, c.MaxFrameBytes)
	case c.WriteTimeout < 0 || c.PingInterval < 0 || c.PingTimeout < 0 || c.RoomTTL < 0 || c.ResumeGrace < 0 || c.EmptyRoomTTL < 0 || c.StoreTimeout < 0 || c.SlowReaderTimeout < 0 || c.AckDelay < 0:
		return errors.New("relay: durations must not be negative")
	case c.PingInterval >= c.RoomTTL/2:
		// A connected member's keepalive touches its room every third of
		// RoomTTL at the next ping: a ping interval of half the TTL or more
		// lets the room of two silent members expire under them.
		return fmt.Errorf("relay: PingInterval %v must be below half of RoomTTL %v, or silent members' rooms expire", c.PingInterval, c.RoomTTL)
	}
	return nil
}

// Server is the relay's WebSocket endpoint. It is an http.Handler: mount it
// at /v1/ws. Create it with New; stop it with Close.
type Server struct {
	// Static after construction.
	store   session.Store
	cfg     Config
	limiter Limiter
	log     *slog.Logger
	metrics *metrics
	logKey  [32]byte // keys the hash under which room IDs appear in logs
	nextID  atomic.Uint64
	queued  queuedBytes // the frames queued on every connection

	mu     sync.Mutex // guards the following
	conns  map[*conn]struct{}
	closed bool

	wg sync.WaitGroup // one per running connection handler
}

// New returns a Server that keeps its state in store and asks
// cfg.Limiter for admission. It returns an error for a nil store or
// Limiter and for an invalid Config. A nil logger discards logs.
func New(store session.Store, cfg Config, logger *slog.Logger) (*Server, error) {
	if store == nil {
		return nil, errors.New("relay: nil store")
	}
	if cfg.Limiter == nil {
		return nil, errors.New("relay: nil Config.Limiter (limits.NewMemory serves one process)")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		store: store,
		cfg:   cfg,
		log:   logger,
		conns: make(map[*conn]struct{}),
	}
	s.limiter = cfg.Limiter
	s.queued.max = cfg.MaxQueuedBytesTotal
	if _, err := rand.Read(s.logKey[:]); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer, store, &s.queued)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	return s, nil
}

// ServeHTTP upgrades the request to a WebSocket connection and serves it
// until it ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var c *conn // set before the reader starts; OnPingReceived runs in the reader
	opts := &websocket.AcceptOptions{
		Subprotocols:    []string{wire.Subprotocol},
		CompressionMode: websocket.CompressionDisabled, // ciphertext does not compress
		OnPingReceived: func(context.Context, []byte) bool {
			return c == nil || c.allowPing()
		},
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" {
			opts.InsecureSkipVerify = true
		}
	}
	if !opts.InsecureSkipVerify {
		opts.OriginPatterns = s.cfg.AllowedOrigins
	}
	// Count the connection against its IP before the upgrade, so that
	// connections are counted in the order their upgrades complete. A
	// connection over the limit is upgraded, to be told why (4429).
	ip := s.clientIP(r)
	release, lerr := s.limiter.Connect(r.Context(), ip)
	switch {
	case lerr == nil:
	case errors.Is(lerr, limits.ErrConnLimit):
		release = func() {} // nothing was counted
	default:
		// The shared limiter is unreachable (Redis is down): admit the
		// connection uncounted. What it asks of the store fails the same
		// way, with unavailable, so nothing is served unchecked for long.
		s.log.Warn("admission limiter unavailable; connection admitted uncounted", "err", lerr)
		release, lerr = func() {}, nil
	}
	served := false
	defer func() {
		if !served {
			release()
		}
	}()
	ws, err := websocket.Accept(smallBuffers{w}, r, opts)
	if err != nil {
		// Accept has written the HTTP error (e.g. 403 for a foreign origin).
		s.log.Debug("websocket accept failed", "err", err)
		return
	}
	ws.SetReadLimit(s.cfg.MaxFrameBytes)
	if ws.Subprotocol() != wire.Subprotocol {
		ws.Close(wire.CloseNoSubprotocol, "offer the "+wire.Subprotocol+" subprotocol")
		return
	}
	if lerr != nil {
		s.metrics.rejected.WithLabelValues("too_many_conns_per_ip").Inc()
		ws.Close(wire.CloseTooManyConnsPerIP, "too many connections from your address")
		return
	}
	c = s.newConn(ws, ip)
	if c == nil {
		ws.Close(websocket.StatusGoingAway, "relay shutting down")
		return
	}
	// Serve the connection from a goroutine of its own and return: the
	// HTTP server's goroutine, its request and response, and their buffers
	// are then freed, which keeps an idle connection small.
	served = true
	go func() {
		defer s.removeConn(c) // last: Close waits for the release
		defer release()
		c.serve()
	}()
}

// Buffer sizes of a WebSocket connection's reader and writer. The HTTP
// server's are 4 KiB each; relay frames are small (JSON of a few hundred
// bytes), and a larger frame is read and written past the buffer in one
// system call, so small buffers save memory per connection at no cost.
const (
	readBufferSize  = 1024
	writeBufferSize = 1024
)

// smallBuffers is an http.ResponseWriter whose Hijack, which
// websocket.Accept calls, returns a connection with readBufferSize and
// writeBufferSize buffers in place of the HTTP server's.
type smallBuffers struct{ http.ResponseWriter }

// Hijack implements http.Hijacker. Bytes the HTTP server has read past the
// request are kept: the new reader returns them first.
func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	// The controller finds the Hijacker of wrapping ResponseWriters
	// (through their Unwrap method), as websocket.Accept would.
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		nc.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(nc, readBufferSize)
	if n := brw.Reader.Buffered(); n > 0 {
		// The client wrote before the upgrade completed. websocket.Accept
		// takes over what the reader has buffered, so the early bytes must
		// be in the new reader's buffer, not behind it.
		if n > readBufferSize {
			return nc, brw, nil
		}
		early, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), nc), readBufferSize)
		if _, err := br.Peek(n); err != nil {
			nc.Close()
			return nil, nil, err
		}
	}
	return nc, bufio.NewReadWriter(br, bufio.NewWriterSize(nc, writeBufferSize)), nil
}

// newConn registers a connection, or returns nil if the server is closed.
func (s *Server) newConn(ws *websocket.Conn, ip string) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	c := newConn(s, ws, strconv.FormatUint(s.nextID.Add(1), 10), ip)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.metrics.connections.Inc()
	return c
}

func (s *Server) removeConn(c *conn) {
	c.cancel()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.metrics.connections.Dec()
	s.wg.Done()
}

// Close stops accepting connections, closes every open one with 1001 (going
// away: clients should reconnect and resume), and waits for their handlers
// to finish. It does not close the store.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeWith(wire.CloseGoingAway, "relay shutting down")
	}
	s.wg.Wait()
	return nil
}

// DisconnectAll closes every connection with 1013 (try again later), for
// its client to resume, and goes on serving new ones. The command calls it
// when the Redis store finds that this instance's lease ended before it
// could renew it: other instances may have marked the seats of its
// connections disconnected.
func (s *Server) DisconnectAll(reason string) {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeWith(wire.CloseStoreUnavailable, reason)
	}
}

// Ready reports whether the relay can serve new rooms: its store is
// reachable and it is not shutting down.
func (s *Server) Ready(ctx context.Context) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return errors.New("relay: shutting down")
	}
	return s.store.Ready(ctx)
}

// roomTag returns the short keyed hash under which a room appears in logs:
// room IDs are capabilities and are never logged.
func (s *Server) roomTag(room string) string {
	h := sha256.New()
	h.Write(s.logKey[:])
	h.Write([]byte(room))
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// clientIP returns the address r's connection is counted under:
// Config.ClientIP's answer if it gives one, else the host part of the
// request's remote address.
func (s *Server) clientIP(r *http.Request) string {
	if s.cfg.ClientIP != nil {
		if ip := s.cfg.ClientIP(r); ip != "" {
			return ip
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
