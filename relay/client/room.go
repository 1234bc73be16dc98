package client

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/wire"
)

// Room describes the client's place in a room, as the relay's room frame
// gave it.
type Room struct {
	// ID is the room's ID, to share with the other peer out of band.
	ID string
	// Peer is this client's peer ID in the room.
	Peer string
	// Group is the room's group, or nil until the first key fixes it. It
	// is the group the client pinned (given to Create or JoinGroup), or the
	// first one the relay reported; the client refuses any other.
	Group *dh.Group
	// Peers is the number of peers in the room, 1 or 2, as last reported.
	Peers int
	// Resumed reports whether the place was taken back with Resume.
	Resumed bool
	// ResumeGrace is how long the relay keeps the seat after the
	// connection drops, as its room frame said (DefaultResumeGrace if it
	// did not): how long Resume keeps trying.
	ResumeGrace time.Duration
}

// roomState is the client's place in a room. Guarded by Client.mu.
type roomState struct {
	id, peerID, token string
	group             *dh.Group // the pinned group: asked for, or the first reported; nil until then
	peers             int
	grace             time.Duration // the room's resume grace period, from its room frame
	droppedAt         time.Time     // when the connection holding the seat ended; zero while connected

	err        error // a refused group (*GroupError): the room is unusable
	superseded bool  // the relay closed the connection with 4409: do not resume

	priv      *dh.PrivateKey // our key, once sent or being sent
	keySent   bool           // priv was written to the relay at least once
	keyStored bool           // the relay stored priv (key_ok or handshake_complete)

	peer *peerState // the current other peer; replaced when a new one joins

	expired bool // the relay reported room_expired: its queued events are still delivered

	lastSeq   uint64 // highest seq queued for Next: resume's last_seq
	delivered uint64 // highest seq Next has returned
	acked     uint64 // highest seq acknowledged on the wire
	sentSeq   uint64 // highest seq the relay confirmed (sent): resume's sent_seq

	// unconfirmed holds the msgs written (or being written) without a
	// sent reply yet, in the order they were sealed: Resume sends them
	// again. A sent or a refusal removes one.
	unconfirmed []*outMsg
}

// peerState is the key exchange with one other peer. Guarded by Client.mu.
type peerState struct {
	key      *dh.PublicKey
	complete bool  // handshake_complete received
	gone     bool  // peer_left seen since: a new peer may take the place
	err      error // a peer key that is invalid or changed: the exchange failed
	channel  *dh.Channel
	hs       *Handshake
}

// snapshotLocked returns the Room the caller sees. The caller holds
// Client.mu.
func (rs *roomState) snapshotLocked(resumed bool) Room {
	return Room{ID: rs.id, Peer: rs.peerID, Group: rs.group, Peers: rs.peers, Resumed: resumed, ResumeGrace: rs.grace}
}

// legacy reports whether g is a legacy group, refused unless
// Options.AllowLegacyGroups: modp5.
func legacy(g *dh.Group) bool { return g == dh.MODP5() }

// checkGroupLocked applies the group pinning rules to the group name a
// frame of type typ carries ("" for none): with a pinned group, any other
// name is refused (ErrGroupChanged); without one, the name must be a
// group's wire name (dh.ErrUnknownGroup), not a legacy group unless the
// options allow it (ErrLegacyGroup), and it becomes the pinned group. A
// frame without a group passes: the room's group is not fixed yet. It
// returns a *GroupError. The caller holds Client.mu.
func (c *Client) checkGroupLocked(rs *roomState, typ wire.FrameType, name string) error {
	if name == "" {
		return nil
	}
	if rs.group != nil {
		if name != rs.group.Name() {
			return &GroupError{Frame: typ, Want: rs.group.Name(), Got: name, Err: ErrGroupChanged}
		}
		return nil
	}
	g, err := dh.LookupGroup(name)
	switch {
	case err != nil || g.Name() != name: // the wire has names only, not "14"
		return &GroupError{Frame: typ, Got: name, Err: dh.ErrUnknownGroup}
	case legacy(g) && !c.opts.AllowLegacyGroups:
		return &GroupError{Frame: typ, Got: name, Err: ErrLegacyGroup}
	}
	rs.group = g
	return nil
}

