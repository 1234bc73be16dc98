package dh_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"strings"
	"testing"

	"crypto/rand"

	"github.com/keyrelay/keyrelay/dh"
)

func mustGroup(t testing.TB, name string) *dh.Group {
	t.Helper()
	g, err := dh.LookupGroup(name)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestLookupGroup(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"modp5", "modp5"}, {"5", "modp5"}, {"modp14", "modp14"}, {"14", "modp14"},
		{"15", "modp15"}, {"16", "modp16"}, {"17", "modp17"}, {"18", "modp18"},
		{"x25519", "x25519"}, {"p256", "p256"},
	}
	for _, tt := range tests {
		g, err := dh.LookupGroup(tt.in)
		if err != nil || g.Name() != tt.want {
			t.Errorf("LookupGroup(%q) = %v, %v; want %s", tt.in, g, err, tt.want)
		}
	}
	for _, bad := range []string{"", "1", "2", "13", "19", "014", "05", "+5", "+14", "MODP14", "modp", "X25519", "p-256", strings.Repeat("9", 100)} {
		if g, err := dh.LookupGroup(bad); !errors.Is(err, dh.ErrUnknownGroup) {
			t.Errorf("LookupGroup(%q) = %v, %v; want ErrUnknownGroup", bad, g, err)
		}
	}
	if got := dh.MODP14().ID(); got != 14 {
		t.Errorf("MODP14().ID() = %d", got)
	}
}

// TestSeedVectors checks the tutorial's Python code's outputs, computed by
// testdata/seed_vectors.py, for every MODP group: public keys from private
// keys, and the seed shared key from both sides.
func TestSeedVectors(t *testing.T) {
	var v struct {
		Seed []struct {
			Group        string `json:"group"`
			AlicePrivate string `json:"alice_private"`
			AlicePublic  string `json:"alice_public"`
			BobPrivate   string `json:"bob_private"`
			BobPublic    string `json:"bob_public"`
			SharedKey    string `json:"shared_key"`
		} `json:"seed"`
	}
	readJSON(t, "testdata/seed_vectors.json", &v)
	if len(v.Seed) != 6 {
		t.Fatalf("%d seed vectors, want 6", len(v.Seed))
	}
	for _, tv := range v.Seed {
		t.Run(tv.Group, func(t *testing.T) {
			g := mustGroup(t, tv.Group)
			for _, side := range []struct{ priv, pub, peer string }{
				{tv.AlicePrivate, tv.AlicePublic, tv.BobPublic},
				{tv.BobPrivate, tv.BobPublic, tv.AlicePublic},
			} {
				k, err := g.ParsePrivateKey(side.priv)
				if err != nil {
					t.Fatalf("ParsePrivateKey: %v", err)
				}
				if got := k.Hex(); got != side.priv {
					t.Errorf("private Hex = %s, want %s", got, side.priv)
				}
				if got := k.PublicKey().Hex(); got != side.pub {
					t.Errorf("public key = %s…, want %s…", got[:16], side.pub[:16])
				}
				peer, err := g.ParsePublicKey(side.peer)
				if err != nil {
					t.Fatalf("ParsePublicKey: %v", err)
				}
				z, err := k.SharedSecret(peer)
				if err != nil {
					t.Fatal(err)
				}
				if got := dh.SeedKey(z); got != tv.SharedKey {
					t.Errorf("SeedKey = %s, want %s", got, tv.SharedKey)
				}
			}
		})
	}
}

type derivedVector struct {
	Group        string `json:"group"`
	AlicePrivate string `json:"alice_private"`
	AlicePublic  string `json:"alice_public"`
	BobPrivate   string `json:"bob_private"`
	BobPublic    string `json:"bob_public"`
	SharedSecret string `json:"shared_secret"`
	Key          string `json:"key"`
	SafetyNumber string `json:"safety_number"`
}

