package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/internal/loadstats"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/wire"
)

// peer is one client of a pair (chat, churn and the handshake scenario),
// with what it needs to ride out a dropped connection under --resume.
//
// With --resume, an operation whose connection drops (errors.Is(err,
// client.ErrDisconnected): a relay going away with 1001, a connection cut,
// a relay killed) does not fail the pair: the peer calls client.Resume,
// which tries every --url in turn with backoff for as long as the relay
// keeps the seat, and then goes on where it was. A Send that dropped
// before the relay's sent is not sent again by the peer (the client does
// that after the resume, and the receiving client drops a second copy);
// a Send refused before its message was sealed (the connection was known
// to be down) is sent after the resume. Before the peer is in a room (its
// dial, create or join), a dial that fails or a connection that drops
// starts the setup over on a new connection, after the client's backoff.
// Without --resume any of these fails the pair.
type peer struct {
	// Static after newPeer.
	p    *pair
	name string   // "a" or "b"
	urls []string // the pair's URL for this peer first; with --resume, the others after it
	opts *client.Options
	drop func() // cuts the current connection (churn's drop); nil if not droppable

	c *client.Client // the current client, once connected

	// Written by onAttempt, which runs in the goroutine that called
	// Resume, and read there after it returns.
	attempts  int
	firstAt   time.Time     // when the first attempt began
	firstLeft time.Duration // the seat's time left then, by the client's reckoning
}

// newPeer returns peer name of p, to be connected to url; droppable peers
// dial through a transport whose connection drop cuts.
func (p *pair) newPeer(name, url string, droppable bool) *peer {
	pe := &peer{p: p, name: name, urls: []string{url}}
	if droppable {
		pe.opts, pe.drop = p.l.src.droppable()
	} else {
		pe.opts = p.l.src.options()
	}
	if p.l.cfg.resume {
		// The pair's URL first, as without --resume; the others to resume on.
		i := slices.Index(p.l.cfg.urls, url)
		pe.urls = append(slices.Clone(p.l.cfg.urls[i:]), p.l.cfg.urls[:i]...)
		pe.opts.OnResumeAttempt = pe.onAttempt
	}
	return pe
}

// onAttempt is the client's Options.OnResumeAttempt.
func (pe *peer) onAttempt(a client.ResumeAttempt) {
	pe.attempts++
	if a.Attempt == 1 {
		pe.firstAt, pe.firstLeft = time.Now(), a.Left
	}
}

// close closes the current client, if any.
func (pe *peer) close() {
	if pe.c != nil {
		pe.c.Close()
	}
}

// connect dials and runs enter (Create or Join) on the new client; with
// --resume, a dial error or a drop before enter's reply starts over on a
// new connection after a backoff (counted as a redial), until ctx ends.
func (pe *peer) connect(ctx context.Context, enter func(*client.Client) error) error {
	for k := 1; ; k++ {
		err := pe.dial(ctx)
		if err == nil {
			if err = enter(pe.c); err == nil {
				return nil
			}
			pe.c.Close()
			pe.c = nil
		}
		l := pe.p.l
		if !l.cfg.resume || ctx.Err() != nil || (loadstats.Stage(err) != "dial" && !errors.Is(err, client.ErrDisconnected)) {
			return err
		}
		l.stats.redialed()
		l.events.write(event{Event: eventRedial, Pair: pe.p.i, Peer: pe.name, Code: errorCode(err), Err: loadstats.Truncate(err.Error(), loadstats.MaxExample)})
		if sleep(ctx, backoff(k)) != nil {
			return err // the pair's time is up: the last failure says why
		}
	}
}

// dial connects a new client to pe's URLs (the first that answers).
func (pe *peer) dial(ctx context.Context) error {
	t0 := time.Now()
	c, err := client.DialURLs(ctx, pe.urls, pe.opts)
	if err != nil {
		return loadstats.StageError{Stage: "dial", Err: err}
	}
	pe.p.sample(metricConnect, time.Since(t0))
	pe.c = c
	return nil
}

