package dh

import (
	"crypto/ecdh"
	"fmt"
)

// x25519LowOrderProbe is a fixed X25519 scalar used to detect low-order
// public keys. Clamping makes every X25519 scalar a multiple of 8, so the
// product of any scalar with a point is the identity (an all-zero shared
// secret, which crypto/ecdh reports as an error) exactly when the point's
// order divides 8: one probe decides it for every scalar.
var x25519LowOrderProbe = func() *ecdh.PrivateKey {
	k, err := ecdh.X25519().NewPrivateKey([]byte("keyrelay x25519 low-order probe!"))
	if err != nil {
		panic(err)
	}
	return k
}()

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
	if g.curve == ecdh.X25519() {
		if _, err := x25519LowOrderProbe.ECDH(k); err != nil {
			return nil, ErrLowOrder
		}
	}
	return &PublicKey{group: g, b: b, ec: k}, nil
}

func newECPrivateKey(g *Group, k *ecdh.PrivateKey) *PrivateKey {
	pk := k.PublicKey()
	return &PrivateKey{group: g, ec: k, pub: &PublicKey{group: g, b: pk.Bytes(), ec: pk}}
}
