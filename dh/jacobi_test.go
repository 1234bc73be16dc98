package dh

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RFC 3526 MODP group primes (test data only), as printed by
// node -e "console.log(require('crypto').getDiffieHellman('modp14').getPrime('hex'))"
// (and 'modp18' for the 8192-bit one).
const (
	jacobiPrime2048Hex = "" +
		"ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74" +
		"020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f1437" +
		"4fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7ed" +
		"ee386bfb5a899fa5ae9f24117c4b1fe649286651ece45b3dc2007cb8a163bf05" +
		"98da48361c55d39a69163fa8fd24cf5f83655d23dca3ad961c62f356208552bb" +
		"9ed529077096966d670c354e4abc9804f1746c08ca18217c32905e462e36ce3b" +
		"e39e772c180e86039b2783a2ec07a28fb5c55df06f4c52c9de2bcbf695581718" +
		"3995497cea956ae515d2261898fa051015728e5a8aacaa68ffffffffffffffff"
	jacobiPrime8192Hex = "" +
		"ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74" +
		"020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f1437" +
		"4fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7ed" +
		"ee386bfb5a899fa5ae9f24117c4b1fe649286651ece45b3dc2007cb8a163bf05" +
		"98da48361c55d39a69163fa8fd24cf5f83655d23dca3ad961c62f356208552bb" +
		"9ed529077096966d670c354e4abc9804f1746c08ca18217c32905e462e36ce3b" +
		"e39e772c180e86039b2783a2ec07a28fb5c55df06f4c52c9de2bcbf695581718" +
		"3995497cea956ae515d2261898fa051015728e5a8aaac42dad33170d04507a33" +
		"a85521abdf1cba64ecfb850458dbef0a8aea71575d060c7db3970f85a6e1e4c7" +
		"abf5ae8cdb0933d71e8c94e04a25619dcee3d2261ad2ee6bf12ffa06d98a0864" +
		"d87602733ec86a64521f2b18177b200cbbe117577a615d6c770988c0bad946e2" +
		"08e24fa074e5ab3143db5bfce0fd108e4b82d120a92108011a723c12a787e6d7" +
		"88719a10bdba5b2699c327186af4e23c1a946834b6150bda2583e9ca2ad44ce8" +
		"dbbbc2db04de8ef92e8efc141fbecaa6287c59474e6bc05d99b2964fa090c3a2" +
		"233ba186515be7ed1f612970cee2d7afb81bdd762170481cd0069127d5b05aa9" +
		"93b4ea988d8fddc186ffb7dc90a6c08f4df435c93402849236c3fab4d27c7026" +
		"c1d4dcb2602646dec9751e763dba37bdf8ff9406ad9e530ee5db382f413001ae" +
		"b06a53ed9027d831179727b0865a8918da3edbebcf9b14ed44ce6cbaced4bb1b" +
		"db7f1447e6cc254b332051512bd7af426fb8f401378cd2bf5983ca01c64b92ec" +
		"f032ea15d1721d03f482d7ce6e74fef6d55e702f46980c82b5a84031900b1c9e" +
		"59e7c97fbec7e8f323a97a7e36cc88be0f1d45b7ff585ac54bd407b22b4154aa" +
		"cc8f6d7ebf48e1d814cc5ed20f8037e0a79715eef29be32806a1d58bb7c5da76" +
		"f550aa3d8a1fbff0eb19ccb1a313d55cda56c9ec2ef29632387fe8d76e3c0468" +
		"043e8f663f4860ee12bf2d5b0b7474d6e694f91e6dbe115974a3926f12fee5e4" +
		"38777cb6a932df8cd8bec4d073b931ba3bc832b68d9dd300741fa7bf8afc47ed" +
		"2576f6936ba424663aab639c5ae4f5683423b4742bf1c978238f16cbe39d652d" +
		"e3fdb8befc848ad922222e04a4037c0713eb57a81a23f0c73473fc646cea306b" +
		"4bcbc8862f8385ddfa9d4b7fa2c087e879683303ed5bdd3a062b3cf5b3a278a6" +
		"6d2a13f83f44f82ddf310ee074ab6a364597e899a0255dc164f31cc50846851d" +
		"f9ab48195ded7ea1b1d510bd7ee74d73faf36bc31ecfa268359046f4eb879f92" +
		"4009438b481c6cd7889a002ed5ee382bc9190da6fc026e479558e4475677e9aa" +
		"9e3050e2765694dfc81f56e880b96e7160c980dd98edd3dfffffffffffffffff"
)