// failLocked makes rs unusable with err, a refused group, unless it
// already is. It reports whether it did (the first refusal). The caller
// holds Client.mu.
func (c *Client) failLocked(rs *roomState, err error) bool {
	if rs.err != nil {
		return false
	}
	c.logger.Warn("refused the relay's group; the room is unusable", "err", err)
	rs.err = err
	return true
}

// checkLegacy refuses a legacy group the options do not allow.
func (c *Client) checkLegacy(g *dh.Group) error {
	if g != nil && legacy(g) && !c.opts.AllowLegacyGroups {
		return fmt.Errorf("%w: %s (Options.AllowLegacyGroups is off)", ErrLegacyGroup, g)
	}
	return nil
}

// Room returns the client's room and true, or false outside a room.
func (c *Client) Room() (Room, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.room == nil {
		return Room{}, false
	}
	return c.room.snapshotLocked(false), true
}

// Create creates a room and joins it. group fixes the room's group and
// pins it: the client refuses a room, key_ok, peer_key or
// handshake_complete frame in any other group (a *GroupError wrapping
// ErrGroupChanged), which protects the exchange from a relay that
// rewrites the group. nil leaves the group to the first key (Handshake
// then uses x25519 unless the peer's key came first) and pins the first
// group the relay reports, if it is not a legacy group.
//
// It returns ErrLegacyGroup for modp5 unless Options.AllowLegacyGroups, a
// *GroupError if the relay's room reply names another group (the client
// then leaves the room at once and is in none), an *Error from the relay,
// such as wire.CodeAlreadyInRoom, wire.CodeTooManyRooms or
// wire.CodeGroupNotAllowed, ErrDisconnected, or ctx's error.
func (c *Client) Create(ctx context.Context, group *dh.Group) (Room, error) {
	f := &outFrame{Type: wire.TypeCreate}
	if group != nil {
		f.Group = group.Name()
	}
	return c.enter(ctx, f, group)
}

// Join joins the existing room id without an expected group: it is
// JoinGroup(ctx, id, nil). The client accepts the room's group unless it
// is a legacy group the options do not allow, and pins it.
func (c *Client) Join(ctx context.Context, id string) (Room, error) {
	return c.JoinGroup(ctx, id, nil)
}

// JoinGroup joins the existing room id, expecting its group to be group,
// as the share link or the application says, and pins it as Create does:
// the client refuses a room, key_ok, peer_key or handshake_complete frame
// in any other group. A room whose group is not fixed yet is accepted; the
// client's key is then in group. A nil group accepts the room's group
// unless it is a legacy group the options do not allow.
//
// It returns ErrLegacyGroup for a modp5 group unless
// Options.AllowLegacyGroups, a *GroupError (wrapping ErrGroupChanged or
// ErrLegacyGroup) if the room's group is refused (the client then leaves
// the room at once and is in none), an *Error from the relay, such as
// wire.CodeRoomNotFound, wire.CodeRoomFull or wire.CodeAlreadyInRoom,
// ErrDisconnected, or ctx's error. If the other peer's key is already
// stored it arrives at once (EventPeerKey).
func (c *Client) JoinGroup(ctx context.Context, id string, group *dh.Group) (Room, error) {
	return c.enter(ctx, &outFrame{Type: wire.TypeJoin, Room: id}, group)
}

