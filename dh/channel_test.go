package dh_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/keyrelay/keyrelay/dh"
)

// messageVectors is testdata/message_vectors.json, written by
// testdata/message_vectors.js with Node.js's crypto.
type messageVectors struct {
	Group        string `json:"group"`
	AlicePublic  string `json:"alice_public"`
	BobPublic    string `json:"bob_public"`
	SharedSecret string `json:"shared_secret"`
	Key          string `json:"key"`
	AAD          string `json:"aad"`
	Messages     []struct {
		Sender     string `json:"sender"`
		Role       int    `json:"role"`
		Counter    uint64 `json:"counter"`
		Plaintext  string `json:"plaintext"`
		Nonce      string `json:"nonce"`
		Body       string `json:"body"`
		BodyBase64 string `json:"body_base64"`
	} `json:"messages"`
}

// vectorPeers holds the parsed keys of the message vectors.
type vectorPeers struct {
	v            messageVectors
	alice, bob   *dh.PublicKey
	sharedSecret []byte
}

func loadVectorPeers(tb testing.TB) vectorPeers {
	tb.Helper()
	raw, err := os.ReadFile("testdata/message_vectors.json")
	if err != nil {
		tb.Fatal(err)
	}
	var p vectorPeers
	if err := json.Unmarshal(raw, &p.v); err != nil {
		tb.Fatalf("message_vectors.json: %v", err)
	}
	g, err := dh.LookupGroup(p.v.Group)
	if err != nil {
		tb.Fatal(err)
	}
	if p.alice, err = g.ParsePublicKey(p.v.AlicePublic); err != nil {
		tb.Fatal(err)
	}
	if p.bob, err = g.ParsePublicKey(p.v.BobPublic); err != nil {
		tb.Fatal(err)
	}
	if p.sharedSecret, err = hex.DecodeString(p.v.SharedSecret); err != nil {
		tb.Fatal(err)
	}
	return p
}

// channels returns fresh Channels for the sender named from and for the
// other peer.
func (p vectorPeers) channels(tb testing.TB, from string) (sender, receiver *dh.Channel) {
	tb.Helper()
	self, peer := p.alice, p.bob
	if from == "bob" {
		self, peer = peer, self
	}
	s, err := dh.NewChannel(p.sharedSecret, self, peer)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := dh.NewChannel(p.sharedSecret, peer, self)
	if err != nil {
		tb.Fatal(err)
	}
	return s, r
}

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestMessageVectors opens every body Node.js sealed and seals every
// plaintext again at the same counter, which must give the same bytes.
func TestMessageVectors(t *testing.T) {
	p := loadVectorPeers(t)
	if p.v.AAD != "keyrelay/v1/msg" {
		t.Fatalf("aad = %q", p.v.AAD)
	}
	// K is internal to Channel; check the vectors were made with the K
	// that DeriveKey gives, so that a mismatch below points at the AEAD.
	k, err := dh.DeriveKey(p.sharedSecret, p.alice, p.bob)
	if err != nil || hex.EncodeToString(k) != p.v.Key {
		t.Fatalf("DeriveKey = %x, %v; want %s", k, err, p.v.Key)
	}
	if len(p.v.Messages) < 18 {
		t.Fatalf("only %d message vectors", len(p.v.Messages))
	}
	for _, m := range p.v.Messages {
		pt, body := mustHex(t, m.Plaintext), mustHex(t, m.Body)
		t.Run(fmt.Sprintf("%s/c=%d/len=%d", m.Sender, m.Counter, len(pt)), func(t *testing.T) {
			if got := base64.StdEncoding.EncodeToString(body); got != m.BodyBase64 {
				t.Fatalf("body_base64 = %s, want base64 of body %s", m.BodyBase64, got)
			}
			sender, receiver := p.channels(t, m.Sender)
			if sender.Role() != m.Role || receiver.Role() != 1-m.Role {
				t.Fatalf("roles = %d, %d; want %d, %d", sender.Role(), receiver.Role(), m.Role, 1-m.Role)
			}

			got, err := receiver.Open(body)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, pt) {
				t.Errorf("Open = %x, want %x", got, pt)
			}
			if s := receiver.State(); s.NextReceive != m.Counter+1 || s.NextSend != 0 {
				t.Errorf("receiver state = %+v, want NextReceive %d", s, m.Counter+1)
			}

			if err := sender.SetState(dh.ChannelState{NextSend: m.Counter}); err != nil {
				t.Fatal(err)
			}
			sealed, err := sender.Seal(pt)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if !bytes.Equal(sealed, body) {
				t.Errorf("Seal = %x\nwant   %x", sealed, body)
			}
			if s := sender.State(); s.NextSend != m.Counter+1 {
				t.Errorf("sender NextSend = %d, want %d", s.NextSend, m.Counter+1)
			}
		})
	}
}

