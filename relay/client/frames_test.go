package client

import (
	"encoding/json"
	"testing"

	"github.com/keyrelay/keyrelay/wire"
)

// TestOutFrameFields checks that each client frame carries exactly the
// fields of docs/protocol.md §2.1: the relay refuses unknown fields.
func TestOutFrameFields(t *testing.T) {
	tests := []struct {
		name string
		f    outFrame
		id   uint64
		want string
	}{
		{"create", outFrame{Type: wire.TypeCreate, Group: "x25519"}, 1, `{"type":"create","id":1,"group":"x25519"}`},
		{"create without group", outFrame{Type: wire.TypeCreate}, 2, `{"type":"create","id":2}`},
		{"join", outFrame{Type: wire.TypeJoin, Room: "r"}, 3, `{"type":"join","id":3,"room":"r"}`},
		{"resume", outFrame{Type: wire.TypeResume, Room: "r", Peer: "p", ResumeToken: "t", LastSeq: 9}, 4,
			`{"type":"resume","id":4,"room":"r","peer":"p","resume_token":"t","last_seq":9}`},
		{"resume from the start", outFrame{Type: wire.TypeResume, Room: "r", Peer: "p", ResumeToken: "t"}, 5,
			`{"type":"resume","id":5,"room":"r","peer":"p","resume_token":"t"}`},
		{"key", outFrame{Type: wire.TypeKey, PublicKey: "ab", Group: "p256"}, 6, `{"type":"key","id":6,"group":"p256","public_key":"ab"}`},
		{"msg", outFrame{Type: wire.TypeMsg, Body: "AAAA"}, 7, `{"type":"msg","id":7,"body":"AAAA"}`},
		{"ack", outFrame{Type: wire.TypeAck, Seq: 12}, 0, `{"type":"ack","seq":12}`},
		{"leave", outFrame{Type: wire.TypeLeave}, 8, `{"type":"leave","id":8}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.f.marshal(tt.id)
			if err != nil || string(got) != tt.want {
				t.Errorf("marshal = %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestParseFrame(t *testing.T) {
	f, err := parseFrame([]byte(`{"type":"room","id":3,"room":"r","peer":"p","resume_token":"t","group":"","peers":1,"resumed":false,"future_field":[1]}`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Type != wire.TypeRoom || idKey(f.ID) != "3" || f.Room != "r" || f.Peer != "p" || f.ResumeToken != "t" || f.Peers != 1 || f.resumed() {
		t.Errorf("parsed %+v", f)
	}
	for _, bad := range []string{``, `[]`, `"room"`, `{}`, `{"type":""}`, `{"type":3}`, `{"type":"msg","seq":-1}`, `{"type":"msg","seq":"1"}`} {
		if f, err := parseFrame([]byte(bad)); err == nil {
			t.Errorf("parseFrame(%s) = %+v, want an error", bad, f)
		}
	}
}

func TestIDKey(t *testing.T) {
	tests := []struct{ raw, want string }{
		{``, ""},
		{`null`, ""},
		{`7`, "7"},
		{`7.0`, "7.0"},
		{`"7"`, "7"},
		{`"abc"`, "abc"},
		{`18446744073709551615`, "18446744073709551615"},
		{`{}`, "{}"},
	}
	for _, tt := range tests {
		if got := idKey(json.RawMessage(tt.raw)); got != tt.want {
			t.Errorf("idKey(%s) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ws://localhost:8080/v1/ws", "ws://localhost:8080/v1/ws"},
		{"wss://user:pass@relay.example/v1/ws?token=secret#x", "wss://relay.example/v1/ws"},
		{"::", "(unparsable URL)"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