// TestDerivedVectors checks DeriveKey and SafetyNumber against independent
// implementations of the spec: Python (MODP groups) and Node.js (curves).
func TestDerivedVectors(t *testing.T) {
	var py struct {
		Derived []derivedVector `json:"derived"`
	}
	readJSON(t, "testdata/seed_vectors.json", &py)
	var node []derivedVector
	readJSON(t, "testdata/ec_vectors.json", &node)
	all := append(py.Derived, node...)
	if len(all) != 8 {
		t.Fatalf("%d vectors, want 8 (one per group)", len(all))
	}
	for _, tv := range all {
		t.Run(tv.Group, func(t *testing.T) {
			g := mustGroup(t, tv.Group)
			a, err := g.ParsePublicKey(tv.AlicePublic)
			if err != nil {
				t.Fatal(err)
			}
			b, err := g.ParsePublicKey(tv.BobPublic)
			if err != nil {
				t.Fatal(err)
			}
			if tv.AlicePrivate != "" {
				k, err := g.ParsePrivateKey(tv.AlicePrivate)
				if err != nil {
					t.Fatal(err)
				}
				if !k.PublicKey().Equal(a) {
					t.Fatalf("alice's public key = %s, want %s", k.PublicKey().Hex(), tv.AlicePublic)
				}
				z, err := k.SharedSecret(b)
				if err != nil {
					t.Fatal(err)
				}
				if got := hex.EncodeToString(z); got != tv.SharedSecret {
					t.Errorf("SharedSecret = %s, want %s", got, tv.SharedSecret)
				}
			}
			z, _ := hex.DecodeString(tv.SharedSecret)
			for _, order := range [][2]*dh.PublicKey{{a, b}, {b, a}} {
				key, err := dh.DeriveKey(z, order[0], order[1])
				if err != nil {
					t.Fatal(err)
				}
				if got := hex.EncodeToString(key); got != tv.Key {
					t.Errorf("DeriveKey = %s, want %s", got, tv.Key)
				}
				sn, err := dh.SafetyNumber(order[0], order[1])
				if err != nil {
					t.Fatal(err)
				}
				if sn != tv.SafetyNumber {
					t.Errorf("SafetyNumber = %s, want %s", sn, tv.SafetyNumber)
				}
			}
		})
	}
}

