package relay_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/wire"
)

// frameTimeout bounds every wait for a frame; tests never assert on speed,
// it only keeps a broken relay from hanging the suite.
const frameTimeout = 10 * time.Second

// testRelay is a relay started by relaytest, with the raw-protocol
// helpers of this file.
type testRelay struct {
	*relaytest.Server
}

// storeEnv chooses the store the relay suite runs on: "memory" (unset),
// "redis", or "url" for the Redis that redisURLEnv locates (a Cluster or a
// Sentinel set the parent test started). TestSuiteOnRedis,
// TestSuiteOnRedisCluster and TestSuiteOnSentinel run the whole suite
// again with it set.
const storeEnv = "KEYRELAY_TEST_STORE"

// redisURLEnv is the Redis URL of the "url" store.
const redisURLEnv = "KEYRELAY_TEST_REDIS_URL"

// newStore returns a fresh store of the kind storeEnv names: a memory store,
// a Redis store on a redis-server started for this test, or one under a
// prefix of the test's own on the Redis at redisURLEnv.
func newStore(t testing.TB) session.Store {
	t.Helper()
	switch os.Getenv(storeEnv) {
	case "redis":
		return relaytest.NewRedisStore(t, redistest.Start(t), "")
	case "url":
		return relaytest.NewRedisStoreURL(t, os.Getenv(redisURLEnv), "")
	}
	return relaytest.NewMemoryStore()
}

func newRelay(t testing.TB, cfg relay.Config) *testRelay {
	t.Helper()
	return newRelayOn(t, newStore(t), cfg)
}

// newRelayOn starts a relay on store, which it closes at the end of the
// test.
func newRelayOn(t testing.TB, store session.Store, cfg relay.Config) *testRelay {
	t.Helper()
	return &testRelay{relaytest.NewServer(t, store, cfg)}
}

// peer is a raw protocol client: tests speak frames to the relay directly.
type peer struct {
	t      *testing.T
	ws     *websocket.Conn
	frames chan []byte   // filled by the reader goroutine
	err    chan error    // the read error that ended it
	paused atomic.Bool   // set by stopReading: the reader waits on resume before its next read
	resume chan struct{} // closed by resumeReading
}

// stopReading makes the peer stop reading from its socket (after at most
// one more frame), as a slow or stuck client would.
func (p *peer) stopReading() { p.paused.Store(true) }

// resumeReading undoes stopReading.
func (p *peer) resumeReading() { p.paused.Store(false); close(p.resume) }

// newPeer starts a reader goroutine: a websocket Read whose context ends
// closes the connection, so waits with a timeout must not cancel Reads.
func newPeer(t *testing.T, ws *websocket.Conn) *peer {
	p := &peer{t: t, ws: ws, frames: make(chan []byte, 256), err: make(chan error, 1), resume: make(chan struct{})}
	go func() {
		for {
			if p.paused.Load() {
				<-p.resume
			}
			typ, b, err := ws.Read(context.Background())
			if err != nil {
				p.err <- err
				close(p.frames)
				return
			}
			if typ != websocket.MessageText {
				b = []byte("binary")
			}
			p.frames <- b
		}
	}()
	return p
}

func (tr *testRelay) dial(t *testing.T) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, tr.URL, &websocket.DialOptions{Subprotocols: []string{wire.Subprotocol}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return newPeer(t, ws)
}

// frame is a decoded relay frame.
type frame map[string]any

func (f frame) str(k string) string { s, _ := f[k].(string); return s }
func (f frame) num(k string) uint64 { n, _ := f[k].(float64); return uint64(n) }

func (p *peer) sendRaw(typ websocket.MessageType, b []byte) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
	defer cancel()
	if err := p.ws.Write(ctx, typ, b); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

func (p *peer) send(v map[string]any) {
	p.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		p.t.Fatal(err)
	}
	p.sendRaw(websocket.MessageText, b)
}

// read returns the next frame, failing the test on error or timeout.
func (p *peer) read() frame {
	p.t.Helper()
	f, err := p.tryRead(frameTimeout)
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	return f
}

// errTimeout is tryRead's error when nothing arrived in time.
var errTimeout = errors.New("no frame in time")

func (p *peer) tryRead(d time.Duration) (frame, error) {
	var b []byte
	select {
	case fb, ok := <-p.frames:
		if !ok {
			err := <-p.err
			p.err <- err // keep it for later calls
			return nil, err
		}
		b = fb
	case <-time.After(d):
		return nil, errTimeout
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		p.t.Fatalf("relay sent invalid JSON %q: %v", b, err)
	}
	return f, nil
}

// expect reads the next frame and checks its type.
func (p *peer) expect(typ wire.FrameType) frame {
	p.t.Helper()
	f := p.read()
	if wire.FrameType(f.str("type")) != typ {
		p.t.Fatalf("got frame %v, want type %q", f, typ)
	}
	return f
}

