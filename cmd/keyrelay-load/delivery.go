package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keyrelay/keyrelay/internal/loadstats"
)

// indexBytes is the length of the index at the start of every chat and
// churn message: a message is told apart from every other by it, so the
// smallest message is this long.
const indexBytes = 8

// errDuplicate reports a message delivered a second time.
var errDuplicate = errors.New("message delivered twice")

// errOutOfOrder reports a message delivered before one sent earlier.
var errOutOfOrder = errors.New("message delivered out of order")

// sendState is what became of a message handed to Send.
type sendState uint8

const (
	stateUnsent      sendState = iota // Send failed before sealing it (or has not returned): never left
	stateConfirmed                    // the relay answered sent: it must be delivered
	stateUnconfirmed                  // handed over without sent (ErrUnconfirmed): the client sends it again
	stateRefused                      // the relay answered an error: not stored
)

// flow is one direction of a pair's messages (from A to B, or from B to
// A): what was sent, what the relay confirmed, and what arrived, when. It
// checks that every message arrives exactly once and in order.
//
// Message i is its index (indexBytes, big-endian) followed by the flow's
// filler, random bytes drawn once per flow: the receiver can tell which
// message it got and that nothing in it changed.
type flow struct {
	from         string        // the sender, "a" or "b"
	delayedAfter time.Duration // static: a delivery slower than this is delayed

	mu      sync.Mutex // guards the following: the sender and the receiver are different goroutines
	filler  []byte     // grows as larger messages are sent
	msgs    []sentMsg  // by index
	want    int        // the index the receiver expects next
	delayed int64
	maxLag  time.Duration
}

// sentMsg is one message of a flow.
type sentMsg struct {
	size   int
	at     time.Time // when its first Send began
	state  sendState
	seq    uint64 // the relay's seq, once confirmed
	copies int    // times delivered
}

// newFlow returns the flow of messages from peer from.
func newFlow(from string, delayedAfter time.Duration) *flow {
	return &flow{from: from, delayedAfter: delayedAfter}
}

// next returns the index and plaintext of the next message, of size bytes
// (at least indexBytes), and notes that its Send begins now.
func (f *flow) next(size int) (int, []byte) {
	size = max(size, indexBytes)
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := size - indexBytes; n > len(f.filler) {
		more := make([]byte, n-len(f.filler))
		rand.Read(more)
		f.filler = append(f.filler, more...)
	}
	i := len(f.msgs)
	f.msgs = append(f.msgs, sentMsg{size: size, at: time.Now()})
	pt := make([]byte, size)
	binary.BigEndian.PutUint64(pt, uint64(i))
	copy(pt[indexBytes:], f.filler)
	return i, pt
}

// sent records what became of message i's Send: st, and seq if confirmed.
func (f *flow) sent(i int, st sendState, seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs[i].state, f.msgs[i].seq = st, seq
}

// arrival is what deliver found.
type arrival struct {
	index     int
	duplicate bool          // delivered before: not the one expected
	lag       time.Duration // from its Send to its delivery
	delayed   bool          // lag > delayedAfter
}

// deliver records the delivery of plaintext pt at time at. It returns an
// error wrapping loadstats.ErrMismatch for a message that was never sent
// (or was changed), and one wrapping errOutOfOrder for a message that
// overtook an earlier one; a duplicate is counted and reported in the
// arrival, not as an error.
func (f *flow) deliver(pt []byte, at time.Time) (arrival, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(pt) < indexBytes {
		return arrival{}, fmt.Errorf("%w: %d bytes, shorter than an index", loadstats.ErrMismatch, len(pt))
	}
	i64 := binary.BigEndian.Uint64(pt)
	if i64 >= uint64(len(f.msgs)) {
		return arrival{}, fmt.Errorf("%w: message %d from %s was never sent", loadstats.ErrMismatch, i64, f.from)
	}
	i := int(i64)
	m := &f.msgs[i]
	if len(pt) != m.size || !bytes.Equal(pt[indexBytes:], f.filler[:m.size-indexBytes]) {
		return arrival{}, fmt.Errorf("%w: message %d from %s", loadstats.ErrMismatch, i, f.from)
	}
	m.copies++
	a := arrival{index: i, lag: at.Sub(m.at)}
	if m.copies > 1 {
		a.duplicate = true
		return a, nil
	}
	if a.lag > f.delayedAfter {
		a.delayed = true
		f.delayed++
	}
	f.maxLag = max(f.maxLag, a.lag)
	if i != f.want {
		return a, fmt.Errorf("%w: message %d from %s while %d was due", errOutOfOrder, i, f.from, f.want)
	}
	f.want++
	return a, nil
}

