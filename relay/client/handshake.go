package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/wire"
)

// Handshake is the outcome of the key exchange.
type Handshake struct {
	// Group is the room's group.
	Group *dh.Group
	// PublicKey is this client's public key.
	PublicKey *dh.PublicKey
	// PeerKey is the peer's public key, validated by the client.
	PeerKey *dh.PublicKey
	// SafetyNumber is dh.SafetyNumber of the two keys: 60 digits in groups
	// of five, the same on both sides unless a key was replaced in transit.
	// The users should compare it over another channel.
	SafetyNumber string
}

// SendKey generates the client's key pair in the room's group, sends the
// public key, and returns it once the relay has stored it (key_ok). The
// private key stays in the client. If the key was sent already it returns
// it without sending again; after a dropped connection it sends the same
// key again.
//
// Handshake calls it first, so an application need not. It is the first
// half of the exchange, for an application that wants to tell its user
// that its key is at the relay before the other person has arrived
// (Handshake waits for them), as keyrelay-chat does; the relay then hands
// the key to the other person the moment they join.
//
// The key is in the pinned group (see Create and JoinGroup). If the room
// has no group yet, it uses the group of the peer's key if that has
// arrived, else x25519; if the peer's key fixes another group meanwhile, it
// waits for that key and sends one of its group.
//
// With Options.SaveState, the key pair is saved before the public key is
// sent.
//
// It returns ErrNotInRoom, the room's *GroupError if a group was refused,
// a *GroupError if key_ok names a group other than the key's (the room is
// then unusable), an *Error from the relay, Options.SaveState's error
// (nothing was sent), ErrDisconnected or ctx's error.
func (c *Client) SendKey(ctx context.Context) (*dh.PublicKey, error) {
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	retried := false
	for {
		c.mu.Lock()
		rs := c.room
		if rs == nil {
			c.mu.Unlock()
			return nil, ErrNotInRoom
		}
		if rs.err != nil {
			err := rs.err
			c.mu.Unlock()
			return nil, fmt.Errorf("key: %w", err)
		}
		if rs.keyStored && rs.priv != nil {
			pub := rs.priv.PublicKey()
			c.mu.Unlock()
			return pub, nil
		}
		group := rs.group
		if group == nil && rs.peer.key != nil {
			group = rs.peer.key.Group()
		}
		if group == nil {
			group = dh.X25519()
		}
		if rs.priv == nil || rs.priv.Group() != group {
			priv, err := group.GenerateKey(c.opts.Rand)
			if err != nil {
				c.mu.Unlock()
				return nil, fmt.Errorf("generate key: %w", err)
			}
			rs.priv, rs.keySent = priv, false
		}
		priv, resend := rs.priv, rs.keySent
		rs.keySent = true
		c.mu.Unlock()
		// The key pair is saved before its public key leaves: a process
		// restored without it could not use the seat its key holds.
		if err := c.saveState(); err != nil {
			c.mu.Lock()
			if rs.priv == priv {
				rs.keySent = resend
			}
			c.mu.Unlock()
			return nil, fmt.Errorf("key: %w", err)
		}

		// group is always sent: the relay requires it (protocol §2.1).
		_, err := c.roundTrip(ctx, &outFrame{Type: wire.TypeKey, PublicKey: priv.PublicKey().Hex(), Group: group.Name()}, func(f *inFrame) {
			gerr := c.checkGroupLocked(rs, wire.TypeKeyOK, f.group())
			if gerr == nil && f.group() != "" && f.group() != group.Name() {
				gerr = &GroupError{Frame: wire.TypeKeyOK, Want: group.Name(), Got: f.group(), Err: ErrGroupChanged}
			}
			if gerr != nil {
				c.failLocked(rs, gerr)
				return
			}
			if rs.priv == priv {
				rs.keyStored = true
			}
		})
		if err == nil {
			c.mu.Lock()
			err = rs.err
			c.mu.Unlock()
		}
		var re *Error
		switch {
		case err == nil:
			return priv.PublicKey(), nil
		case errors.As(err, &re) && re.Code == wire.CodeKeyAlreadySet && resend:
			// Sent before a drop, stored, and its key_ok lost.
			c.mu.Lock()
			if rs.priv == priv {
				rs.keyStored = true
			}
			c.mu.Unlock()
			return priv.PublicKey(), nil
		case errors.As(err, &re):
			// Refused: not stored. Next time, a new key.
			c.mu.Lock()
			if rs.priv == priv {
				rs.priv, rs.keySent = nil, false
			}
			c.mu.Unlock()
			if re.Code == wire.CodeGroupMismatch && !retried {
				retried = true
				if err := c.waitPeerGroup(ctx, rs); err != nil {
					return nil, err
				}
				continue
			}
		}
		return nil, fmt.Errorf("key: %w", err)
	}
}

