package relay

import "time"

// bucket is a token bucket: rate tokens per second, at most burst. It is
// owned by one connection's reader and needs no lock.
type bucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int) bucket {
	return bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

// allow takes a token if there is one.
func (b *bucket) allow(now time.Time) bool {
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// take spends n tokens, going into debt if there are fewer.
func (b *bucket) take(now time.Time, n float64) {
	b.refill(now)
	b.tokens -= n
}

// debt returns how long until the bucket is out of debt (0 if it is not
// in debt).
func (b *bucket) debt(now time.Time) time.Duration {
	b.refill(now)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// maxWait caps wait: however slow the rate, a client over its budget is
// read again within a second (and told it is over, or not answered).
const maxWait = time.Second

// wait returns how long until the bucket holds a whole token (0 if it
// does), at most maxWait.
func (b *bucket) wait(now time.Time) time.Duration {
	b.refill(now)
	if b.tokens >= 1 {
		return 0
	}
	return min(time.Duration((1-b.tokens)/b.rate*float64(time.Second)), maxWait)
}

// refill adds the tokens earned since the last call.
func (b *bucket) refill(now time.Time) {
	b.tokens += now.Sub(b.last).Seconds() * b.rate
	if b.tokens > b.burst {
		b.tokens = b.burst
	}
	b.last = now
}