var jacobiSizes = []int{1536, 2048, 3072, 4096, 6144, 8192}

func jacHex(t testing.TB, s string) *big.Int {
	t.Helper()
	x, ok := new(big.Int).SetString(s, 16)
	if !ok {
		t.Fatalf("bad hex %q", s)
	}
	return x
}

// jacRFCPrime returns the embedded RFC 3526 prime of the given size, or nil.
func jacRFCPrime(t testing.TB, bits int) *big.Int {
	switch bits {
	case 2048:
		return jacHex(t, jacobiPrime2048Hex)
	case 8192:
		return jacHex(t, jacobiPrime8192Hex)
	}
	return nil
}

// jacToLimbs returns x as l little-endian 64-bit limbs (x must fit).
func jacToLimbs(t testing.TB, x *big.Int, l int) []uint64 {
	t.Helper()
	if x.Sign() < 0 || x.BitLen() > 64*l {
		t.Fatalf("value of %d bits does not fit in %d limbs", x.BitLen(), l)
	}
	z := make([]uint64, l)
	limbsFromBytes(z, x.Bytes())
	return z
}

// jacFromLimbs converts little-endian limbs to a big.Int.
func jacFromLimbs(z []uint64) *big.Int {
	x := new(big.Int)
	for i := len(z) - 1; i >= 0; i-- {
		x.Lsh(x, 64)
		x.Or(x, new(big.Int).SetUint64(z[i]))
	}
	return x
}

// jacRandBits returns a uniformly random value below 2^bits.
func jacRandBits(r *rand.Rand, bits int) *big.Int {
	x := new(big.Int)
	for i := 0; i < bits; i += 64 {
		x.Lsh(x, 64)
		x.Or(x, new(big.Int).SetUint64(r.Uint64()))
	}
	return x.Rsh(x, uint(64*((bits+63)/64)-bits))
}

// jacRandOdd returns a random odd value of exactly the given bit length.
func jacRandOdd(r *rand.Rand, bits int) *big.Int {
	x := jacRandBits(r, bits)
	x.SetBit(x, bits-1, 1)
	return x.SetBit(x, 0, 1)
}

// jacRandBelow returns a random value in [0, n).
func jacRandBelow(r *rand.Rand, n *big.Int) *big.Int {
	return jacRandBits(r, n.BitLen()+64).Mod(jacRandBits(r, n.BitLen()+64), n)
}

// checkJacobi compares jacobi with big.Jacobi on l-limb encodings of a and
// n, and checks that the inputs are left unmodified.
func checkJacobi(t testing.TB, name string, a, n *big.Int, l int) {
	t.Helper()
	al, nl := jacToLimbs(t, a, l), jacToLimbs(t, n, l)
	a0, n0 := append([]uint64(nil), al...), append([]uint64(nil), nl...)
	got := jacobi(al, nl)
	if want := big.Jacobi(a, n); got != want {
		t.Fatalf("%s: jacobi(a, n) = %d, want %d\na = %#x\nn = %#x", name, got, want, a, n)
	}
	for i := range al {
		if al[i] != a0[i] || nl[i] != n0[i] {
			t.Fatalf("%s: jacobi modified its inputs", name)
		}
	}
}

// jacEdgeValues returns named edge-case values of a for modulus n (bits long).
func jacEdgeValues(r *rand.Rand, n *big.Int, bits int) map[string]*big.Int {
	one := big.NewInt(1)
	m := map[string]*big.Int{
		"0":   big.NewInt(0),
		"1":   big.NewInt(1),
		"2":   big.NewInt(2),
		"3":   big.NewInt(3),
		"4":   big.NewInt(4),
		"n-1": new(big.Int).Sub(n, one),
		"n-2": new(big.Int).Sub(n, big.NewInt(2)),
		"n-3": new(big.Int).Sub(n, big.NewInt(3)),
		// Many trailing zero bits.
		"tz-half":  new(big.Int).Lsh(jacRandOdd(r, bits/2-1), uint(bits/2)),
		"tz-most":  new(big.Int).Lsh(jacRandOdd(r, 40), uint(bits-41)),
		"tz-65":    new(big.Int).Lsh(jacRandOdd(r, bits-70), 65),
		"tz-word":  new(big.Int).Lsh(big.NewInt(3), 128),
		"top-word": new(big.Int).Rsh(n, 64),
		"low-word": new(big.Int).SetUint64(r.Uint64()),
		"sqr":      new(big.Int).Mod(new(big.Int).Mul(jacRandBits(r, bits), jacRandBits(r, bits)), n),
	}
	for _, k := range []int{1, 31, 32, 33, 63, 64, 65, 127, 128, 129, bits / 2, bits - 2} {
		m[fmt.Sprintf("2^%d", k)] = new(big.Int).Lsh(one, uint(k))
	}
	for k, v := range m {
		v.Mod(v, n)
		m[k] = v
	}
	return m
}

