package dh

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
)

// KeySize is the length in bytes of the key [DeriveKey] returns.
const KeySize = 32

const (
	kdfLabel    = "keyrelay/v1/key"
	safetyLabel = "keyrelay/v1/safety-number"
)

// SeedKey is the tutorial's key derivation: the lowercase hex SHA-256 of the
// shared secret z written as a decimal integer without leading zeros (Python:
// sha256(str(z).encode()).hexdigest()). It is kept bit for bit so that the
// tutorial's clients interoperate; new clients should use DeriveKey, which
// binds both public keys. The decimal conversion is not constant-time.
func SeedKey(secret []byte) string {
	sum := sha256.Sum256([]byte(new(big.Int).SetBytes(secret).String()))
	return hex.EncodeToString(sum[:])
}

// DeriveKey derives a KeySize-byte symmetric key from the raw shared secret
// and the two public keys of the exchange, in either order:
// HKDF-SHA256(IKM = secret, salt = empty, info = "keyrelay/v1/key" || 0x00 ||
// group name || 0x00 || lo || hi), where lo and hi are the keys' Bytes in
// increasing order. It returns ErrGroupMismatch if the keys' groups differ,
// and an error if secret is not the group's SharedSecretSize long.
func DeriveKey(secret []byte, a, b *PublicKey) ([]byte, error) {
	info, err := transcript(kdfLabel, a, b)
	if err != nil {
		return nil, err
	}
	if len(secret) != a.group.SharedSecretSize() {
		return nil, fmt.Errorf("dh: shared secret is %d bytes, want %d for %s", len(secret), a.group.SharedSecretSize(), a.group.name)
	}
	return hkdf.Key(sha256.New, secret, nil, string(info), KeySize)
}

// SafetyNumber returns the 60-digit number, in twelve groups of five, that
// two users compare out of band to detect a man-in-the-middle: the same for
// (a, b) and (b, a), different for any other pair of keys. The algorithm is
// in the package documentation. It returns ErrGroupMismatch if the keys'
// groups differ.
func SafetyNumber(a, b *PublicKey) (string, error) {
	t, err := transcript(safetyLabel, a, b)
	if err != nil {
		return "", err
	}
	h := sha512.Sum512(t)
	var sb strings.Builder
	for i := 0; i < 12; i++ {
		var chunk [8]byte
		copy(chunk[3:], h[5*i:5*i+5])
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%05d", binary.BigEndian.Uint64(chunk[:])%100000)
	}
	return sb.String(), nil
}

// transcript returns label || 0x00 || group || 0x00 || lo || hi.
func transcript(label string, a, b *PublicKey) ([]byte, error) {
	if a == nil || b == nil || a.group != b.group {
		return nil, ErrGroupMismatch
	}
	lo, hi := a.b, b.b
	if bytes.Compare(lo, hi) > 0 {
		lo, hi = hi, lo
	}
	t := make([]byte, 0, len(label)+len(a.group.name)+2+len(lo)+len(hi))
	t = append(t, label...)
	t = append(t, 0)
	t = append(t, a.group.name...)
	t = append(t, 0)
	t = append(t, lo...)
	return append(t, hi...), nil
}
