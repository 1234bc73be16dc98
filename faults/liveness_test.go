package faults

import (
	"slices"
	"testing"
	"time"
)

// testLease is the relays' --instance-lease in the liveness tests.
const testLease = 3 * time.Second

// TestInstanceKilledPeersTold (issue 14, finding 1): relay 1 holds one
// peer of each of three rooms, mid-conversation, and dies (SIGKILL). Each
// peer on relay 2 is told peer_left "dropped" within the lease and a sweep,
// though relay 1 could tell no one; then the killed peers' clients fail
// over to relay 2 and resume; every message confirmed with sent arrives
// exactly once, in order.
func TestInstanceKilledPeersTold(t *testing.T) {
	flags := append([]string{"--instance-lease", testLease.String()}, fastFlags...)
	_, r1, r2 := twoRelays(t, flags...)
	ctx := testContext(t, 60*time.Second)
	type room struct {
		a, b *talker
		cv   *conversation
	}
	var rooms []room
	for range 3 {
		a, b := newPair(t, ctx, r1.addr, r2.addr)
		rooms = append(rooms, room{a: a, b: b, cv: talk(ctx, a, b)})
	}
	for _, r := range rooms {
		r.cv.warmUp(t, phase(t, ctx, 10*time.Second), 10, "before the kill")
	}
	killed := time.Now()
	r1.kill()
	// The load balancer has not noticed yet: the A peers keep trying the
	// dead relay, so what tells the B peers is the lease, not a resume.
	bound := testLease + 2*time.Second // the lease, a sweep, and slack for a loaded machine
	for i, r := range rooms {
		if !r.b.waitFor(phase(t, ctx, bound+5*time.Second), func() bool { return slices.Contains(r.b.events, "peer_left dropped") }) {
			t.Fatalf("room %d: B never got peer_left dropped; events %q", i, r.b.events)
		}
	}
	told := time.Since(killed)
	t.Logf("every B was told within %v of the kill (lease %v)", told, testLease)
	if told > bound {
		t.Errorf("the B peers were told %v after the kill, want within the lease and a sweep (%v)", told, bound)
	}
	for _, r := range rooms {
		r.a.r.point(r2.addr) // the load balancer notices
	}
	for i, r := range rooms {
		if err := r.a.waitResume(phase(t, ctx, 15*time.Second)); err != nil {
			t.Fatalf("room %d: A: resume on relay 2: %v", i, err)
		}
	}
	for _, r := range rooms {
		r.cv.warmUp(t, phase(t, ctx, 10*time.Second), 10, "after the resume")
		r.cv.finish(phase(t, ctx, 10*time.Second))
		checkDelivery(t, r.a, r.b, lossNone)
		checkDelivery(t, r.b, r.a, lossNone)
		if !slices.Contains(r.b.events, "peer_joined resumed=true") {
			t.Errorf("B's events %q lack peer_joined resumed=true", r.b.events)
		}
		if len(r.b.closes) != 0 {
			t.Errorf("B dropped (close codes %v), though its relay lived", r.b.closes)
		}
	}
}
