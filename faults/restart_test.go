package faults

import (
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/session/redistest"
)

// TestRelayRestarted: the only relay, on Redis, is stopped with SIGTERM
// while A and B talk through it, and started again on the same port.
// docs/protocol.md §4: the clients get close 1001 (going away: reconnect
// and resume); they resume once it is back, and the conversation goes on
// with every confirmed message delivered exactly once, in order. The relay
// exits with status 0.
func TestRelayRestarted(t *testing.T) {
	rs := redistest.StartServer(t)
	r := startRelay(t, "relay", rs.URL(), fastFlags...)
	ctx := testContext(t, 60*time.Second)
	a, b := newPair(t, ctx, r.addr, r.addr)
	cv := talk(ctx, a, b)
	cv.warmUp(t, phase(t, ctx, 10*time.Second), 20, "before the restart")

	if err := r.terminate(); err != nil {
		t.Errorf("relay exit after SIGTERM: %v, want status 0", err)
	}
	for _, tk := range []*talker{a, b} {
		if !tk.waitFor(phase(t, ctx, 10*time.Second), func() bool { return len(tk.closes) > 0 }) {
			t.Fatalf("%s did not see its connection end", tk.name)
		}
		tk.mu.Lock()
		code := tk.closes[0]
		tk.mu.Unlock()
		if code != int(websocket.StatusGoingAway) {
			t.Errorf("%s's connection ended with close code %d, want 1001", tk.name, code)
		}
	}
	r.restart()
	for _, tk := range []*talker{a, b} {
		if err := tk.waitResume(phase(t, ctx, 15*time.Second)); err != nil {
			t.Fatalf("%s: resume after the restart: %v", tk.name, err)
		}
	}
	cv.warmUp(t, phase(t, ctx, 10*time.Second), 20, "after the restart")
	cv.finish(phase(t, ctx, 10*time.Second))
	ab, ba := checkDelivery(t, a, b, lossNone), checkDelivery(t, b, a, lossNone)
	t.Logf("A→B: %v", ab)
	t.Logf("B→A: %v", ba)
}