// jacCoreEdges are the edge values checked at the largest sizes.
var jacCoreEdges = map[string]bool{
	"0": true, "1": true, "2": true, "n-1": true, "n-2": true,
	"tz-half": true, "tz-most": true, "2^65": true, "2^4096": true, "sqr": true,
}

func TestJacobiTable(t *testing.T) {
	type tc struct {
		a, n string // hex
		l    int    // limb count (0: minimal)
	}
	cases := []tc{
		{"0", "1", 1}, {"5", "1", 1}, {"0", "3", 1}, {"1", "3", 1}, {"2", "3", 1},
		{"2", "7", 1}, {"3", "7", 1}, {"5", "9", 1}, {"6", "9", 1}, {"1e", "3b", 1},
		{"ffffffffffffffff", "ffffffffffffffff", 1},
		{"fffffffffffffffe", "ffffffffffffffff", 1},
		{"8000000000000000", "ffffffffffffffff", 1},
		{"0", "ffffffffffffffffffffffffffffffff", 2},
		{"2", "ffffffffffffffffffffffffffffffff", 2},
		{"10000000000000000", "ffffffffffffffffffffffffffffffff", 2},
		{"fffffffffffffffffffffffffffffffe", "ffffffffffffffffffffffffffffffff", 2},
		{"ffffffffffffffffffffffffffffffff", "ffffffffffffffffffffffffffffffff", 2},
		// a > n is allowed.
		{"ffffffffffffffffffffffffffffffff", "fffffffffffffffffffffffffffffff1", 2},
		{"ffffffffffffffffffffffffffffffff", "3", 2},
		// a sharing a factor with n (n = 3*5*7*... , a multiple of 7).
		{"7000000000000000000000000000000007", "69", 3},
		{"1", "100000000000000000000000000000000000000000000000000000000001", 4},
		// Many limbs, small values.
		{"2", "3", 128},
		{"0", "1", 128},
		{"1", "1", 128},
	}
	for i, c := range cases {
		a, n := jacHex(t, c.a), jacHex(t, c.n)
		checkJacobi(t, fmt.Sprintf("case %d", i), a, n, c.l)
	}

	// RFC 3526 primes: p = 7 mod 8, so (2/p) = 1 and (-1/p) = -1.
	for _, bits := range []int{2048, 8192} {
		p := jacRFCPrime(t, bits)
		l := bits / 64
		pl := jacToLimbs(t, p, l)
		for _, c := range []struct {
			a    *big.Int
			want int
		}{
			{big.NewInt(2), 1},
			{big.NewInt(4), 1},
			{new(big.Int).Sub(p, big.NewInt(1)), -1},
			{new(big.Int).Sub(p, big.NewInt(2)), -1},
			{big.NewInt(0), 0},
			{p, 0}, // a = n is allowed and gives 0
		} {
			if got := jacobi(jacToLimbs(t, c.a, l), pl); got != c.want {
				t.Errorf("RFC %d: jacobi(%#x, p) = %d, want %d", bits, c.a, got, c.want)
			}
			checkJacobi(t, fmt.Sprintf("RFC %d", bits), c.a, p, l)
		}
	}
}

func TestJacobiRandomSizes(t *testing.T) {
	for _, bits := range jacobiSizes {
		t.Run(fmt.Sprint(bits), func(t *testing.T) { testJacobiSize(t, bits) })
	}
}

