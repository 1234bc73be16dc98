package dh

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
)

// MessageOverhead is the number of bytes [Channel.Seal] adds to a plaintext:
// the 8-byte counter and the 16-byte AES-GCM tag. A body shorter than this
// is never valid.
const MessageOverhead = 24 // counter (8) + tag (16)

const (
	counterSize = 8
	tagSize     = 16
	messageAAD  = "keyrelay/v1/msg"
)

// The exported constant is written as a number so that go doc shows its
// value; this keeps it equal to its parts.
var _ [MessageOverhead - counterSize - tagSize]struct{} = [0]struct{}{}

// Errors returned by [NewChannel], [Channel.Seal], [Channel.Open] and
// [Channel.SetState]. Each is distinct, so that a caller can tell a replay
// from a forgery with errors.Is.
var (
	// ErrSameKey reports a peer public key equal to one's own, as a relay
	// that reflects a key back would produce.
	ErrSameKey = errors.New("dh: peer public key is one's own")
	// ErrShortMessage reports a body shorter than MessageOverhead.
	ErrShortMessage = errors.New("dh: message body too short")
	// ErrReplay reports a message whose counter is not greater than the last
	// counter accepted from the peer (a replayed or reordered message), or
	// is 2^64-1, which Seal never uses.
	ErrReplay = errors.New("dh: message counter not above the last accepted (replay)")
	// ErrDecrypt reports a message that fails authentication: wrong key,
	// wrong sender role, or a body changed in transit.
	ErrDecrypt = errors.New("dh: message authentication failed")
	// ErrCounterExhausted reports that a Channel has sealed its last
	// message: its send counter would wrap, so it must never seal again.
	ErrCounterExhausted = errors.New("dh: message counter exhausted")
	// ErrCounterRegression reports a ChannelState that would move a counter
	// backwards, which could reuse a nonce or accept a replay.
	ErrCounterRegression = errors.New("dh: channel counters cannot go backwards")
)

// Channel encrypts the messages one peer sends and decrypts those it
// receives, as docs/protocol.md §5.4 defines: AES-256-GCM under the key K
// that [DeriveKey] derives, with the nonce uint32_be(role) || uint64_be(c),
// the additional data "keyrelay/v1/msg", and the body
// uint64_be(c) || ciphertext || tag. The peer whose public key's Bytes sort
// first has role 0, the other role 1; each sender numbers its messages with
// its own counter c = 0, 1, 2 …
//
// The receiving side accepts a message only if its counter is greater than
// the last one it accepted, so replays and reordered messages are refused;
// the relay delivers each sender's messages in order.
//
// A Channel is safe for concurrent use: Seal and Open may be called from
// different goroutines. It never logs or prints its key.
type Channel struct {
	// Static after construction.
	aead     cipher.AEAD
	role     uint32 // our role: the role in the nonces of what we seal
	peerRole uint32

	mu    sync.Mutex // guards the following
	state ChannelState
}

// ChannelState is a Channel's pair of counters. A client keeps it across a
// reconnection within one key exchange: a counter must never repeat under
// one key.
type ChannelState struct {
	// NextSend is the counter the next Seal uses: the number of messages
	// sealed so far, 0 for a new Channel.
	NextSend uint64
	// NextReceive is the lowest counter Open accepts: one more than the
	// last counter accepted, 0 before the first message.
	NextReceive uint64
}

// NewChannel returns the Channel of the peer whose public key is self,
// talking to the peer whose key is peer, given their raw shared secret (from
// [PrivateKey.SharedSecret]). It derives K with [DeriveKey] and works out
// the roles from the order of the keys' Bytes.
//
// It returns ErrGroupMismatch if the keys' groups differ, ErrSameKey if
// the two keys are equal, and DeriveKey's error if secret has the wrong
// length. The Channel starts with both counters at 0.
func NewChannel(secret []byte, self, peer *PublicKey) (*Channel, error) {
	if self == nil || peer == nil || self.group != peer.group {
		return nil, ErrGroupMismatch
	}
	var role uint32
	switch bytes.Compare(self.b, peer.b) {
	case 0:
		return nil, ErrSameKey
	case 1:
		role = 1
	}
	k, err := DeriveKey(secret, self, peer)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("dh: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("dh: %w", err)
	}
	return &Channel{aead: aead, role: role, peerRole: 1 - role}, nil
}

// Role returns the Channel's role, 0 or 1: 0 if its own public key's Bytes
// sort before the peer's.
func (c *Channel) Role() int { return int(c.role) }

// Seal encrypts plaintext with the next send counter and returns the body
// uint64_be(c) || ciphertext || tag, len(plaintext)+MessageOverhead bytes.
// The body is raw bytes; the wire carries it in base64.
//
// It returns ErrCounterExhausted once 2^64-1 messages have been sealed
// (the counter is never reused, so the Channel is then spent).
func (c *Channel) Seal(plaintext []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.state.NextSend
	if n == math.MaxUint64 {
		return nil, ErrCounterExhausted
	}
	body := make([]byte, counterSize, MessageOverhead+len(plaintext))
	binary.BigEndian.PutUint64(body, n)
	body = c.aead.Seal(body, nonce(c.role, n), plaintext, []byte(messageAAD))
	c.state.NextSend = n + 1
	return body, nil
}

// Open authenticates and decrypts a body sealed by the peer's Channel and
// returns the plaintext. It accepts a counter only if it is at least
// NextReceive (greater than the last accepted), and then advances
// NextReceive past it; a refused body changes nothing.
//
// It returns ErrShortMessage for a body shorter than MessageOverhead,
// ErrReplay for a counter below NextReceive (or 2^64-1), and ErrDecrypt for
// a body that fails authentication. It never panics, whatever body holds.
func (c *Channel) Open(body []byte) ([]byte, error) {
	if len(body) < MessageOverhead {
		return nil, ErrShortMessage
	}
	n := binary.BigEndian.Uint64(body)
	c.mu.Lock()
	defer c.mu.Unlock()
	if n < c.state.NextReceive || n == math.MaxUint64 {
		return nil, ErrReplay
	}
	pt, err := c.aead.Open(nil, nonce(c.peerRole, n), body[counterSize:], []byte(messageAAD))
	if err != nil {
		return nil, ErrDecrypt
	}
	c.state.NextReceive = n + 1
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

// State returns the Channel's counters.
func (c *Channel) State() ChannelState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// SetState restores counters saved with State, for instance into a new
// Channel built from the same keys after a restart. It returns
// ErrCounterRegression, and changes nothing, if either counter would go
// below its current value.
func (c *Channel) SetState(s ChannelState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.NextSend < c.state.NextSend || s.NextReceive < c.state.NextReceive {
		return ErrCounterRegression
	}
	c.state = s
	return nil
}

// String describes the Channel without its key.
func (c *Channel) String() string {
	s := c.State()
	return fmt.Sprintf("dh.Channel{role: %d, next send: %d, next receive: %d}", c.role, s.NextSend, s.NextReceive)
}

// GoString is String, for %#v.
func (c *Channel) GoString() string { return c.String() }

// nonce returns uint32_be(role) || uint64_be(n).
func nonce(role uint32, n uint64) []byte {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], role)
	binary.BigEndian.PutUint64(b[4:], n)
	return b[:]
}
