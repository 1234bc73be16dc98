package dh

import (
	"crypto/ecdh"
	"fmt"
)

// x25519LowOrder lists, little-endian, the canonical u-coordinates (below
// 2^255 - 19) of the X25519 points whose order divides 8, on the curve and
// on its twist: 0, 1, the two points of order 8 and p - 1 (Bernstein's list
// at cr.yp.to/ecdh.html, also libsodium's; the remaining entries there are
// non-canonical encodings, refused before this check). Multiplying such a
// point by any clamped scalar, a multiple of 8, gives the identity and an
// all-zero shared secret. A table lookup costs nanoseconds where a probing
// scalar multiplication costs tens of microseconds per key; dh's tests check
// the table against such a probe.
var x25519LowOrder = [...][32]byte{
	{},     // 0
	{0x01}, // 1
	{0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a,
		0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
	{0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b,
		0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
	{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
}

// lowOrderX25519 reports whether the canonical u-coordinate b is one of
// x25519LowOrder. Public keys are public: no constant time is needed.
func lowOrderX25519(b []byte) bool {
	for i := range x25519LowOrder {
		if string(b) == string(x25519LowOrder[i][:]) {
			return true
		}
	}
	return false
}

// x25519P is 2^255 - 19, little-endian.
var x25519P = [32]byte{
	0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
}

// canonicalX25519 reports whether the little-endian u-coordinate b is below
// 2^255 - 19 (which also rules out a set top bit).
func canonicalX25519(b []byte) bool {
	for i := 31; i >= 0; i-- {
		if b[i] != x25519P[i] {
			return b[i] < x25519P[i]
		}
	}
	return false // equal to p
}

func newECPublicKey(g *Group, b []byte) (*PublicKey, error) {
	if g.curve == ecdh.X25519() && !canonicalX25519(b) {
		return nil, ErrKeyOutOfRange
	}
	k, err := g.curve.NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyNotOnCurve, err)
	}
	if g.curve == ecdh.X25519() && lowOrderX25519(b) {
		return nil, ErrLowOrder
	}
	return &PublicKey{group: g, b: b, ec: k}, nil
}

func newECPrivateKey(g *Group, k *ecdh.PrivateKey) *PrivateKey {
	pk := k.PublicKey()
	return &PrivateKey{group: g, ec: k, pub: &PublicKey{group: g, b: pk.Bytes(), ec: pk}}
}
