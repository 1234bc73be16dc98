package dh

import (
	"errors"
	"strings"
	"testing"
)

// fuzzGroup picks a group from a fuzzed byte.
func fuzzGroup(i uint8) *Group { return allGroups[int(i)%len(allGroups)] }

// FuzzParsePublicKey checks that no text makes ParsePublicKey panic, that
// every error belongs to a documented family, that an accepted key survives
// a round trip through Hex, and (for the two smallest MODP groups, where it
// is cheap) that an accepted key passes the exponentiation test too.
func FuzzParsePublicKey(f *testing.F) {
	for i, g := range allGroups {
		k, err := g.GenerateKey(zeroReader{})
		if err == nil {
			f.Add(uint8(i), k.PublicKey().Hex())
		}
		f.Add(uint8(i), "")
		f.Add(uint8(i), "-1")
		f.Add(uint8(i), "0x02")
		f.Add(uint8(i), "2")
		f.Add(uint8(i), strings.Repeat("f", 2*g.Size()))
		f.Add(uint8(i), strings.Repeat("0", 2*g.Size()+1))
	}
	f.Fuzz(func(t *testing.T, gi uint8, s string) {
		g := fuzzGroup(gi)
		k, err := g.ParsePublicKey(s)
		if err != nil {
			if k != nil {
				t.Fatal("key and error both returned")
			}
			if !errors.Is(err, ErrMalformedKey) && !errors.Is(err, ErrInvalidPublicKey) {
				t.Fatalf("error outside the documented families: %v", err)
			}
			return
		}
		k2, err := g.ParsePublicKey(k.Hex())
		if err != nil || !k2.Equal(k) {
			t.Fatalf("Hex round trip: %v", err)
		}
		if g.ff != nil && g.ff.params().bits <= 2048 && !g.ff.params().inSubgroupExp(k.b) {
			t.Fatalf("accepted a key outside the subgroup: %s", s)
		}
	})
}

// FuzzParsePrivateKey checks ParsePrivateKey the same way.
func FuzzParsePrivateKey(f *testing.F) {
	for i := range allGroups {
		f.Add(uint8(i), "1")
		f.Add(uint8(i), "0")
		f.Add(uint8(i), strings.Repeat("a", 64))
		f.Add(uint8(i), "+7")
	}
	f.Fuzz(func(t *testing.T, gi uint8, s string) {
		g := fuzzGroup(gi)
		k, err := g.ParsePrivateKey(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedKey) && !errors.Is(err, ErrInvalidPrivateKey) {
				t.Fatalf("error outside the documented families: %v", err)
			}
			return
		}
		k2, err := g.ParsePrivateKey(k.Hex())
		if err != nil || !k2.Equal(k) || !k2.PublicKey().Equal(k.PublicKey()) {
			t.Fatalf("Hex round trip: %v", err)
		}
	})
}

// FuzzLookupGroup checks that LookupGroup never panics and only ever returns
// a group whose name or number was asked for.
func FuzzLookupGroup(f *testing.F) {
	for _, s := range []string{"modp14", "14", "x25519", "", "0", "-5", "1e1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := LookupGroup(s)
		if err != nil {
			if !errors.Is(err, ErrUnknownGroup) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if g.name != s && g.String() != "modp"+s {
			t.Fatalf("LookupGroup(%q) = %s", s, g)
		}
	})
}

// zeroReader yields zero bytes: a deterministic "random" source for seeds.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0
	}
	return len(p), nil
}
