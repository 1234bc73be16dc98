package keyapi

import (
	"context"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/realip"
)

// The cost model. A MODP exponentiation (filippo.io/bigmod, fixed 4-bit
// windows over every exponent byte) costs time linear in the exponent's
// length; the cost per exponent bit depends on the modulus, and not
// smoothly: bigmod has assembly for moduli up to 2048 bits, so modp5 and
// modp14 are an order of magnitude cheaper than modp15. nsPerExpBit holds
// what BenchmarkCost (cost_test.go) measured on the reference machine
// (2-core x86-64, Go 1.26, one core per request), rounded up:
//
//	group   ns/bit   generated exponent        full-length exponent (q)
//	modp5      900    256 bits   0.23 ms        1536 bits    1.4 ms
//	modp14    1400    256 bits   0.36 ms        2048 bits    2.9 ms
//	modp15   13000    256 bits   3.3 ms         3072 bits   40 ms
//	modp16   20000    304 bits   6.1 ms         4096 bits   82 ms
//	modp17   44000    352 bits  15 ms           6144 bits  270 ms
//	modp18   80000    400 bits  32 ms           8192 bits  655 ms
//
// A shared key costs two exponentiations (parsing the private key derives
// its public key, then the shared secret), a key pair one: the heaviest
// request, a modp18 shared key with a full-length exponent, about 1.3 s.
// The elliptic curves cost well under a millisecond; every request is
// charged at least minCost, which also covers the HTTP work around it.
const minCost = time.Millisecond

// nsPerExpBit is the measured cost of one exponent bit in MODP group g.
func nsPerExpBit(g *dh.Group) float64 {
	switch g.ID() {
	case 5:
		return 900
	case 14:
		return 1400
	case 15:
		return 13000
	case 16:
		return 20000
	case 17:
		return 44000
	}
	return 80000 // modp18, and any larger group dh might add
}

// expCost is the model's estimate of one exponentiation with an exponent of
// expBits bits in MODP group g.
func expCost(g *dh.Group, expBits int) time.Duration {
	return time.Duration(float64(expBits) * nsPerExpBit(g))
}

// generatedExpBits is the length of the exponents dh generates for MODP
// group g: twice the group's security strength, at least 256 bits (see the
// dh package documentation).
func generatedExpBits(g *dh.Group) int {
	return max(256, 2*g.SecurityStrength())
}

// privateExpBits is the exponent length a MODP private key given as hex s
// is computed with: dh keeps an exponent that fits in the generated length
// at that length, and a longer one at the length of q (the group's size).
// Malformed text is estimated as well; it fails to parse, cheaply, later.
func privateExpBits(g *dh.Group, s string) int {
	s = strings.TrimLeft(s, "0")
	bits := 4 * len(s)
	if len(s) > 0 {
		switch c := s[0]; {
		case c == '1':
			bits -= 3
		case c <= '3' && c >= '2':
			bits -= 2
		case c <= '7' && c >= '4':
			bits--
		}
	}
	if gen := generatedExpBits(g); bits <= gen {
		return gen
	}
	return g.Size() * 8
}

// generateCost estimates GET /generate-keys in group g.
func generateCost(g *dh.Group) time.Duration {
	if g.ID() == 0 {
		return minCost
	}
	return max(minCost, expCost(g, generatedExpBits(g)))
}

// sharedCost estimates /generate-shared-key in group g with the private key
// given as hex priv.
func sharedCost(g *dh.Group, priv string) time.Duration {
	if g.ID() == 0 {
		return minCost
	}
	return max(minCost, 2*expCost(g, privateExpBits(g, priv)))
}

// maxCost is the most a request can cost: a shared key in the largest
// group with a full-length exponent (about 1.3 s).
var maxCost = sharedCost(dh.MODP18(), "f"+strings.Repeat("0", 2*dh.MODP18().Size()-1))

// rateLimiter is a token bucket per client, in estimated CPU time: a client
// may spend burst at once, then rate per second. A client refused for a
// cost is refused again, by early, before its next request is even read,
// until it could afford that cost: a client that ignores Retry-After and
// repeats an expensive request costs the server little more than its
// headers. Clients whose bucket has refilled are forgotten (a new bucket is
// full), so the table holds only clients seen within burst/rate; a sweep
// runs whenever it doubles.
type rateLimiter struct {
	// Static after construction.
	rate  float64 // tokens (ns of CPU) per second
	burst float64 // tokens
	now   func() time.Time

	mu        sync.Mutex // guards the following
	buckets   map[string]*bucket
	sweepNext int // sweep when len(buckets) reaches it
}