func testJacobiSize(t *testing.T, bits int) {
	r := rand.New(rand.NewPCG(1, uint64(bits)))
	l := bits / 64
	// The cost of a check grows with bits^2 (mostly big.Jacobi's):
	// bound the work so that the whole test stays well under 2s with -race.
	iters := 16 * 2048 * 2048 / (bits * bits)
	nmod := max(1, 2*2048/bits)
	if testing.Short() {
		iters /= 4
	}
	var moduli []*big.Int
	if p := jacRFCPrime(t, bits); p != nil {
		moduli = append(moduli, p)
	}
	for len(moduli) < nmod {
		moduli = append(moduli, jacRandOdd(r, bits))
	}
	// A composite modulus with a known factor g, and values a sharing it.
	g := jacRandOdd(r, bits/3)
	h := jacRandOdd(r, bits-g.BitLen())
	nc := new(big.Int).Mul(g, h)
	for nc.BitLen() > bits {
		h.Rsh(h, 1)
		h.SetBit(h, 0, 1)
		nc.Mul(g, h)
	}
	for i := range 3 {
		a := new(big.Int).Mul(g, jacRandBelow(r, h))
		checkJacobi(t, fmt.Sprintf("shared factor %d", i), a, nc, l)
	}
	n3 := new(big.Int).Mul(big.NewInt(3), jacRandOdd(r, bits-2))
	checkJacobi(t, "3|a, 3|n", new(big.Int).Mul(big.NewInt(3), jacRandBits(r, bits-3)), n3, l)

	for mi, n := range moduli {
		for name, a := range jacEdgeValues(r, n, bits) {
			if bits > 3072 && !jacCoreEdges[name] {
				continue
			}
			checkJacobi(t, fmt.Sprintf("modulus %d a=%s", mi, name), a, n, l)
		}
		for i := range iters / len(moduli) {
			checkJacobi(t, fmt.Sprintf("modulus %d random %d", mi, i), jacRandBelow(r, n), n, l)
		}
	}
	// Random odd moduli of any length up to the limb count.
	for i := range iters {
		n := jacRandOdd(r, 1+r.IntN(bits))
		checkJacobi(t, fmt.Sprintf("short modulus %d", i), jacRandBelow(r, n), n, l)
	}
}

// TestJacobiSmall covers 1 to 8 limbs, all bit lengths, and a >= n.
func TestJacobiSmall(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	iters := 1500
	if testing.Short() {
		iters /= 4
	}
	for i := range iters {
		l := 1 + r.IntN(8)
		n := jacRandOdd(r, 1+r.IntN(64*l))
		var a *big.Int
		switch r.IntN(4) {
		case 0:
			a = jacRandBits(r, 64*l) // any value, often >= n
		case 1:
			a = new(big.Int).Lsh(big.NewInt(1), uint(r.IntN(64*l)))
		default:
			a = jacRandBelow(r, n)
		}
		checkJacobi(t, fmt.Sprintf("small %d", i), a, n, l)
	}
}

// TestJacobiAdversarial uses inputs whose top bits agree or nearly agree
// (a close to n, to k*n/m, or to n/phi, and consecutive Fibonacci
// numbers), which make the word approximations misjudge comparisons and
// drive the negative-result and sign-estimation paths.
func TestJacobiAdversarial(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	iters := 300
	if testing.Short() {
		iters /= 4
	}
	phiNum, _ := new(big.Int).SetString("618033988749894848204586834365638117720309179805762862135", 10)
	phiDen := new(big.Int).Exp(big.NewInt(10), big.NewInt(57), nil)
	for i := range iters {
		bits := 65 + r.IntN(2048-64)
		l := (bits + 63) / 64
		n := jacRandOdd(r, bits)
		var a *big.Int
		switch i % 5 {
		case 0: // n minus a value of random size
			a = new(big.Int).Sub(n, jacRandBits(r, 1+r.IntN(bits-1)))
		case 1: // near k*n/m
			k, m := int64(1+r.IntN(9)), int64(1+r.IntN(9))
			a = new(big.Int).Mul(n, big.NewInt(k))
			a.Div(a, big.NewInt(m))
			a.Add(a, jacRandBits(r, 1+r.IntN(bits/2)))
		case 2: // same top bits as n, random low bits
			sh := uint(1 + r.IntN(bits-1))
			a = new(big.Int).Rsh(n, sh)
			a.Lsh(a, sh)
			a.Xor(a, jacRandBits(r, int(sh)))
		case 3: // n/phi
			a = new(big.Int).Mul(n, phiNum)
			a.Div(a, phiDen)
		default: // a = n - 2^k * odd
			a = new(big.Int).Lsh(jacRandOdd(r, 1+r.IntN(bits/2)), uint(r.IntN(bits/2)))
			a.Sub(n, a)
		}
		a.Mod(a, n)
		checkJacobi(t, fmt.Sprintf("adversarial %d", i), a, n, l)
	}
	// Consecutive Fibonacci numbers.
	f0, f1 := big.NewInt(1), big.NewInt(1)
	for i := 0; f1.BitLen() <= 2048; i++ {
		f0, f1 = f1, new(big.Int).Add(f0, f1)
		if i%29 == 0 && f1.Bit(0) == 1 && f1.BitLen() > 60 {
			checkJacobi(t, fmt.Sprintf("fibonacci %d bits", f1.BitLen()), f0, f1, (f1.BitLen()+63)/64)
		}
	}
}

