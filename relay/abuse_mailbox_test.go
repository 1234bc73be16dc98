package relay_test

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/wire"
)

// The attack of issue 13's finding 1 (memory through unacknowledged
// messages) at small scale, against a real relay: one source fills rooms
// with messages nobody acknowledges; the store's budget per source stops
// it, another source is served, and an acknowledgement gives the bytes
// back.

// mailboxAttackConfig is abuseConfig with budgets high enough in frames
// and bytes per second that the store's budget is what stops the sender.
func mailboxAttackConfig(t *testing.T) relay.Config {
	cfg := abuseConfig(memoryLimiter(t, limits.Config{}))
	cfg.BytesPerSecond, cfg.ByteBurst = 64<<20, 64<<20
	return cfg
}

// flood sends up to atMost bodies of n random bytes from p, until the
// relay refuses one, and returns the bytes it accepted and the refusal
// (nil if there was none).
func flood(t *testing.T, p *peer, n, atMost int) (int, frame) {
	t.Helper()
	body := make([]byte, n)
	accepted := 0
	for range atMost {
		rand.Read(body)
		p.send(map[string]any{"type": "msg", "body": base64.StdEncoding.EncodeToString(body)})
		f := p.read()
		switch f.str("type") {
		case string(wire.TypeSent):
			accepted += n
		case string(wire.TypeError):
			return accepted, f
		default:
			t.Fatalf("reply to msg: %v", f)
		}
	}
	return accepted, nil
}

func TestMailboxBudgetPerSource(t *testing.T) {
	const attacker, honestA, honestB = "203.0.113.66", "192.0.2.10", "198.51.100.20"
	const perSource, body = 300 << 10, 40 << 10
	store := session.NewMemoryStore(session.MemoryConfig{Budget: session.Budget{PerSource: perSource}})
	t.Cleanup(func() { store.Close() })
	tr := newRelayOn(t, store, mailboxAttackConfig(t))

	// Two rooms, all four seats from the attacker's address; its
	// messages count in both rooms and both directions together.
	r1 := handshakeOn(t, tr.dialFrom(t, attacker), tr.dialFrom(t, attacker), dh.X25519())
	r2 := handshakeOn(t, tr.dialFrom(t, attacker), tr.dialFrom(t, attacker), dh.X25519())
	// Nobody acknowledges.
	n1, _ := flood(t, r1.a, body, 4) // 160 KiB
	n2, refused := flood(t, r2.b, body, 100)
	if n1 != 4*body || refused == nil {
		t.Fatalf("stored %d bytes in room 1, then %d in room 2 and refusal %v; want %d, then a refusal", n1, n2, refused, 4*body)
	}
	if total := n1 + n2; total > perSource || total <= perSource-body {
		t.Errorf("the attacker's address got %d bytes stored, want at most %d and within a message of it", total, perSource)
	}
	if refused.str("code") != string(wire.CodeMailboxFull) || !strings.Contains(refused.str("message"), "your address") {
		t.Errorf("refusal %v, want mailbox_full about the address's budget", refused)
	}

	// Another source is served in full, both ways.
	h := handshakeOn(t, tr.dialFrom(t, honestA), tr.dialFrom(t, honestB), dh.X25519())
	for _, text := range []string{"one", "two"} {
		recvMsg(t, h.b, h.bCh, sendMsg(t, h.a, h.aCh, text), text)
		recvMsg(t, h.a, h.aCh, sendMsg(t, h.b, h.bCh, text), text)
	}
	if n, _ := flood(t, h.a, body, 100); n < 7*body {
		t.Errorf("the honest address got %d bytes stored before a refusal, want its own budget (the mailbox's 1 MiB)", n)
	}

	// The attacker's reader acknowledges r1's messages: their bytes come
	// back, and the attacker may send that much again.
	var last uint64
	for range n1 / body {
		last = r1.b.expect(wire.TypeMsg).num("seq")
	}
	r1.b.send(map[string]any{"type": "ack", "seq": last})
	waitFor(t, func() bool {
		r2.b.send(map[string]any{"type": "msg", "body": base64.StdEncoding.EncodeToString(make([]byte, body))})
		return r2.b.read().str("type") == string(wire.TypeSent)
	})
}

// TestMailboxBudgetAcrossInstances: on two relays sharing Redis, one
// source's budget is one budget: what it stores through one relay counts
// against what it sends through the other.
func TestMailboxBudgetAcrossInstances(t *testing.T) {
	const attacker = "203.0.113.66"
	const perSource, body = 300 << 10, 40 << 10
	if os.Getenv(storeEnv) != "" {
		t.Skip("runs once, in the parent process of TestSuiteOnRedis")
	}
	rs := redistest.StartServer(t)
	prefix := "budget:" + t.Name() + ":"
	newRelay := func() *testRelay {
		store, err := session.NewRedisStore(t.Context(), session.RedisConfig{URL: "redis://" + rs.Addr, Prefix: prefix, Budget: session.Budget{PerSource: perSource}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		return newRelayOn(t, store, mailboxAttackConfig(t))
	}
	r1, r2 := newRelay(), newRelay()
	p1 := handshakeOn(t, r1.dialFrom(t, attacker), r1.dialFrom(t, attacker), dh.X25519())
	p2 := handshakeOn(t, r2.dialFrom(t, attacker), r2.dialFrom(t, attacker), dh.X25519())
	n1, _ := flood(t, p1.a, body, 4)
	n2, refused := flood(t, p2.a, body, 100)
	if n1 != 4*body || refused == nil || n1+n2 > perSource || n1+n2 <= perSource-body {
		t.Fatalf("stored %d bytes through one relay, then %d through the other before %v; want %d, then the rest of %d", n1, n2, refused, 4*body, perSource)
	}
	if refused.str("code") != string(wire.CodeMailboxFull) {
		t.Errorf("refusal %v, want mailbox_full", refused)
	}
	// Another source is served on both.
	h := handshakeOn(t, r1.dialFrom(t, "192.0.2.10"), r2.dialFrom(t, "198.51.100.20"), dh.X25519())
	recvMsg(t, h.b, h.bCh, sendMsg(t, h.a, h.aCh, "hello"), "hello")
}
