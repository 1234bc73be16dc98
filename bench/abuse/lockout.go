package main

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/keyrelay/keyrelay/wire"
)

// lockoutConfig is the lockout attack (finding 3).
type lockoutConfig struct {
	url            string
	a, b, stranger netip.Addr
	joinRate       float64       // the stranger's join frames a second
	resumeEvery    time.Duration // how long B stays connected between drops
	away           time.Duration // how long B stays away before resuming
	duration       time.Duration
}

// lockoutReport is what runLockout prints.
type lockoutReport struct {
	Attack        string  `json:"attack"`
	Seconds       float64 `json:"seconds"`
	JoinRate      float64 `json:"stranger_joins_per_second"`
	ResumeEvery   float64 `json:"resume_every_seconds"`
	Counts        *counts `json:"counts"`
	SeatLost      bool    `json:"seat_lost"`
	ResumeMaxMS   float64 `json:"resume_max_ms"`   // slowest successful resume, dial included
	LongestAwayMS float64 `json:"longest_away_ms"` // longest time B had no seat-holding connection
	BoundHeld     string  `json:"bound_held"`      // "yes" if every resume succeeded
	Error         string  `json:"error,omitempty"` // why the honest pair could not be set up
}

func runLockout(ctx context.Context, args []string, stderr io.Writer) (any, error) {
	fs := newFlagSet("lockout", stderr)
	cfg := lockoutConfig{}
	var a, b, s string
	fs.StringVar(&cfg.url, "url", "", "relay WebSocket URL")
	fs.StringVar(&a, "a", "127.0.0.2", "member A's source address (stays connected)")
	fs.StringVar(&b, "b", "127.0.0.3", "member B's source address (drops and resumes)")
	fs.StringVar(&s, "stranger", "127.0.0.1", "the stranger's source address")
	fs.Float64Var(&cfg.joinRate, "join-rate", 10, "the stranger's join frames a second")
	fs.DurationVar(&cfg.resumeEvery, "resume-every", 5*time.Second, "how long B stays connected between drops")
	fs.DurationVar(&cfg.away, "away", 500*time.Millisecond, "how long B stays away before resuming")
	fs.DurationVar(&cfg.duration, "duration", 60*time.Second, "attack duration")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		s   string
		dst *netip.Addr
	}{{a, &cfg.a}, {b, &cfg.b}, {s, &cfg.stranger}} {
		var err error
		if *p.dst, err = netip.ParseAddr(p.s); err != nil {
			return nil, err
		}
	}
	if cfg.url == "" || cfg.joinRate <= 0 {
		return nil, errors.New("need -url and -join-rate > 0")
	}
	return lockout(ctx, cfg), nil
}

// lockout sets up the honest pair, then runs the stranger and B's drops
// and resumes until cfg.duration has passed.
func lockout(ctx context.Context, cfg lockoutConfig) *lockoutReport {
	r := &lockoutReport{Attack: "lockout", JoinRate: cfg.joinRate, ResumeEvery: cfg.resumeEvery.Seconds(), Counts: newCounts()}
	setupCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	da, db := newDialer(cfg.url, cfg.a), newDialer(cfg.url, cfg.b)
	a, b, room, err := honestPair(setupCtx, da, db)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer a.close()

	ctx, cancelRun := context.WithTimeout(ctx, cfg.duration)
	defer cancelRun()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { stranger(ctx, cfg, room.Room, r.Counts) })
	wg.Go(func() { memberA(ctx, a, r.Counts) })
	wg.Go(func() {
		defer func() { b.close() }()
		// The last drop leaves time for its resume before the end.
		lastDrop := start.Add(cfg.duration - cfg.away - 5*time.Second)
		for ctx.Err() == nil {
			if !sleep(ctx, cfg.resumeEvery) || time.Now().After(lastDrop) {
				return
			}
			b.close()
			dropped := time.Now()
			r.Counts.add("b:drops", 1)
			sleep(ctx, cfg.away)
			for ctx.Err() == nil {
				t0 := time.Now()
				nb, err := resume(ctx, db, room)
				if err == nil {
					b = nb
					r.Counts.add("b:resumes_ok", 1)
					r.ResumeMaxMS = max(r.ResumeMaxMS, float64(time.Since(t0).Microseconds())/1000)
					r.LongestAwayMS = max(r.LongestAwayMS, float64(time.Since(dropped).Microseconds())/1000)
					if err := sendAfterResume(ctx, b); err != nil {
						r.Counts.add("b:msg:"+outcome(err), 1)
					} else {
						r.Counts.add("b:msg:sent", 1)
					}
					break
				}
				if ctx.Err() != nil {
					return
				}
				r.Counts.add("b:resume:"+outcome(err), 1)
				var ce codeError
				if errors.As(err, &ce) && (wire.Code(ce) == wire.CodeInvalidResume || wire.Code(ce) == wire.CodeResumeExpired || wire.Code(ce) == wire.CodeRoomNotFound) {
					r.SeatLost = true
					return
				}
				sleep(ctx, time.Second)
			}
		}
	})
	wg.Wait()
	r.Seconds = time.Since(start).Seconds()
	r.BoundHeld = "yes"
	if r.SeatLost || r.Counts.get("b:resumes_ok") < r.Counts.get("b:drops") || r.Counts.get("b:drops") == 0 {
		r.BoundHeld = "no"
	}
	return r
}

