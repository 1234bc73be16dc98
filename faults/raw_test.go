package faults

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay/client"
	"github.com/keyrelay/keyrelay/wire"
)

// rawPeer is a peer that speaks the protocol's frames itself on a raw
// WebSocket connection, so that a test controls exactly when it reads. It
// keeps its own key and Channel, and checks what it receives end to end.
type rawPeer struct {
	ws         *websocket.Conn
	room, peer string
	token      string
	priv       *dh.PrivateKey
	ch         *dh.Channel
	peerKeyHex string
}

// rawFrame is a frame from the relay, the fields the tests read.
type rawFrame struct {
	Type        string `json:"type"`
	Code        string `json:"code"`
	Room        string `json:"room"`
	Peer        string `json:"peer"`
	ResumeToken string `json:"resume_token"`
	PublicKey   string `json:"public_key"`
	Resumed     bool   `json:"resumed"`
	Seq         uint64 `json:"seq"`
	Body        string `json:"body"`
}

// rawMsg is a message a rawPeer received and opened.
type rawMsg struct {
	seq   uint64
	index int // the message's number, from its plaintext
}

// dialRaw opens a raw keyrelay.v1 connection to the relay at addr.
func dialRaw(t *testing.T, ctx context.Context, addr string) *rawPeer {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/ws", &websocket.DialOptions{
		Subprotocols:    []string{wire.Subprotocol},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return &rawPeer{ws: ws}
}

func (p *rawPeer) send(t *testing.T, ctx context.Context, frame map[string]any) {
	t.Helper()
	b, err := json.Marshal(frame)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ws.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatalf("raw write %s: %v", frame["type"], err)
	}
}

func (p *rawPeer) read(ctx context.Context) (rawFrame, error) {
	var f rawFrame
	_, b, err := p.ws.Read(ctx)
	if err != nil {
		return f, err
	}
	return f, json.Unmarshal(b, &f)
}

// joinAndHandshake joins room, in which a waits, and runs the handshake
// with a (whose Handshake runs meanwhile), checking that both derive the
// same safety number.
func (p *rawPeer) joinAndHandshake(t *testing.T, ctx context.Context, a *talker, room string) {
	t.Helper()
	hsc := make(chan *client.Handshake, 1)
	errc := make(chan error, 1)
	go func() {
		hs, err := a.c.Handshake(ctx)
		hsc <- hs
		errc <- err
	}()
	p.send(t, ctx, map[string]any{"type": "join", "room": room})
	priv, err := dh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.priv = priv
	sentKey := false
	var keyOK, complete bool
	for !keyOK || !complete || p.peerKeyHex == "" {
		f, err := p.read(ctx)
		if err != nil {
			t.Fatalf("raw peer: handshake: %v", err)
		}
		switch f.Type {
		case "room":
			p.room, p.peer, p.token = f.Room, f.Peer, f.ResumeToken
		case "key_ok":
			keyOK = true
		case "peer_key":
			p.peerKeyHex = f.PublicKey
		case "handshake_complete":
			complete = true
		case "error":
			t.Fatalf("raw peer: handshake: error %s", f.Code)
		}
		if p.room != "" && !sentKey {
			p.send(t, ctx, map[string]any{"type": "key", "public_key": priv.PublicKey().Hex(), "group": priv.PublicKey().Group().Name()})
			sentKey = true
		}
	}
	peerKey, err := dh.X25519().ParsePublicKey(p.peerKeyHex)
	if err != nil {
		t.Fatalf("raw peer: A's key: %v", err)
	}
	z, err := priv.SharedSecret(peerKey)
	if err != nil {
		t.Fatal(err)
	}
	if p.ch, err = dh.NewChannel(z, priv.PublicKey(), peerKey); err != nil {
		t.Fatal(err)
	}
	sn, err := dh.SafetyNumber(priv.PublicKey(), peerKey)
	if err != nil {
		t.Fatal(err)
	}
	hs := <-hsc
	if err := <-errc; err != nil {
		t.Fatalf("A: handshake: %v", err)
	}
	if hs.SafetyNumber != sn {
		t.Fatal("A and the raw peer derived different safety numbers")
	}
	a.hs = hs
}

// open decrypts a msg frame from "A".
func (p *rawPeer) open(f rawFrame) (rawMsg, error) {
	body, err := base64.StdEncoding.DecodeString(f.Body)
	if err != nil {
		return rawMsg{}, err
	}
	pt, err := p.ch.Open(body)
	if err != nil {
		return rawMsg{}, err
	}
	if n := len(text("A", 0)); len(pt) > n {
		pt = pt[:n] // the text, then zero padding
	}
	i, err := parseText("A", pt)
	return rawMsg{seq: f.Seq, index: i}, err
}

// readMessagesUntilClosed reads until the connection ends and returns the
// messages and the error that ended it.
func (p *rawPeer) readMessagesUntilClosed(ctx context.Context) ([]rawMsg, error) {
	var msgs []rawMsg
	for {
		f, err := p.read(ctx)
		if err != nil {
			return msgs, err
		}
		if f.Type != "msg" {
			continue
		}
		m, err := p.open(f)
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, m)
	}
}

// resume takes old's place back on p's connection, with last_seq last,
// and reads n messages.
func (p *rawPeer) resume(t *testing.T, ctx context.Context, old *rawPeer, last uint64, n int) []rawMsg {
	t.Helper()
	*p = rawPeer{ws: p.ws, room: old.room, peer: old.peer, token: old.token, priv: old.priv, ch: old.ch, peerKeyHex: old.peerKeyHex}
	p.send(t, ctx, map[string]any{"type": "resume", "room": p.room, "peer": p.peer, "resume_token": p.token, "last_seq": last})
	var msgs []rawMsg
	resumed := false
	for len(msgs) < n {
		f, err := p.read(ctx)
		if err != nil {
			t.Fatalf("raw peer: after resume, %d of %d messages: %v", len(msgs), n, err)
		}
		switch f.Type {
		case "room":
			if !f.Resumed {
				t.Fatalf("raw peer: resume answered room with resumed false")
			}
			resumed = true
		case "peer_key":
			if f.PublicKey != p.peerKeyHex {
				t.Fatal("raw peer: A's key changed across the resume")
			}
		case "error":
			t.Fatalf("raw peer: resume: error %s", f.Code)
		case "msg":
			if !resumed {
				t.Fatal("raw peer: msg before the resume's room frame")
			}
			m, err := p.open(f)
			if err != nil {
				t.Fatalf("raw peer: seq %d: %v", f.Seq, err)
			}
			msgs = append(msgs, m)
		}
	}
	return msgs
}