// backoff returns the wait before the k-th new start (k ≥ 1) of a setup:
// the client's resume backoff, client.ResumeBackoffMin doubling to
// client.ResumeBackoffMax, ±20% at random.
func backoff(k int) time.Duration {
	d := client.ResumeBackoffMax
	if k <= 6 {
		d = min(client.ResumeBackoffMin<<(k-1), client.ResumeBackoffMax)
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// recover handles err, the error of stage on pe's client: with --resume,
// if the connection dropped (and no other connection took the seat:
// ErrSuperseded), it resumes and returns nil for the caller to go on;
// otherwise, or if the resume fails, it returns the error for the pair.
func (pe *peer) recover(ctx context.Context, stage string, err error) error {
	if !pe.p.l.cfg.resume || ctx.Err() != nil || !errors.Is(err, client.ErrDisconnected) || errors.Is(err, client.ErrSuperseded) {
		return loadstats.StageError{Stage: stage, Err: err}
	}
	return pe.resume(ctx, err)
}

// resume takes pe's seat back after an unplanned drop whose error was
// cause, and records it: the resume latency runs from when the client saw
// its connection end (Resume's grace counts from then, and the first
// attempt reports the time left) to the resume reply.
func (pe *peer) resume(ctx context.Context, cause error) error {
	l := pe.p.l
	room, _ := pe.c.Room()
	pe.attempts = 0
	start := time.Now()
	err := pe.c.Resume(ctx)
	end := time.Now()
	dropped := start
	if pe.attempts > 0 && pe.firstLeft > 0 {
		if t := pe.firstAt.Add(pe.firstLeft - room.ResumeGrace); t.Before(start) {
			dropped = t
		}
	}
	code := closeLabel(cause)
	e := event{T: unixSeconds(end), Pair: pe.p.i, Peer: pe.name, DropT: unixSeconds(dropped), MS: ms(end.Sub(dropped)), Attempts: pe.attempts, Close: code}
	switch {
	case err != nil && errors.Is(ctx.Err(), context.Canceled):
		// The pair is ending for another reason (or the run was
		// interrupted): not a failed resume.
		l.stats.dropped(code, dropCancelled, pe.attempts)
		return loadstats.StageError{Stage: "resume", Err: err}
	case err != nil:
		l.stats.dropped(code, dropFailed, pe.attempts)
		e.Event, e.Code, e.Err = eventResumeFailed, errorCode(err), loadstats.Truncate(err.Error(), loadstats.MaxExample)
		l.events.write(e)
		return loadstats.StageError{Stage: "resume", Err: err}
	}
	l.stats.dropped(code, dropResumed, pe.attempts)
	pe.p.sample(metricResume, end.Sub(dropped))
	e.Event = eventResume
	l.events.write(e)
	return nil
}

// closeLabel names how a connection ended: its close code ("1001"), or
// "none" without a close frame (a cut, a killed relay).
func closeLabel(err error) string {
	if code := websocket.CloseStatus(err); code != -1 {
		return strconv.Itoa(int(code))
	}
	return "none"
}

// handshake runs the client's key exchange, resuming after drops.
func (pe *peer) handshake(ctx context.Context) error {
	for {
		_, err := pe.c.Handshake(ctx)
		if err == nil {
			return nil
		}
		if err := pe.recover(ctx, "handshake", err); err != nil {
			return err
		}
	}
}

// send sends the next message of flow f, size bytes, and records its
// outcome in f.
func (pe *peer) send(ctx context.Context, f *flow, size int) error {
	i, pt := f.next(size)
	for {
		seq, err := pe.c.Send(ctx, pt)
		var re *client.Error
		switch {
		case err == nil:
			f.sent(i, stateConfirmed, seq)
			return nil
		case errors.Is(err, client.ErrUnconfirmed):
			// Handed over without sent: the client sends it again after the
			// resume (or the pair ends here).
			f.sent(i, stateUnconfirmed, 0)
			return pe.recover(ctx, "send", err)
		case errors.As(err, &re):
			f.sent(i, stateRefused, 0)
			return loadstats.StageError{Stage: "send", Err: err}
		}
		// Not sealed (the connection was known to be down): resume, then
		// send it.
		if err := pe.recover(ctx, "send", err); err != nil {
			return err
		}
	}
}

// receive returns the next message, resuming after drops.
func (pe *peer) receive(ctx context.Context) (client.Message, error) {
	for {
		m, err := pe.c.Receive(ctx)
		if err == nil {
			return m, nil
		}
		if err := pe.recover(ctx, "receive", err); err != nil {
			return client.Message{}, err
		}
	}
}

// expect receives the next message of flow f, which must be the one due:
// a message that was never sent, overtook an earlier one, or came again
// fails the pair. Delayed and duplicate deliveries go to the event log.
func (pe *peer) expect(ctx context.Context, f *flow) error {
	m, err := pe.receive(ctx)
	if err != nil {
		return err
	}
	a, err := f.deliver(m.Plaintext, time.Now())
	if err == nil && !a.duplicate && !a.delayed {
		return nil
	}
	e := event{Pair: pe.p.i, Peer: f.from, Index: &a.index, Seq: m.Seq, MS: ms(a.lag)}
	switch {
	case err != nil:
		return loadstats.StageError{Stage: "receive", Err: err}
	case a.duplicate:
		e.Event = eventDuplicate
		pe.p.l.events.write(e)
		return loadstats.StageError{Stage: "receive", Err: fmt.Errorf("%w: message %d from %s (seq %d)", errDuplicate, a.index, f.from, m.Seq)}
	}
	e.Event = eventDelayed
	pe.p.l.events.write(e)
	return nil
}

// leave leaves the room for good, resuming after drops. A leave the relay
// carried out before the drop voids the seat: the resume is then refused
// with invalid_resume, which means the leave is done.
func (pe *peer) leave(ctx context.Context) error {
	for {
		err := pe.c.Leave(ctx)
		if err == nil {
			return nil
		}
		if err := pe.recover(ctx, "leave", err); err != nil {
			var re *client.Error
			if errors.As(err, &re) && re.Code == wire.CodeInvalidResume {
				return nil
			}
			return err
		}
	}
}

// waitPeerLeft reads events until peer_left, which must have the given
// reason.
//
// With --resume, a peer_left "dropped" while another reason is awaited is
// the other peer's relay going away (it resumes) and is skipped; and if
// pe itself drops and resumes meanwhile, the wait ends there: the relay
// does not repeat peer events to a resumed connection (its room frame
// gives the member count only), so the event may have gone with the
// connection.
func (pe *peer) waitPeerLeft(ctx context.Context, reason wire.Reason) error {
	for {
		ev, err := pe.c.Next(ctx)
		if err != nil {
			return pe.recover(ctx, "peer_left", err)
		}
		switch {
		case ev.Type != client.EventPeerLeft:
			continue
		case ev.Reason == reason:
			return nil
		case pe.p.l.cfg.resume && ev.Reason == wire.ReasonDropped:
			continue
		}
		return loadstats.StageError{Stage: "peer_left", Err: fmt.Errorf("peer left with reason %q, want %q", ev.Reason, reason)}
	}
}
