package faults

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/wire"
)

// TestRedisFailure: Redis fails under a conversation between A on relay 1
// and B on relay 2, then comes back. docs/protocol.md §3 ("Many
// instances") says what must happen, and the test checks it:
//
//   - connections in a room get error unavailable, then close 1013;
//   - /readyz answers 503, and requests that need Redis get unavailable;
//   - when Redis is back, the relays serve again without a restart: /readyz
//     answers 200 and a new pair completes its handshake across instances;
//   - a Redis that keeps its data keeps the rooms: the clients resume and
//     every confirmed message arrives exactly once, in order;
//   - one that does not (this redis-server keeps nothing on disk) loses
//     them: resume gets room_not_found. The messages confirmed but not yet
//     delivered are lost with the room; the test counts them, and checks
//     that everything delivered before came once, in order, with no hole.
func TestRedisFailure(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fail     func(t *testing.T, rs *redistest.Server)
		recover  func(rs *redistest.Server)
		dataKept bool
	}{
		{name: "killed", fail: killRedis, recover: (*redistest.Server).Restart},
		{name: "stopped", fail: func(_ *testing.T, rs *redistest.Server) { rs.Stop() }, recover: (*redistest.Server).Restart},
		// A hung Redis that keeps its data: the relay notices through its
		// store's health checks (a few seconds).
		{name: "paused", fail: func(_ *testing.T, rs *redistest.Server) { rs.Pause() }, recover: (*redistest.Server).Resume, dataKept: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, r1, r2 := twoRelays(t, fastFlags...)
			ctx := testContext(t, 60*time.Second)
			a, b := newPair(t, ctx, r1.addr, r2.addr)
			cv := talk(ctx, a, b)
			cv.warmUp(t, phase(t, ctx, 10*time.Second), 20, "before the failure")

			tc.fail(t, rs)
			for _, tk := range []*talker{a, b} {
				if !tk.waitFor(phase(t, ctx, 15*time.Second), func() bool { return len(tk.closes) > 0 }) {
					t.Fatalf("%s's connection did not end after Redis failed", tk.name)
				}
			}
			for _, r := range []*relayProc{r1, r2} {
				r.waitReadyz(phase(t, ctx, 10*time.Second), http.StatusServiceUnavailable)
			}
			if !tc.dataKept {
				// A paused Redis would make this wait for the store timeout.
				c := newTalker(t, ctx, "C", r1.addr)
				_, err := c.c.Create(phase(t, ctx, 10*time.Second), dh.X25519())
				if re := (*client.Error)(nil); !errors.As(err, &re) || re.Code != wire.CodeUnavailable {
					t.Errorf("create with Redis down: %v, want error unavailable", err)
				}
			}

			tc.recover(rs)
			for _, r := range []*relayProc{r1, r2} {
				r.waitReadyz(phase(t, ctx, 15*time.Second), http.StatusOK)
			}
			for _, tk := range []*talker{a, b} {
				if !tk.waitFor(phase(t, ctx, 15*time.Second), func() bool { return tk.resumes > 0 || tk.resumeErr != nil }) {
					t.Fatalf("%s neither resumed nor failed to", tk.name)
				}
				tk.mu.Lock()
				events, closes, rerr := slices.Clone(tk.events), slices.Clone(tk.closes), tk.resumeErr
				tk.mu.Unlock()
				if !slices.Contains(events, "error "+string(wire.CodeUnavailable)) {
					t.Errorf("%s's events %q lack error unavailable", tk.name, events)
				}
				if closes[0] != int(websocket.StatusTryAgainLater) {
					t.Errorf("%s's first drop: close code %d, want 1013", tk.name, closes[0])
				}
				var re *client.Error
				switch {
				case tc.dataKept && rerr != nil:
					t.Errorf("%s: resume after Redis kept its data: %v", tk.name, rerr)
				case !tc.dataKept && (!errors.As(rerr, &re) || re.Code != wire.CodeRoomNotFound):
					t.Errorf("%s: resume after Redis lost its data: %v, want room_not_found", tk.name, rerr)
				}
			}
			if tc.dataKept {
				cv.warmUp(t, phase(t, ctx, 10*time.Second), 20, "after Redis came back")
			}
			cv.finish(phase(t, ctx, 10*time.Second))
			accepted := lossRoom
			if tc.dataKept {
				accepted = lossNone
			}
			ab, ba := checkDelivery(t, a, b, accepted), checkDelivery(t, b, a, accepted)
			t.Logf("A→B: %v", ab)
			t.Logf("B→A: %v", ba)

			// The relays serve again: a new pair, across instances.
			p, q := newPair(t, phase(t, ctx, 10*time.Second), r1.addr, r2.addr)
			exchange(t, ctx, p, q)
		})
	}
}
