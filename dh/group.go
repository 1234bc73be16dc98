package dh

import (
	"crypto/ecdh"
	"fmt"
	"io"
	"strconv"
)

// Group is a Diffie-Hellman group. Groups are singletons, obtained from the
// functions [MODP14], [X25519] and so on or from [LookupGroup], and may be
// compared with ==. A Group is safe for concurrent use.
type Group struct {
	// Static after construction.
	name     string
	id       int // RFC 3526 group number; 0 for the elliptic curves
	strength int // security strength in bits (NIST SP 800-57)
	ff       *modp
	curve    ecdh.Curve
}

// Name returns the group's stable wire name, such as "modp14" or "x25519".
func (g *Group) Name() string { return g.name }

// String returns the group's name.
func (g *Group) String() string { return g.name }

// ID returns the RFC 3526 group number (5, 14-18) of a MODP group, or 0 for
// an elliptic-curve group.
func (g *Group) ID() int { return g.id }

// SecurityStrength returns the group's security strength in bits according to
// NIST SP 800-57 part 1 (90 for the legacy 1536-bit group, which SP 800-57
// does not rate).
func (g *Group) SecurityStrength() int { return g.strength }

// Size returns the length in bytes of the group's fixed-length public-key
// encoding, [PublicKey.Bytes]: the byte length of p for a MODP group, 32 for
// x25519 and 65 for p256.
func (g *Group) Size() int {
	if g.ff != nil {
		return g.ff.params().size
	}
	if g.curve == ecdh.P256() {
		return 65
	}
	return 32
}

// SharedSecretSize returns the length in bytes of the raw shared secret that
// [PrivateKey.SharedSecret] returns.
func (g *Group) SharedSecretSize() int {
	if g.ff != nil {
		return g.ff.params().size
	}
	return 32
}

// GenerateKey returns a new private key for the group, drawn from rand
// (normally crypto/rand.Reader). MODP exponents are as long as the package
// documentation says; the exponentiation runs in constant time. For the
// elliptic curves crypto/ecdh may use its own secure source instead of rand.
func (g *Group) GenerateKey(rand io.Reader) (*PrivateKey, error) {
	if g.ff != nil {
		return g.ff.generateKey(g, rand)
	}
	k, err := g.curve.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("dh: generate %s key: %w", g.name, err)
	}
	return newECPrivateKey(g, k), nil
}

// ParsePublicKey decodes a hex-encoded public key and validates it fully.
//
// The text must be hexadecimal digits only (either case), with no sign,
// prefix or spaces. For a MODP group it is the key's value with any number of
// leading zeros up to 2*Size() digits, odd lengths included (the tutorial's
// hex(n)[2:]); for x25519 and p256 it is exactly 2*Size() digits.
//
// It returns an error wrapping ErrMalformedKey (ErrKeyEmpty, ErrKeySigned,
// ErrKeyTooLong, ErrKeyLength, ErrKeyNotHex) for text that is not such an
// encoding, and one wrapping ErrInvalidPublicKey (ErrKeyOutOfRange,
// ErrKeyNotInSubgroup, ErrKeyNotOnCurve, ErrLowOrder) for a key that fails
// the checks of the package documentation.
func (g *Group) ParsePublicKey(s string) (*PublicKey, error) {
	b := make([]byte, g.Size())
	if err := decodeHex(b, s, g.ff != nil); err != nil {
		return nil, err
	}
	return g.newPublicKey(b)
}

// NewPublicKey validates a public key given in its fixed-length encoding
// (exactly Size() bytes; see [PublicKey.Bytes]) and returns it. It returns
// ErrKeyLength for any other length, and the validation errors of
// [Group.ParsePublicKey]. b is copied.
func (g *Group) NewPublicKey(b []byte) (*PublicKey, error) {
	if len(b) != g.Size() {
		return nil, ErrKeyLength
	}
	return g.newPublicKey(append([]byte(nil), b...))
}

// newPublicKey validates b, which it takes ownership of.
func (g *Group) newPublicKey(b []byte) (*PublicKey, error) {
	if g.ff != nil {
		if err := g.ff.params().validate(b); err != nil {
			return nil, err
		}
		return &PublicKey{group: g, b: b}, nil
	}
	return newECPublicKey(g, b)
}

