package dh_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/dh"
)

// updateVectors makes TestVectorsFile rewrite docs/vectors.json instead of
// comparing it: go test ./dh -run TestVectorsFile -update
var updateVectors = flag.Bool("update", false, "rewrite docs/vectors.json from package dh")

// vectorsPath is the published known-answer file (docs/protocol.md §5.6),
// which web/test/crypto.test.mjs also reads.
var vectorsPath = filepath.Join("..", "docs", "vectors.json")

// publishedVectors is the layout of docs/vectors.json. Every hex string is
// lowercase.
type publishedVectors struct {
	Comment string          `json:"comment"`
	AAD     string          `json:"aad"`
	Groups  []publishedCase `json:"groups"`
}

type publishedCase struct {
	Group string `json:"group"`
	// Note says what the case exercises, where it is more than the group.
	Note string `json:"note,omitempty"`
	// Private keys: the 32-byte scalar (x25519, p256) or the MODP exponent
	// x without leading zeros.
	AlicePrivate string `json:"alice_private"`
	// Public keys on the wire (the public_key field) and as the fixed-length
	// bytes the key derivation, the roles and the safety number use.
	AlicePublic      string             `json:"alice_public"`
	AlicePublicBytes string             `json:"alice_public_bytes"`
	BobPrivate       string             `json:"bob_private"`
	BobPublic        string             `json:"bob_public"`
	BobPublicBytes   string             `json:"bob_public_bytes"`
	SharedSecret     string             `json:"shared_secret"` // Z
	Info             string             `json:"info"`          // HKDF info
	Key              string             `json:"key"`           // K
	SafetyNumber     string             `json:"safety_number"`
	AliceRole        int                `json:"alice_role"`
	Messages         []publishedMessage `json:"messages"`
}

type publishedMessage struct {
	Sender     string `json:"sender"`
	Role       int    `json:"role"`
	Counter    uint64 `json:"counter"`
	Nonce      string `json:"nonce"`
	Plaintext  string `json:"plaintext"`
	Body       string `json:"body"`
	BodyBase64 string `json:"body_base64"`
}

// fixedKeys returns the private keys of the vectors, per case: the RFC 7748
// keys and P-256 scalars of testdata/ec_vectors.json and the MODP exponents
// of testdata/seed_vectors.json (both checked against OpenSSL and Python
// by TestSeedVectors and TestDerivedVectors), and one modp14 pair chosen for its leading
// zeros.
func fixedKeys(t *testing.T) []publishedCase {
	t.Helper()
	byGroup := map[string]publishedCase{}
	var ec []publishedCase
	readJSON(t, "testdata/ec_vectors.json", &ec)
	for _, v := range ec {
		byGroup[v.Group] = publishedCase{Group: v.Group, AlicePrivate: v.AlicePrivate, BobPrivate: v.BobPrivate}
	}
	var seed struct {
		Seed []publishedCase `json:"seed"`
	}
	readJSON(t, "testdata/seed_vectors.json", &seed)
	for _, v := range seed.Seed {
		byGroup[v.Group] = publishedCase{Group: v.Group, AlicePrivate: v.AlicePrivate, BobPrivate: v.BobPrivate}
	}
	var out []publishedCase
	for _, name := range []string{"x25519", "p256", "modp5", "modp14", "modp15", "modp16", "modp17", "modp18"} {
		v, ok := byGroup[name]
		if !ok {
			t.Fatalf("no fixed private keys for %s", name)
		}
		out = append(out, v)
	}
	// x = SHA-256("keyrelay/v1/vectors/modp14/alice/158") and
	// SHA-256("keyrelay/v1/vectors/modp14/bob/173"): the first of that
	// series whose public key, and the first whose Z, starts with a zero
	// byte. TestVectorsCoverage checks that they still do.
	return append(out, publishedCase{
		Group: "modp14",
		Note: "alice_private has an odd number of hex digits; alice's public key starts with a zero byte " +
			"(510 hex digits on the wire, 256 bytes in the key derivation); Z starts with a zero byte",
		AlicePrivate: "f68871f2a96055f1b1785ea88cd7e650f4ab994ddf0e20251cd2269e71c0711",
		BobPrivate:   "850e88752eff235aad0bf5671eb695fefd0205b27b88031c3ee5f13a340ea3e4",
	})
}

// vectorPlaintexts are sealed by each side, in this order, at these
// counters. The last counter is above 2^32, so that both halves of the
// counter's eight bytes are exercised.
func vectorPlaintexts() ([][]byte, []uint64) {
	long := make([]byte, 300)
	for i := range long {
		long[i] = byte(i * 7)
	}
	return [][]byte{[]byte("hello"), {}, long, []byte("counter 2^32+5")}, []uint64{0, 1, 2, 1<<32 + 5}
}

// fromSpec computes info, K, a sealed body and the safety number from the
// formulas of docs/protocol.md §5.3-§5.5, without package dh, so that the
// published vectors check the document as well as the code.
type fromSpec struct {
	group  string
	lo, hi []byte
	z      []byte
}

