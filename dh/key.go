package dh

import (
	"crypto/ecdh"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
)

// PublicKey is a validated Diffie-Hellman public key. Every PublicKey value
// has passed the checks of [Group.ParsePublicKey]; it is immutable and safe
// for concurrent use.
type PublicKey struct {
	group *Group
	b     []byte          // fixed-length encoding, Group.Size bytes
	ec    *ecdh.PublicKey // nil for MODP groups
}

// Group returns the key's group.
func (k *PublicKey) Group() *Group { return k.group }

// Bytes returns a copy of the key's fixed-length encoding: y as big-endian
// bytes as long as p for a MODP group, the 32-byte u-coordinate for x25519,
// and the 65-byte uncompressed point for p256. The key derivation and safety
// number are defined over these bytes.
func (k *PublicKey) Bytes() []byte { return append([]byte(nil), k.b...) }

// Hex returns the key's wire encoding: lowercase hex with no prefix. For a
// MODP group it has no leading zeros, as the tutorial's hex(y)[2:]; for the
// curves it is the whole of Bytes.
func (k *PublicKey) Hex() string {
	s := hex.EncodeToString(k.b)
	if k.group.ff != nil {
		s = strings.TrimLeft(s, "0")
	}
	return s
}

// String returns the key's group and Hex encoding. Public keys are not secret.
func (k *PublicKey) String() string { return k.group.name + ":" + k.Hex() }

// Equal reports whether k and x are the same key of the same group, in
// constant time with respect to the key bytes.
func (k *PublicKey) Equal(x *PublicKey) bool {
	return x != nil && k.group == x.group && subtle.ConstantTimeCompare(k.b, x.b) == 1
}

// PrivateKey is a Diffie-Hellman private key. Its secret never appears in
// logs: String and LogValue print only the group.
type PrivateKey struct {
	group *Group
	x     []byte           // MODP exponent, big-endian, fixed length
	ec    *ecdh.PrivateKey // nil for MODP groups
	pub   *PublicKey
}

// Group returns the key's group.
func (k *PrivateKey) Group() *Group { return k.group }

// PublicKey returns the matching public key.
func (k *PrivateKey) PublicKey() *PublicKey { return k.pub }

// Bytes returns a copy of the secret: the exponent as big-endian bytes for a
// MODP group (as long as generated exponents are, or as q for a longer
// parsed one), the 32-byte scalar for the curves.
func (k *PrivateKey) Bytes() []byte {
	if k.ec != nil {
		return k.ec.Bytes()
	}
	return append([]byte(nil), k.x...)
}

// Hex returns the secret as lowercase hex, with no leading zeros for a MODP
// group (the tutorial's hex(x)[2:]). It is the one way to print a private
// key; it is for the tutorial's HTTP API and for tests.
func (k *PrivateKey) Hex() string {
	s := hex.EncodeToString(k.Bytes())
	if k.group.ff != nil {
		s = strings.TrimLeft(s, "0")
	}
	return s
}

// Equal reports whether k and x are the same key, in constant time with
// respect to the secret.
func (k *PrivateKey) Equal(x *PrivateKey) bool {
	if x == nil || k.group != x.group {
		return false
	}
	return subtle.ConstantTimeCompare(k.Bytes(), x.Bytes()) == 1
}

// String returns a redacted description, so that a private key printed by
// mistake shows no secret.
func (k *PrivateKey) String() string { return "dh.PrivateKey(" + k.group.name + ", REDACTED)" }

// GoString is String, for %#v.
func (k *PrivateKey) GoString() string { return k.String() }

// LogValue implements slog.LogValuer: a logged private key shows only its
// group.
func (k *PrivateKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("group", k.group.name), slog.String("secret", "REDACTED"))
}

// SharedSecret returns the raw Diffie-Hellman shared secret Z with the peer's
// public key: for a MODP group y^x mod p as big-endian bytes as long as p
// (computed in constant time), for x25519 and p256 the 32 bytes crypto/ecdh
// returns. It returns ErrGroupMismatch when the keys belong to different
// groups, and ErrLowOrder if the result would be the identity.
//
// Z should not be used as a key directly: pass it to [DeriveKey], or to
// [SeedKey] for the tutorial's clients.
func (k *PrivateKey) SharedSecret(peer *PublicKey) ([]byte, error) {
	if peer == nil || peer.group != k.group {
		return nil, ErrGroupMismatch
	}
	if k.ec != nil {
		z, err := k.ec.ECDH(peer.ec)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrLowOrder, err)
		}
		return z, nil
	}
	return k.group.ff.params().sharedSecret(k.x, peer.b)
}
