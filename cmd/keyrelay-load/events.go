package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// eventLog writes --event-log: one JSON object a line for each thing that
// a run's figures sum up but an outside observer may want to place in
// time, such as a relay restart's effects. A nil *eventLog writes nothing.
// Safe for concurrent use.
type eventLog struct {
	mu  sync.Mutex // guards the following
	f   *os.File
	w   *bufio.Writer
	err error // the first write error
}

// Event kinds.
const (
	eventResume       = "resume"        // a client resumed after an unplanned drop (--resume)
	eventResumeFailed = "resume_failed" // it could not
	eventRedial       = "redial"        // a peer started its setup over on a new connection (--resume)
	eventPairFailed   = "pair_failed"
	eventDelayed      = "delayed"   // a message delivered after more than --delayed-after
	eventDuplicate    = "duplicate" // a message delivered again
	eventLost         = "lost"      // a message handed to the relay, never delivered
)

// event is one line of the event log. Times are Unix seconds; no key,
// token or message content is ever written.
type event struct {
	T     float64 `json:"t"`
	Event string  `json:"event"`
	Pair  int     `json:"pair"`
	Peer  string  `json:"peer,omitempty"` // "a" or "b": for a message, its sender
	// Resumes: when the client saw its connection end, how long it took to
	// take its seat back from then, in how many attempts, and the close
	// code the connection ended with ("none": no close frame).
	DropT    float64 `json:"drop_t,omitempty"`
	MS       float64 `json:"ms,omitempty"`
	Attempts int     `json:"attempts,omitempty"`
	Close    string  `json:"close,omitempty"`
	// Messages: the flow's index, the relay's seq once confirmed, and
	// whether the relay confirmed it.
	Index       *int   `json:"index,omitempty"`
	Seq         uint64 `json:"seq,omitempty"`
	Unconfirmed bool   `json:"unconfirmed,omitempty"`
	// Failures: the error code of the summary and the error.
	Code string `json:"code,omitempty"`
	Err  string `json:"err,omitempty"`
}

// openEventLog creates (or truncates) the file at path.
func openEventLog(path string) (*eventLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--event-log: %w", err)
	}
	return &eventLog{f: f, w: bufio.NewWriter(f)}, nil
}

// unixSeconds returns t as Unix seconds.
func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// ms returns d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// write appends e, with the time now if e.T is zero.
func (l *eventLog) write(e event) {
	if l == nil {
		return
	}
	if e.T == 0 {
		e.T = unixSeconds(time.Now())
	}
	data, err := json.Marshal(e)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	if err == nil {
		data = append(data, '\n')
		_, err = l.w.Write(data)
	}
	l.err = err
}

// close flushes and closes the file, and returns the first error.
func (l *eventLog) close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.w.Flush(); l.err == nil {
		l.err = err
	}
	if err := l.f.Close(); l.err == nil {
		l.err = err
	}
	if l.err != nil {
		return fmt.Errorf("--event-log: %w", l.err)
	}
	return nil
}
