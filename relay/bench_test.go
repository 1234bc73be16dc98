package relay_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
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

// The relay's benchmarks over real loopback WebSocket connections, each in
// two set-ups measured in the same run: "memory", one instance on the
// memory store; "redis-2-instances", two instances sharing one real
// redis-server, with the two peers of every room on different instances.
//
//	go test ./relay -run '^$' -bench . -benchtime 3s

// benchPeer is a minimal synchronous client for benchmarks.
type benchPeer struct {
	b  *testing.B
	ws *websocket.Conn
}

func benchDial(b *testing.B, url string) *benchPeer {
	ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{wire.Subprotocol}})
	if err != nil {
		b.Fatal(err)
	}
	return &benchPeer{b: b, ws: ws}
}

func (p *benchPeer) send(frame string) {
	if err := p.ws.Write(context.Background(), websocket.MessageText, []byte(frame)); err != nil {
		p.b.Fatal(err)
	}
}

// until reads frames until one of type typ arrives and returns it.
func (p *benchPeer) until(typ wire.FrameType) map[string]any {
	for {
		_, data, err := p.ws.Read(context.Background())
		if err != nil {
			p.b.Fatal(err)
		}
		var f map[string]any
		if err := json.Unmarshal(data, &f); err != nil {
			p.b.Fatal(err)
		}
		if f["type"] == string(wire.TypeError) {
			p.b.Fatalf("error frame %v", f)
		}
		if f["type"] == typ {
			return f
		}
	}
}

var benchConfig = relay.Config{Limiter: relaytest.NoLimits(), FramesPerSecond: 1e9, FrameBurst: 1 << 30, BytesPerSecond: 1e12, ByteBurst: 1 << 40}

// setups returns, for each set-up, the URLs peer A and peer B dial.
var setups = []struct {
	name  string
	start func(b *testing.B) (urlA, urlB string)
}{
	{"memory", func(b *testing.B) (string, string) {
		tr := newRelayOn(b, session.NewMemoryStore(session.MemoryConfig{}), benchConfig)
		return tr.URL, tr.URL
	}},
	{"redis-2-instances", func(b *testing.B) (string, string) {
		addr := redistest.Start(b)
		r1 := newRelayOn(b, relaytest.NewRedisStore(b, addr, "bench:"), benchConfig)
		r2 := newRelayOn(b, relaytest.NewRedisStore(b, addr, "bench:"), benchConfig)
		return r1.URL, r2.URL
	}},
}

// BenchmarkHandshake measures complete handshakes: two new connections,
// create and join, each peer generates an x25519 key and sends it, the relay
// validates and forwards both, both get handshake_complete. Reported as
// handshakes/s (serial: one handshake at a time).
func BenchmarkHandshake(b *testing.B) {
	for _, s := range setups {
		b.Run(s.name, func(b *testing.B) {
			urlA, urlB := s.start(b)
			start := time.Now()
			for b.Loop() {
				benchHandshake(b, urlA, urlB)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
		})
	}
}

// BenchmarkHandshakeParallel runs handshakes from 8 goroutines per core at
// once: the relay's handshake throughput rather than one handshake's
// latency.
func BenchmarkHandshakeParallel(b *testing.B) {
	for _, s := range setups {
		b.Run(s.name, func(b *testing.B) {
			urlA, urlB := s.start(b)
			b.SetParallelism(8)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					benchHandshake(b, urlA, urlB)
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
		})
	}
}

func benchHandshake(b *testing.B, urlA, urlB string) {
	{
		a, c := benchDial(b, urlA), benchDial(b, urlB)
		a.send(`{"type":"create","group":"x25519"}`)
		room := a.until(wire.TypeRoom)["room"].(string)
		c.send(`{"type":"join","room":"` + room + `"}`)
		c.until(wire.TypeRoom)
		for _, p := range []*benchPeer{a, c} {
			k, err := dh.X25519().GenerateKey(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			p.send(`{"type":"key","public_key":"` + k.PublicKey().Hex() + `","group":"` + k.PublicKey().Group().Name() + `"}`)
		}
		a.until(wire.TypeHandshakeComplete)
		c.until(wire.TypeHandshakeComplete)
		a.ws.Close(websocket.StatusNormalClosure, "")
		c.ws.Close(websocket.StatusNormalClosure, "")
	}
}

// BenchmarkMessageRoundTrip measures one message's round trip between two
// peers in one room: A sends, B receives and answers, A receives. The body
// is 256 bytes of ciphertext-sized data.
func BenchmarkMessageRoundTrip(b *testing.B) {
	for _, s := range setups {
		b.Run(s.name, func(b *testing.B) {
			urlA, urlB := s.start(b)
			benchRoundTrip(b, urlA, urlB)
		})
	}
}

func benchRoundTrip(b *testing.B, urlA, urlB string) {
	a, c := benchDial(b, urlA), benchDial(b, urlB)
	a.send(`{"type":"create","group":"x25519"}`)
	room := a.until(wire.TypeRoom)["room"].(string)
	c.send(`{"type":"join","room":"` + room + `"}`)
	c.until(wire.TypeRoom)
	for _, p := range []*benchPeer{a, c} {
		k, _ := dh.X25519().GenerateKey(rand.Reader)
		p.send(`{"type":"key","public_key":"` + k.PublicKey().Hex() + `","group":"` + k.PublicKey().Group().Name() + `"}`)
	}
	a.until(wire.TypeHandshakeComplete)
	c.until(wire.TypeHandshakeComplete)
	body := make([]byte, 256)
	rand.Read(body)
	msg := `{"type":"msg","body":"` + b64(body) + `"}`
	for b.Loop() {
		a.send(msg)
		m := c.until(wire.TypeMsg)
		c.send(`{"type":"ack","seq":` + jsonNum(m["seq"]) + `}`)
		c.send(msg)
		m = a.until(wire.TypeMsg)
		a.send(`{"type":"ack","seq":` + jsonNum(m["seq"]) + `}`)
	}
}

func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
