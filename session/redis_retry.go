package session

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// maxQueuedDisconnects bounds disconnectRetries: at most one entry per
// member, so 4096 members, about 100 bytes each.
const maxQueuedDisconnects = 4096

// disconnectRetries is the queue of the disconnects that Redis did not
// accept (down, or full under noeviction), which the sweeper retries until
// they land or their room or member is gone. Without it a member whose
// connection ended meanwhile would stay "connected" in Redis, holding its
// seat, until it resumed or the room expired.
type disconnectRetries struct {
	log *slog.Logger // static after construction

	mu sync.Mutex
	q  map[memberRef]queuedDisconnect // guarded by mu; at most maxQueuedDisconnects
}

// memberRef names a member of a room.
type memberRef struct{ room, id string }

// queuedDisconnect is a disconnect waiting to be retried.
type queuedDisconnect struct {
	gen uint64    // the generation of the connection that ended
	at  time.Time // when it ended (monotonic), which the retry reports
}

func newDisconnectRetries(log *slog.Logger) *disconnectRetries {
	return &disconnectRetries{log: log, q: make(map[memberRef]queuedDisconnect)}
}

// add queues the disconnect of member id's connection of generation gen,
// which ended now. A queued disconnect of an older generation is replaced
// (it would change nothing once the newer one exists). When the queue is
// full, the disconnect is logged and dropped.
func (d *disconnectRetries) add(room, id string, gen uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := memberRef{room, id}
	if old, ok := d.q[k]; ok {
		if old.gen < gen {
			d.q[k] = queuedDisconnect{gen: gen, at: time.Now()}
		}
		return
	}
	if len(d.q) >= maxQueuedDisconnects {
		d.log.Error("disconnect retry queue full: the member stays connected in Redis until it resumes, leaves or its room expires",
			"max", maxQueuedDisconnects)
		return
	}
	d.q[k] = queuedDisconnect{gen: gen, at: time.Now()}
}

// len returns the number of queued disconnects.
func (d *disconnectRetries) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.q)
}

// retry tries every queued disconnect once, with do, within ctx, and
// removes those that landed or can never land (room or member gone); it
// stops at the first one Redis still refuses, to try again at the next
// sweep.
func (d *disconnectRetries) retry(ctx context.Context, do func(ctx context.Context, m memberRef, q queuedDisconnect) error) {
	d.mu.Lock()
	todo := make(map[memberRef]queuedDisconnect, len(d.q))
	for k, v := range d.q {
		todo[k] = v
	}
	d.mu.Unlock()
	for k, v := range todo {
		err := do(ctx, k, v)
		if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) {
			return
		}
		if err != nil && !errors.Is(err, ErrRoomNotFound) && !errors.Is(err, ErrNotMember) && !errors.Is(err, ErrSuperseded) && !errors.Is(err, ErrMessagesLost) {
			d.log.Error("disconnect retry failed; dropped", "err", err)
		}
		d.mu.Lock()
		if d.q[k] == v { // not replaced meanwhile by a newer generation's
			delete(d.q, k)
		}
		d.mu.Unlock()
	}
}

// retryDisconnects is the sweeper's retry of the queued disconnects.
func (s *RedisStore) retryDisconnects() {
	if s.retries.len() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(s.bg, max(s.sweepEvery, time.Second))
	defer cancel()
	s.retries.retry(ctx, func(ctx context.Context, m memberRef, q queuedDisconnect) error {
		err := s.disconnect(ctx, m.room, m.id, q.gen, time.Since(q.at), true)
		if err == nil {
			s.log.Info("disconnect recorded on retry", "after", time.Since(q.at).Round(time.Millisecond))
		}
		return err
	})
}