// waitPeerGroup waits until the room's group is known.
func (c *Client) waitPeerGroup(ctx context.Context, rs *roomState) error {
	return c.waitState(ctx, rs, func() bool { return rs.group != nil || rs.peer.key != nil })
}

// Handshake performs the key exchange: SendKey (if not done), then it waits
// for the peer's key, which it validates itself, and for
// handshake_complete, and derives the message key. Both users should
// compare the returned SafetyNumber over another channel. Once complete it
// returns the same Handshake at once, until a new peer takes the other
// place (after the first left), when it waits for the new peer's key.
//
// It returns SendKey's errors, an error wrapping dh.ErrInvalidPublicKey or
// dh.ErrMalformedKey for a bad peer key, dh.ErrSameKey if the "peer" key
// is the client's own (a reflected key), ErrPeerKeyChanged, a *GroupError
// if a frame's group was refused, ErrNotInRoom if the room ends,
// ErrDisconnected (Resume, then call Handshake again; but not after
// ErrSuperseded), or ctx's error.
func (c *Client) Handshake(ctx context.Context) (*Handshake, error) {
	if _, err := c.SendKey(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	rs := c.room
	c.mu.Unlock()
	if rs == nil {
		return nil, ErrNotInRoom
	}
	var hs *Handshake
	var hsErr error
	err := c.waitState(ctx, rs, func() bool {
		ps := rs.peer
		hs, hsErr = c.channelLocked(rs, ps)
		return hs != nil || hsErr != nil
	})
	if err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if hsErr != nil {
		return nil, fmt.Errorf("handshake: %w", hsErr)
	}
	c.logger.Info("handshake complete", "room", rs.id, "group", hs.Group.Name())
	c.saveState()
	h := *hs
	return &h, nil
}

// channelLocked returns ps's Handshake, deriving the Channel on the first
// call after both keys are known and the relay reported handshake_complete.
// It returns nil, nil while the exchange is not complete. The caller holds
// Client.mu.
func (c *Client) channelLocked(rs *roomState, ps *peerState) (*Handshake, error) {
	if rs.err != nil {
		return nil, rs.err
	}
	if ps.err != nil {
		return nil, ps.err
	}
	if ps.hs != nil {
		return ps.hs, nil
	}
	if !ps.complete || ps.key == nil || rs.priv == nil {
		return nil, nil
	}
	fail := func(err error) (*Handshake, error) {
		ps.err = err
		return nil, err
	}
	z, err := rs.priv.SharedSecret(ps.key)
	if err != nil {
		return fail(err)
	}
	ch, err := dh.NewChannel(z, rs.priv.PublicKey(), ps.key)
	if err != nil {
		return fail(err)
	}
	sn, err := dh.SafetyNumber(rs.priv.PublicKey(), ps.key)
	if err != nil {
		return fail(err)
	}
	ps.channel = ch
	ps.hs = &Handshake{Group: ps.key.Group(), PublicKey: rs.priv.PublicKey(), PeerKey: ps.key, SafetyNumber: sn}
	return ps.hs, nil
}
