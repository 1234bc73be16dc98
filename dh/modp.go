package dh

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"io"
	"math/big"
	"sync"

	"filippo.io/bigmod"
)

// modp is an RFC 3526 group. Its parameters are computed on first use.
type modp struct {
	params func() *modpParams
}

// modpParams holds one MODP group's precomputed values. Static after
// construction.
type modpParams struct {
	bits     int
	size     int // byte length of p
	expBytes int // byte length of generated exponents
	p, q     *big.Int
	pMinus2  []byte // p-2, big-endian, size bytes
	pLimbs   []uint64
	pMod     *bigmod.Modulus
	qMod     *bigmod.Modulus
}

func newMODP(hexPrime string, bits, expBits int) *modp {
	return &modp{params: sync.OnceValue(func() *modpParams {
		p, ok := new(big.Int).SetString(hexPrime, 16)
		if !ok || p.BitLen() != bits {
			panic("dh: bad built-in prime")
		}
		size := (bits + 7) / 8
		q := new(big.Int).Rsh(p, 1)
		pm, err := bigmod.NewModulus(p.FillBytes(make([]byte, size)))
		if err != nil {
			panic(err)
		}
		qm, err := bigmod.NewModulus(q.FillBytes(make([]byte, size)))
		if err != nil {
			panic(err)
		}
		pLimbs := make([]uint64, (size+7)/8)
		limbsFromBytes(pLimbs, p.FillBytes(make([]byte, size)))
		return &modpParams{
			bits:     bits,
			size:     size,
			expBytes: expBits / 8,
			p:        p,
			q:        q,
			pMinus2:  new(big.Int).Sub(p, big.NewInt(2)).FillBytes(make([]byte, size)),
			pLimbs:   pLimbs,
			pMod:     pm,
			qMod:     qm,
		}
	})}
}

// validate applies NIST SP 800-56A rev 3 §5.6.2.3.1 full public-key
// validation to y, given as size big-endian bytes: 2 <= y <= p-2, and
// y^q ≡ 1 (mod p), decided by the Jacobi symbol (see inSubgroup).
func (m *modpParams) validate(y []byte) error {
	if !m.inRange(y) {
		return ErrKeyOutOfRange
	}
	if !m.inSubgroup(y) {
		return ErrKeyNotInSubgroup
	}
	return nil
}

// inRange reports whether 2 <= y <= p-2 for y of size bytes.
func (m *modpParams) inRange(y []byte) bool {
	if bytes.Compare(y, m.pMinus2) > 0 {
		return false
	}
	// y >= 2 unless every byte but the last is zero and the last is 0 or 1.
	var high byte
	for _, c := range y[:len(y)-1] {
		high |= c
	}
	return high != 0 || y[len(y)-1] >= 2
}

// inSubgroup reports whether y, with 1 <= y <= p-1, lies in the subgroup of
// order q. Since p = 2q+1 with q prime, the multiplicative group has order
// 2q and its order-q subgroup is exactly the set of quadratic residues
// (Euler's criterion: y^q = y^((p-1)/2) ≡ (y/p)). The Jacobi symbol (y/p),
// which equals the Legendre symbol for prime p, decides it without a modular
// exponentiation. inSubgroupExp is the definition, kept for the tests that
// prove the two agree.
func (m *modpParams) inSubgroup(y []byte) bool {
	var a [maxLimbs]uint64
	limbs := a[:len(m.pLimbs)]
	limbsFromBytes(limbs, y)
	return jacobi(limbs, m.pLimbs) == 1
}

// inSubgroupExp reports whether y^q ≡ 1 (mod p), by exponentiation.
func (m *modpParams) inSubgroupExp(y []byte) bool {
	yy := new(big.Int).SetBytes(y)
	return new(big.Int).Exp(yy, m.q, m.p).Cmp(big.NewInt(1)) == 0
}

// generateKey draws x uniformly from [1, 2^N - 1], N = 8*expBytes, in the
// manner of NIST SP 800-56A rev 3 §5.6.1.1.4 (a candidate c of N random bits
// is rejected when it is 2^N - 1; x = c + 1). 2^N < q for every group.
func (f *modp) generateKey(g *Group, rand io.Reader) (*PrivateKey, error) {
	m := f.params()
	x := make([]byte, m.expBytes)
	for {
		if _, err := io.ReadFull(rand, x); err != nil {
			return nil, fmt.Errorf("dh: generate %s key: %w", g.name, err)
		}
		var and byte = 0xff
		for _, c := range x {
			and &= c
		}
		if subtle.ConstantTimeByteEq(and, 0xff) == 0 {
			break
		}
	}
	// x = c + 1, with a carry that runs over every byte.
	carry := uint16(1)
	for i := len(x) - 1; i >= 0; i-- {
		s := uint16(x[i]) + carry
		x[i] = byte(s)
		carry = s >> 8
	}
	return m.privateKey(g, x), nil
}

// newPrivateKey checks that the exponent b (size bytes) is in [1, q-1] and
// returns the key. Exponents that fit in expBytes are kept at that length,
// so that exponentiation with them costs what a generated key costs; longer
// ones are kept at the length of q.
func (f *modp) newPrivateKey(g *Group, b []byte) (*PrivateKey, error) {
	m := f.params()
	x, err := bigmod.NewNat().SetBytes(b, m.qMod)
	if err != nil || x.IsZero() == 1 {
		return nil, fmt.Errorf("%w: exponent must be in [1, q-1] for %s", ErrInvalidPrivateKey, g.name)
	}
	lead := b[:len(b)-m.expBytes]
	var or byte
	for _, c := range lead {
		or |= c
	}
	if or == 0 {
		b = b[len(lead):]
	}
	return m.privateKey(g, b), nil
}

// privateKey computes the public key 2^x mod p in constant time.
func (m *modpParams) privateKey(g *Group, x []byte) *PrivateKey {
	two := bigmod.NewNat().SetUint(2).ExpandFor(m.pMod)
	y := bigmod.NewNat().Exp(two, x, m.pMod)
	return &PrivateKey{group: g, x: x, pub: &PublicKey{group: g, b: y.Bytes(m.pMod)}}
}

// sharedSecret returns y^x mod p, size bytes, in constant time.
func (m *modpParams) sharedSecret(x, y []byte) ([]byte, error) {
	yy, err := bigmod.NewNat().SetBytes(y, m.pMod)
	if err != nil {
		return nil, ErrKeyOutOfRange // unreachable for validated keys
	}
	z := bigmod.NewNat().Exp(yy, x, m.pMod)
	// SP 800-56A requires z != 1; it cannot be 1 for a validated y and
	// x in [1, q-1], but the check is cheap.
	if z.IsOne() == 1 {
		return nil, ErrKeyNotInSubgroup
	}
	return z.Bytes(m.pMod), nil
}