func (s fromSpec) transcript(label string) []byte {
	t := append([]byte(label), 0)
	t = append(t, s.group...)
	t = append(t, 0)
	t = append(t, s.lo...)
	return append(t, s.hi...)
}

func (s fromSpec) key(t *testing.T) []byte {
	k, err := hkdf.Key(sha256.New, s.z, nil, string(s.transcript("keyrelay/v1/key")), 32)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (s fromSpec) seal(t *testing.T, role uint32, c uint64, plaintext []byte) (nonce, body []byte) {
	block, err := aes.NewCipher(s.key(t))
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, role), c)
	body = binary.BigEndian.AppendUint64(nil, c)
	return nonce, gcm.Seal(body, nonce, plaintext, []byte("keyrelay/v1/msg"))
}

func (s fromSpec) safetyNumber() string {
	h := sha512.Sum512(s.transcript("keyrelay/v1/safety-number"))
	var groups []string
	for i := 0; i < 12; i++ {
		var b [8]byte
		copy(b[3:], h[5*i:5*i+5])
		groups = append(groups, fmt.Sprintf("%05d", binary.BigEndian.Uint64(b[:])%100000))
	}
	return strings.Join(groups, " ")
}

// buildVectors computes docs/vectors.json with package dh and checks every
// value against fromSpec.
func buildVectors(t *testing.T) *publishedVectors {
	t.Helper()
	out := &publishedVectors{
		Comment: "Known-answer vectors of docs/protocol.md §5 (keys, Z, K, safety number, sealed messages); " +
			"generated by TestVectorsFile (dh/vectors_test.go) from package dh; " +
			"do not edit: go test ./dh -run TestVectorsFile -update",
		AAD: "keyrelay/v1/msg",
	}
	for _, c := range fixedKeys(t) {
		g := mustGroup(t, c.Group)
		alice, err := g.ParsePrivateKey(c.AlicePrivate)
		if err != nil {
			t.Fatalf("%s alice: %v", c.Group, err)
		}
		bob, err := g.ParsePrivateKey(c.BobPrivate)
		if err != nil {
			t.Fatalf("%s bob: %v", c.Group, err)
		}
		ap, bp := alice.PublicKey(), bob.PublicKey()
		z, err := alice.SharedSecret(bp)
		if err != nil {
			t.Fatal(err)
		}
		if z2, err := bob.SharedSecret(ap); err != nil || !bytes.Equal(z, z2) {
			t.Fatalf("%s: the two shared secrets differ (%v)", c.Group, err)
		}
		k, err := dh.DeriveKey(z, ap, bp)
		if err != nil {
			t.Fatal(err)
		}
		sn, err := dh.SafetyNumber(ap, bp)
		if err != nil {
			t.Fatal(err)
		}
		ach, err := dh.NewChannel(z, ap, bp)
		if err != nil {
			t.Fatal(err)
		}
		bch, err := dh.NewChannel(z, bp, ap)
		if err != nil {
			t.Fatal(err)
		}
		spec := fromSpec{group: c.Group, lo: ap.Bytes(), hi: bp.Bytes(), z: z}
		if bytes.Compare(spec.lo, spec.hi) > 0 {
			spec.lo, spec.hi = spec.hi, spec.lo
		}
		if !bytes.Equal(k, spec.key(t)) {
			t.Fatalf("%s: DeriveKey differs from §5.3's formula", c.Group)
		}
		if sn != spec.safetyNumber() {
			t.Fatalf("%s: SafetyNumber differs from §5.5's formula", c.Group)
		}
		wantRole := 1
		if bytes.Equal(spec.lo, ap.Bytes()) {
			wantRole = 0
		}
		if ach.Role() != wantRole || bch.Role() != 1-wantRole {
			t.Fatalf("%s: roles %d, %d; §5.4 gives alice %d", c.Group, ach.Role(), bch.Role(), wantRole)
		}
		gv := publishedCase{
			Group:            c.Group,
			Note:             c.Note,
			AlicePrivate:     alice.Hex(),
			AlicePublic:      ap.Hex(),
			AlicePublicBytes: hex.EncodeToString(ap.Bytes()),
			BobPrivate:       bob.Hex(),
			BobPublic:        bp.Hex(),
			BobPublicBytes:   hex.EncodeToString(bp.Bytes()),
			SharedSecret:     hex.EncodeToString(z),
			Info:             hex.EncodeToString(spec.transcript("keyrelay/v1/key")),
			Key:              hex.EncodeToString(k),
			SafetyNumber:     sn,
			AliceRole:        ach.Role(),
		}
		pts, counters := vectorPlaintexts()
		for _, side := range []struct {
			name     string
			from, to *dh.Channel
		}{{"alice", ach, bch}, {"bob", bch, ach}} {
			for i, pt := range pts {
				if err := side.from.SetState(dh.ChannelState{NextSend: counters[i], NextReceive: side.from.State().NextReceive}); err != nil {
					t.Fatal(err)
				}
				body, err := side.from.Seal(pt)
				if err != nil {
					t.Fatal(err)
				}
				nonce, specBody := spec.seal(t, uint32(side.from.Role()), counters[i], pt)
				if !bytes.Equal(body, specBody) {
					t.Fatalf("%s %s message %d: Seal differs from §5.4's formula", c.Group, side.name, i)
				}
				if got, err := side.to.Open(body); err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("%s %s message %d does not open: %v", c.Group, side.name, i, err)
				}
				gv.Messages = append(gv.Messages, publishedMessage{
					Sender:     side.name,
					Role:       side.from.Role(),
					Counter:    counters[i],
					Nonce:      hex.EncodeToString(nonce),
					Plaintext:  hex.EncodeToString(pt),
					Body:       hex.EncodeToString(body),
					BodyBase64: base64.StdEncoding.EncodeToString(body),
				})
			}
		}
		out.Groups = append(out.Groups, gv)
	}
	return out
}

