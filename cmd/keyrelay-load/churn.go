package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/keyrelay/keyrelay/internal/loadstats"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/wire"
)

// Churn actions, chosen by pair index.
const (
	churnLeave = iota // A leaves the room for good
	churnDrop         // A's connection drops without a close; A resumes
)

// churnAction returns pair i's churn action: leave for even i, drop and
// resume for odd i.
func churnAction(i int) int { return i % 2 }

// errDuplicate reports a message received a second time.
var errDuplicate = errors.New("message received twice")

// churn runs pair i's churn action once the pair has chatted.
//
// Leave: A calls Leave, and B must see peer_left "left".
//
// Drop: A's TCP connection is closed abruptly (no WebSocket close), B must
// see peer_left "dropped", then B sends a message while A is away; A
// resumes and must receive it exactly once: the next message it receives,
// which B sends after the resume, must be that later one.
func (p *pair) churn(ctx context.Context, i int, a, b *client.Client, dropA func()) error {
	if churnAction(i) == churnLeave {
		if err := a.Leave(ctx); err != nil {
			return loadstats.StageError{Stage: "leave", Err: err}
		}
		return waitPeerLeft(ctx, b, wire.ReasonLeft)
	}

	dropA()
	if err := waitPeerLeft(ctx, b, wire.ReasonDropped); err != nil {
		return err
	}
	away, after := make([]byte, p.l.cfg.size), make([]byte, p.l.cfg.size)
	rand.Read(away)
	rand.Read(after)
	if _, err := b.Send(ctx, away); err != nil {
		return loadstats.StageError{Stage: "send", Err: err}
	}
	if err := a.Resume(ctx); err != nil {
		return loadstats.StageError{Stage: "resume", Err: err}
	}
	p.resumes++
	m, err := a.Receive(ctx)
	if err != nil {
		return loadstats.StageError{Stage: "receive", Err: err}
	}
	if !bytes.Equal(m.Plaintext, away) {
		return loadstats.StageError{Stage: "receive", Err: loadstats.ErrMismatch}
	}
	p.messages++
	if _, err := b.Send(ctx, after); err != nil {
		return loadstats.StageError{Stage: "send", Err: err}
	}
	m, err = a.Receive(ctx)
	if err != nil {
		return loadstats.StageError{Stage: "receive", Err: err}
	}
	switch {
	case bytes.Equal(m.Plaintext, away):
		return loadstats.StageError{Stage: "receive", Err: errDuplicate}
	case !bytes.Equal(m.Plaintext, after):
		return loadstats.StageError{Stage: "receive", Err: loadstats.ErrMismatch}
	}
	p.messages++
	return nil
}

// waitPeerLeft reads c's events until peer_left, which must have the
// given reason.
func waitPeerLeft(ctx context.Context, c *client.Client, reason wire.Reason) error {
	for {
		ev, err := c.Next(ctx)
		if err != nil {
			return loadstats.StageError{Stage: "peer_left", Err: err}
		}
		if ev.Type != client.EventPeerLeft {
			continue
		}
		if ev.Reason != reason {
			return loadstats.StageError{Stage: "peer_left", Err: fmt.Errorf("peer left with reason %q, want %q", ev.Reason, reason)}
		}
		return nil
	}
}
