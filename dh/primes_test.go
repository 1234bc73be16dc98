package dh

import (
	"encoding/json"
	"math/big"
	"os"
	"testing"
)

// rfc3526Offsets are the offsets of RFC 3526's prime formula
// p = 2^N - 2^(N-64) - 1 + 2^64 * (floor(2^(N-130) * pi) + offset).
var rfc3526Offsets = map[string]struct{ bits, offset int64 }{
	"modp5":  {1536, 741804},
	"modp14": {2048, 124476},
	"modp15": {3072, 1690314},
	"modp16": {4096, 240904},
	"modp17": {6144, 929484},
	"modp18": {8192, 4743158},
}

// piFixed returns floor(pi * 2^bits), by Machin's formula
// pi = 16 arctan(1/5) - 4 arctan(1/239) in fixed point with 64 guard bits.
func piFixed(bits uint) *big.Int {
	one := new(big.Int).Lsh(big.NewInt(1), bits+64)
	arctanInv := func(x int64) *big.Int {
		bx, x2 := big.NewInt(x), big.NewInt(x*x)
		t := new(big.Int).Quo(one, bx)
		sum := new(big.Int).Set(t)
		for n, sign := int64(3), -1; t.Sign() != 0; n, sign = n+2, -sign {
			t.Quo(t, x2)
			term := new(big.Int).Quo(t, big.NewInt(n))
			if sign < 0 {
				sum.Sub(sum, term)
			} else {
				sum.Add(sum, term)
			}
		}
		return sum
	}
	pi := new(big.Int).Mul(big.NewInt(16), arctanInv(5))
	pi.Sub(pi, new(big.Int).Mul(big.NewInt(4), arctanInv(239)))
	return pi.Rsh(pi, 64)
}

func TestPrimesMatchRFC3526Formula(t *testing.T) {
	pi := piFixed(8192)
	for _, g := range Groups() {
		if g.ID() == 0 {
			continue
		}
		t.Run(g.Name(), func(t *testing.T) {
			o, ok := rfc3526Offsets[g.Name()]
			if !ok {
				t.Fatalf("no RFC 3526 offset for %s", g.Name())
			}
			n := uint(o.bits)
			want := new(big.Int).Lsh(big.NewInt(1), n)
			want.Sub(want, new(big.Int).Lsh(big.NewInt(1), n-64))
			want.Sub(want, big.NewInt(1))
			f := new(big.Int).Rsh(pi, 8192-(n-130))
			f.Add(f, big.NewInt(o.offset))
			want.Add(want, f.Lsh(f, 64))
			if got := g.ff.params().p; got.Cmp(want) != 0 {
				t.Errorf("%s prime differs from the RFC 3526 formula", g.Name())
			}
		})
	}
}

func TestPrimesMatchNode(t *testing.T) {
	raw, err := os.ReadFile("testdata/rfc3526-node.json")
	if err != nil {
		t.Fatal(err)
	}
	var fixture struct {
		Primes map[string]string `json:"primes"`
	}
	if err := json.Unmarshal(raw, &fixture); err != nil {
		t.Fatal(err)
	}
	if len(fixture.Primes) != 6 {
		t.Fatalf("fixture has %d primes, want 6", len(fixture.Primes))
	}
	for name, hexP := range fixture.Primes {
		g, err := LookupGroup(name)
		if err != nil {
			t.Fatalf("fixture group %s: %v", name, err)
		}
		want, ok := new(big.Int).SetString(hexP, 16)
		if !ok {
			t.Fatalf("fixture %s is not hex", name)
		}
		if got := g.ff.params().p; got.Cmp(want) != 0 {
			t.Errorf("%s prime differs from Node's getDiffieHellman(%q)", name, name)
		}
	}
}

func TestPrimesAreSafe(t *testing.T) {
	for _, g := range Groups() {
		if g.ID() == 0 {
			continue
		}
		t.Run(g.Name(), func(t *testing.T) {
			t.Parallel()
			m := g.ff.params()
			if got := m.p.BitLen(); got != m.bits {
				t.Errorf("bit length = %d, want %d", got, m.bits)
			}
			if got := new(big.Int).Mod(m.p, big.NewInt(24)).Int64(); got != 23 {
				t.Errorf("p mod 24 = %d, want 23 (so that 2 is a quadratic residue and generates the order-q subgroup)", got)
			}
			// One Miller-Rabin round plus Baillie-PSW: no known composite
			// passes Baillie-PSW, and more rounds cost seconds at 8192 bits.
			if !m.p.ProbablyPrime(1) {
				t.Error("p is not prime")
			}
			if !m.q.ProbablyPrime(1) {
				t.Error("q = (p-1)/2 is not prime")
			}
			// 2 generates the order-q subgroup: 2^q = 1 and 2 != 1.
			if !m.inSubgroupExp([]byte{2}) {
				t.Error("2^q mod p != 1")
			}
		})
	}
}