// TestVectorsFile checks that docs/vectors.json is what package dh and the
// formulas of docs/protocol.md compute today; with -update it rewrites it.
func TestVectorsFile(t *testing.T) {
	v := buildVectors(t)
	want, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if *updateVectors {
		if err := os.WriteFile(vectorsPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", vectorsPath)
		return
	}
	got, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("%v (run: go test ./dh -run TestVectorsFile -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what package dh computes now; run: go test ./dh -run TestVectorsFile -update", vectorsPath)
	}
}

// TestVectorsCoverage checks what the published vectors promise: every
// group, both roles, and a MODP case whose wire forms are shorter than the
// fixed-length ones.
func TestVectorsCoverage(t *testing.T) {
	v := buildVectors(t)
	seen := map[string]bool{}
	roles := map[int]bool{}
	for _, g := range v.Groups {
		seen[g.Group] = true
		roles[g.AliceRole] = true
		if len(g.Messages) != 8 {
			t.Errorf("%s: %d messages, want 8", g.Group, len(g.Messages))
		}
	}
	for _, g := range dh.Groups() {
		if !seen[g.Name()] {
			t.Errorf("docs/vectors.json has no %s case", g.Name())
		}
	}
	if !roles[0] || !roles[1] {
		t.Errorf("alice has role %v only: want cases of both roles", roles)
	}
	last := v.Groups[len(v.Groups)-1]
	if len(last.AlicePrivate)%2 != 1 || len(last.AlicePublic) != 510 || len(last.AlicePublicBytes) != 512 ||
		!strings.HasPrefix(last.SharedSecret, "00") || last.Note == "" {
		t.Errorf("the leading-zeros case no longer has its leading zeros: %d, %d, %d, %.4s",
			len(last.AlicePrivate), len(last.AlicePublic), len(last.AlicePublicBytes), last.SharedSecret)
	}
}

// TestProtocolWorkedExample checks that the worked example of
// docs/protocol.md §5.7 is the x25519 case of docs/vectors.json, so that
// the document cannot drift from the vectors.
func TestProtocolWorkedExample(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "docs", "protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	want := workedExample(t, buildVectors(t))
	if !strings.Contains(doc, want) {
		t.Fatalf("docs/protocol.md §5.7 does not hold the worked example of docs/vectors.json; it should contain:\n%s", want)
	}
}

// workedExample renders the x25519 case as §5.7 shows it.
func workedExample(t *testing.T, v *publishedVectors) string {
	t.Helper()
	var g *publishedCase
	for i := range v.Groups {
		if v.Groups[i].Group == "x25519" {
			g = &v.Groups[i]
			break
		}
	}
	if g == nil {
		t.Fatal("no x25519 case")
	}
	lines := []string{
		"```",
		"group               x25519",
		"alice private key   " + g.AlicePrivate,
		"alice public_key    " + g.AlicePublic,
		"bob private key     " + g.BobPrivate,
		"bob public_key      " + g.BobPublic,
		"Z                   " + g.SharedSecret,
		"lo, hi              " + map[bool]string{true: "alice's key, bob's key", false: "bob's key, alice's key"}[g.AliceRole == 0],
		"K                   " + g.Key,
		"safety number       " + g.SafetyNumber,
	}
	for _, m := range g.Messages {
		if m.Counter != 0 || len(m.Plaintext) == 0 {
			continue
		}
		sealed := strings.TrimPrefix(m.Body, fmt.Sprintf("%016x", m.Counter))
		lines = append(lines, "",
			fmt.Sprintf("%s (role %d) seals %q with counter c = %d:", m.Sender, m.Role, mustUnhex(t, m.Plaintext), m.Counter),
			"nonce               "+m.Nonce,
			fmt.Sprintf("body bytes (hex)    %016x ‖ %s", m.Counter, sealed),
			"body                "+m.BodyBase64,
		)
	}
	lines = append(lines, "```")
	return strings.Join(lines, "\n") + "\n"
}

func mustUnhex(t *testing.T, s string) string {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