// enter sends create or join and makes the room the client's, pinned to
// group if not nil.
func (c *Client) enter(ctx context.Context, f *outFrame, group *dh.Group) (Room, error) {
	if err := c.checkLegacy(group); err != nil {
		return Room{}, fmt.Errorf("%s: %w", f.Type, err)
	}
	var room Room
	var gerr error
	_, err := c.roundTrip(ctx, f, func(r *inFrame) {
		rs := &roomState{id: r.Room, peerID: r.Peer, token: r.ResumeToken, peers: r.Peers, peer: &peerState{}, group: group, grace: r.resumeGrace()}
		gerr = c.checkGroupLocked(rs, wire.TypeRoom, r.group())
		if gerr == nil && f.Type == wire.TypeCreate && group != nil && r.group() == "" {
			// create fixes the group: the reply must name it.
			gerr = &GroupError{Frame: wire.TypeRoom, Want: group.Name(), Err: ErrGroupChanged}
		}
		if gerr != nil {
			return
		}
		c.room = rs
		room = rs.snapshotLocked(false)
	})
	if err == nil && gerr != nil {
		c.logger.Warn("refused the room's group; leaving", "err", gerr)
		// The relay holds the seat; give it back. No reply is awaited
		// (a left without a pending request is dropped).
		if data, merr := (&outFrame{Type: wire.TypeLeave}).marshal(0); merr == nil {
			c.write(c.current(), data)
		}
		err = gerr
	}
	if err != nil {
		return Room{}, fmt.Errorf("%s: %w", f.Type, err)
	}
	c.logger.Info("in room", "room", room.ID, "peers", room.Peers)
	c.saveState()
	return room, nil
}

// Resume takes the client's place back after its connection dropped: it
// closes the current connection if it is still open, dials the relay
// again with the same options, and sends resume with the room, peer ID,
// resume token and the highest seq it has queued. The keys, the Channel's
// counters and the undelivered events are kept; the relay then sends the
// messages the client has not seen. Then, before any new message, it
// sends again, as they were and in order, the messages Send reported as
// ErrUnconfirmed (for the same peer); it does not wait for their sent.
// If the relay refuses one of them for good (mailbox_full, say), Next
// reports that *Error. Concurrent Sends fail with ErrDisconnected between
// attempts, and wait while one is under way.
//
// It tries the client's URLs (see DialURLs) in turn, starting with the
// one it was connected to, each attempt bounded by Options.DialTimeout,
// until one succeeds or fails for good. The first round, one attempt per
// URL, goes at once; before each later attempt it waits ResumeBackoffMin
// (100 ms), doubling each time up to ResumeBackoffMax (5 s), each wait
// varied at random by ±20% so that the clients of a stopped instance do
// not all come back at the same instant. It keeps trying for as long as the relay keeps the seat:
// the room's resume grace period (Room.ResumeGrace), counted from when the
// client saw its connection end (the relay counts from when it noticed,
// which is not earlier), and tries every URL at least once. Options.
// OnResumeAttempt hears of each attempt. Attempts that failed because a
// dial failed, the connection dropped, an attempt timed out, or the relay
// answered unavailable, rate_limited, join_rate_limited or internal are
// tried again; any other error ends Resume at once.
//
// It returns ErrNotInRoom outside a room, ErrClosed, ErrSuperseded after
// the relay closed the connection with 4409 (another connection holds the
// place), the room's *GroupError if a group was refused, a *GroupError if
// the room reply names another group (the room is then unusable), an
// *Error such as wire.CodeInvalidResume, wire.CodeResumeExpired or
// wire.CodeRoomNotFound (after the last two the place is gone and the
// client is in no room), ctx's error, or, when the grace period has
// passed, an error wrapping ErrResumeGaveUp and the last attempt's error.
// After ErrResumeGaveUp, ctx's error or a dial error it may be called
// again.
func (c *Client) Resume(ctx context.Context) error {
	c.resumeMu.Lock()
	defer c.resumeMu.Unlock()
	rs, err := c.resumable()
	if err != nil {
		return err
	}
	c.mu.Lock()
	if rs.droppedAt.IsZero() {
		rs.droppedAt = time.Now() // still connected: the drop is now
	}
	deadline := rs.droppedAt.Add(rs.grace)
	first := c.urlIdx
	c.mu.Unlock()

	var last error
	for n := 1; ; n++ {
		left := time.Until(deadline)
		if n > len(c.urls) {
			if left <= 0 {
				return fmt.Errorf("resume: %w (%d attempts; the relay keeps a seat %s after a drop); the last one: %w",
					ErrResumeGaveUp, n-1, rs.grace, last)
			}
			if err := c.sleep(ctx, min(resumeBackoff(n-len(c.urls)), left)); err != nil {
				return fmt.Errorf("resume: %w", err)
			}
			left = time.Until(deadline)
		}
		i := (first + n - 1) % len(c.urls)
		if c.opts.OnResumeAttempt != nil {
			c.opts.OnResumeAttempt(ResumeAttempt{URL: redactURL(c.urls[i]), Attempt: n, Left: max(left, 0), Err: last})
		}
		err := c.resumeOnce(ctx, rs, i)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !retryable(err) {
			return fmt.Errorf("resume: %w", err)
		}
		// A connection the attempt left open is in no room: until the next
		// attempt, Sends see it down (ErrDisconnected), not not_in_room.
		if cn := c.current(); cn != nil {
			cn.shutdown(false)
		}
		c.logger.Debug("resume attempt failed", "relay", redactURL(c.urls[i]), "attempt", n, "err", err)
		last = err
	}
}