// TestChannelRoundTrip exchanges messages both ways in a curve group and a
// MODP group, from fresh keys.
func TestChannelRoundTrip(t *testing.T) {
	for _, name := range []string{"x25519", "p256", "modp14"} {
		t.Run(name, func(t *testing.T) {
			a, b := newChannelPair(t, mustGroup(t, name))
			if a.Role()+b.Role() != 1 {
				t.Fatalf("roles %d and %d", a.Role(), b.Role())
			}
			for i, msg := range []string{"", "hello", strings.Repeat("é", 3000)} {
				for _, dir := range []struct {
					name     string
					from, to *dh.Channel
				}{{"a->b", a, b}, {"b->a", b, a}} {
					body, err := dir.from.Seal([]byte(msg))
					if err != nil {
						t.Fatal(err)
					}
					if len(body) != len(msg)+dh.MessageOverhead {
						t.Errorf("%s: len(body) = %d, want %d", dir.name, len(body), len(msg)+dh.MessageOverhead)
					}
					if c := binary.BigEndian.Uint64(body); c != uint64(i) {
						t.Errorf("%s: counter %d, want %d", dir.name, c, i)
					}
					got, err := dir.to.Open(body)
					if err != nil || string(got) != msg {
						t.Fatalf("%s: Open = %q, %v", dir.name, got, err)
					}
				}
			}
			want := dh.ChannelState{NextSend: 3, NextReceive: 3}
			if got := a.State(); got != want {
				t.Errorf("State = %+v, want %+v", got, want)
			}
		})
	}
}

func newChannelPair(tb testing.TB, g *dh.Group) (a, b *dh.Channel) {
	tb.Helper()
	ka, err := g.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	kb, err := g.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	za, err := ka.SharedSecret(kb.PublicKey())
	if err != nil {
		tb.Fatal(err)
	}
	zb, err := kb.SharedSecret(ka.PublicKey())
	if err != nil {
		tb.Fatal(err)
	}
	if a, err = dh.NewChannel(za, ka.PublicKey(), kb.PublicKey()); err != nil {
		tb.Fatal(err)
	}
	if b, err = dh.NewChannel(zb, kb.PublicKey(), ka.PublicKey()); err != nil {
		tb.Fatal(err)
	}
	return a, b
}

