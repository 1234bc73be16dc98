package keyapi

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/dh"
)

// TestBusy fills the one slot and checks that a waiting request gets a 503
// with Retry-After when its wait runs out (or its context ends), not a
// hang, and is served once the slot is free.
func TestBusy(t *testing.T) {
	h, err := New(Config{MaxConcurrent: 1, SlotWait: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	taken, ok := h.slots.acquire(context.Background(), time.Millisecond, 0)
	if !ok {
		t.Fatal("could not take the free slot")
	}
	for name, ctx := range map[string]context.Context{"wait runs out": context.Background(), "context ends": canceled()} {
		req := httptest.NewRequest(http.MethodGet, "/generate-keys", nil).WithContext(ctx)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "Server busy") || rec.Header().Get("Retry-After") != "1" {
			t.Errorf("%s: got %d %q Retry-After %q, want 503 Server busy, Retry-After 1", name, rec.Code, rec.Body.String(), rec.Header().Get("Retry-After"))
		}
	}
	h.slots.release(taken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/generate-keys", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("after the slot is freed: %d %q", rec.Code, rec.Body.String())
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestSlotsWeighted checks the work budget: a heavy request runs beside
// light ones but not beside another heavy one, a heavy waiter does not hold
// up a light one behind it, and MaxWaiting bounds the queue.
func TestSlotsWeighted(t *testing.T) {
	s := newSlots(4, 2, 1500*time.Millisecond)
	ctx := context.Background()
	heavy, light := time.Second, time.Millisecond
	if _, ok := s.acquire(ctx, heavy, 0); !ok {
		t.Fatal("first heavy refused")
	}
	if _, ok := s.acquire(ctx, light, 0); !ok {
		t.Fatal("light beside a heavy refused")
	}
	// A second heavy waits; a light one behind it is admitted at once.
	got := make(chan bool)
	go func() { _, ok := s.acquire(ctx, heavy, time.Minute); got <- ok }()
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.waiting) == 1 })
	if _, ok := s.acquire(ctx, light, 10*time.Millisecond); !ok {
		t.Fatal("light behind a waiting heavy was held up")
	}
	// The queue holds 2: one more waits, the next is refused at once.
	go func() { s.acquire(ctx, heavy, 50*time.Millisecond) }()
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.waiting) == 2 })
	start := time.Now()
	if _, ok := s.acquire(ctx, heavy, time.Minute); ok || time.Since(start) > time.Second {
		t.Fatalf("third waiter: admitted %v after %v, want refused at once", ok, time.Since(start))
	}
	s.release(heavy)
	if ok := <-got; !ok {
		t.Error("the waiting heavy was not admitted when the first finished")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
	}
}

// TestCostModel checks the estimates against what dh does: generated
// exponents are as long as the model assumes, a longer exponent is charged
// at the length of q, and the heaviest request is about a second.
func TestCostModel(t *testing.T) {
	for _, g := range dh.Groups() {
		if g.ID() == 0 {
			if generateCost(g) != minCost || sharedCost(g, "01") != minCost {
				t.Errorf("%s: curves cost minCost", g)
			}
			continue
		}
		k, err := g.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := privateExpBits(g, k.Hex()), len(k.Bytes())*8; got != want {
			t.Errorf("%s: generated exponent estimated at %d bits, dh keeps %d", g, got, want)
		}
		full := "7" + strings.Repeat("f", 2*g.Size()-1) // q-ish, > generated length
		if got, want := privateExpBits(g, full), g.Size()*8; got != want {
			t.Errorf("%s: full-length exponent estimated at %d bits, want %d", g, got, want)
		}
		if got, want := privateExpBits(g, "0001"), generatedExpBits(g); got != want {
			t.Errorf("%s: short exponent estimated at %d bits, want %d", g, got, want)
		}
		if sharedCost(g, full) <= sharedCost(g, k.Hex()) {
			t.Errorf("%s: a full-length exponent does not cost more", g)
		}
	}
	// The defaults rest on these: MaxWork holds one heaviest request but
	// not two, BurstPerIP two.
	if maxCost < time.Second || maxCost > 1500*time.Millisecond {
		t.Errorf("maxCost = %v, want about 1.3 s", maxCost)
	}
	h, _ := New(Config{}, nil)
	if w := h.cfg.MaxWork; w < maxCost || w >= 2*maxCost {
		t.Errorf("default MaxWork %v does not hold exactly one request of %v", w, maxCost)
	}
	if b := h.cfg.BurstPerIP; b < 2*maxCost {
		t.Errorf("default BurstPerIP %v holds fewer than two requests of %v", b, maxCost)
	}
}
