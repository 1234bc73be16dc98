package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/keyrelay/keyrelay/internal/loadstats"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/wire"
)

// script is a scenario file: steps that every pair runs in order, with
// peers a (index 0) and b (index 1).
type script struct {
	Name  string
	Steps []step
	// drops says which peers have a drop step: they dial through a
	// transport that can reset their connection.
	drops [2]bool
}

// step is one step of a script; which fields are set depends on Do.
type step struct {
	Do       string
	Peer     int // connect (both: -1), leave, drop, resume; send: the sender
	Count    int
	Size     int
	Duration time.Duration
}

// Step kinds.
const (
	stepConnect   = "connect"
	stepCreate    = "create"
	stepJoin      = "join"
	stepHandshake = "handshake"
	stepSend      = "send"
	stepChat      = "chat"
	stepSleep     = "sleep"
	stepLeave     = "leave"
	stepDrop      = "drop"
	stepResume    = "resume"
	stepClose     = "close"
)

// stepArgs has, per step kind, its required and optional arguments.
var stepArgs = map[string]struct{ required, optional []string }{
	stepConnect:   {optional: []string{"peer"}},
	stepCreate:    {},
	stepJoin:      {},
	stepHandshake: {},
	stepSend:      {required: []string{"from", "count", "size"}},
	stepChat:      {required: []string{"count", "size"}},
	stepSleep:     {required: []string{"duration"}},
	stepLeave:     {required: []string{"peer"}},
	stepDrop:      {required: []string{"peer"}},
	stepResume:    {required: []string{"peer"}},
	stepClose:     {},
}

// maxStepBytes bounds count × size of a send or chat step, which a pair
// holds in memory.
const maxStepBytes = 64 << 20

// peerNames are the peers' names in a scenario file, by index.
var peerNames = [2]string{"a", "b"}