func TestNewChannelErrors(t *testing.T) {
	p := loadVectorPeers(t)
	p256, err := mustGroup(t, "p256").GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		secret     []byte
		self, peer *dh.PublicKey
		want       error // nil: any error
	}{
		{"groups differ", p.sharedSecret, p.alice, p256.PublicKey(), dh.ErrGroupMismatch},
		{"nil self", p.sharedSecret, nil, p.bob, dh.ErrGroupMismatch},
		{"nil peer", p.sharedSecret, p.alice, nil, dh.ErrGroupMismatch},
		{"same key", p.sharedSecret, p.alice, p.alice, dh.ErrSameKey},
		{"short secret", p.sharedSecret[:31], p.alice, p.bob, nil},
		{"no secret", nil, p.alice, p.bob, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dh.NewChannel(tt.secret, tt.self, tt.peer)
			if err == nil || c != nil {
				t.Fatalf("NewChannel = %v, %v; want an error", c, err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestChannelOpenErrors(t *testing.T) {
	p := loadVectorPeers(t)
	alice, _ := p.channels(t, "alice")
	bodies := make([][]byte, 4) // alice's counters 0-3, "hello"
	for i := range bodies {
		var err error
		if bodies[i], err = alice.Seal([]byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[(i+len(b))%len(b)] ^= 0x01
		return b
	}
	withCounter := func(b []byte, c uint64) []byte {
		b = bytes.Clone(b)
		binary.BigEndian.PutUint64(b, c)
		return b
	}
	otherKey, _ := newChannelPair(t, dh.X25519())
	fromOtherKey, err := otherKey.Seal([]byte("hello"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		before [][]byte // opened successfully first
		body   []byte
		want   error
	}{
		{"empty", nil, nil, dh.ErrShortMessage},
		{"counter only", nil, bodies[0][:8], dh.ErrShortMessage},
		{"one byte short", nil, bodies[0][:dh.MessageOverhead-1], dh.ErrShortMessage},
		{"replay", [][]byte{bodies[0]}, bodies[0], dh.ErrReplay},
		{"reordered", [][]byte{bodies[2]}, bodies[1], dh.ErrReplay},
		{"replay of older", [][]byte{bodies[0], bodies[3]}, bodies[0], dh.ErrReplay},
		{"counter 2^64-1", nil, withCounter(bodies[0], math.MaxUint64), dh.ErrReplay},
		{"counter changed", nil, withCounter(bodies[0], 1), dh.ErrDecrypt},
		{"ciphertext changed", nil, flip(bodies[0], 8), dh.ErrDecrypt},
		{"tag changed", nil, flip(bodies[0], -1), dh.ErrDecrypt},
		{"truncated tag", nil, bodies[0][:len(bodies[0])-1], dh.ErrDecrypt},
		{"extra byte", nil, append(bytes.Clone(bodies[0]), 0), dh.ErrDecrypt},
		{"other key", nil, fromOtherKey, dh.ErrDecrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, bob := p.channels(t, "alice")
			for _, b := range tt.before {
				if _, err := bob.Open(b); err != nil {
					t.Fatalf("Open before: %v", err)
				}
			}
			state := bob.State()
			pt, err := bob.Open(tt.body)
			if !errors.Is(err, tt.want) || pt != nil {
				t.Fatalf("Open = %q, %v; want %v", pt, err, tt.want)
			}
			if got := bob.State(); got != state {
				t.Errorf("state changed by a refused body: %+v, was %+v", got, state)
			}
		})
	}

	t.Run("own message reflected", func(t *testing.T) {
		// A body Alice sealed, sent back to her, has her role in its
		// nonce: she must not accept it as Bob's.
		a, _ := p.channels(t, "alice")
		body, err := a.Seal([]byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Open(body); !errors.Is(err, dh.ErrDecrypt) {
			t.Errorf("Open(own body) = %v, want ErrDecrypt", err)
		}
	})
	t.Run("gap accepted", func(t *testing.T) {
		// Counters need only increase: a message the relay never
		// delivered (the sender's connection dropped) leaves a gap.
		_, bob := p.channels(t, "alice")
		for _, i := range []int{0, 2, 3} {
			if _, err := bob.Open(bodies[i]); err != nil {
				t.Errorf("Open(counter %d): %v", i, err)
			}
		}
	})
}

func TestChannelState(t *testing.T) {
	p := loadVectorPeers(t)
	t.Run("exhausted", func(t *testing.T) {
		a, b := p.channels(t, "alice")
		if err := a.SetState(dh.ChannelState{NextSend: math.MaxUint64 - 1}); err != nil {
			t.Fatal(err)
		}
		body, err := a.Seal([]byte("last"))
		if err != nil {
			t.Fatalf("Seal at 2^64-2: %v", err)
		}
		if got, err := b.Open(body); err != nil || string(got) != "last" {
			t.Fatalf("Open at 2^64-2 = %q, %v", got, err)
		}
		if b.State().NextReceive != math.MaxUint64 {
			t.Errorf("NextReceive = %d", b.State().NextReceive)
		}
		for range 2 {
			if body, err := a.Seal([]byte("x")); !errors.Is(err, dh.ErrCounterExhausted) || body != nil {
				t.Errorf("Seal after the last counter = %x, %v; want ErrCounterExhausted", body, err)
			}
		}
		if got := a.State().NextSend; got != math.MaxUint64 {
			t.Errorf("NextSend = %d after refusals", got)
		}
	})
	t.Run("restore", func(t *testing.T) {
		a, b := p.channels(t, "alice")
		saved := dh.ChannelState{NextSend: 5, NextReceive: 9}
		if err := a.SetState(saved); err != nil {
			t.Fatal(err)
		}
		if got := a.State(); got != saved {
			t.Errorf("State = %+v, want %+v", got, saved)
		}
		body, _ := a.Seal(nil)
		if c := binary.BigEndian.Uint64(body); c != 5 {
			t.Errorf("counter after restore = %d, want 5", c)
		}
		if err := b.SetState(dh.ChannelState{NextReceive: 6}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Open(body); !errors.Is(err, dh.ErrReplay) {
			t.Errorf("Open below restored NextReceive = %v, want ErrReplay", err)
		}
	})
	t.Run("regression refused", func(t *testing.T) {
		tests := []struct {
			name string
			to   dh.ChannelState
		}{
			{"send backwards", dh.ChannelState{NextSend: 2, NextReceive: 4}},
			{"receive backwards", dh.ChannelState{NextSend: 3, NextReceive: 3}},
			{"both backwards", dh.ChannelState{}},
		}
		for _, tt := range tests {
			a, _ := p.channels(t, "alice")
			from := dh.ChannelState{NextSend: 3, NextReceive: 4}
			if err := a.SetState(from); err != nil {
				t.Fatal(err)
			}
			if err := a.SetState(tt.to); !errors.Is(err, dh.ErrCounterRegression) {
				t.Errorf("%s: SetState = %v, want ErrCounterRegression", tt.name, err)
			}
			if got := a.State(); got != from {
				t.Errorf("%s: state = %+v after a refused SetState", tt.name, got)
			}
		}
	})
}

// TestChannelConcurrent seals from several goroutines at once while the
// other direction runs too; run it with -race. Every counter must be used
// exactly once.
func TestChannelConcurrent(t *testing.T) {
	a, b := newChannelPair(t, dh.X25519())
	const workers, each = 4, 50
	bodies := make(chan []byte, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				body, err := a.Seal([]byte("m"))
				if err != nil {
					t.Error(err)
					return
				}
				bodies <- body
			}
		})
	}
	// Meanwhile b talks to a: Seal on b and Open on a run alongside.
	wg.Go(func() {
		for range each {
			body, err := b.Seal([]byte("r"))
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := a.Open(body); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	close(bodies)
	byCounter := make(map[uint64][]byte)
	for body := range bodies {
		c := binary.BigEndian.Uint64(body)
		if _, dup := byCounter[c]; dup {
			t.Fatalf("counter %d used twice", c)
		}
		byCounter[c] = body
	}
	for c := range uint64(workers * each) {
		if _, err := b.Open(byCounter[c]); err != nil {
			t.Fatalf("Open(counter %d): %v", c, err)
		}
	}
	if got := a.State(); got != (dh.ChannelState{NextSend: workers * each, NextReceive: each}) {
		t.Errorf("State = %+v", got)
	}
}

// TestChannelRedacted checks that printing a Channel shows no key bytes.
func TestChannelRedacted(t *testing.T) {
	p := loadVectorPeers(t)
	a, _ := p.channels(t, "alice")
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		s := fmt.Sprintf(format, a)
		if strings.Contains(s, p.v.Key) || strings.Contains(s, p.v.Key[:16]) || !strings.Contains(s, "role: 0") {
			t.Errorf("%s: %s", format, s)
		}
	}
}

// FuzzChannelOpen checks that no body makes Open panic, that a refused body
// gets one of the documented errors and changes nothing, and that an
// accepted body is exactly what Alice's Channel seals at that counter (so
// nothing else passes authentication).
func FuzzChannelOpen(f *testing.F) {
	p := loadVectorPeers(f)
	for _, m := range p.v.Messages {
		if m.Sender == "alice" {
			f.Add(mustHex(f, m.Body))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		alice, bob := p.channels(t, "alice")
		pt, err := bob.Open(body)
		if err != nil {
			if !errors.Is(err, dh.ErrShortMessage) && !errors.Is(err, dh.ErrReplay) && !errors.Is(err, dh.ErrDecrypt) {
				t.Fatalf("undocumented error %v", err)
			}
			if pt != nil || bob.State() != (dh.ChannelState{}) {
				t.Fatal("a refused body returned a plaintext or changed the state")
			}
			return
		}
		c := binary.BigEndian.Uint64(body)
		if got := bob.State().NextReceive; got != c+1 {
			t.Fatalf("NextReceive = %d after counter %d", got, c)
		}
		if err := alice.SetState(dh.ChannelState{NextSend: c}); err != nil {
			t.Fatal(err)
		}
		again, err := alice.Seal(pt)
		if err != nil || !bytes.Equal(again, body) {
			t.Fatalf("accepted a body Alice would not seal: %x", body)
		}
	})
}

func BenchmarkChannel(b *testing.B) {
	plaintext := make([]byte, 1024)
	b.Run("Seal/1KiB", func(b *testing.B) {
		a, _ := newChannelPair(b, dh.X25519())
		b.SetBytes(int64(len(plaintext)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.Seal(plaintext); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Open/1KiB", func(b *testing.B) {
		a, r := newChannelPair(b, dh.X25519())
		b.SetBytes(int64(len(plaintext)))
		b.ReportAllocs()
		// Counters must increase, so bodies are sealed ahead in batches,
		// outside the timer.
		var bodies [][]byte
		for b.Loop() {
			if len(bodies) == 0 {
				b.StopTimer()
				for range 1024 {
					body, err := a.Seal(plaintext)
					if err != nil {
						b.Fatal(err)
					}
					bodies = append(bodies, body)
				}
				b.StartTimer()
			}
			if _, err := r.Open(bodies[0]); err != nil {
				b.Fatal(err)
			}
			bodies = bodies[1:]
		}
	})
}

// Two peers that have exchanged public keys each build a Channel; each
// seals with its own counter and opens the other's messages.
func ExampleNewChannel() {
	g := dh.X25519()
	alice, _ := g.GenerateKey(rand.Reader)
	bob, _ := g.GenerateKey(rand.Reader)

	zA, _ := alice.SharedSecret(bob.PublicKey())
	aliceCh, _ := dh.NewChannel(zA, alice.PublicKey(), bob.PublicKey())
	zB, _ := bob.SharedSecret(alice.PublicKey())
	bobCh, _ := dh.NewChannel(zB, bob.PublicKey(), alice.PublicKey())

	body, _ := aliceCh.Seal([]byte("hello, Bob"))
	wire := base64.StdEncoding.EncodeToString(body) // the msg frame's body
	fmt.Println("body length:", len(body))

	raw, _ := base64.StdEncoding.DecodeString(wire)
	plaintext, _ := bobCh.Open(raw)
	fmt.Println(string(plaintext))

	_, err := bobCh.Open(raw) // the same body again
	fmt.Println(err)
	// Output:
	// body length: 34
	// hello, Bob
	// dh: message counter not above the last accepted (replay)
}