// Resume's backoff between attempts (see Resume).
const (
	// ResumeBackoffMin is the wait before Resume's second attempt.
	ResumeBackoffMin = 100 * time.Millisecond
	// ResumeBackoffMax is the longest wait between Resume's attempts.
	ResumeBackoffMax = 5 * time.Second
	// resumeJitter is the fraction by which each wait varies, either way.
	resumeJitter = 0.2
)

// DefaultResumeGrace is the resume grace period the client assumes for a
// room whose relay did not give one in its room frame: the relay's
// default, 2 minutes.
const DefaultResumeGrace = 2 * time.Minute

// resumeBackoff returns the wait after the k-th failed attempt (k ≥ 1):
// ResumeBackoffMin·2^(k−1), at most ResumeBackoffMax, ±20% at random.
func resumeBackoff(k int) time.Duration {
	d := ResumeBackoffMax
	if k <= 6 { // 100 ms · 2^6 > 5 s
		d = min(ResumeBackoffMin<<(k-1), ResumeBackoffMax)
	}
	return time.Duration(float64(d) * (1 - resumeJitter + 2*resumeJitter*mrand.Float64()))
}

// sleep waits d, or until ctx ends or the client is closed.
func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.closed:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retryable reports whether a failed resume attempt may succeed if tried
// again, perhaps on another instance.
func retryable(err error) bool {
	var re *Error
	var ge *GroupError
	switch {
	case errors.Is(err, ErrClosed), errors.Is(err, ErrSuperseded), errors.Is(err, ErrNotInRoom), errors.As(err, &ge):
		return false
	case errors.As(err, &re):
		switch re.Code {
		case wire.CodeUnavailable, wire.CodeRateLimited, wire.CodeJoinRateLimited, wire.CodeInternal:
			return true
		}
		return false
	}
	return true // a dial error, a dropped connection, an attempt's timeout
}

// ResumeAttempt describes one attempt of Resume, for
// Options.OnResumeAttempt.
type ResumeAttempt struct {
	// URL is the relay URL the attempt tries, without its query and user
	// information.
	URL string
	// Attempt is the attempt's number in this call of Resume, from 1.
	Attempt int
	// Left is how long the relay keeps the seat yet, by the client's
	// reckoning: the room's resume grace period less the time since the
	// drop; 0 once it has passed (the URLs not yet tried are still tried
	// once).
	Left time.Duration
	// Err is why the previous attempt failed; nil for the first.
	Err error
}

// resumable returns the room Resume takes back, or why it cannot.
func (c *Client) resumable() (*roomState, error) {
	c.mu.Lock()
	rs := c.room
	var failed error
	switch {
	case rs == nil:
	case rs.superseded:
		failed = ErrSuperseded
	case rs.err != nil:
		failed = rs.err
	}
	c.mu.Unlock()
	if c.isClosed() {
		return nil, ErrClosed
	}
	if rs == nil {
		return nil, ErrNotInRoom
	}
	if failed != nil {
		return nil, fmt.Errorf("resume: %w", failed)
	}
	return rs, nil
}