// TestExchangeEveryGroup runs a full exchange with generated keys in every
// group and checks both sides agree, and that a different key disagrees.
func TestExchangeEveryGroup(t *testing.T) {
	for _, g := range dh.Groups() {
		t.Run(g.Name(), func(t *testing.T) {
			t.Parallel()
			alice, err := g.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			bob, err := g.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			eve, err := g.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			// Public keys survive a round trip through their wire encoding
			// and pass validation.
			for _, k := range []*dh.PrivateKey{alice, bob} {
				pk, err := g.ParsePublicKey(k.PublicKey().Hex())
				if err != nil {
					t.Fatalf("own public key rejected: %v", err)
				}
				if !pk.Equal(k.PublicKey()) {
					t.Fatal("public key changed in a hex round trip")
				}
				if got, want := len(pk.Bytes()), g.Size(); got != want {
					t.Fatalf("len(Bytes) = %d, want Size %d", got, want)
				}
				pk2, err := g.NewPublicKey(pk.Bytes())
				if err != nil || !pk2.Equal(pk) {
					t.Fatalf("NewPublicKey(Bytes()) = %v", err)
				}
				back, err := g.ParsePrivateKey(k.Hex())
				if err != nil || !back.Equal(k) {
					t.Fatalf("private key hex round trip: %v", err)
				}
			}
			zA, err := alice.SharedSecret(bob.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			zB, err := bob.SharedSecret(alice.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(zA, zB) || len(zA) != g.SharedSecretSize() {
				t.Fatalf("shared secrets differ or have the wrong size (%d, %d)", len(zA), len(zB))
			}
			kA, _ := dh.DeriveKey(zA, alice.PublicKey(), bob.PublicKey())
			kB, _ := dh.DeriveKey(zB, bob.PublicKey(), alice.PublicKey())
			if !bytes.Equal(kA, kB) || len(kA) != dh.KeySize {
				t.Fatal("derived keys differ")
			}
			// A man in the middle changes the key and the safety number.
			kE, _ := dh.DeriveKey(zA, alice.PublicKey(), eve.PublicKey())
			if bytes.Equal(kA, kE) {
				t.Fatal("DeriveKey does not bind the public keys")
			}
			snA, _ := dh.SafetyNumber(alice.PublicKey(), bob.PublicKey())
			snB, _ := dh.SafetyNumber(bob.PublicKey(), alice.PublicKey())
			snE, _ := dh.SafetyNumber(alice.PublicKey(), eve.PublicKey())
			if snA != snB || snA == snE {
				t.Fatalf("safety numbers: %s / %s / %s", snA, snB, snE)
			}
			if len(snA) != 71 {
				t.Fatalf("safety number %q has length %d, want 71", snA, len(snA))
			}
			if seedA, seedB := dh.SeedKey(zA), dh.SeedKey(zB); seedA != seedB || len(seedA) != 64 {
				t.Fatal("seed keys differ")
			}
		})
	}
}

func TestGroupMismatch(t *testing.T) {
	a, _ := dh.X25519().GenerateKey(rand.Reader)
	b, _ := dh.P256().GenerateKey(rand.Reader)
	if _, err := a.SharedSecret(b.PublicKey()); !errors.Is(err, dh.ErrGroupMismatch) {
		t.Errorf("SharedSecret across groups = %v, want ErrGroupMismatch", err)
	}
	if _, err := dh.DeriveKey(make([]byte, 32), a.PublicKey(), b.PublicKey()); !errors.Is(err, dh.ErrGroupMismatch) {
		t.Errorf("DeriveKey across groups = %v", err)
	}
	if _, err := dh.SafetyNumber(a.PublicKey(), b.PublicKey()); !errors.Is(err, dh.ErrGroupMismatch) {
		t.Errorf("SafetyNumber across groups = %v", err)
	}
	if _, err := dh.DeriveKey(make([]byte, 31), a.PublicKey(), a.PublicKey()); err == nil {
		t.Error("DeriveKey accepted a 31-byte secret for x25519")
	}
}

// TestParsePublicKeyErrors feeds every kind of malformed and invalid text to
// every group and checks the exact error and its family.
func TestParsePublicKeyErrors(t *testing.T) {
	for _, g := range dh.Groups() {
		size := g.Size()
		fixed := g.ID() == 0
		valid, _ := g.GenerateKey(rand.Reader)
		vhex := valid.PublicKey().Hex()
		tests := []struct {
			name string
			in   string
			want error
		}{
			{"empty", "", dh.ErrKeyEmpty},
			{"minus", "-" + vhex, dh.ErrKeySigned},
			{"plus", "+" + vhex, dh.ErrKeySigned},
			{"0x prefix", "0x" + vhex[2:], dh.ErrKeyNotHex},
			{"space", " " + vhex[1:], dh.ErrKeyNotHex},
			{"trailing newline", vhex[:len(vhex)-1] + "\n", dh.ErrKeyNotHex},
			{"underscore", vhex[:4] + "_" + vhex[5:], dh.ErrKeyNotHex},
			{"non-hex letter", vhex[:10] + "g" + vhex[11:], dh.ErrKeyNotHex},
			{"utf-8", vhex[:10] + "é" + vhex[12:], dh.ErrKeyNotHex},
			{"too long", strings.Repeat("1", 2*size+1), dh.ErrKeyTooLong},
			{"huge", strings.Repeat("f", 1<<20), dh.ErrKeyTooLong},
		}
		if fixed {
			tests = append(tests,
				struct {
					name string
					in   string
					want error
				}{"short", vhex[:len(vhex)-2], dh.ErrKeyLength},
				struct {
					name string
					in   string
					want error
				}{"odd", vhex[:len(vhex)-1], dh.ErrKeyLength},
			)
		}
		for _, tt := range tests {
			t.Run(g.Name()+"/"+tt.name, func(t *testing.T) {
				k, err := g.ParsePublicKey(tt.in)
				if k != nil || !errors.Is(err, tt.want) {
					t.Fatalf("ParsePublicKey = %v, %v; want %v", k, err, tt.want)
				}
				if !errors.Is(err, dh.ErrMalformedKey) || errors.Is(err, dh.ErrInvalidPublicKey) {
					t.Fatalf("%v is not only in the ErrMalformedKey family", err)
				}
			})
		}
		t.Run(g.Name()+"/uppercase accepted", func(t *testing.T) {
			k, err := g.ParsePublicKey(strings.ToUpper(vhex))
			if err != nil || !k.Equal(valid.PublicKey()) {
				t.Fatalf("upper-case hex: %v", err)
			}
		})
		if !fixed {
			t.Run(g.Name()+"/leading zeros accepted", func(t *testing.T) {
				padded := strings.Repeat("0", 2*size-len(vhex)) + vhex
				k, err := g.ParsePublicKey(padded)
				if err != nil || !k.Equal(valid.PublicKey()) || k.Hex() != vhex {
					t.Fatalf("zero-padded hex: %v", err)
				}
			})
		}
	}
}

func TestX25519InvalidKeys(t *testing.T) {
	g := dh.X25519()
	le := func(s string) string { return s } // the vectors below are already little-endian hex
	tests := []struct {
		name string
		in   string
		want error
	}{
		// Points of order 1, 2, 4 and 8 (RFC 7748 §7; the list libsodium and
		// others reject).
		{"zero", le(strings.Repeat("00", 32)), dh.ErrLowOrder},
		{"one", le("01" + strings.Repeat("00", 31)), dh.ErrLowOrder},
		{"order 8 (a)", le("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), dh.ErrLowOrder},
		{"order 8 (b)", le("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"), dh.ErrLowOrder},
		{"p-1 (order 2)", le("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), dh.ErrLowOrder},
		// Non-canonical encodings: u >= p, top bit set.
		{"p", le("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), dh.ErrKeyOutOfRange},
		{"p+1", le("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), dh.ErrKeyOutOfRange},
		{"top bit", le("0900000000000000000000000000000000000000000000000000000000000080"), dh.ErrKeyOutOfRange},
		{"all ones", le(strings.Repeat("ff", 32)), dh.ErrKeyOutOfRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := g.ParsePublicKey(tt.in)
			if !errors.Is(err, tt.want) || !errors.Is(err, dh.ErrInvalidPublicKey) {
				t.Fatalf("ParsePublicKey = %v, want %v", err, tt.want)
			}
		})
	}
	// The base point u = 9 is a valid key.
	if _, err := g.ParsePublicKey("09" + strings.Repeat("00", 31)); err != nil {
		t.Errorf("base point rejected: %v", err)
	}
}

func TestP256InvalidKeys(t *testing.T) {
	g := dh.P256()
	k, _ := g.GenerateKey(rand.Reader)
	b := k.PublicKey().Bytes()
	offCurve := append([]byte(nil), b...)
	offCurve[64] ^= 1
	compressedTag := append([]byte(nil), b...)
	compressedTag[0] = 0x02
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"off curve", offCurve},
		{"wrong tag", compressedTag},
		{"infinity", make([]byte, 65)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := g.ParsePublicKey(hex.EncodeToString(tt.in))
			if !errors.Is(err, dh.ErrKeyNotOnCurve) || !errors.Is(err, dh.ErrInvalidPublicKey) {
				t.Fatalf("ParsePublicKey = %v, want ErrKeyNotOnCurve", err)
			}
		})
	}
	// A compressed point is the wrong length for the uncompressed encoding.
	if _, err := g.ParsePublicKey(hex.EncodeToString(b[:33])); !errors.Is(err, dh.ErrKeyLength) {
		t.Errorf("33-byte key: %v, want ErrKeyLength", err)
	}
	if _, err := g.NewPublicKey(b[:64]); !errors.Is(err, dh.ErrKeyLength) {
		t.Errorf("NewPublicKey(64 bytes): %v, want ErrKeyLength", err)
	}
}

func TestParsePrivateKeyErrors(t *testing.T) {
	q14 := strings.Repeat("f", 512) // > q for modp14
	tests := []struct {
		group, in string
		want      error
	}{
		{"modp14", "0", dh.ErrInvalidPrivateKey},
		{"modp14", strings.Repeat("0", 100), dh.ErrInvalidPrivateKey},
		{"modp14", q14, dh.ErrInvalidPrivateKey},
		{"modp14", q14 + "0", dh.ErrKeyTooLong},
		{"modp14", "", dh.ErrKeyEmpty},
		{"modp14", "-1", dh.ErrKeySigned},
		{"modp14", "0x1", dh.ErrKeyNotHex},
		{"x25519", "01", dh.ErrKeyLength},
		{"p256", strings.Repeat("0", 64), dh.ErrInvalidPrivateKey},
		{"p256", strings.Repeat("f", 64), dh.ErrInvalidPrivateKey},
	}
	for _, tt := range tests {
		t.Run(tt.group+"/"+truncate(tt.in), func(t *testing.T) {
			k, err := mustGroup(t, tt.group).ParsePrivateKey(tt.in)
			if k != nil || !errors.Is(err, tt.want) {
				t.Fatalf("ParsePrivateKey = %v, %v; want %v", k, err, tt.want)
			}
		})
	}
	// The smallest exponent, 1, and the largest, q-1, are accepted; q is not.
	var fixture struct {
		Primes map[string]string `json:"primes"`
	}
	readJSON(t, "testdata/rfc3526-node.json", &fixture)
	p, _ := new(big.Int).SetString(fixture.Primes["modp14"], 16)
	q := new(big.Int).Rsh(p, 1)
	qm1 := new(big.Int).Sub(q, big.NewInt(1))
	g := dh.MODP14()
	for _, x := range []string{"1", qm1.Text(16)} {
		if _, err := g.ParsePrivateKey(x); err != nil {
			t.Errorf("ParsePrivateKey(%s) = %v", truncate(x), err)
		}
	}
	if _, err := g.ParsePrivateKey(q.Text(16)); !errors.Is(err, dh.ErrInvalidPrivateKey) {
		t.Errorf("ParsePrivateKey(q) = %v, want ErrInvalidPrivateKey", err)
	}
}

func truncate(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

// TestGenerateKeyExponentSize checks the documented exponent lengths and that
// a failing random source is reported, not ignored.
func TestGenerateKeyExponentSize(t *testing.T) {
	want := map[string]int{"modp5": 32, "modp14": 32, "modp15": 32, "modp16": 38, "modp17": 44, "modp18": 50, "x25519": 32, "p256": 32}
	for _, g := range dh.Groups() {
		k, err := g.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(k.Bytes()); got != want[g.Name()] {
			t.Errorf("%s: exponent is %d bytes, want %d", g.Name(), got, want[g.Name()])
		}
	}
	if _, err := dh.MODP14().GenerateKey(iotest{}); err == nil {
		t.Error("GenerateKey with a failing reader succeeded")
	}
	// A reader that first yields the one rejected candidate (all ones) and
	// then zeros gives the exponent 1.
	r := io.MultiReader(bytes.NewReader(bytes.Repeat([]byte{0xff}, 32)), bytes.NewReader(make([]byte, 32)))
	k, err := dh.MODP14().GenerateKey(r)
	if err != nil {
		t.Fatal(err)
	}
	if k.Hex() != "1" || k.PublicKey().Hex() != "2" {
		t.Errorf("exponent = %s, public = %s; want 1 and 2", k.Hex(), k.PublicKey().Hex())
	}
}

type iotest struct{}

func (iotest) Read([]byte) (int, error) { return 0, errors.New("entropy source failed") }

// TestPrivateKeyRedacted checks that no formatting or logging path prints a
// private key's secret.
func TestPrivateKeyRedacted(t *testing.T) {
	for _, g := range dh.Groups() {
		k, _ := g.GenerateKey(rand.Reader)
		secret := k.Hex()
		var buf bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&buf, nil))
		logger.Info("key", "private", k)
		slog.New(slog.NewTextHandler(&buf, nil)).Info("key", "private", k)
		out := buf.String() + fmt.Sprint(k) + fmt.Sprintf("%v %+v %#v %s", k, k, k, k)
		if strings.Contains(out, secret) || !strings.Contains(out, "REDACTED") {
			t.Errorf("%s: private key printed: %s", g.Name(), out)
		}
	}
}
