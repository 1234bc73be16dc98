package client

import (
	"encoding/json"
	"testing"
)

// FuzzParseFrame feeds arbitrary relay frames to the client's decoder and
// to what reads a decoded frame (its id key and its error): none may
// panic, and a frame accepted has a type.
func FuzzParseFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"room","id":1,"room":"r","peer":"p","resume_token":"t","group":"x25519","peers":1,"resumed":false}`,
		`{"type":"error","id":"a","code":"bad_frame","message":"m"}`,
		`{"type":"msg","seq":18446744073709551615,"body":"AAAA"}`,
		`{"type":"peer_key","public_key":"00","group":null}`,
		`{"type":1}`, `[]`, `null`, `{"type":"x","id":{"a":1}}`, `{"id":1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := parseFrame(data)
		if err != nil {
			return
		}
		if fr.Type == "" {
			t.Fatalf("frame without a type accepted: %q", data)
		}
		_ = idKey(fr.ID)
		if e := fr.relayError(); e == nil {
			t.Fatal("relayError returned nil")
		}
		if !json.Valid(fr.raw) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
	})
}