// ParsePrivateKey decodes a hex-encoded private key, with the same syntax
// rules as [Group.ParsePublicKey]. A MODP private key is an exponent x with
// 1 <= x <= q-1 (the tutorial's hex(x)[2:]); an x25519 or p256 key is its
// 32-byte scalar as 64 hex digits. It returns the errors of ParsePublicKey's
// ErrMalformedKey family, or ErrInvalidPrivateKey for a value out of range.
//
// This exists for the tutorial's HTTP API, where clients hand their private
// keys to the server. Decoding hex is not constant-time.
func (g *Group) ParsePrivateKey(s string) (*PrivateKey, error) {
	if g.ff != nil {
		b := make([]byte, g.ff.params().size)
		if err := decodeHex(b, s, true); err != nil {
			return nil, err
		}
		return g.ff.newPrivateKey(g, b)
	}
	b := make([]byte, 32)
	if err := decodeHex(b, s, false); err != nil {
		return nil, err
	}
	k, err := g.curve.NewPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPrivateKey, err)
	}
	return newECPrivateKey(g, k), nil
}

var (
	modp5  = &Group{name: "modp5", id: 5, strength: 90, ff: newMODP(modp5Hex, 1536, 256)}
	modp14 = &Group{name: "modp14", id: 14, strength: 112, ff: newMODP(modp14Hex, 2048, 256)}
	modp15 = &Group{name: "modp15", id: 15, strength: 128, ff: newMODP(modp15Hex, 3072, 256)}
	modp16 = &Group{name: "modp16", id: 16, strength: 152, ff: newMODP(modp16Hex, 4096, 304)}
	modp17 = &Group{name: "modp17", id: 17, strength: 176, ff: newMODP(modp17Hex, 6144, 352)}
	modp18 = &Group{name: "modp18", id: 18, strength: 200, ff: newMODP(modp18Hex, 8192, 400)}
	x25519 = &Group{name: "x25519", strength: 128, curve: ecdh.X25519()}
	p256   = &Group{name: "p256", strength: 128, curve: ecdh.P256()}

	allGroups = []*Group{modp5, modp14, modp15, modp16, modp17, modp18, x25519, p256}
)

// MODP5 returns the RFC 3526 1536-bit group 5, kept for compatibility and
// below today's recommendations.
func MODP5() *Group { return modp5 }

// MODP14 returns the RFC 3526 2048-bit group 14, the tutorial's default.
func MODP14() *Group { return modp14 }

// MODP15 returns the RFC 3526 3072-bit group 15.
func MODP15() *Group { return modp15 }

// MODP16 returns the RFC 3526 4096-bit group 16.
func MODP16() *Group { return modp16 }

// MODP17 returns the RFC 3526 6144-bit group 17.
func MODP17() *Group { return modp17 }

// MODP18 returns the RFC 3526 8192-bit group 18.
func MODP18() *Group { return modp18 }

// X25519 returns the RFC 7748 X25519 group.
func X25519() *Group { return x25519 }

// P256 returns the NIST P-256 group.
func P256() *Group { return p256 }

// Groups returns every supported group, MODP groups first in increasing
// size, then x25519 and p256. The caller may modify the returned slice.
func Groups() []*Group { return append([]*Group(nil), allGroups...) }

// LookupGroup returns the group with wire name s ("modp5", "modp14" …
// "modp18", "x25519", "p256") or RFC 3526 number s ("5", "14" … "18", as the
// tutorial's API takes). Any other string gives ErrUnknownGroup.
func LookupGroup(s string) (*Group, error) {
	for _, g := range allGroups {
		if g.name == s {
			return g, nil
		}
	}
	if len(s) <= 2 {
		// Only the canonical decimal form: "5", not "05" or "+5".
		if n, err := strconv.Atoi(s); err == nil && n > 0 && strconv.Itoa(n) == s {
			for _, g := range allGroups {
				if g.id == n {
					return g, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownGroup, truncate(s, 32))
}

// truncate bounds attacker-supplied text quoted in an error message.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
