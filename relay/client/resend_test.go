package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/session"
)

// A message that got no sent may or may not have been stored: the client
// sends the same body again after Resume, and the receiving client drops
// the copy. The real relay runs on a store that fails on cue.

// What flakyStore's next Append does.
const (
	appendOK            int32 = iota
	appendStoreThenFail       // store, announce, then report unavailable
	appendFail                // report unavailable, store nothing
	appendStoreThenHold       // store, announce, then wait for release before sent
)

// flakyStore is a session.Store whose next Append misbehaves as mode says,
// once.
type flakyStore struct {
	session.Store
	mode    atomic.Int32
	held    chan struct{} // appendStoreThenHold: receives once stored
	release chan struct{} // appendStoreThenHold: closed by the test
}

func (s *flakyStore) Append(ctx context.Context, room, from, source string, body []byte) (uint64, error) {
	unavailable := fmt.Errorf("flaky store: %w", session.ErrUnavailable)
	switch s.mode.Swap(appendOK) {
	case appendStoreThenFail:
		if _, err := s.Store.Append(ctx, room, from, source, body); err != nil {
			return 0, err
		}
		return 0, unavailable
	case appendFail:
		return 0, unavailable
	case appendStoreThenHold:
		seq, err := s.Store.Append(ctx, room, from, source, body)
		s.held <- struct{}{}
		<-s.release
		return seq, err
	}
	return s.Store.Append(ctx, room, from, source, body)
}

// TestSendAgain: whether the relay stored the message or not, and whether
// it said unavailable or the connection dropped before sent, Send reports
// ErrUnconfirmed, the client sends the same body again (after Resume, or
// before the next message), and the peer gets the message exactly once, in
// order, without an error.
func TestSendAgain(t *testing.T) {
	tests := []struct {
		name   string
		mode   int32
		stored bool // the first copy was stored: the peer drops the second
		resume bool // resume before the next message
	}{
		{"stored, then unavailable", appendStoreThenFail, true, false},
		{"not stored, unavailable", appendFail, false, false},
		{"stored, then unavailable, resume", appendStoreThenFail, true, true},
		{"not stored, unavailable, resume", appendFail, false, true},
		{"stored, connection dropped before sent", appendStoreThenHold, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &flakyStore{Store: relaytest.NewMemoryStore(), held: make(chan struct{}, 1), release: make(chan struct{})}
			url := relaytest.NewServer(t, store, relay.Config{FramesPerSecond: 1000, FrameBurst: 1000}).URL
			ctx := testContext(t)
			var cut relaytest.Cutter
			logs := &logRecorder{}
			a := dial(t, ctx, url, &client.Options{HTTPClient: cut.HTTPClient()})
			b := dial(t, ctx, url, &client.Options{Logger: slog.New(logs)})
			pair(t, ctx, a, b, dh.X25519())
			send(t, ctx, a, "before")
			if m := receive(t, ctx, b); string(m.Plaintext) != "before" {
				t.Fatalf("b received %q", m.Plaintext)
			}

			store.mode.Store(tt.mode)
			errc := make(chan error, 1)
			go func() {
				_, err := a.Send(ctx, []byte("once"))
				errc <- err
			}()
			if tt.mode == appendStoreThenHold {
				<-store.held
				cut.Cut()
			}
			err := <-errc
			close(store.release)
			dropped := tt.mode == appendStoreThenHold
			if !errors.Is(err, client.ErrUnconfirmed) || errors.Is(err, client.ErrDisconnected) != dropped {
				t.Fatalf("Send = %v, want ErrUnconfirmed, and ErrDisconnected: %v", err, dropped)
			}
			var re *client.Error
			if errors.As(err, &re) {
				t.Errorf("Send = %v: an *Error means not stored, never sent again", err)
			}
			t.Logf("Send: %v", err)
			if dropped {
				waitDisconnected(t, ctx, a)
			}
			if tt.resume {
				resume(t, ctx, a)
			}
			send(t, ctx, a, "after")
			for _, want := range []string{"once", "after"} {
				if m := receive(t, ctx, b); string(m.Plaintext) != want {
					t.Fatalf("b received %q, want %q", m.Plaintext, want)
				}
			}
			want := 0
			if tt.stored {
				want = 1
			}
			if n := logs.count("duplicate message body dropped"); n != want {
				t.Errorf("b dropped %d copies, want %d", n, want)
			}
		})
	}
}
