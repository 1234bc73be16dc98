package dh_test

import (
	"bytes"
	"crypto/rand"
	"fmt"

	"github.com/keyrelay/keyrelay/dh"
)

// Two peers agree on a key. Each sends only its public key's Hex to the
// other; each validates what it receives.
func Example() {
	g := dh.X25519()
	alice, _ := g.GenerateKey(rand.Reader)
	bob, _ := g.GenerateKey(rand.Reader)

	// On the wire: alice.PublicKey().Hex() travels to Bob, and back.
	bobsViewOfAlice, err := g.ParsePublicKey(alice.PublicKey().Hex())
	if err != nil {
		panic(err)
	}
	alicesViewOfBob, err := g.ParsePublicKey(bob.PublicKey().Hex())
	if err != nil {
		panic(err)
	}

	zA, _ := alice.SharedSecret(alicesViewOfBob)
	zB, _ := bob.SharedSecret(bobsViewOfAlice)
	kA, _ := dh.DeriveKey(zA, alice.PublicKey(), alicesViewOfBob)
	kB, _ := dh.DeriveKey(zB, bob.PublicKey(), bobsViewOfAlice)
	snA, _ := dh.SafetyNumber(alice.PublicKey(), alicesViewOfBob)
	snB, _ := dh.SafetyNumber(bobsViewOfAlice, bob.PublicKey())

	fmt.Println("same key:", bytes.Equal(kA, kB), len(kA))
	fmt.Println("same safety number:", snA == snB)
	// Output:
	// same key: true 32
	// same safety number: true
}

// The tutorial's derivation, for its clients: the SHA-256 of the shared
// secret written in decimal.
func ExampleSeedKey() {
	fmt.Println(dh.SeedKey([]byte{0x01, 0x00})) // sha256("256")
	// Output:
	// 51e8ea280b44e16934d4d611901f3d3afc41789840acdff81942c2f65009cd52
}

// A key outside the subgroup is refused with an error the caller can branch
// on.
func ExampleGroup_ParsePublicKey() {
	_, err := dh.MODP14().ParsePublicKey("1")
	fmt.Println(err)
	_, err = dh.MODP14().ParsePublicKey("0x02")
	fmt.Println(err)
	// Output:
	// dh: invalid public key: out of range
	// dh: malformed key: not hexadecimal
}
