package client

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/keyrelay/keyrelay/dh"
)

// StateVersion is the version of State that this package writes and
// reads.
const StateVersion = 1

// State is what a process needs to take a client's seat back after a
// restart (Restore) and to go on with the conversation: the room, the peer
// ID and resume token, the client's key pair, the peer's key, the
// Channel's counters, the last message processed, and the sealed messages
// not yet confirmed. It is encoded as JSON with the field names below.
//
// A State is a secret. It holds the client's private key, with which
// anyone who also has the relay's traffic can read the conversation, and
// the resume token, with which anyone can take the seat. Keep it where
// only the user can read it (a file of mode 0600, as keyrelay-chat writes
// it), never log it, print it or send it anywhere. String and LogValue
// redact it, but encoding/json does not.
//
// # Nonces
//
// A message's nonce is its sender's counter (docs/protocol.md §5.4), and
// a counter must never be used twice under one key. The State given to
// Options.SaveState is safe to restore: the client gives it one before
// any sealed message leaves the process, recording the counter after it
// (NextSend) and the sealed body (Unconfirmed), so a process restored from
// the last State it saved starts above every counter ever used on the
// wire, and sends again, byte for byte, what may not have arrived. A
// message sealed after that State and never sent is simply skipped: the
// peer accepts any counter above the last it accepted. A State taken with
// Client.State while the client is still sending may be overtaken at once
// by a newer counter; restore one only if the client sent nothing after
// it, for instance after Close. Restoring an older State than the last
// one saved, or the same State in two processes, would reuse counters:
// never do either.
//
// On the receiving side, restoring an older State only makes the client
// process again the messages it processed since (the relay keeps
// everything not acknowledged; a message acknowledged and processed after
// the State was saved is lost to the restored process).
type State struct {
	// Version is StateVersion.
	Version int `json:"version"`
	// Room, Peer and ResumeToken are the seat, as the room frame gave it.
	Room        string `json:"room"`
	Peer        string `json:"peer"`
	ResumeToken string `json:"resume_token"`
	// Group is the room's pinned group, "" while none is fixed.
	Group string `json:"group,omitempty"`
	// ResumeGraceMS is the room's resume grace period in milliseconds, as
	// the relay gave it; 0 for DefaultResumeGrace.
	ResumeGraceMS int64 `json:"resume_grace_ms,omitempty"`
	// PrivateKey is the client's private key in hex (dh.PrivateKey.Hex),
	// in group KeyGroup, "" before SendKey made one.
	PrivateKey string `json:"private_key,omitempty"`
	KeyGroup   string `json:"key_group,omitempty"`
	// KeySent reports that the public key may have reached the relay;
	// KeyStored, that the relay confirmed it.
	KeySent   bool `json:"key_sent,omitempty"`
	KeyStored bool `json:"key_stored,omitempty"`
	// PeerKey is the current peer's public key in hex, in Group, "" until
	// it arrived.
	PeerKey string `json:"peer_key,omitempty"`
	// HandshakeComplete reports that the relay said handshake_complete
	// for these keys: the Channel with the peer exists, with the counters
	// below.
	HandshakeComplete bool `json:"handshake_complete,omitempty"`
	// NextSend and NextReceive are the Channel's counters
	// (dh.ChannelState): no counter below NextSend has been or will be
	// used by this seat under this key.
	NextSend    uint64 `json:"next_send"`
	NextReceive uint64 `json:"next_receive"`
	// LastSeq is the highest seq the application has processed (Next
	// returned it): Restore resumes from there.
	LastSeq uint64 `json:"last_seq"`
	// Unconfirmed holds the sealed bodies (base64, as on the wire) sent to
	// the current peer without a sent reply yet, in counter order: Restore
	// sends them again as they are.
	Unconfirmed []string `json:"unconfirmed,omitempty"`
}

// String describes the State without its secrets.
func (s State) String() string {
	return fmt.Sprintf("client.State{room: %s, peer: %s, group: %q, last seq: %d, next send: %d, REDACTED}", s.Room, s.Peer, s.Group, s.LastSeq, s.NextSend)
}

// GoString is String, for %#v.
func (s State) GoString() string { return s.String() }

// LogValue implements slog.LogValuer: a logged State shows only its room
// and peer.
func (s State) LogValue() slog.Value {
	return slog.GroupValue(slog.String("room", s.Room), slog.String("peer", s.Peer))
}

// State returns what Restore needs to take the client's seat back in
// another process (see State for when it is safe to restore). It returns
// ErrNotInRoom outside a room.
func (c *Client) State() (State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.room == nil {
		return State{}, ErrNotInRoom
	}
	return c.stateLocked(c.room), nil
}

// stateLocked returns rs's State. The caller holds Client.mu.
func (c *Client) stateLocked(rs *roomState) State {
	st := State{
		Version:       StateVersion,
		Room:          rs.id,
		Peer:          rs.peerID,
		ResumeToken:   rs.token,
		ResumeGraceMS: rs.grace.Milliseconds(),
		KeySent:       rs.keySent,
		KeyStored:     rs.keyStored,
		LastSeq:       rs.delivered,
	}
	if rs.group != nil {
		st.Group = rs.group.Name()
	}
	if rs.priv != nil {
		st.PrivateKey, st.KeyGroup = rs.priv.Hex(), rs.priv.Group().Name()
	}
	ps := rs.peer
	if ps.key != nil {
		st.PeerKey = ps.key.Hex()
	}
	if ps.channel != nil {
		st.HandshakeComplete = true
		cs := ps.channel.State()
		st.NextSend, st.NextReceive = cs.NextSend, cs.NextReceive
	}
	for _, m := range rs.unconfirmed {
		if m.peer == ps {
			st.Unconfirmed = append(st.Unconfirmed, m.body)
		}
	}
	return st
}