type bucket struct {
	tokens float64
	last   time.Time
	want   float64 // the cost it was last refused for; 0 after an admission
}

func newRateLimiter(rate, burst time.Duration) *rateLimiter {
	return &rateLimiter{
		rate:      float64(rate),
		burst:     float64(burst),
		now:       time.Now,
		buckets:   make(map[string]*bucket),
		sweepNext: 1024,
	}
}

// take charges cost to client. It returns 0 if the client may go ahead,
// else how long until it could afford cost (nothing is charged then). A
// cost above the burst is charged as the burst, so that any request is
// possible with a full bucket.
func (l *rateLimiter) take(client string, cost time.Duration) time.Duration {
	c := math.Min(float64(cost), l.burst)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[client]
	if b == nil {
		if len(l.buckets) >= l.sweepNext {
			l.sweepLocked(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[client] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < c {
		b.want = c
		return time.Duration((c - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens -= c
	b.want = 0
	return 0
}

// early returns how long client must still wait for the cost it was last
// refused for, or 0. It charges nothing and creates no bucket.
func (l *rateLimiter) early(client string) time.Duration {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[client]
	if b == nil || b.want == 0 {
		return 0
	}
	tokens := math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	if tokens >= b.want {
		return 0
	}
	return time.Duration((b.want - tokens) / l.rate * float64(time.Second))
}

// sweepLocked forgets clients whose bucket has refilled by now.
func (l *rateLimiter) sweepLocked(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	l.sweepNext = max(1024, 2*len(l.buckets))
}

// clientKey is the key a request is rate-limited under: the client IP from
// resolve (nil: the host part of RemoteAddr), with an IPv6 address cut to
// its /64, the smallest block a host is normally given.
func clientKey(r *http.Request, resolve func(*http.Request) string) string {
	ip := ""
	if resolve != nil {
		ip = resolve(r)
	}
	if ip == "" {
		ip = r.RemoteAddr
		if host, _, err := net.SplitHostPort(ip); err == nil {
			ip = host
		}
	}
	return realip.Source(ip)
}

// slots bounds the key operations computing at once, by count (n) and by
// estimated CPU time (work): a request takes one of the n slots and its
// cost of the work budget, so that the heaviest requests run alone and
// light ones side by side. Waiters are served in arrival order, each as
// soon as it fits: a heavy request at the head does not hold up the light
// ones behind it (it may wait until its deadline, then gets a 503).
type slots struct {
	// Static after construction.
	n, maxWaiting int
	work          time.Duration

	mu      sync.Mutex // guards the following
	running int
	used    time.Duration
	waiting []*waiter
}

type waiter struct {
	cost  time.Duration
	ready chan struct{} // closed when granted
}

func newSlots(n, maxWaiting int, work time.Duration) *slots {
	return &slots{n: n, maxWaiting: maxWaiting, work: work}
}

// acquire takes a slot and cost (at most the whole work budget) of the
// budget, waiting up to wait or until ctx ends. It returns the cost to
// give back to release, and false if the request could not be admitted: the
// wait ran out, ctx ended, or maxWaiting requests were already waiting.
func (s *slots) acquire(ctx context.Context, cost, wait time.Duration) (time.Duration, bool) {
	cost = min(cost, s.work)
	s.mu.Lock()
	if s.fitsLocked(cost) && len(s.waiting) == 0 {
		s.running++
		s.used += cost
		s.mu.Unlock()
		return cost, true
	}
	if len(s.waiting) >= s.maxWaiting {
		s.mu.Unlock()
		return 0, false
	}
	w := &waiter{cost: cost, ready: make(chan struct{})}
	s.waiting = append(s.waiting, w)
	s.grantLocked() // the newcomer may fit where the head does not
	s.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return cost, true
	case <-t.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-w.ready: // granted meanwhile: take it
		return cost, true
	default:
	}
	for i, x := range s.waiting {
		if x == w {
			s.waiting = append(s.waiting[:i], s.waiting[i+1:]...)
			break
		}
	}
	return 0, false
}

// release gives back a slot and cost.
func (s *slots) release(cost time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
	s.used -= cost
	s.grantLocked()
}

func (s *slots) fitsLocked(cost time.Duration) bool {
	return s.running < s.n && s.used+cost <= s.work
}

// grantLocked admits, in arrival order, every waiter that fits.
func (s *slots) grantLocked() {
	kept := s.waiting[:0]
	for _, w := range s.waiting {
		if s.fitsLocked(w.cost) {
			s.running++
			s.used += w.cost
			close(w.ready)
			continue
		}
		kept = append(kept, w)
	}
	clear(s.waiting[len(kept):])
	s.waiting = kept
}
