package relay_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/wire"
)

// The bad-input table itself; badinput_test.go runs it.

func badInputCases(t *testing.T) []badInputCase {
	p := modp14Prime(t)
	modp := func(d int64) string { return new(big.Int).Add(p, big.NewInt(d)).Text(16) }
	// The smallest quadratic non-residue: in range, outside the
	// prime-order subgroup.
	nonResidue := big.NewInt(2)
	for big.Jacobi(nonResidue, p) != -1 {
		nonResidue.Add(nonResidue, big.NewInt(1))
	}
	const (
		// RFC 7748 test vector keys (dh/testdata/ec_vectors.json).
		x25519Key = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
		p256Key   = "043f9447b7aca1d7b418d022784e66c2ae6d8565e9c1d86ccebea406523bfc5faa79e8c2076f2c29422a92298921be277543f7e3e242fa191803ecc1297ce185fb"
		p256P     = "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"
		unknown   = "6f1c0e8e-0000-4000-8000-000000000000" // a room ID of the right shape that no room has
	)
	p256X, p256Y := p256Key[2:66], p256Key[66:]
	forged := strings.Repeat("A", 43) // a token of the right length, not the one issued
	// key is a key frame in the room's group ({group}).
	key := func(k string) string { return `{"type":"key","public_key":"` + k + `","group":"{group}","id":"k"}` }
	keyIn := func(k, group string) string {
		return `{"type":"key","public_key":"` + k + `","group":"` + group + `","id":"k"}`
	}
	join := func(room func(string) string) func(fx *badFixture) string {
		return func(fx *badFixture) string {
			b, _ := json.Marshal(map[string]any{"type": "join", "room": room(fx.room), "id": "j"})
			return string(b)
		}
	}
	resume := func(fields string) string {
		return `{"type":"resume",` + fields + `,"id":"r"}`
	}
	modp14, p256 := dh.MODP14(), dh.P256()
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)

	return []badInputCase{
		// Not a JSON object: bad_frame, no id (there is none to read).
		{name: "json/truncated", raw: `{"type":"msg","body":"AAAA`, code: wire.CodeBadFrame},
		{name: "json/truncated with id", raw: `{"type":"create","id":1`, code: wire.CodeBadFrame},
		{name: "json/trailing comma", raw: `{"type":"create","id":1,}`, code: wire.CodeBadFrame},
		{name: "json/single quotes", raw: `{'type':'create'}`, code: wire.CodeBadFrame},
		{name: "json/empty frame", raw: ``, code: wire.CodeBadFrame},
		{name: "json/whitespace", raw: " \n\t ", code: wire.CodeBadFrame},
		{name: "json/empty array", raw: `[]`, code: wire.CodeBadFrame},
		{name: "json/array of frame", raw: `[{"type":"create","id":1}]`, code: wire.CodeBadFrame},
		{name: "json/null", raw: `null`, code: wire.CodeBadFrame},
		{name: "json/string", raw: `"create"`, code: wire.CodeBadFrame},
		{name: "json/number", raw: `42`, code: wire.CodeBadFrame},
		{name: "json/huge number", raw: `1e400`, code: wire.CodeBadFrame},
		{name: "json/true", raw: `true`, code: wire.CodeBadFrame},
		{name: "json/two objects", raw: `{"type":"create"}{"type":"create"}`, code: wire.CodeBadFrame},
		{name: "json/trailing garbage", raw: `{"type":"create"} x`, code: wire.CodeBadFrame},
		{name: "json/NaN", raw: `{"type":"ack","seq":NaN}`, code: wire.CodeBadFrame},
		{name: "json/byte order mark", raw: "\ufeff" + `{"type":"create"}`, code: wire.CodeBadFrame},
		{name: "json/nested 20000 deep", raw: `{"type":"create","id":` + deep + `}`, code: wire.CodeBadFrame},
		// §1: frames are UTF-8 JSON; invalid UTF-8 is not JSON (RFC 8259 §8.1).
		{name: "json/invalid UTF-8", raw: "{\"type\":\"create\",\"id\":\"\xff\xfe\"}", code: wire.CodeBadFrame},

		// Binary frames are refused (§1), whatever they hold.
		{name: "binary/json frame", raw: `{"type":"msg","body":"AAAA","id":1}`, binary: true, code: wire.CodeBadFrame},
		{name: "binary/empty", raw: ``, binary: true, code: wire.CodeBadFrame},
		{name: "binary/bytes", raw: "\x00\x01\x02\xff", binary: true, code: wire.CodeBadFrame},

		// §2: type missing or not one of §2.1.
		{name: "type/unknown", raw: `{"type":"hello","id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/upper case", raw: `{"type":"CREATE","id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/trailing space", raw: `{"type":"msg ","body":"AAAA","id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/empty", raw: `{"type":"","id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/null", raw: `{"type":null,"id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/number", raw: `{"type":5,"id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/missing", raw: `{"id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/empty object", raw: `{}`, code: wire.CodeUnknownType},
		{name: "type/relay's own room", raw: `{"type":"room","room":"{room}","id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/relay's own sent", raw: `{"type":"sent","seq":1,"id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},
		{name: "type/relay's own error", raw: `{"type":"error","code":"internal","id":"t"}`, code: wire.CodeUnknownType, id: `"t"`},

		// §2: the id, a string of at most 64 characters or an integer, is
		// copied into the reply. (create while in a room: already_in_room.)
		{name: "id/64 ASCII characters", raw: `{"type":"create","id":"` + strings.Repeat("i", 64) + `"}`, code: wire.CodeAlreadyInRoom, id: `"` + strings.Repeat("i", 64) + `"`},
		{name: "id/64 non-ASCII characters", raw: `{"type":"create","id":"` + strings.Repeat("é", 64) + `"}`, code: wire.CodeAlreadyInRoom, id: `"` + strings.Repeat("é", 64) + `"`},
		{name: "id/escaped string", raw: `{"type":"create","id":"a\"b\\c\u0041"}`, code: wire.CodeAlreadyInRoom, id: `"a\"b\\c\u0041"`},
		{name: "id/empty string", raw: `{"type":"create","id":""}`, code: wire.CodeAlreadyInRoom, id: `""`},
		{name: "id/zero", raw: `{"type":"create","id":0}`, code: wire.CodeAlreadyInRoom, id: `0`},
		{name: "id/negative", raw: `{"type":"create","id":-7}`, code: wire.CodeAlreadyInRoom, id: `-7`},
		{name: "id/int64 max", raw: `{"type":"create","id":9223372036854775807}`, code: wire.CodeAlreadyInRoom, id: `9223372036854775807`},
		{name: "id/65 characters", raw: `{"type":"create","id":"` + strings.Repeat("i", 65) + `"}`, code: wire.CodeBadRequest},
		{name: "id/beyond int64", raw: `{"type":"create","id":9223372036854775808}`, code: wire.CodeBadRequest},
		{name: "id/huge number", raw: `{"type":"create","id":1e400}`, code: wire.CodeBadRequest},
		{name: "id/float", raw: `{"type":"create","id":1.5}`, code: wire.CodeBadRequest},
		{name: "id/bool", raw: `{"type":"create","id":true}`, code: wire.CodeBadRequest},
		{name: "id/object", raw: `{"type":"create","id":{}}`, code: wire.CodeBadRequest},
		{name: "id/array", raw: `{"type":"create","id":["a"]}`, code: wire.CodeBadRequest},
		{name: "id/null", raw: `{"type":"create","id":null}`, code: wire.CodeBadRequest},

		// §2: unknown fields are refused (bad_request), not ignored.
		{name: "extra field/msg", raw: `{"type":"msg","body":"AAAA","colour":"red","id":"x"}`, code: wire.CodeBadRequest, id: `"x"`},
		{name: "extra field/leave with room", raw: `{"type":"leave","room":"{room}","id":"x"}`, code: wire.CodeBadRequest, id: `"x"`},
		{name: "extra field/ack with body", raw: `{"type":"ack","seq":1,"body":"AAAA","id":"x"}`, code: wire.CodeBadRequest, id: `"x"`},
		{name: "extra field/case-folded", raw: `{"type":"msg","Body":"AAAA","id":"x"}`, code: wire.CodeBadRequest, id: `"x"`},
		{name: "extra field/case-folded twin", raw: `{"type":"msg","body":"AAAA","BODY":"AAAA","id":"x"}`, code: wire.CodeBadRequest, id: `"x"`},
		{name: "extra field/null", raw: `{"type":"leave","extra":null,"id":"x"}`, code: wire.CodeBadRequest, id: `"x"`},

		// §2.1: missing required fields.
		{name: "missing/join room", raw: `{"type":"join","id":"m"}`, code: wire.CodeBadRequest, id: `"m"`},
		{name: "missing/key public_key", raw: `{"type":"key","group":"x25519","id":"m"}`, code: wire.CodeBadRequest, id: `"m"`},
		{name: "missing/msg body", raw: `{"type":"msg","id":"m"}`, code: wire.CodeBadRequest, id: `"m"`},
		{name: "missing/ack seq", raw: `{"type":"ack","id":"m"}`, code: wire.CodeBadRequest, id: `"m"`},
		{name: "missing/resume token", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}"`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "missing/resume peer", stage: afterDrop, raw: resume(`"room":"{room}","resume_token":"{token}"`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "missing/resume room", stage: afterDrop, raw: resume(`"peer":"{peer}","resume_token":"{token}"`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "missing/group in a room without one", stage: inLobby, noGroup: true, raw: `{"type":"key","public_key":"` + x25519Key + `","id":"k"}`, code: wire.CodeBadRequest, id: `"k"`},
		{name: "missing/group in a room with one", stage: inLobby, raw: `{"type":"key","public_key":"` + x25519Key + `","id":"k"}`, code: wire.CodeBadRequest, id: `"k"`},

		// §2.1: wrongly typed fields.
		{name: "type of/room number", stage: outside, raw: `{"type":"join","room":7,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/room array", stage: outside, raw: `{"type":"join","room":["{room}"],"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/room null", stage: outside, raw: `{"type":"join","room":null,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/group number", stage: outside, raw: `{"type":"create","group":14,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/public_key number", stage: inLobby, group: modp14, raw: `{"type":"key","public_key":1234,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/public_key array", stage: inLobby, raw: `{"type":"key","public_key":["` + x25519Key + `"],"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/key group null", stage: inLobby, raw: `{"type":"key","public_key":"` + x25519Key + `","group":null,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/body number", raw: `{"type":"msg","body":1234,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/body object", raw: `{"type":"msg","body":{"a":1},"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/seq string", raw: `{"type":"ack","seq":"1","id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/seq negative", raw: `{"type":"ack","seq":-1,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/seq float", raw: `{"type":"ack","seq":1.5,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/seq 2^64", raw: `{"type":"ack","seq":18446744073709551616,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/seq 1e400", raw: `{"type":"ack","seq":1e400,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/seq bool", raw: `{"type":"ack","seq":true,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/seq null", raw: `{"type":"ack","seq":null,"id":"w"}`, code: wire.CodeBadRequest, id: `"w"`},
		{name: "type of/last_seq negative", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{token}","last_seq":-1`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "type of/last_seq string", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{token}","last_seq":"0"`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "type of/last_seq float", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{token}","last_seq":0.5`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "type of/peer number", stage: afterDrop, raw: resume(`"room":"{room}","peer":7,"resume_token":"{token}"`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "type of/resume_token number", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":123`), code: wire.CodeBadRequest, id: `"r"`},

		// Oversized frames close the connection with 1009 (§4).
		{name: "size/text over the limit", cfg: relay.Config{MaxFrameBytes: 4096}, frame: func(*badFixture) string { return msgFrameOfSize(4097) }, close: websocket.StatusMessageTooBig},
		{name: "size/binary over the limit", cfg: relay.Config{MaxFrameBytes: 4096}, binary: true, raw: strings.Repeat("x", 4097), close: websocket.StatusMessageTooBig},
		{name: "size/over the default 64 KiB", frame: func(*badFixture) string { return msgFrameOfSize(64<<10 + 1) }, close: websocket.StatusMessageTooBig},
		{name: "size/exactly the limit is accepted", cfg: relay.Config{MaxFrameBytes: 4096}, run: func(t *testing.T, fx *badFixture) {
			frame := msgFrameOfSize(4096)
			writeAll(t, fx.sender, frame)
			if f := nextRaw(t, fx.sender); f.Type != wire.TypeSent {
				t.Fatalf("got %s, want sent", clip(f.raw))
			}
			f := nextRaw(t, fx.watchers[0])
			if f.Type != wire.TypeMsg || !strings.Contains(frame, `"`+f.Body+`"`) {
				t.Fatalf("watcher got %s, want the message", clip(f.raw))
			}
			t.Logf("a %d-byte msg frame reached the peer as a %d-byte frame", len(frame), len(f.raw))
			fx.prove()
		}},

		// Keys (§5.2 and §4): MODP group 14.
		{name: "modp14/0", stage: inLobby, group: modp14, raw: key("0"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "modp14/1", stage: inLobby, group: modp14, raw: key("1"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "modp14/p-1", stage: inLobby, group: modp14, raw: key(modp(-1)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "modp14/p", stage: inLobby, group: modp14, raw: key(modp(0)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "modp14/p+1", stage: inLobby, group: modp14, raw: key(modp(1)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "modp14/non-residue " + nonResidue.String(), stage: inLobby, group: modp14, raw: key(nonResidue.Text(16)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "modp14/non-residue p-2", stage: inLobby, group: modp14, raw: key(modp(-2)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "modp14/too long", stage: inLobby, group: modp14, raw: key(strings.Repeat("0", 510) + "004"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/huge", stage: inLobby, group: modp14, raw: key(strings.Repeat("f", 60000)), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/minus sign", stage: inLobby, group: modp14, raw: key("-" + modp(-3)), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/plus sign", stage: inLobby, group: modp14, raw: key("+4"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/0x prefix", stage: inLobby, group: modp14, raw: key("0x4"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/leading space", stage: inLobby, group: modp14, raw: key(" 4"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/inner space", stage: inLobby, group: modp14, raw: key("1 4"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/trailing newline", stage: inLobby, group: modp14, raw: key(`4\n`), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/empty", stage: inLobby, group: modp14, raw: key(""), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/not hex", stage: inLobby, group: modp14, raw: key("xyz"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/non-ASCII digits", stage: inLobby, group: modp14, raw: key("١٢٣"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "modp14/x25519 key with its group", stage: inLobby, group: modp14, raw: keyIn(x25519Key, "x25519"), code: wire.CodeGroupMismatch, id: `"k"`},
		{name: "modp14/other MODP group", stage: inLobby, group: modp14, raw: keyIn("4", "modp15"), code: wire.CodeGroupMismatch, id: `"k"`},
		{name: "modp14/unknown group", stage: inLobby, group: modp14, raw: keyIn("4", "modp2"), code: wire.CodeUnknownGroup, id: `"k"`},
		{name: "modp14/upper-case group name", stage: inLobby, group: modp14, raw: keyIn("4", "MODP14"), code: wire.CodeUnknownGroup, id: `"k"`},
		{name: "modp14/upper-case hex accepted", stage: inLobby, group: modp14, run: func(t *testing.T, fx *badFixture) {
			k := newKey(t, fx.group).PublicKey().Hex()
			acceptKey(t, fx, strings.ToUpper(k), k)
		}},
		{name: "modp14/leading zeros accepted", stage: inLobby, group: modp14, run: func(t *testing.T, fx *badFixture) {
			acceptKey(t, fx, strings.Repeat("0", 511)+"4", "4")
		}},

		// x25519: low-order points, non-canonical encodings, wrong lengths.
		{name: "x25519/zero", stage: inLobby, raw: key(strings.Repeat("00", 32)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/one", stage: inLobby, raw: key("01" + strings.Repeat("00", 31)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/order 8 (a)", stage: inLobby, raw: key("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/order 8 (b)", stage: inLobby, raw: key("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/p-1", stage: inLobby, raw: key("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/p", stage: inLobby, raw: key("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/p+1", stage: inLobby, raw: key("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/top bit set", stage: inLobby, raw: key(x25519Key[:62] + "ea"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/all ones", stage: inLobby, raw: key(strings.Repeat("ff", 32)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "x25519/31 bytes", stage: inLobby, raw: key(x25519Key[:62]), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "x25519/odd length", stage: inLobby, raw: key(x25519Key[:63]), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "x25519/33 bytes", stage: inLobby, raw: key(x25519Key + "00"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "x25519/short value", stage: inLobby, raw: key("09"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "x25519/sign", stage: inLobby, raw: key("-" + x25519Key[1:]), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "x25519/0x prefix", stage: inLobby, raw: key("0x" + x25519Key[2:]), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "x25519/p256 key", stage: inLobby, raw: key(p256Key), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "x25519/p256 key with its group", stage: inLobby, raw: keyIn(p256Key, "p256"), code: wire.CodeGroupMismatch, id: `"k"`},
		{name: "x25519/upper-case hex accepted", stage: inLobby, run: func(t *testing.T, fx *badFixture) {
			k := newKey(t, fx.group).PublicKey().Hex()
			acceptKey(t, fx, strings.ToUpper(k), k)
		}},

		// p256: uncompressed points on the curve only.
		{name: "p256/off the curve", stage: inLobby, group: p256, raw: key(p256Key[:129] + "a"), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "p256/compressed", stage: inLobby, group: p256, raw: key("03" + p256X), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "p256/compressed tag on 65 bytes", stage: inLobby, group: p256, raw: key("02" + p256X + p256Y), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "p256/infinity as 65 zero bytes", stage: inLobby, group: p256, raw: key(strings.Repeat("00", 65)), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "p256/infinity as 00", stage: inLobby, group: p256, raw: key("00"), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "p256/x = p", stage: inLobby, group: p256, raw: key("04" + p256P + p256Y), code: wire.CodeInvalidPublicKey, id: `"k"`},
		{name: "p256/no tag", stage: inLobby, group: p256, raw: key(p256X + p256Y), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "p256/x25519 key", stage: inLobby, group: p256, raw: key(x25519Key), code: wire.CodeMalformedKey, id: `"k"`},
		{name: "p256/upper-case hex accepted", stage: inLobby, group: p256, run: func(t *testing.T, fx *badFixture) {
			k := newKey(t, fx.group).PublicKey().Hex()
			acceptKey(t, fx, strings.ToUpper(k), k)
		}},

		// Order of the flow.
		{name: "flow/msg before the handshake", stage: inLobby, raw: `{"type":"msg","body":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","id":"m"}`, code: wire.CodeHandshakeIncomplete, id: `"m"`},
		{name: "flow/same key after the handshake", raw: key("{mykey}"), code: wire.CodeKeyAlreadySet, id: `"k"`},
		{name: "flow/new key after the handshake", raw: key(x25519Key), code: wire.CodeKeyAlreadySet, id: `"k"`},
		{name: "flow/create in a room", raw: `{"type":"create","id":"c"}`, code: wire.CodeAlreadyInRoom, id: `"c"`},
		{name: "flow/join in a room", raw: `{"type":"join","room":"{room}","id":"c"}`, code: wire.CodeAlreadyInRoom, id: `"c"`},
		{name: "flow/resume in a room", raw: `{"type":"resume","room":"{room}","peer":"{peer}","resume_token":"{token}","id":"c"}`, code: wire.CodeAlreadyInRoom, id: `"c"`},
		// ack of a seq never sent: no reply, and later messages still come.
		{name: "flow/ack of a seq never sent", raw: `{"type":"ack","seq":999,"id":"a"}`},
		{name: "flow/ack of seq 0", raw: `{"type":"ack","seq":0,"id":"a"}`},
		{name: "flow/ack of the largest seq", raw: `{"type":"ack","seq":18446744073709551615,"id":"a"}`},
		{name: "flow/key before a room", stage: outside, raw: key(x25519Key), code: wire.CodeNotInRoom, id: `"k"`},
		{name: "flow/msg before a room", stage: outside, raw: `{"type":"msg","body":"AAAA","id":"m"}`, code: wire.CodeNotInRoom, id: `"m"`},
		{name: "flow/ack before a room", stage: outside, raw: `{"type":"ack","seq":1,"id":"a"}`, code: wire.CodeNotInRoom, id: `"a"`},
		{name: "flow/leave before a room", stage: outside, raw: `{"type":"leave","id":"l"}`, code: wire.CodeNotInRoom, id: `"l"`},
		{name: "flow/key after leave", stage: afterLeave, raw: key(x25519Key), code: wire.CodeNotInRoom, id: `"k"`},
		{name: "flow/msg after leave", stage: afterLeave, raw: `{"type":"msg","body":"AAAA","id":"m"}`, code: wire.CodeNotInRoom, id: `"m"`},
		{name: "flow/ack after leave", stage: afterLeave, raw: `{"type":"ack","seq":1,"id":"a"}`, code: wire.CodeNotInRoom, id: `"a"`},
		{name: "flow/leave after leave", stage: afterLeave, raw: `{"type":"leave","id":"l"}`, code: wire.CodeNotInRoom, id: `"l"`},

		// Message bodies: standard base64 with padding, not empty.
		{name: "body/not base64", raw: `{"type":"msg","body":"not base64!","id":"b"}`, code: wire.CodeBadRequest, id: `"b"`},
		{name: "body/URL alphabet", raw: `{"type":"msg","body":"-_-_","id":"b"}`, code: wire.CodeBadRequest, id: `"b"`},
		{name: "body/no padding", raw: `{"type":"msg","body":"AAA","id":"b"}`, code: wire.CodeBadRequest, id: `"b"`},
		{name: "body/empty", raw: `{"type":"msg","body":"","id":"b"}`, code: wire.CodeBadRequest, id: `"b"`},

		// Rooms: IDs exactly as create returns them (lowercase UUIDs).
		{name: "room/upper case", stage: outside, frame: join(strings.ToUpper), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/no dashes", stage: outside, frame: join(func(r string) string { return strings.ReplaceAll(r, "-", "") }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/too long", stage: outside, frame: join(func(r string) string { return r + "0" }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/too short", stage: outside, frame: join(func(r string) string { return r[:35] }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/non-ASCII", stage: outside, frame: join(func(r string) string { return r[:35] + "é" }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/braces", stage: outside, frame: join(func(r string) string { return "{" + r + "}" }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/urn", stage: outside, frame: join(func(r string) string { return "urn:uuid:" + r }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/surrounding space", stage: outside, frame: join(func(r string) string { return " " + r }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/empty", stage: outside, frame: join(func(string) string { return "" }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/path", stage: outside, frame: join(func(string) string { return "../../etc/passwd" }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/10 KB", stage: outside, frame: join(func(string) string { return strings.Repeat("a", 10000) }), code: wire.CodeBadRequest, id: `"j"`},
		{name: "room/unknown", stage: outside, raw: `{"type":"join","room":"` + unknown + `","id":"j"}`, code: wire.CodeRoomNotFound, id: `"j"`},
		{name: "room/full", stage: thirdPeer, raw: `{"type":"join","room":"{room}","id":"j"}`, code: wire.CodeRoomFull, id: `"j"`},
		{name: "room/seat held for a dropped peer", stage: afterDrop, raw: `{"type":"join","room":"{room}","id":"j"}`, code: wire.CodeRoomFull, id: `"j"`},
		{name: "room/too many rooms", stage: outside, cfg: relay.Config{MaxRooms: 1}, raw: `{"type":"create","id":"c"}`, code: wire.CodeTooManyRooms, id: `"c"`},

		// create's group.
		{name: "group/unknown", stage: outside, raw: `{"type":"create","group":"rsa","id":"g"}`, code: wire.CodeUnknownGroup, id: `"g"`},
		{name: "group/upper case", stage: outside, raw: `{"type":"create","group":"X25519","id":"g"}`, code: wire.CodeUnknownGroup, id: `"g"`},
		{name: "group/number not canonical", stage: outside, raw: `{"type":"create","group":"05","id":"g"}`, code: wire.CodeUnknownGroup, id: `"g"`},
		{name: "group/empty", stage: outside, raw: `{"type":"create","group":"","id":"g"}`, code: wire.CodeUnknownGroup, id: `"g"`},
		{name: "group/RFC 3526 group 2", stage: outside, raw: `{"type":"create","group":"modp2","id":"g"}`, code: wire.CodeUnknownGroup, id: `"g"`},

		// Resume (§3): wrong token, unknown peer, after the grace period.
		{name: "resume/forged token", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"` + forged + `"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/token too short", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"c2hvcnQ"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/token too long", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{token}AAAA"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/token padded", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{token}="`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/token not base64url", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"` + strings.Repeat("!", 43) + `"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/token empty", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":""`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/the other peer's token", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{wtoken}"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/the other peer with a forged token", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{wpeer}","resume_token":"` + forged + `"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/unknown peer", stage: afterDrop, raw: resume(`"room":"{room}","peer":"` + unknown + `","resume_token":"{token}"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/peer ID upper case", stage: afterDrop, frame: func(fx *badFixture) string {
			return resume(`"room":"` + fx.room + `","peer":"` + strings.ToUpper(fx.peerID) + `","resume_token":"` + fx.token + `"`)
		}, code: wire.CodeBadRequest, id: `"r"`},
		{name: "resume/peer ID not a UUID", stage: afterDrop, raw: resume(`"room":"{room}","peer":"alice","resume_token":"{token}"`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "resume/room upper case", stage: afterDrop, frame: func(fx *badFixture) string {
			return resume(`"room":"` + strings.ToUpper(fx.room) + `","peer":"` + fx.peerID + `","resume_token":"` + fx.token + `"`)
		}, code: wire.CodeBadRequest, id: `"r"`},
		{name: "resume/unknown room", stage: afterDrop, raw: resume(`"room":"` + unknown + `","peer":"{peer}","resume_token":"{token}"`), code: wire.CodeRoomNotFound, id: `"r"`},
		{name: "resume/extra field", stage: afterDrop, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{token}","group":"x25519"`), code: wire.CodeBadRequest, id: `"r"`},
		{name: "resume/full room, forged token", stage: thirdPeer, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"` + forged + `"`), code: wire.CodeInvalidResume, id: `"r"`},
		{name: "resume/after the grace period", stage: afterGrace, cfg: relay.Config{ResumeGrace: 150 * time.Millisecond}, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"{token}"`), code: wire.CodeResumeExpired, id: `"r"`},
		{name: "resume/forged token after the grace period", stage: afterGrace, cfg: relay.Config{ResumeGrace: 150 * time.Millisecond}, raw: resume(`"room":"{room}","peer":"{peer}","resume_token":"` + forged + `"`), code: wire.CodeInvalidResume, id: `"r"`},

		// Rate limit (§3): flooded frames get rate_limited and are ignored;
		// the connection stays, and works once the bucket refills.
		{name: "rate/flood", cfg: relay.Config{FramesPerSecond: 2, FrameBurst: 10}, run: func(t *testing.T, fx *badFixture) {
			const n = 30
			frames := make([]string, n)
			for i := range frames {
				frames[i] = fmt.Sprintf(`{"type":"create","id":%d}`, i)
			}
			writeAll(t, fx.sender, frames...)
			limited := 0
			for i := 0; i < n; i++ {
				f := nextRaw(t, fx.sender)
				switch {
				case f.Type == wire.TypeError && f.Code == wire.CodeRateLimited:
					limited++
				case f.Type == wire.TypeError && f.Code == wire.CodeAlreadyInRoom:
					if string(f.ID) != fmt.Sprint(i) {
						t.Fatalf("reply %d is %s, for another frame", i, clip(f.raw))
					}
				default:
					t.Fatalf("reply %d: %s, want already_in_room or rate_limited", i, clip(f.raw))
				}
			}
			if limited == 0 {
				t.Fatalf("none of %d frames sent at once was rate-limited (burst 10)", n)
			}
			body, err := fx.p.aCh.Seal([]byte("after the flood"))
			if err != nil {
				t.Fatal(err)
			}
			f := untilNotRateLimited(t, fx.sender, `{"type":"msg","body":"`+b64(body)+`"}`)
			if f.Type != wire.TypeSent {
				t.Fatalf("got %s, want sent", clip(f.raw))
			}
			recvMsg(t, fx.watchers[0], fx.p.bCh, f.Seq, "after the flood")
		}},
		// A frame dropped by the rate limit is not read: its error carries no
		// id (docs/protocol.md §2).
		{name: "rate/rate-limited frame's id", stage: outside, cfg: relay.Config{FramesPerSecond: 0.5, FrameBurst: 1}, run: func(t *testing.T, fx *badFixture) {
			writeAll(t, fx.sender, `{"type":"leave","id":"first"}`, `{"type":"leave","id":"second"}`)
			expectErrorID(t, fx.sender, wire.CodeNotInRoom, `"first"`)
			expectErrorID(t, fx.sender, wire.CodeRateLimited, "")
			f := untilNotRateLimited(t, fx.sender, `{"type":"join","room":"`+fx.room+`"}`)
			if f.Type != wire.TypeRoom {
				t.Fatalf("got %s, want room", clip(f.raw))
			}
			if f := fx.watchers[0].expect(wire.TypePeerJoined); f["resumed"] != false {
				t.Fatalf("watcher got %v", f)
			}
		}},
	}
}

// msgFrameOfSize returns a valid msg frame of exactly n bytes (n > 28): a
// base64 body as long as fits, then JSON whitespace.
func msgFrameOfSize(n int) string {
	const env = len(`{"type":"msg","body":""}`)
	bodyLen := (n - env) / 4 * 4
	body := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, bodyLen/4*3))
	f := `{"type":"msg","body":"` + body + `"}`
	if pad := n - len(f); pad > 0 {
		f = f[:len(f)-1] + strings.Repeat(" ", pad) + "}"
	}
	return f
}