// TestJacobiHelpers checks the matrix-application and sign helpers on
// their own, including sign combinations that are rare in full runs.
func TestJacobiHelpers(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for i := range 400 {
		l := 1 + r.IntN(6)
		k := uint(jacobiSteps)
		if i%2 == 1 {
			k = 2 * jacobiSteps
		}
		// x, y multiples of 2^k so that the division is exact.
		x := new(big.Int).Lsh(jacRandBits(r, 64*l-int(k)), k)
		y := new(big.Int).Lsh(jacRandBits(r, 64*l-int(k)), k)
		lim := int64(1) << k
		f := r.Int64N(lim + 1)
		g := r.Int64N(lim - f + 1) // |f| + |g| <= 2^k
		if i&4 != 0 {
			f = -f
		}
		if i&8 != 0 {
			g = -g
		}
		v := new(big.Int).Add(new(big.Int).Mul(big.NewInt(f), x), new(big.Int).Mul(big.NewInt(g), y))
		wantNeg := v.Sign() < 0
		v.Abs(v).Rsh(v, k)
		for alias := range 3 {
			xl, yl := jacToLimbs(t, x, l), jacToLimbs(t, y, l)
			dst := make([]uint64, l)
			switch alias {
			case 1:
				dst = xl
			case 2:
				dst = yl
			}
			neg := jacLinRow(dst, xl, yl, f, g, k)
			if got := jacFromLimbs(dst); got.Cmp(v) != 0 || neg != wantNeg {
				t.Fatalf("jacLinRow(f=%d, g=%d, k=%d, alias %d) = %#x, %v; want %#x, %v", f, g, k, alias, got, neg, v, wantNeg)
			}
		}
	}

	for _, c := range []struct {
		f, g        int64
		neg, big    bool
		ok, wantNeg bool
	}{
		{5, -3, true, true, true, true},
		{5, -3, false, true, true, false},
		{5, -3, false, false, false, false},
		{0, 7, false, false, true, false},
		{3, 0, true, false, true, false},
		{-3, 0, false, false, true, true},
		{-1, -2, false, false, true, true},
		{-1, 2, true, false, false, false},
	} {
		ok, neg := jacRowSign(c.f, c.g, c.neg, c.big)
		if ok != c.ok || (ok && neg != c.wantNeg) {
			t.Errorf("jacRowSign(%d, %d, %v, %v) = %v, %v", c.f, c.g, c.neg, c.big, ok, neg)
		}
	}

	for i := range 200 {
		x := jacRandBits(r, 1+r.IntN(192))
		y := jacRandBits(r, 1+r.IntN(192))
		if i%3 == 0 {
			x.Rsh(x, 120)
			y.Rsh(y, 128+uint(r.IntN(60)))
		}
		if x.Sign() == 0 && y.Sign() == 0 {
			continue
		}
		xl, yl := jacToLimbs(t, x, 3), jacToLimbs(t, y, 3)
		hx, hy := jacTop64(xl[2], xl[1], xl[0], yl[2], yl[1], yl[0])
		sh := max(x.BitLen(), y.BitLen()) - 64
		wx, wy := new(big.Int).Set(x), new(big.Int).Set(y)
		if sh >= 0 {
			wx.Rsh(wx, uint(sh))
			wy.Rsh(wy, uint(sh))
		} else {
			wx.Lsh(wx, uint(-sh))
			wy.Lsh(wy, uint(-sh))
		}
		if wx.Uint64() != hx || wy.Uint64() != hy {
			t.Fatalf("jacTop64(%#x, %#x) = %#x, %#x; want %#x, %#x", x, y, hx, hy, wx, wy)
		}
	}
}