// expectError reads the next frame and checks it is an error with code.
func (p *peer) expectError(code wire.Code) frame {
	p.t.Helper()
	f := p.expect(wire.TypeError)
	if wire.Code(f.str("code")) != code || f.str("message") == "" {
		p.t.Fatalf("got error %v, want code %q with a message", f, code)
	}
	return f
}

// expectClose reads until the connection closes and checks the close code.
func (p *peer) expectClose(code websocket.StatusCode) {
	p.t.Helper()
	for {
		_, err := p.tryRead(frameTimeout)
		if err != nil {
			if got := websocket.CloseStatus(err); got != code {
				p.t.Fatalf("connection ended with %v (status %d), want close code %d", err, got, code)
			}
			return
		}
	}
}

// expectQuiet checks that nothing arrives within d: the peer saw nothing.
func (p *peer) expectQuiet(d time.Duration) {
	p.t.Helper()
	if f, err := p.tryRead(d); err != errTimeout {
		p.t.Fatalf("unexpected frame %v (%v)", f, err)
	}
}

func newKey(t *testing.T, g *dh.Group) *dh.PrivateKey {
	t.Helper()
	k, err := g.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// pair is two peers in one room, handshake done, with their channels.
type pair struct {
	room       string
	a, b       *peer
	aKey, bKey *dh.PrivateKey
	aTok, bTok string
	aID, bID   string
	aCh, bCh   *dh.Channel
}

// handshake creates a room for group, joins it, exchanges keys and checks
// every frame of the flow in protocol.md §2.3.
func handshake(t *testing.T, tr *testRelay, g *dh.Group) *pair {
	t.Helper()
	return handshakeOn(t, tr.dial(t), tr.dial(t), g)
}

// handshakeOn is handshake on connections a and b.
func handshakeOn(t *testing.T, a, b *peer, g *dh.Group) *pair {
	t.Helper()
	p := &pair{a: a, b: b, aKey: newKey(t, g), bKey: newKey(t, g)}
	p.a.send(map[string]any{"type": "create", "group": g.Name(), "id": 1})
	room := p.a.expect(wire.TypeRoom)
	if room["id"] != float64(1) || room.str("group") != g.Name() || room.num("peers") != 1 || room["resumed"] != false {
		t.Fatalf("room frame %v", room)
	}
	p.room, p.aID, p.aTok = room.str("room"), room.str("peer"), room.str("resume_token")
	p.a.send(map[string]any{"type": "key", "public_key": p.aKey.PublicKey().Hex(), "group": p.aKey.PublicKey().Group().Name(), "id": "k"})
	if f := p.a.expect(wire.TypeKeyOK); f.str("group") != g.Name() || f["id"] != "k" {
		t.Fatalf("key_ok %v", f)
	}
	p.b.send(map[string]any{"type": "join", "room": p.room})
	joined := p.b.expect(wire.TypeRoom)
	if joined.str("room") != p.room || joined.num("peers") != 2 || joined.str("peer") == p.aID {
		t.Fatalf("join reply %v", joined)
	}
	p.bID, p.bTok = joined.str("peer"), joined.str("resume_token")
	if f := p.b.expect(wire.TypePeerKey); f.str("public_key") != p.aKey.PublicKey().Hex() || f.str("group") != g.Name() {
		t.Fatalf("B got %v, want A's key", f)
	}
	if f := p.a.expect(wire.TypePeerJoined); f["resumed"] != false {
		t.Fatalf("peer_joined %v", f)
	}
	p.b.send(map[string]any{"type": "key", "public_key": p.bKey.PublicKey().Hex(), "group": p.bKey.PublicKey().Group().Name()})
	p.b.expect(wire.TypeKeyOK)
	if f := p.a.expect(wire.TypePeerKey); f.str("public_key") != p.bKey.PublicKey().Hex() {
		t.Fatalf("A got %v, want B's key", f)
	}
	p.a.expect(wire.TypeHandshakeComplete)
	p.b.expect(wire.TypeHandshakeComplete)
	p.aCh = channel(t, p.aKey, p.bKey.PublicKey())
	p.bCh = channel(t, p.bKey, p.aKey.PublicKey())
	return p
}

func channel(t *testing.T, self *dh.PrivateKey, peer *dh.PublicKey) *dh.Channel {
	t.Helper()
	z, err := self.SharedSecret(peer)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := dh.NewChannel(z, self.PublicKey(), peer)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// metricValue returns the sum over labels of the metric family name in the
// test relay's registry; a family with no samples yet counts 0.
func metricValue(t *testing.T, tr *testRelay, name string) float64 {
	t.Helper()
	mfs, err := tr.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}
