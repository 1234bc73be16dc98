package client

import "sync"

// maxOtherEvents bounds the events other than messages (peer joined or
// left, peer key, stray errors) waiting for Next, besides the messages.
const maxOtherEvents = 64

// item is an entry of the events queue.
type item struct {
	room *roomState // nil for errors, which are never stale
	peer *peerState // for messages: the key exchange they belong to
	ev   Event      // Message.Plaintext empty: body holds the ciphertext
	body string     // msg: the base64 body
	err  error      // an error frame that answers no request
}

// queue is the bounded FIFO between the reader goroutine and Next.
// Messages and other events have separate bounds, so that the few events
// of a key exchange never wait behind a full queue of messages (nor
// messages behind events): an application that calls Handshake before it
// starts reading events cannot deadlock the exchange.
type queue struct {
	maxMsgs int // static

	mu     sync.Mutex // guards the following
	items  []item
	msgs   int           // messages in items
	others int           // other events in items
	ready  chan struct{} // closed and replaced when an item is added
	space  chan struct{} // closed and replaced when an item is removed
}

func newQueue(maxMsgs int) *queue {
	return &queue{maxMsgs: maxMsgs, ready: make(chan struct{}), space: make(chan struct{})}
}

// push appends it, waiting while its kind's bound is reached. It returns
// false, without appending, if stop is closed first.
func (q *queue) push(it item, stop <-chan struct{}) bool {
	isMsg := it.ev.Type == EventMessage && it.err == nil
	for {
		q.mu.Lock()
		if isMsg && q.msgs < q.maxMsgs || !isMsg && q.others < maxOtherEvents {
			q.items = append(q.items, it)
			if isMsg {
				q.msgs++
			} else {
				q.others++
			}
			close(q.ready)
			q.ready = make(chan struct{})
			q.mu.Unlock()
			return true
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-stop:
			return false
		}
	}
}

// pop removes and returns the first item. With the queue empty it returns
// ok false and a channel closed when an item arrives.
func (q *queue) pop() (it item, ok bool, ready <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return item{}, false, q.ready
	}
	it = q.items[0]
	q.items[0] = item{} // let the body be collected
	q.items = q.items[1:]
	if it.ev.Type == EventMessage && it.err == nil {
		q.msgs--
	} else {
		q.others--
	}
	close(q.space)
	q.space = make(chan struct{})
	return it, true, nil
}

// len returns the number of queued items.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