// resumeOnce makes one attempt of Resume, on urls[i]. Its errors do not
// start with "resume: ": Resume adds it.
func (c *Client) resumeOnce(ctx context.Context, rs *roomState, i int) error {
	if old := c.current(); old != nil {
		old.shutdown(false)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()

	// No new msg may go out before the resume and the messages to send
	// again, or the peer would refuse the older counters as replays.
	c.sendMu.Lock()
	defer c.sendMu.Unlock()

	cn, err := c.dial(ctx, c.urls[i])
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.isClosed() {
		c.mu.Unlock()
		cn.shutdown(true)
		return ErrClosed
	}
	c.conn, c.urlIdx = cn, i
	f := &outFrame{Type: wire.TypeResume, Room: rs.id, Peer: rs.peerID, ResumeToken: rs.token, LastSeq: rs.lastSeq, SentSeq: rs.sentSeq}
	c.mu.Unlock()

	_, err = c.roundTrip(ctx, f, func(r *inFrame) {
		rs.peers = r.Peers
		if r.ResumeGraceMS > 0 {
			rs.grace = r.resumeGrace()
		}
		if gerr := c.checkGroupLocked(rs, wire.TypeRoom, r.group()); gerr != nil {
			c.failLocked(rs, gerr)
		}
		rs.droppedAt = time.Time{}
		c.room = rs
	})
	if err == nil {
		c.mu.Lock()
		err = rs.err
		c.mu.Unlock()
	}
	var re *Error
	if errors.As(err, &re) && (re.Code == wire.CodeResumeExpired || re.Code == wire.CodeRoomNotFound) {
		c.mu.Lock()
		if c.room == rs {
			c.room = nil // the place is gone
		}
		c.mu.Unlock()
	}
	if err != nil {
		return err
	}
	c.logger.Info("resumed", "room", rs.id, "relay", redactURL(c.urls[i]), "last_seq", f.LastSeq)
	// Messages delivered but not acknowledged before the drop.
	c.mu.Lock()
	seq := rs.delivered
	if seq <= rs.acked {
		seq = 0
	}
	c.mu.Unlock()
	if seq > 0 {
		c.ack(rs, seq)
	}
	c.mu.Lock()
	for _, m := range rs.unconfirmed {
		m.inWire = false // the old connection is gone: all go out again
	}
	c.mu.Unlock()
	c.resendUnconfirmed(rs)
	c.saveState()
	return nil
}

// Leave leaves the room for good (the peer sees peer_left "left"); the
// connection stays open for another room. Undelivered events of the room
// are discarded. It returns ErrNotInRoom, an *Error, ErrDisconnected or
// ctx's error.
func (c *Client) Leave(ctx context.Context) error {
	c.mu.Lock()
	rs := c.room
	c.mu.Unlock()
	if rs == nil {
		return ErrNotInRoom
	}
	_, err := c.roundTrip(ctx, &outFrame{Type: wire.TypeLeave}, func(*inFrame) {
		if c.room == rs {
			c.room = nil
		}
	})
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	return nil
}

// waitState waits until cond, evaluated with c.mu held, is true. It
// returns ErrNotInRoom if the client leaves rs, and the connection's end,
// Close and ctx as errors.
func (c *Client) waitState(ctx context.Context, rs *roomState, cond func() bool) error {
	for {
		c.mu.Lock()
		if c.room != rs {
			c.mu.Unlock()
			return ErrNotInRoom
		}
		if cond() {
			c.mu.Unlock()
			return nil
		}
		changed, cn := c.changed, c.conn
		c.mu.Unlock()
		select {
		case <-changed:
		case <-cn.done:
			if c.current() == cn {
				return c.connErr(cn)
			}
		case <-c.closed:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