// TestJacobiBinary checks the plain binary algorithm (fast == false), which
// is the safety net of the fast path.
func TestJacobiBinary(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 200 {
		bits := 1 + r.IntN(1024)
		l := (bits + 63) / 64
		n := jacRandOdd(r, bits)
		a := jacRandBits(r, 64*l)
		switch i % 3 {
		case 0:
			a = new(big.Int).Mul(n, big.NewInt(int64(r.IntN(5))))
			if a.BitLen() > 64*l {
				a.Set(n)
			}
		case 1: // trailing zeros in whole limbs
			a = new(big.Int).Lsh(big.NewInt(int64(1+2*r.IntN(1000))), uint(64*r.IntN(l)))
		}
		al, nl := jacToLimbs(t, a, l), jacToLimbs(t, n, l)
		if got, want := jacobiLimbs(al, nl, false), big.Jacobi(a, n); got != want {
			t.Fatalf("binary: jacobi(%#x, %#x) = %d, want %d", a, n, got, want)
		}
	}
}

func TestJacobiDoesNotModifyInputs(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, bits := range jacobiSizes {
		l := bits / 64
		n := jacRandOdd(r, bits)
		a := jacRandBelow(r, n)
		al, nl := jacToLimbs(t, a, l), jacToLimbs(t, n, l)
		a0, n0 := append([]uint64(nil), al...), append([]uint64(nil), nl...)
		jacobi(al, nl)
		jacobi(nl, nl) // aliased arguments
		for i := range al {
			if al[i] != a0[i] || nl[i] != n0[i] {
				t.Fatalf("%d bits: inputs modified", bits)
			}
		}
	}
}

func TestJacobiAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	for _, bits := range []int{64, 2048, 8192} {
		l := bits / 64
		n := jacRandOdd(r, bits)
		al, nl := jacToLimbs(t, jacRandBelow(r, n), l), jacToLimbs(t, n, l)
		if allocs := testing.AllocsPerRun(50, func() { jacobi(al, nl) }); allocs != 0 {
			t.Errorf("%d bits: jacobi allocates %v times per call", bits, allocs)
		}
		buf := n.Bytes()
		if allocs := testing.AllocsPerRun(50, func() { limbsFromBytes(nl, buf) }); allocs != 0 {
			t.Errorf("%d bits: limbsFromBytes allocates %v times per call", bits, allocs)
		}
	}
}

func TestJacobiPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"even n":       func() { jacobi([]uint64{1}, []uint64{4}) },
		"zero n":       func() { jacobi([]uint64{1, 0}, []uint64{0, 0}) },
		"empty":        func() { jacobi(nil, nil) },
		"length":       func() { jacobi([]uint64{1}, []uint64{3, 0}) },
		"too long":     func() { jacobi(make([]uint64, maxLimbs+1), make([]uint64, maxLimbs+1)) },
		"bytes overfl": func() { limbsFromBytes(make([]uint64, 1), []byte{1, 0, 0, 0, 0, 0, 0, 0, 0}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestJacobiLimbsFromBytes(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		l    int
		want []uint64
	}{
		{nil, 2, []uint64{0, 0}},
		{[]byte{1}, 1, []uint64{1}},
		{[]byte{1, 2, 3}, 2, []uint64{0x010203, 0}},
		{[]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, 2, []uint64{0x0203040506070809, 1}},
		{[]byte{0, 0, 0xff, 1, 2, 3, 4, 5, 6, 7, 8}, 1, []uint64{0x0102030405060708}},
		{[]byte{0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00}, 3,
			[]uint64{0x7766554433221100, 0xffeeddccbbaa9988, 0}},
	} {
		dst := make([]uint64, c.l)
		for i := range dst {
			dst[i] = 0xdeadbeef // must be overwritten
		}
		if c.in != nil && c.in[0] == 0 && c.in[2] == 0xff {
			// 0xff byte is beyond one limb: must panic; test separately below.
			continue
		}
		limbsFromBytes(dst, c.in)
		for i := range dst {
			if dst[i] != c.want[i] {
				t.Errorf("limbsFromBytes(%x) = %x, want %x", c.in, dst, c.want)
				break
			}
		}
	}
	// Leading zero bytes beyond the capacity are accepted.
	dst := make([]uint64, 1)
	limbsFromBytes(dst, []byte{0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	if dst[0] != 0x0102030405060708 {
		t.Errorf("leading zeros: got %x", dst[0])
	}
	// Round trip with big.Int.
	r := rand.New(rand.NewPCG(1, 1))
	for range 100 {
		x := jacRandBits(r, 1+r.IntN(8192))
		if got := jacFromLimbs(jacToLimbs(t, x, maxLimbs)); got.Cmp(x) != 0 {
			t.Fatalf("round trip: %x != %x", got, x)
		}
	}
}

// FuzzJacobi builds an odd modulus n from nb (its limb count is the
// byte length rounded up to whole limbs, at most maxLimbs) and a from ab,
// and compares jacobi with big.Jacobi both for a mod n and, when it fits,
// for the unreduced a.
func FuzzJacobi(f *testing.F) {
	p := jacHex(f, jacobiPrime2048Hex)
	f.Add(p.Bytes(), []byte{2})
	f.Add(p.Bytes(), new(big.Int).Sub(p, big.NewInt(1)).Bytes())
	f.Add([]byte{3}, []byte{2})
	f.Add([]byte{}, []byte{})
	f.Add([]byte(strings.Repeat("\xff", 16)), []byte(strings.Repeat("\x01", 16)))
	f.Add([]byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, []byte{0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, nb, ab []byte) {
		l := max((len(nb)+7)/8, 1)
		if l > maxLimbs {
			l = maxLimbs
			nb = nb[len(nb)-8*l:]
		}
		nl := make([]uint64, l)
		limbsFromBytes(nl, nb)
		nl[0] |= 1
		n := jacFromLimbs(nl)

		a := new(big.Int).SetBytes(ab)
		checkJacobi(t, "reduced", new(big.Int).Mod(a, n), n, l)
		if a.BitLen() <= 64*l {
			checkJacobi(t, "unreduced", a, n, l)
		}
	})
}

// TestJacobiFuzzCorpus makes sure the committed seed corpus parses (the
// fuzzing engine runs it as part of FuzzJacobi).
func TestJacobiFuzzCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzJacobi", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(data), "go test fuzz v1\n") {
			t.Errorf("%s: not a go test fuzz v1 file", name)
		}
	}
}

// jacBenchInputs returns the benchmark inputs for a size: the RFC 3526 prime
// when it is embedded (2048 and 8192 bits), otherwise a random odd modulus
// with the top bit set, and a random a < n.
func jacBenchInputs(b *testing.B, bits int) (a, n *big.Int) {
	r := rand.New(rand.NewPCG(42, uint64(bits)))
	n = jacRFCPrime(b, bits)
	if n == nil {
		n = jacRandOdd(r, bits)
	}
	return jacRandBelow(r, n), n
}

func BenchmarkJacobi(b *testing.B) {
	for _, bits := range jacobiSizes {
		b.Run(fmt.Sprint(bits), func(b *testing.B) {
			a, n := jacBenchInputs(b, bits)
			al, nl := jacToLimbs(b, a, bits/64), jacToLimbs(b, n, bits/64)
			want := big.Jacobi(a, n)
			b.ReportAllocs()
			for b.Loop() {
				if jacobi(al, nl) != want {
					b.Fatal("wrong result")
				}
			}
		})
	}
}

func BenchmarkBigJacobi(b *testing.B) {
	for _, bits := range jacobiSizes {
		b.Run(fmt.Sprint(bits), func(b *testing.B) {
			a, n := jacBenchInputs(b, bits)
			b.ReportAllocs()
			for b.Loop() {
				big.Jacobi(a, n)
			}
		})
	}
}

// BenchmarkJacobiBinary measures the plain subtract-and-shift binary
// algorithm on limbs (the fast == false path) for comparison.
func BenchmarkJacobiBinary(b *testing.B) {
	for _, bits := range jacobiSizes {
		b.Run(fmt.Sprint(bits), func(b *testing.B) {
			a, n := jacBenchInputs(b, bits)
			l := bits / 64
			al, nl := jacToLimbs(b, a, l), jacToLimbs(b, n, l)
			var xa, xb [maxLimbs]uint64
			b.ReportAllocs()
			for b.Loop() {
				copy(xa[:], al)
				copy(xb[:], nl)
				jacobiLimbs(xa[:l], xb[:l], false)
			}
		})
	}
}
