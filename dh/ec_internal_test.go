package dh

import (
	"crypto/ecdh"
	"crypto/rand"
	"testing"
)

// TestX25519LowOrderTable checks the table of low-order points against the
// definition: a fixed clamped scalar (a multiple of 8) times the point is the
// identity, which crypto/ecdh reports as an error, exactly when the point's
// order divides 8. Why the table is complete: the curve's group is
// Z/8 x Z/l and the twist's Z/4 x Z/l', so the points of order dividing 8
// are 8 on the curve (the identity; u = 0 of order 2; two of order 4 at
// u = 1; four of order 8 at two u-coordinates) and 4 on the twist (the
// identity, u = 0 again, two of order 4 at u = p - 1): five u-coordinates.
func TestX25519LowOrderTable(t *testing.T) {
	probe, err := ecdh.X25519().NewPrivateKey([]byte("keyrelay x25519 low-order probe!"))
	if err != nil {
		t.Fatal(err)
	}
	probeSays := func(u []byte) bool {
		k, err := ecdh.X25519().NewPublicKey(u)
		if err != nil {
			t.Fatalf("NewPublicKey(%x): %v", u, err)
		}
		_, err = probe.ECDH(k)
		return err != nil
	}
	seen := map[[32]byte]bool{}
	for _, u := range x25519LowOrder {
		if seen[u] {
			t.Errorf("%x listed twice", u)
		}
		seen[u] = true
		if !canonicalX25519(u[:]) {
			t.Errorf("%x is not canonical", u)
		}
		if !probeSays(u[:]) {
			t.Errorf("%x: the probe finds it of large order", u)
		}
		if !lowOrderX25519(u[:]) {
			t.Errorf("%x: lowOrderX25519 = false", u)
		}
	}
	if len(seen) != 5 {
		t.Errorf("%d low-order u-coordinates listed, want 5", len(seen))
	}
	// Random keys and u-coordinates (on the curve or the twist): the table
	// and the probe agree.
	for range 200 {
		var u [32]byte
		rand.Read(u[:])
		u[31] &= 0x7f
		if !canonicalX25519(u[:]) {
			continue
		}
		if got, want := lowOrderX25519(u[:]), probeSays(u[:]); got != want {
			t.Fatalf("%x: table says %v, probe %v", u, got, want)
		}
	}
	// Near-misses of each entry are not low order.
	for _, u := range x25519LowOrder {
		v := u
		v[0] ^= 0x02
		if canonicalX25519(v[:]) && lowOrderX25519(v[:]) != probeSays(v[:]) {
			t.Errorf("%x: table and probe disagree", v)
		}
	}
}