// saveState gives the current State to Options.SaveState, if set, and
// returns its error. Outside a room it does nothing. The caller holds
// none of the client's locks but sendMu or keyMu.
func (c *Client) saveState() error {
	if c.opts.SaveState == nil {
		return nil
	}
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.Lock()
	rs := c.room
	if rs == nil {
		c.mu.Unlock()
		return nil
	}
	// A channel the reader's frames completed is derived now, so that the
	// State records it.
	c.channelLocked(rs, rs.peer)
	st := c.stateLocked(rs)
	c.mu.Unlock()
	if err := c.opts.SaveState(st); err != nil {
		c.logger.Warn("saving the client's state failed", "err", err)
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// ErrBadState reports a State that Restore cannot use: a version it does
// not know, a missing field, a key that does not parse, or fields that
// contradict each other. It comes with the reason.
var ErrBadState = errors.New("unusable state")

// Restore makes a Client from st, a State an earlier process saved (see
// State for which one is safe to restore), and takes the seat back: it
// resumes as Resume does, trying urls in turn with Resume's backoff, for
// as long as the room's grace period lasts counted from now (the relay's
// count started when the old process dropped: if that was longer ago, the
// relay answers resume_expired at once). The keys, the Channel and its
// counters are those of st; the relay then sends the messages after
// st.LastSeq, and the client sends again, as they are, st's unconfirmed
// bodies. opts may be nil.
//
// It returns an error wrapping ErrBadState for an unusable st,
// ErrLegacyGroup for a legacy group the options do not allow, and
// Resume's errors (a dial error, *Error with wire.CodeResumeExpired,
// wire.CodeInvalidResume or wire.CodeRoomNotFound, a *GroupError,
// ErrResumeGaveUp, ctx's error); it then returns no Client.
func Restore(ctx context.Context, urls []string, st State, opts *Options) (*Client, error) {
	c, err := newClient(urls, opts)
	if err != nil {
		return nil, err
	}
	rs, err := c.restoreRoom(st)
	if err != nil {
		return nil, err
	}
	c.room = rs
	if err := c.Resume(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// restoreRoom rebuilds the room of st, with its keys and Channel.
func (c *Client) restoreRoom(st State) (*roomState, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadState, fmt.Sprintf(format, args...))
	}
	if st.Version != StateVersion {
		return nil, bad("version %d, want %d", st.Version, StateVersion)
	}
	if st.Room == "" || st.Peer == "" || st.ResumeToken == "" {
		return nil, bad("room, peer and resume_token are required")
	}
	group := func(field, name string) (*dh.Group, error) {
		g, err := dh.LookupGroup(name)
		if err != nil || g.Name() != name {
			return nil, bad("%s: unknown group %q", field, name)
		}
		if err := c.checkLegacy(g); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		return g, nil
	}
	rs := &roomState{
		id: st.Room, peerID: st.Peer, token: st.ResumeToken, peer: &peerState{},
		grace:   DefaultResumeGrace,
		lastSeq: st.LastSeq, delivered: st.LastSeq,
		keySent: st.KeySent, keyStored: st.KeyStored,
		// droppedAt is now: the old process's drop is not known.
		droppedAt: time.Now(),
	}
	if st.ResumeGraceMS > 0 {
		rs.grace = time.Duration(st.ResumeGraceMS) * time.Millisecond
	}
	var err error
	if st.Group != "" {
		if rs.group, err = group("group", st.Group); err != nil {
			return nil, err
		}
	}
	if st.PrivateKey != "" {
		g, err := group("key_group", st.KeyGroup)
		if err != nil {
			return nil, err
		}
		if rs.group != nil && g != rs.group {
			return nil, bad("key_group %s is not the room's group %s", g, rs.group)
		}
		if rs.priv, err = g.ParsePrivateKey(st.PrivateKey); err != nil {
			return nil, bad("private_key: %v", err)
		}
	} else if st.KeySent || st.KeyStored {
		return nil, bad("key_sent or key_stored without private_key")
	}
	ps := rs.peer
	if st.PeerKey != "" {
		if rs.group == nil {
			return nil, bad("peer_key without group")
		}
		if ps.key, err = rs.group.ParsePublicKey(st.PeerKey); err != nil {
			return nil, bad("peer_key: %v", err)
		}
	}
	if st.HandshakeComplete {
		if rs.priv == nil || ps.key == nil {
			return nil, bad("handshake_complete without private_key and peer_key")
		}
		ps.complete = true
		if _, err := c.channelLocked(rs, ps); err != nil {
			return nil, bad("channel: %v", err)
		}
		if err := ps.channel.SetState(dh.ChannelState{NextSend: st.NextSend, NextReceive: st.NextReceive}); err != nil {
			return nil, bad("channel counters: %v", err)
		}
	} else if st.NextSend != 0 || st.NextReceive != 0 || len(st.Unconfirmed) > 0 {
		return nil, bad("counters or unconfirmed messages without handshake_complete")
	}
	for _, b := range st.Unconfirmed {
		if raw, err := base64.StdEncoding.DecodeString(b); err != nil || len(raw) < dh.MessageOverhead {
			return nil, bad("unconfirmed: not a sealed body")
		}
		rs.unconfirmed = append(rs.unconfirmed, &outMsg{body: b, peer: ps})
	}
	return rs, nil
}