// honestPair sets up A (creates) and B (joins) with fresh keys, both
// handshakes complete; it returns B's room frame (with its resume token).
func honestPair(ctx context.Context, da, db *dialer) (a, b *wsConn, room *wire.ServerFrame, err error) {
	defer func() {
		if err != nil {
			for _, c := range []*wsConn{a, b} {
				if c != nil {
					c.close()
				}
			}
		}
	}()
	if a, err = da.dial(ctx, false); err != nil {
		return nil, nil, nil, err
	}
	if err = a.send(ctx, &wire.ClientFrame{Type: wire.TypeCreate, Group: ptr("x25519")}); err != nil {
		return a, nil, nil, err
	}
	rf, err := a.expect(ctx, wire.TypeRoom)
	if err != nil {
		return a, nil, nil, err
	}
	if err = sendKey(ctx, a); err != nil {
		return a, nil, nil, err
	}
	if _, err = a.expect(ctx, wire.TypeKeyOK); err != nil {
		return a, nil, nil, err
	}
	if b, err = db.dial(ctx, false); err != nil {
		return a, nil, nil, err
	}
	if err = b.send(ctx, &wire.ClientFrame{Type: wire.TypeJoin, Room: ptr(rf.Room)}); err != nil {
		return a, b, nil, err
	}
	if room, err = b.expect(ctx, wire.TypeRoom); err != nil {
		return a, b, nil, err
	}
	if err = sendKey(ctx, b); err != nil {
		return a, b, nil, err
	}
	for _, c := range []*wsConn{b, a} {
		if _, err = c.expect(ctx, wire.TypeHandshakeComplete); err != nil {
			return a, b, nil, err
		}
	}
	return a, b, room, nil
}

// resume dials from d and resumes the seat of room (B's first room frame).
func resume(ctx context.Context, d *dialer, room *wire.ServerFrame) (*wsConn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := d.dial(ctx, false)
	if err != nil {
		return nil, err
	}
	err = c.send(ctx, &wire.ClientFrame{Type: wire.TypeResume, Room: ptr(room.Room), Peer: ptr(room.Peer), ResumeToken: ptr(room.ResumeToken)})
	if err == nil {
		_, err = c.expect(ctx, wire.TypeRoom)
	}
	if err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// sendAfterResume waits for B's handshake_complete on its new connection
// and sends A one message, which the relay must accept.
func sendAfterResume(ctx context.Context, b *wsConn) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := b.expect(ctx, wire.TypeHandshakeComplete); err != nil {
		return err
	}
	if err := b.send(ctx, &wire.ClientFrame{Type: wire.TypeMsg, Body: ptr("aGVsbG8=")}); err != nil {
		return err
	}
	_, err := b.expect(ctx, wire.TypeSent)
	return err
}

// memberA reads A's frames until ctx ends, counting the events and the
// messages from B, and acknowledging each message.
func memberA(ctx context.Context, a *wsConn, c *counts) {
	for {
		f, err := a.next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				c.add("a:conn:"+outcome(err), 1)
			}
			return
		}
		switch f.Type {
		case wire.TypeMsg:
			c.add("a:msg_received", 1)
			if err := a.send(ctx, &wire.ClientFrame{Type: wire.TypeAck, Seq: ptr(f.Seq)}); err != nil && ctx.Err() == nil {
				c.add("a:ack:"+outcome(err), 1)
			}
		case wire.TypePeerLeft:
			c.add("a:peer_left:"+string(f.Reason), 1)
		case wire.TypePeerJoined:
			if f.Resumed != nil && *f.Resumed {
				c.add("a:peer_joined:resumed", 1)
			} else {
				c.add("a:peer_joined:new", 1)
			}
		case wire.TypeError:
			c.add("a:error:"+string(f.Code), 1)
		}
	}
}

// stranger sends join frames for room from cfg.stranger at cfg.joinRate,
// counting the relay's answers ("room" would mean it took a seat).
func stranger(ctx context.Context, cfg lockoutConfig, room string, c *counts) {
	d := newDialer(cfg.url, cfg.stranger)
	every := time.Duration(float64(time.Second) / cfg.joinRate)
	for ctx.Err() == nil {
		s, err := d.dial(ctx, true)
		if err != nil {
			c.add("stranger:dial:"+outcome(err), 1)
			sleep(ctx, time.Second)
			continue
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				f, err := s.next(ctx)
				if err != nil {
					if ctx.Err() == nil {
						c.add("stranger:conn:"+outcome(err), 1)
					}
					return
				}
				switch f.Type {
				case wire.TypeError:
					c.add("stranger:"+string(f.Code), 1)
				case wire.TypeRoom:
					c.add("stranger:room", 1) // a seat taken: the lockout worked the other way
				}
			}
		}()
		tick := time.NewTicker(every)
	send:
		for {
			select {
			case <-ctx.Done():
				break send
			case <-done:
				break send
			case <-tick.C:
				if err := s.send(ctx, &wire.ClientFrame{Type: wire.TypeJoin, Room: ptr(room)}); err != nil {
					break send
				}
				c.add("stranger:joins_sent", 1)
			}
		}
		tick.Stop()
		s.close()
		<-done
	}
}
