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

// roomsReport is what runRooms prints.
type roomsReport struct {
	Attack       string  `json:"attack"`
	Sources      int     `json:"sources"`
	Rate         float64 `json:"creates_per_second_per_source"`
	Seconds      float64 `json:"seconds"`
	Counts       *counts `json:"counts"`
	FirstRefusal float64 `json:"seconds_to_first_too_many_rooms,omitempty"`
}

// runRooms is finding 2: from every source, one connection creates a room
// and leaves it (an empty room stays behind until its TTL), at rate creates
// a second, until the duration has passed; a refused create is counted by
// its code and tried again at the same pace.
func runRooms(ctx context.Context, args []string, stderr io.Writer) (any, error) {
	fs := newFlagSet("rooms", stderr)
	url := fs.String("url", "", "relay WebSocket URL")
	sources := fs.String("sources", "127.0.2.1-127.0.2.180", "source addresses")
	rate := fs.Float64("rate", 9, "creates a second per source (a create and a leave are two frames: 9 stays under the default 20 frames a second)")
	duration := fs.Duration("duration", 30*time.Second, "attack duration")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	srcs, err := parseAddrs(*sources)
	if err != nil {
		return nil, err
	}
	if *url == "" || *rate <= 0 {
		return nil, errors.New("need -url and -rate > 0")
	}
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	r := &roomsReport{Attack: "rooms", Sources: len(srcs), Rate: *rate, Counts: newCounts()}
	start := time.Now()
	var (
		mu         sync.Mutex
		firstRefus time.Duration // guarded by mu
	)
	var wg sync.WaitGroup
	for _, src := range srcs {
		wg.Go(func() {
			d := newDialer(*url, src)
			every := time.Duration(float64(time.Second) / *rate)
			var c *wsConn
			defer func() {
				if c != nil {
					c.close()
				}
			}()
			for next := time.Now(); ctx.Err() == nil; next = next.Add(every) {
				if !sleep(ctx, time.Until(next)) {
					return
				}
				if time.Since(next) > every {
					next = time.Now() // late: no catching up in a burst
				}
				if c == nil {
					var err error
					if c, err = d.dial(ctx, true); err != nil {
						r.Counts.add("dial:"+outcome(err), 1)
						continue
					}
				}
				err := createAndLeave(ctx, c)
				if err == nil {
					r.Counts.add("rooms_created", 1)
					continue
				}
				if ctx.Err() != nil {
					return
				}
				r.Counts.add("create:"+outcome(err), 1)
				var ce codeError
				if !errors.As(err, &ce) {
					c.close()
					c = nil
				} else if wire.Code(ce) == wire.CodeTooManyRooms {
					mu.Lock()
					if firstRefus == 0 {
						firstRefus = time.Since(start)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	r.Seconds = time.Since(start).Seconds()
	r.FirstRefusal = firstRefus.Seconds()
	return r, nil
}

// createAndLeave creates a room on c and leaves it.
func createAndLeave(ctx context.Context, c *wsConn) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.send(ctx, &wire.ClientFrame{Type: wire.TypeCreate, Group: ptr("x25519")}); err != nil {
		return err
	}
	if _, err := c.expect(ctx, wire.TypeRoom); err != nil {
		return err
	}
	if err := c.send(ctx, &wire.ClientFrame{Type: wire.TypeLeave}); err != nil {
		return err
	}
	_, err := c.expect(ctx, wire.TypeLeft)
	return err
}

// createReport is what runCreate prints.
type createReport struct {
	Source    string  `json:"source"`
	Result    string  `json:"result"` // "room", or the error's code
	LatencyMS float64 `json:"latency_ms"`
}

// runCreate is one honest create: the relay's answer.
func runCreate(ctx context.Context, args []string, stderr io.Writer) (any, error) {
	fs := newFlagSet("create", stderr)
	url := fs.String("url", "", "relay WebSocket URL")
	source := fs.String("source", "127.0.3.1", "source address")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	src, err := netip.ParseAddr(*source)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	r := &createReport{Source: *source}
	start := time.Now()
	c, err := newDialer(*url, src).dial(ctx, true)
	if err != nil {
		r.Result = "dial:" + outcome(err)
		return r, nil
	}
	defer c.close()
	if err = c.send(ctx, &wire.ClientFrame{Type: wire.TypeCreate, Group: ptr("x25519")}); err == nil {
		_, err = c.expect(ctx, wire.TypeRoom)
	}
	r.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
	r.Result = "room"
	if err != nil {
		r.Result = outcome(err)
	}
	return r, nil
}
