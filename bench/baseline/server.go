package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Server limits. The read limit is the relay's default frame limit, so that
// both accept the same messages.
const (
	readLimit = 64 << 10
	// pairWait is how long a /forward connection waits for its partner.
	pairWait = 30 * time.Second
)

// server is the bare WebSocket server: the library, one handler goroutine
// per connection, and for /forward a map that pairs connections.
type server struct {
	conns atomic.Int64 // open WebSocket connections

	mu      sync.Mutex         // guards the following
	waiting map[string]*waiter // /forward connections waiting for their partner, by pair ID
}

// waiter is a /forward connection waiting for its partner.
type waiter struct {
	conn    *websocket.Conn
	partner chan *websocket.Conn // receives the partner; buffered, one
}

func newServer() *server {
	return &server{waiting: make(map[string]*waiter)}
}

// handler returns the server's routes.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /upgrade", s.serveUpgrade)
	mux.HandleFunc("GET /forward", s.serveForward)
	mux.HandleFunc("GET /stats", s.serveStats)
	return mux
}

// accept upgrades the request, compression disabled, and counts the
// connection until done is called.
func (s *server) accept(w http.ResponseWriter, r *http.Request) (c *websocket.Conn, done func(), err error) {
	c, err = websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return nil, nil, err // Accept has written the HTTP error
	}
	c.SetReadLimit(readLimit)
	s.conns.Add(1)
	return c, func() {
		c.CloseNow()
		s.conns.Add(-1)
	}, nil
}

// serveUpgrade accepts a connection and reads (and drops) what comes until
// the client closes it.
func (s *server) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	c, done, err := s.accept(w, r)
	if err != nil {
		return
	}
	defer done()
	for {
		if _, _, err := c.Read(r.Context()); err != nil {
			return
		}
	}
}

// serveForward pairs the connection with the other one that presents the
// same pair ID, then forwards each text message it reads to the partner.
// A connection whose partner does not come within pairWait is closed with
// StatusPolicyViolation. When either side ends, both connections close.
func (s *server) serveForward(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("pair")
	if id == "" {
		http.Error(w, "missing pair ID", http.StatusBadRequest)
		return
	}
	c, done, err := s.accept(w, r)
	if err != nil {
		return
	}
	defer done()
	partner := s.pair(id, c)
	if partner == nil {
		c.Close(websocket.StatusPolicyViolation, "no partner")
		return
	}
	// The partner's handler reads partner; this one only writes to it
	// (Conn.Write is safe alongside a Read). Closing it on the way out
	// ends the partner's handler too.
	defer partner.CloseNow()
	ctx := r.Context()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		if err := partner.Write(ctx, websocket.MessageText, msg); err != nil {
			return
		}
	}
}

// pair returns the connection that presented pair ID id, waiting up to
// pairWait for it if c is the first; nil if none came.
func (s *server) pair(id string, c *websocket.Conn) *websocket.Conn {
	s.mu.Lock()
	if w, ok := s.waiting[id]; ok {
		delete(s.waiting, id)
		s.mu.Unlock()
		w.partner <- c
		return w.conn
	}
	w := &waiter{conn: c, partner: make(chan *websocket.Conn, 1)}
	s.waiting[id] = w
	s.mu.Unlock()

	t := time.NewTimer(pairWait)
	defer t.Stop()
	select {
	case p := <-w.partner:
		return p
	case <-t.C:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting[id] == w {
		delete(s.waiting, id)
		return nil
	}
	return <-w.partner // taken just now: the partner is in the channel
}

// serverStats is the server's /stats reply.
type serverStats struct {
	Goroutines  int   `json:"goroutines"`
	RSSBytes    int64 `json:"rss_bytes"`  // VmRSS of /proc/self/status
	HeapInuse   int64 `json:"heap_inuse"` // runtime.MemStats.HeapInuse, bytes
	Connections int64 `json:"connections"`
}

func (s *server) serveStats(w http.ResponseWriter, r *http.Request) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := serverStats{
		Goroutines:  runtime.NumGoroutine(),
		HeapInuse:   int64(ms.HeapInuse),
		Connections: s.conns.Load(),
	}
	rss, err := readRSS("/proc/self/status")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	st.RSSBytes = rss
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(st)
}

// readRSS returns the VmRSS line of a /proc/PID/status file, in bytes.
func readRSS(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		// "VmRSS:	   12345 kB"
		kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte("kB")))), 10, 64)
		if err != nil {
			return 0, err
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS line in " + path)
}