// lostMsg is a message that was handed to the relay and never delivered.
type lostMsg struct {
	index       int
	seq         uint64 // 0 if unconfirmed
	unconfirmed bool
}

// counts returns the flow's figures, and the messages handed to the
// relay that were never delivered. Call it once the pair has ended.
func (f *flow) counts() (deliveryCounts, []lostMsg) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := deliveryCounts{Delayed: f.delayed}
	d.maxLag = f.maxLag
	var lost []lostMsg
	for i, m := range f.msgs {
		switch m.state {
		case stateConfirmed:
			d.Sent++
			d.Confirmed++
		case stateUnconfirmed:
			d.Sent++
			d.Unconfirmed++
		case stateRefused:
			d.Refused++
		}
		if m.copies > 0 {
			d.Delivered++
			d.Duplicated += int64(m.copies - 1)
			continue
		}
		switch m.state {
		case stateConfirmed:
			d.Lost++
			lost = append(lost, lostMsg{index: i, seq: m.seq})
		case stateUnconfirmed:
			d.UnconfirmedLost++
			lost = append(lost, lostMsg{index: i, unconfirmed: true})
		}
	}
	return d, lost
}

// deliveryCounts are the delivery figures of chat and churn, both ways,
// over every pair that ended (completed or failed).
type deliveryCounts struct {
	// Sent counts the messages handed to the relay: Confirmed plus
	// Unconfirmed. A message whose Send failed before it was sealed (the
	// connection was known to be down) never left and is not counted; it
	// is sent again after the resume, as a message of its own.
	Sent int64 `json:"sent"`
	// Confirmed counts the messages the relay confirmed with sent: each
	// must be delivered exactly once.
	Confirmed int64 `json:"confirmed"`
	// Unconfirmed counts the messages handed over without a sent (the
	// connection dropped first): the client sends each again after its
	// resume, and the receiving client drops a second copy.
	Unconfirmed int64 `json:"unconfirmed"`
	// Refused counts the messages the relay refused (not stored).
	Refused int64 `json:"refused"`
	// Delivered counts the distinct messages the receiving application
	// got.
	Delivered int64 `json:"delivered"`
	// Lost counts confirmed messages never delivered by the end of their
	// pair. In a failed pair this includes a message still on its way
	// when the pair gave up.
	Lost int64 `json:"lost"`
	// UnconfirmedLost counts unconfirmed messages never delivered (the
	// relay may never have stored them: no breach by itself).
	UnconfirmedLost int64 `json:"unconfirmed_lost"`
	// Duplicated counts deliveries of a message beyond its first.
	Duplicated int64 `json:"duplicated"`
	// Delayed counts messages delivered more than DelayedAfterMS after
	// their Send began.
	Delayed        int64   `json:"delayed"`
	DelayedAfterMS float64 `json:"delayed_after_ms"`
	// MaxDelayMS is the longest time from a Send to its delivery.
	MaxDelayMS float64 `json:"max_delay_ms"`

	maxLag time.Duration
}

// add adds o's counts to d.
func (d *deliveryCounts) add(o deliveryCounts) {
	d.Sent += o.Sent
	d.Confirmed += o.Confirmed
	d.Unconfirmed += o.Unconfirmed
	d.Refused += o.Refused
	d.Delivered += o.Delivered
	d.Lost += o.Lost
	d.UnconfirmedLost += o.UnconfirmedLost
	d.Duplicated += o.Duplicated
	d.Delayed += o.Delayed
	d.maxLag = max(d.maxLag, o.maxLag)
}
