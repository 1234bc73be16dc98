package dh

import (
	"crypto/rand"
	"math/big"
	"testing"
)

// The benchmarks below produce the figures in BENCHMARKS.md:
//
//	go test ./dh -run '^$' -bench . -benchmem

func BenchmarkGenerateKey(b *testing.B) {
	for _, g := range allGroups {
		b.Run(g.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.GenerateKey(rand.Reader); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParsePublicKey measures full validation from the wire encoding,
// as the relay does it for every key: hex decoding, range and subgroup (or
// curve) checks.
func BenchmarkParsePublicKey(b *testing.B) {
	for _, g := range allGroups {
		k, _ := g.GenerateKey(rand.Reader)
		s := k.PublicKey().Hex()
		b.Run(g.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.ParsePublicKey(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSubgroup compares the three ways of deciding y^q ≡ 1 (mod p) on
// the same valid key: this package's Jacobi symbol (the fast path),
// math/big's Jacobi, and the exponentiation itself (math/big Exp).
func BenchmarkSubgroup(b *testing.B) {
	for _, g := range allGroups {
		if g.ff == nil {
			continue
		}
		m := g.ff.params()
		k, _ := g.GenerateKey(rand.Reader)
		y := k.pub.b
		b.Run(g.name+"/jacobi", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !m.inSubgroup(y) {
					b.Fatal("rejected")
				}
			}
		})
		b.Run(g.name+"/big.Jacobi", func(b *testing.B) {
			b.ReportAllocs()
			yy := new(big.Int).SetBytes(y)
			for b.Loop() {
				if big.Jacobi(yy, m.p) != 1 {
					b.Fatal("rejected")
				}
			}
		})
		b.Run(g.name+"/exp", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !m.inSubgroupExp(y) {
					b.Fatal("rejected")
				}
			}
		})
	}
}

// BenchmarkSharedSecret measures the constant-time shared-secret computation;
// for modp14 it also measures math/big's variable-time Exp with the same
// 256-bit exponent, for comparison.
func BenchmarkSharedSecret(b *testing.B) {
	for _, g := range allGroups {
		alice, _ := g.GenerateKey(rand.Reader)
		bob, _ := g.GenerateKey(rand.Reader)
		b.Run(g.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := alice.SharedSecret(bob.PublicKey()); err != nil {
					b.Fatal(err)
				}
			}
		})
		if g == modp14 {
			m := g.ff.params()
			x, y := new(big.Int).SetBytes(alice.x), new(big.Int).SetBytes(bob.pub.b)
			b.Run(g.name+"/big.Exp-variable-time", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					new(big.Int).Exp(y, x, m.p)
				}
			})
		}
	}
}

func BenchmarkDeriveKey(b *testing.B) {
	alice, _ := x25519.GenerateKey(rand.Reader)
	bob, _ := x25519.GenerateKey(rand.Reader)
	z, _ := alice.SharedSecret(bob.PublicKey())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DeriveKey(z, alice.PublicKey(), bob.PublicKey()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSafetyNumber(b *testing.B) {
	alice, _ := x25519.GenerateKey(rand.Reader)
	bob, _ := x25519.GenerateKey(rand.Reader)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SafetyNumber(alice.PublicKey(), bob.PublicKey()); err != nil {
			b.Fatal(err)
		}
	}
}