// loadScript reads and checks the scenario file at path.
func loadScript(path string) (*script, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := parseScript(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// parseScript parses a scenario file and checks it: known step kinds,
// exactly their arguments with valid values, and an order of steps that
// can work (a peer connects before it creates or joins, the handshake
// comes before messages, a resume follows a drop, …). Errors name the
// step by its index (from 0).
func parseScript(data []byte) (*script, error) {
	var file struct {
		Name  string            `json:"name"`
		Steps []json.RawMessage `json:"steps"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		return nil, fmt.Errorf("want {\"name\": \"...\", \"steps\": [...]}: %w", err)
	}
	if dec.More() {
		return nil, errors.New("data after the scenario object")
	}
	if len(file.Steps) == 0 {
		return nil, errors.New("no steps")
	}
	s := &script{Name: file.Name}
	for i, raw := range file.Steps {
		st, err := parseStep(raw)
		if err != nil {
			return nil, fmt.Errorf("step %d%s: %w", i, stepLabel(st.Do), err)
		}
		s.Steps = append(s.Steps, st)
		if st.Do == stepDrop {
			s.drops[st.Peer] = true
		}
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

func stepLabel(do string) string {
	if _, known := stepArgs[do]; !known {
		return ""
	}
	return " (" + do + ")"
}

// parseStep parses one step object.
func parseStep(raw json.RawMessage) (step, error) {
	var st step
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return st, fmt.Errorf("want an object: %w", err)
	}
	doRaw, ok := fields["do"]
	if !ok {
		return st, errors.New(`no "do"`)
	}
	if err := json.Unmarshal(doRaw, &st.Do); err != nil {
		return st, fmt.Errorf(`"do": want a string: %w`, err)
	}
	args, known := stepArgs[st.Do]
	if !known {
		kinds := make([]string, 0, len(stepArgs))
		for k := range stepArgs {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		return st, fmt.Errorf("unknown step %q (want one of %s)", st.Do, strings.Join(kinds, ", "))
	}
	for name := range fields {
		if name != "do" && !slices.Contains(args.required, name) && !slices.Contains(args.optional, name) {
			return st, fmt.Errorf("unexpected argument %q", name)
		}
	}
	for _, name := range args.required {
		if _, ok := fields[name]; !ok {
			return st, fmt.Errorf("missing argument %q", name)
		}
	}
	st.Peer = -1
	for name, v := range fields {
		var err error
		switch name {
		case "do":
		case "peer", "from":
			st.Peer, err = parsePeer(v)
		case "count":
			st.Count, err = parsePositive(v)
		case "size":
			st.Size, err = parsePositive(v)
		case "duration":
			var d string
			if err = json.Unmarshal(v, &d); err != nil {
				err = fmt.Errorf(`want a duration such as "100ms": %w`, err)
				break
			}
			st.Duration, err = time.ParseDuration(d)
			if err == nil && st.Duration <= 0 {
				err = fmt.Errorf("%q: must be positive", d)
			}
		}
		if err != nil {
			return st, fmt.Errorf("%q: %w", name, err)
		}
	}
	if st.Count > 0 && st.Size > 0 && int64(st.Count)*int64(st.Size) > maxStepBytes {
		return st, fmt.Errorf("count × size = %d bytes, more than %d", int64(st.Count)*int64(st.Size), maxStepBytes)
	}
	return st, nil
}

func parsePeer(v json.RawMessage) (int, error) {
	var p string
	if err := json.Unmarshal(v, &p); err != nil {
		return 0, errors.New(`want "a" or "b"`)
	}
	switch p {
	case "a":
		return 0, nil
	case "b":
		return 1, nil
	}
	return 0, fmt.Errorf(`%q: want "a" or "b"`, p)
}

func parsePositive(v json.RawMessage) (int, error) {
	var n int
	if err := json.Unmarshal(v, &n); err != nil {
		return 0, errors.New("want a positive integer")
	}
	if n < 1 {
		return 0, fmt.Errorf("%d: must be at least 1", n)
	}
	return n, nil
}

// check plays the steps on a model of the two peers and reports the first
// step that cannot work.
func (s *script) check() error {
	var (
		connected, inRoom, dropped [2]bool
		created, handshaken, done  bool
	)
	present := func(p int) bool { return inRoom[p] && !dropped[p] }
	for i, st := range s.Steps {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("step %d (%s): %s", i, st.Do, fmt.Sprintf(format, args...))
		}
		if done {
			return fail("comes after close")
		}
		other := 1 - st.Peer
		switch st.Do {
		case stepConnect:
			for _, p := range peersOf(st.Peer) {
				if connected[p] {
					return fail("peer %s is connected already", peerNames[p])
				}
				connected[p] = true
			}
		case stepCreate:
			switch {
			case !connected[0]:
				return fail("peer a is not connected")
			case inRoom[0]:
				return fail("peer a is in a room already")
			}
			inRoom[0], created = true, true
		case stepJoin:
			switch {
			case !connected[1]:
				return fail("peer b is not connected")
			case inRoom[1]:
				return fail("peer b is in a room already")
			case !created:
				return fail("no room: peer a must create one first")
			}
			inRoom[1] = true
		case stepHandshake:
			if !present(0) || !present(1) {
				return fail("both peers must be in the room and connected")
			}
			handshaken = true
		case stepSend:
			switch {
			case !handshaken:
				return fail("needs a handshake first")
			case !present(st.Peer):
				return fail("peer %s must be in the room and connected", peerNames[st.Peer])
			case !inRoom[other]:
				return fail("peer %s is not in the room", peerNames[other])
			}
		case stepChat:
			switch {
			case !handshaken:
				return fail("needs a handshake first")
			case !present(0) || !present(1):
				return fail("both peers must be in the room and connected")
			}
		case stepLeave, stepDrop:
			switch {
			case !present(st.Peer):
				return fail("peer %s must be in the room and connected", peerNames[st.Peer])
			case !present(other):
				return fail("peer %s must be in the room and connected, to see peer_left", peerNames[other])
			}
			if st.Do == stepLeave {
				inRoom[st.Peer] = false
			} else {
				dropped[st.Peer] = true
			}
		case stepResume:
			if !dropped[st.Peer] {
				return fail("peer %s has not dropped", peerNames[st.Peer])
			}
			if !present(other) {
				return fail("peer %s must be in the room and connected, to check the delivery", peerNames[other])
			}
			dropped[st.Peer] = false
		case stepClose:
			done = true
		}
	}
	return nil
}

// peersOf returns the peers a step with peer p concerns: both for -1.
func peersOf(p int) []int {
	if p < 0 {
		return []int{0, 1}
	}
	return []int{p}
}

// scriptRun is one pair's run of a script.
type scriptRun struct {
	p       *pair
	s       *script
	urls    [2]string
	clients [2]*client.Client
	drop    [2]func()
	dropped [2]bool // by a drop step, not resumed yet
	room    string
	// away has, per peer, the messages sent to it while it was dropped,
	// in order; resume checks them.
	away [2][][]byte
}

// runScript runs script s for pair i.
func (p *pair) runScript(ctx context.Context, i int, s *script) error {
	r := &scriptRun{p: p, s: s}
	r.urls[0], r.urls[1] = p.l.urlsFor(i)
	defer r.closeAll()
	for n, st := range s.Steps {
		if err := r.step(ctx, st); err != nil {
			return scriptError{index: n, do: st.Do, err: err}
		}
	}
	return nil
}

// scriptError is the error of step index of a script. It wraps a
// loadstats.StageError, so the summary's error codes are those of the built-in
// scenarios.
type scriptError struct {
	index int
	do    string
	err   error
}

func (e scriptError) Error() string { return fmt.Sprintf("step %d (%s): %v", e.index, e.do, e.err) }
func (e scriptError) Unwrap() error { return e.err }

func (r *scriptRun) closeAll() {
	for _, c := range r.clients {
		if c != nil {
			c.Close()
		}
	}
}

// step runs one step.
func (r *scriptRun) step(ctx context.Context, st step) error {
	p := r.p
	switch st.Do {
	case stepConnect:
		for _, n := range peersOf(st.Peer) {
			var opts *client.Options
			if r.s.drops[n] {
				opts, r.drop[n] = p.l.src.droppable()
			} else {
				opts = p.l.src.options()
			}
			c, err := p.dial(ctx, r.urls[n], opts)
			if err != nil {
				return err
			}
			r.clients[n] = c
		}
	case stepCreate:
		t0 := time.Now()
		room, err := r.clients[0].Create(ctx, p.l.cfg.group)
		if err != nil {
			return loadstats.StageError{Stage: "create", Err: err}
		}
		p.sample(metricJoin, time.Since(t0))
		r.room = room.ID
	case stepJoin:
		t0 := time.Now()
		if _, err := r.clients[1].Join(ctx, r.room); err != nil {
			return loadstats.StageError{Stage: "join", Err: err}
		}
		p.sample(metricJoin, time.Since(t0))
	case stepHandshake:
		t0 := time.Now()
		errA := make(chan error, 1)
		go func() {
			_, err := r.clients[0].Handshake(ctx)
			errA <- err
		}()
		_, errB := r.clients[1].Handshake(ctx)
		if err := <-errA; err != nil {
			return loadstats.StageError{Stage: "handshake", Err: err}
		}
		if errB != nil {
			return loadstats.StageError{Stage: "handshake", Err: errB}
		}
		p.sample(metricHandshake, time.Since(t0))
	case stepSend:
		return r.send(ctx, st.Peer, st.Count, st.Size)
	case stepChat:
		return p.chat(ctx, r.peer(0), r.peer(1), st.Count, st.Size)
	case stepSleep:
		t := time.NewTimer(st.Duration)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return loadstats.StageError{Stage: "sleep", Err: ctx.Err()}
		}
	case stepLeave:
		if err := r.clients[st.Peer].Leave(ctx); err != nil {
			return loadstats.StageError{Stage: "leave", Err: err}
		}
		return r.peer(1-st.Peer).waitPeerLeft(ctx, wire.ReasonLeft)
	case stepDrop:
		r.drop[st.Peer]()
		r.dropped[st.Peer] = true
		return r.peer(1-st.Peer).waitPeerLeft(ctx, wire.ReasonDropped)
	case stepResume:
		return r.resume(ctx, st.Peer)
	case stepClose:
		r.closeAll()
	default:
		return fmt.Errorf("unknown step %q", st.Do) // parseScript refuses it
	}
	return nil
}

// peer returns peer n's client as a peer, for chat and waitPeerLeft
// (--resume does not apply to scripts, which drop and resume by steps).
func (r *scriptRun) peer(n int) *peer {
	return &peer{p: r.p, name: peerNames[n], c: r.clients[n]}
}

// randomMessages returns n random messages of size bytes.
func randomMessages(n, size int) [][]byte {
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = make([]byte, size)
		rand.Read(msgs[i])
	}
	return msgs
}

// send sends count messages of size bytes from peer from to the other,
// which receives and checks each in order; if the other has dropped, they
// are kept for its resume to check.
func (r *scriptRun) send(ctx context.Context, from, count, size int) error {
	to := 1 - from
	msgs := randomMessages(count, size)
	sender, receiver := r.clients[from], r.clients[to]
	if r.dropped[to] {
		for _, m := range msgs {
			if _, err := sender.Send(ctx, m); err != nil {
				return loadstats.StageError{Stage: "send", Err: err}
			}
		}
		r.away[to] = append(r.away[to], msgs...)
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errSend := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			if _, err := sender.Send(ctx, m); err != nil {
				errSend <- loadstats.StageError{Stage: "send", Err: err}
				cancel() // stops the receiver
				return
			}
		}
		errSend <- nil
	}()
	for _, want := range msgs {
		m, err := receiver.Receive(ctx)
		if err != nil {
			cancel()
			if serr := <-errSend; serr != nil {
				return serr
			}
			return loadstats.StageError{Stage: "receive", Err: err}
		}
		if !bytes.Equal(m.Plaintext, want) {
			cancel()
			<-errSend
			return loadstats.StageError{Stage: "receive", Err: loadstats.ErrMismatch}
		}
		r.p.messages++
	}
	return <-errSend
}

// resume resumes peer n, which must then receive the messages sent to it
// while it was away, in order, and exactly once: the next message, which
// the other peer sends after the resume, must be a new one.
func (r *scriptRun) resume(ctx context.Context, n int) error {
	c, other := r.clients[n], r.clients[1-n]
	if err := c.Resume(ctx); err != nil {
		return loadstats.StageError{Stage: "resume", Err: err}
	}
	r.dropped[n] = false
	r.p.resumes++
	away := r.away[n]
	r.away[n] = nil
	for _, want := range away {
		m, err := c.Receive(ctx)
		if err != nil {
			return loadstats.StageError{Stage: "receive", Err: err}
		}
		if !bytes.Equal(m.Plaintext, want) {
			return loadstats.StageError{Stage: "receive", Err: loadstats.ErrMismatch}
		}
		r.p.messages++
	}
	probe := randomMessages(1, 32)[0]
	if _, err := other.Send(ctx, probe); err != nil {
		return loadstats.StageError{Stage: "send", Err: err}
	}
	m, err := c.Receive(ctx)
	if err != nil {
		return loadstats.StageError{Stage: "receive", Err: err}
	}
	if !bytes.Equal(m.Plaintext, probe) {
		for _, a := range away {
			if bytes.Equal(m.Plaintext, a) {
				return loadstats.StageError{Stage: "receive", Err: errDuplicate}
			}
		}
		return loadstats.StageError{Stage: "receive", Err: loadstats.ErrMismatch}
	}
	r.p.messages++
	return nil
}
