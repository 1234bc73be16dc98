package dh

import (
	"crypto/rand"
	"math/big"
	"testing"
)

// TestSubgroupJacobiAgreesWithExp proves the fast subgroup test (the Jacobi
// symbol) equal to the definition (y^q mod p == 1) on random quadratic
// residues, random non-residues, random values and the edges, for every MODP
// group, and checks that full validation accepts and rejects accordingly.
func TestSubgroupJacobiAgreesWithExp(t *testing.T) {
	for _, g := range Groups() {
		if g.ID() == 0 {
			continue
		}
		t.Run(g.Name(), func(t *testing.T) {
			t.Parallel()
			m := g.ff.params()
			// Bound the exponentiations: each costs ~0.1 s at 8192 bits.
			n := 16 * 2048 / m.bits
			if testing.Short() {
				n = 4
			}
			one := big.NewInt(1)
			pm1 := new(big.Int).Sub(m.p, one)
			type tc struct {
				name string
				y    *big.Int
			}
			var cases []tc
			for _, e := range []int64{1, 2, 3, 4} {
				cases = append(cases, tc{"small", big.NewInt(e)})
			}
			cases = append(cases,
				tc{"p-2", new(big.Int).Sub(m.p, big.NewInt(2))},
				tc{"p-1", pm1},
				tc{"q", new(big.Int).Set(m.q)},
				tc{"q+1", new(big.Int).Add(m.q, one)},
				tc{"2^k", new(big.Int).Lsh(one, uint(m.bits-1))},
			)
			for i := 0; i < n; i++ {
				r, err := rand.Int(rand.Reader, pm1)
				if err != nil {
					t.Fatal(err)
				}
				r.Add(r, one) // [1, p-1]
				sq := new(big.Int).Mul(r, r)
				sq.Mod(sq, m.p)
				neg := new(big.Int).Sub(m.p, sq) // -1 is a non-residue as p ≡ 3 (mod 4)
				cases = append(cases, tc{"random", r}, tc{"residue", sq}, tc{"non-residue", neg})
			}
			var accepted, rejected int
			for _, c := range cases {
				y := c.y.FillBytes(make([]byte, m.size))
				fast, slow := m.inSubgroup(y), m.inSubgroupExp(y)
				if fast != slow {
					t.Fatalf("%s y=%x: Jacobi says %v, exponentiation says %v", c.name, c.y, fast, slow)
				}
				if c.name == "residue" && !slow || c.name == "non-residue" && slow {
					t.Fatalf("%s y=%x: exponentiation says %v", c.name, c.y, slow)
				}
				inRange := c.y.Cmp(big.NewInt(2)) >= 0 && c.y.Cmp(new(big.Int).Sub(m.p, big.NewInt(2))) <= 0
				err := m.validate(y)
				if want := inRange && slow; (err == nil) != want {
					t.Fatalf("%s y=%x: validate = %v, want accepted=%v", c.name, c.y, err, want)
				}
				if err == nil {
					accepted++
				} else {
					rejected++
				}
			}
			if accepted == 0 || rejected == 0 {
				t.Fatalf("accepted %d, rejected %d: want both", accepted, rejected)
			}
		})
	}
}

// TestValidateEdges checks full validation at 0, 1, 2, p-2, p-1, p and p+1,
// given as the hex a client would send.
func TestValidateEdges(t *testing.T) {
	for _, g := range Groups() {
		if g.ID() == 0 {
			continue
		}
		m := g.ff.params()
		p := m.p
		add := func(d int64) string { return new(big.Int).Add(p, big.NewInt(d)).Text(16) }
		two := big.NewInt(2)
		// 2 is a residue mod p (p ≡ 7 mod 8), so it is a valid key; p-2 = -2
		// is not (-1 is a non-residue), so it fails the subgroup check.
		tests := []struct {
			name string
			hex  string
			want error
		}{
			{"0", "0", ErrKeyOutOfRange},
			{"1", "1", ErrKeyOutOfRange},
			{"2", two.Text(16), nil},
			{"p-2", add(-2), ErrKeyNotInSubgroup},
			{"p-1", add(-1), ErrKeyOutOfRange},
			{"p", add(0), ErrKeyOutOfRange},
			{"p+1", add(1), ErrKeyOutOfRange},
		}
		for _, tt := range tests {
			t.Run(g.Name()+"/"+tt.name, func(t *testing.T) {
				_, err := g.ParsePublicKey(tt.hex)
				if err != tt.want {
					t.Errorf("ParsePublicKey(%s) = %v, want %v", tt.name, err, tt.want)
				}
			})
		}
	}
}
