package main

import (
	"context"

	"github.com/keyrelay/keyrelay/internal/loadstats"
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

// churn runs pair i's churn action once the pair has chatted.
//
// Leave: A calls Leave, and B must see peer_left "left".
//
// Drop: A's TCP connection is closed abruptly (no WebSocket close), B must
// see peer_left "dropped", then B sends a message while A is away; A
// resumes and must receive it exactly once: the next message it receives,
// which B sends after the resume, must be that later one. Both messages
// are the next of the pair's B-to-A flow, checked as chat's are.
//
// With --resume, drops that the churn did not cause are ridden out as in
// chat (see peer and peer.waitPeerLeft).
func (p *pair) churn(ctx context.Context, i int, a, b *peer) error {
	if churnAction(i) == churnLeave {
		if err := a.leave(ctx); err != nil {
			return err
		}
		return b.waitPeerLeft(ctx, wire.ReasonLeft)
	}

	_, ba := p.flows()
	a.drop()
	if err := b.waitPeerLeft(ctx, wire.ReasonDropped); err != nil {
		return err
	}
	if err := b.send(ctx, ba, p.l.cfg.size); err != nil { // while A is away
		return err
	}
	if err := a.c.Resume(ctx); err != nil {
		return loadstats.StageError{Stage: "resume", Err: err}
	}
	p.resumes++
	if err := a.expect(ctx, ba); err != nil {
		return err
	}
	p.messages++
	if err := b.send(ctx, ba, p.l.cfg.size); err != nil { // after the resume
		return err
	}
	if err := a.expect(ctx, ba); err != nil { // a second copy of the first fails here
		return err
	}
	p.messages++
	return nil
}
