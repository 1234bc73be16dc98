package relay

import (
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/keyrelay/keyrelay/wire"
)

// FuzzDecodeFrame checks that no input makes the frame decoder panic, that
// every refusal carries a documented code, and that every accepted frame
// has a known type and all of that type's required fields.
func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"create","group":"x25519","id":1}`,
		`{"type":"join","room":"6f1c0e8e-0000-4000-8000-000000000000"}`,
		`{"type":"resume","room":"r","peer":"p","resume_token":"t","last_seq":3}`,
		`{"type":"key","public_key":"02","group":"modp14"}`,
		`{"type":"msg","body":"AAAA","id":"x"}`,
		`{"type":"ack","seq":18446744073709551615}`,
		`{"type":"ack","seq":-1}`,
		`{"type":"leave","extra":null}`,
		`{"type":"join","room":null}`,
		`{"type":"key","public_key":"02","Public_Key":"03"}`,
		`{"type":"create","id":{"a":[1,2]}}`,
		`{"TYPE":"leave"}`, `{"type":"leave","type":"ack","seq":1}`, `{"type":"ack","seq":1,"seq":null}`,
		`{"type":"msg","bo\u0064y":"AAAA"}`, `{ "type" : "join" , "room" : "r" , "id" : "a\"b" }`,
		`[]`, `null`, `"x"`, `{`, "\xff\xfe", `{"type":"msg","body":"` + "\u0000" + `"}`,
	} {
		f.Add([]byte(s))
	}
	codes := map[wire.Code]bool{wire.CodeBadFrame: true, wire.CodeBadRequest: true, wire.CodeUnknownType: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The fast path accepts nothing the slow path refuses, and decodes
		// what it accepts to the same frame.
		if fast := decodeFast(data); fast != nil && utf8.Valid(data) {
			slow, werr := decodeSlow(data)
			if werr != nil {
				t.Fatalf("fast path accepted %q, slow path refuses it: %v", data, werr)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("%q: fast path %+v, slow path %+v", data, fast, slow)
			}
		}
		fr, werr := decodeFrame(data)
		if werr != nil {
			if !codes[werr.code] || werr.msg == "" {
				t.Fatalf("undocumented refusal %v", werr)
			}
			return
		}
		allowed, ok := allowedFields[fr.Type]
		if !ok {
			t.Fatalf("accepted unknown type %q", fr.Type)
		}
		present := map[string]bool{
			"group": fr.Group != nil, "room": fr.Room != nil, "peer": fr.Peer != nil,
			"resume_token": fr.ResumeToken != nil, "last_seq": fr.LastSeq != nil,
			"public_key": fr.PublicKey != nil, "body": fr.Body != nil, "seq": fr.Seq != nil,
		}
		for name, has := range present {
			required, allowedHere := allowed[name]
			if has && !allowedHere {
				t.Fatalf("%s accepted with field %s", fr.Type, name)
			}
			if required && !has {
				t.Fatalf("%s accepted without field %s", fr.Type, name)
			}
		}
	})
}
