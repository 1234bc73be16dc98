package dh

// Jacobi symbol on fixed-size 64-bit limbs.
//
// This is the fast path of public-key validation for the RFC 3526 MODP
// groups: for a safe prime p = 2q+1, a public value 1 < y < p-1 lies in
// the order-q subgroup iff y is a quadratic residue mod p, iff
// jacobi(y, p) == 1. The inputs are public, so the code is variable-time.
//
// API contract (both functions are unexported and use plain slices):
//
//   - jacobi(a, n []uint64) int takes two little-endian limb slices of
//     the same length L, 1 <= L <= maxLimbs. n must be odd (hence
//     positive). a may be any value that fits in L limbs: a < n is the
//     usual case, but a >= n is accepted too (the symbol only depends on
//     a mod n), and a = 0 gives 0 (or 1 when n = 1). jacobi panics if
//     the lengths differ, L is 0 or above maxLimbs, or n is even. It
//     neither allocates nor modifies a or n: it works on stack copies.
//   - limbsFromBytes(dst []uint64, b []byte) sets dst to the big-endian
//     byte string b; leading zero bytes beyond the capacity of dst are
//     ignored, and it panics if the value does not fit in len(dst) limbs.
//
// Algorithm
//
// This is Thomas Pornin's optimized binary GCD (IACR ePrint 2020/972)
// turned into a Jacobi symbol, as in his Legendre-symbol code for curve
// fields. The basic step on (a, b), b odd, is the binary GCD step: if a is
// odd and a < b, swap a and b; if a is odd, a -= b; then halve a. The
// symbol is tracked with the usual rules: halving a flips it iff
// b = 3 or 5 mod 8, swapping two odd values flips it iff a = b = 3 mod 4,
// and subtracting does not change it, so only the low three bits of a and
// b matter. Instead of running the steps on the full numbers, each outer
// iteration makes 64-bit approximations of a and b from the top 32 bits
// (aligned on the longer of the two) and the exact low 32 bits, runs 30
// steps on these words (runs of halvings at once with a trailing-zero
// count, the swap with conditional moves), recording the symbol flips and
// the 2x2 integer matrix of the steps. With 32 exact low bits, the low 3
// bits stay exact through step 30, so all parity decisions and symbol
// flips are exact; only comparisons of the approximated tops can be
// wrong, which at worst makes a result negative. For numbers of 3 limbs
// or more, a second round of 30 steps follows without touching the full
// values: the top two limbs and the low limb of the new a and b are
// recomputed from the matrix, the rows are negated if needed to make both
// nonnegative (their signs are certain unless the estimate is tiny, in
// which case the second round is skipped), and the matrices are composed
// (entries below 2^60). The matrix is then applied to the full values in
// one pass per row: a' = (f0*a + g0*b)/2^k, b' = (f1*a + g1*b)/2^k, with
// k = 30 or 60 and an exact division, and a negative result is negated.
// The symbol is defined with |b| throughout; the rules above stay valid
// for signed values except for a swap of two negative values, which
// cannot happen: once a goes negative, the states (a<0, b>0) and
// (a>0, b<0) only lead to each other. Negating a multiplies the symbol by
// (-1/|b|), i.e. flips it iff |b| = 3 mod 4; negating b changes nothing.
// Only the nonzero top limbs are processed, and once both values fit in
// a word an exact single-word loop finishes; the result is 0 when the
// final gcd is not 1. As a variable-time safety net, when an outer
// iteration fails to shrink bitlen(a)+bitlen(b), exact full-width binary
// steps follow until it has shrunk, so termination never depends on the
// quality of the approximations (this was never seen to trigger on random
// inputs).

import "math/bits"

// maxLimbs is the number of 64-bit limbs of the largest supported modulus (8192 bits).
const maxLimbs = 128

// jacobiSteps is the number of binary-GCD steps run on the word
// approximations in each outer iteration. The approximations keep 32
// exact low bits; step i (0-based) needs the low 3 bits of both values,
// which stay exact while 32-i >= 3, i.e. for i <= 29.
const jacobiSteps = 30

// jacobi returns the Jacobi symbol (a/n): 1, -1, or 0 when gcd(a, n) > 1.
// a and n are little-endian 64-bit limbs of equal length, at most maxLimbs;
// n must be odd (thus positive). a may be any value of that many limbs
// (a >= n is allowed; usually a < n). It does not allocate and does not
// modify a or n. It runs in variable time: inputs must be public.
func jacobi(a, n []uint64) int {
	l := len(n)
	if l == 0 || l > maxLimbs || len(a) != l {
		panic("dh: jacobi: bad limb count")
	}
	if n[0]&1 == 0 {
		panic("dh: jacobi: even modulus")
	}
	var xa, xb [maxLimbs]uint64
	copy(xa[:l], a)
	copy(xb[:l], n)
	return jacobiLimbs(xa[:l], xb[:l], true)
}

// limbsFromBytes sets dst (len(dst) limbs, little-endian) to the big-endian byte string b, which must fit.
// Leading zero bytes beyond the capacity of dst are accepted; it panics if
// the value does not fit in len(dst) limbs.
func limbsFromBytes(dst []uint64, b []byte) {
	for len(b) > 8*len(dst) {
		if b[0] != 0 {
			panic("dh: limbsFromBytes: value does not fit")
		}
		b = b[1:]
	}
	i := 0
	for ; len(b) >= 8; i++ {
		k := len(b) - 8
		dst[i] = uint64(b[k])<<56 | uint64(b[k+1])<<48 | uint64(b[k+2])<<40 |
			uint64(b[k+3])<<32 | uint64(b[k+4])<<24 | uint64(b[k+5])<<16 |
			uint64(b[k+6])<<8 | uint64(b[k+7])
		b = b[:k]
	}
	if len(b) > 0 {
		var w uint64
		for _, c := range b {
			w = w<<8 | uint64(c)
		}
		dst[i] = w
		i++
	}
	clear(dst[i:])
}

// jacobiLimbs returns the Jacobi symbol (a/b) for a >= 0 and odd b > 0,
// given as little-endian limbs of equal length. It destroys a and b
// (scratch copies). With fast == false it only uses exact full-width
// binary steps (the plain binary algorithm, kept for tests and as the
// fallback of the fast path).
func jacobiLimbs(a, b []uint64, fast bool) int {
	var scratch [maxLimbs]uint64
	tmp := scratch[:len(b)]
	var ls uint64 // bit 0 set: the symbol accumulated so far is -1
	prev := int(^uint(0) >> 1)
	l := len(b)
	for {
		for l > 1 && a[l-1]|b[l-1] == 0 {
			l--
		}
		a, b = a[:l], b[:l]
		if l == 1 {
			return jacobiWord(a[0], b[0], ls)
		}
		la, lb := jacBitLen(a), jacBitLen(b)
		if la == 0 {
			// a = 0 and b > 2^64 > 1: gcd(a, b) = b > 1.
			return 0
		}
		if !fast || la+lb >= prev {
			// Exact step: it reduces la+lb by at least 1.
			a, b, ls = jacBinaryStep(a, b, ls)
			continue
		}
		prev = la + lb

		// Approximations: top 32 bits (aligned on the larger value) and
		// exact low 32 bits.
		s := uint(bits.LeadingZeros64(a[l-1] | b[l-1]))
		ah := a[l-1]<<s | a[l-2]>>(64-s)
		bh := b[l-1]<<s | b[l-2]>>(64-s)
		xa := ah&^0xFFFFFFFF | a[0]&0xFFFFFFFF
		xb := bh&^0xFFFFFFFF | b[0]&0xFFFFFFFF

		var fg0, fg1 uint64
		fg0, fg1, ls = jacobiInner(xa, xb, ls)
		f0, g0, f1, g1 := jacUnpack(fg0, fg1)
		k := uint(jacobiSteps)

		if l >= 3 {
			// Second round without touching the full values: estimate
			// a' = (f0*a + g0*b)/2^30 and b' from the top two limbs (for
			// the top bits and the signs) and from the low limb (exact
			// low bits), make both nonnegative by negating a row of the
			// matrix, run 30 more steps and compose the two matrices.
			// Skipped when a sign is uncertain.
			ta2, ta1, ta0 := jacTopComb(f0, g0, a[l-1], a[l-2], b[l-1], b[l-2])
			tb2, tb1, tb0 := jacTopComb(f1, g1, a[l-1], a[l-2], b[l-1], b[l-2])
			na, ta2, ta1, ta0 := jacAbs192(ta2, ta1, ta0)
			nb, tb2, tb1, tb0 := jacAbs192(tb2, tb1, tb0)
			okA, na := jacRowSign(f0, g0, na, ta2|ta1 != 0 || ta0>>31 != 0)
			okB, nb := jacRowSign(f1, g1, nb, tb2|tb1 != 0 || tb0>>31 != 0)
			if okA && okB {
				la0 := uint64(f0)*a[0] + uint64(g0)*b[0]
				lb0 := uint64(f1)*a[0] + uint64(g1)*b[0]
				if nb {
					f1, g1, lb0 = -f1, -g1, -lb0
				}
				if na {
					f0, g0, la0 = -f0, -g0, -la0
					ls ^= lb0 >> (jacobiSteps + 1) // (-1/|b'|)
				}
				la0 >>= jacobiSteps
				lb0 >>= jacobiSteps
				ha, hb := jacTop64(ta2, ta1, ta0, tb2, tb1, tb0)
				xa = ha&^0xFFFFFFFF | la0&0xFFFFFFFF
				xb = hb&^0xFFFFFFFF | lb0&0xFFFFFFFF
				fg0, fg1, ls = jacobiInner(xa, xb, ls)
				u0, v0, u1, v1 := jacUnpack(fg0, fg1)
				f0, g0, f1, g1 = u0*f0+v0*f1, u0*g0+v0*g1, u1*f0+v1*f1, u1*g0+v1*g1
				k = 2 * jacobiSteps
			}
		}

		var negA bool
		a, b, tmp, negA, _ = jacLinComb(a, b, tmp[:l], f0, g0, f1, g1, k)
		if negA {
			ls ^= b[0] >> 1 // (-1/|b|) = -1 iff |b| = 3 mod 4
		}
	}
}

// jacRowSign decides the sign of f*a + g*b (a, b > 0) from the sign neg of
// its estimate T = f*A + g*B on the top two limbs, where big tells
// whether |T| >= 2^31. The dropped low limbs change T by less than 2^30
// (in units of the low limbs' range), so the sign of T is the sign of the
// value when |T| >= 2^31; when f and g have the same sign, so does the
// value. It returns whether the sign is known, and the sign.
func jacRowSign(f, g int64, neg, big bool) (ok, negative bool) {
	switch {
	case big:
		return true, neg
	case f|g >= 0: // f >= 0 && g >= 0
		return true, false
	case f <= 0 && g <= 0:
		return true, true
	}
	return false, false
}

// jacUnpack extracts the signed matrix entries from the packed rows
// fg0 = f0 + 2^32*g0 and fg1 = f1 + 2^32*g1 (each entry in [-2^31+1, 2^31]).
func jacUnpack(fg0, fg1 uint64) (f0, g0, f1, g1 int64) {
	fg0 += 0x7FFFFFFF7FFFFFFF
	fg1 += 0x7FFFFFFF7FFFFFFF
	f0 = int64(fg0&0xFFFFFFFF) - 0x7FFFFFFF
	g0 = int64(fg0>>32) - 0x7FFFFFFF
	f1 = int64(fg1&0xFFFFFFFF) - 0x7FFFFFFF
	g1 = int64(fg1>>32) - 0x7FFFFFFF
	return
}

// jacTopComb returns f*X + g*Y as a signed 192-bit value (t2:t1:t0), for
// 128-bit X = (x1:x0), Y = (y1:y0) and |f|, |g| < 2^62.
func jacTopComb(f, g int64, x1, x0, y1, y0 uint64) (t2, t1, t0 uint64) {
	mf, mg := uint64(f>>63), uint64(g>>63)
	h1, l1 := bits.Mul64(uint64(f), x0)
	h2, l2 := bits.Mul64(uint64(g), y0)
	h1 -= x0 & mf
	h2 -= y0 & mg
	t0, c := bits.Add64(l1, l2, 0)
	cy := h1 + h2 + c // signed carry
	h1, l1 = bits.Mul64(uint64(f), x1)
	h2, l2 = bits.Mul64(uint64(g), y1)
	h1 -= x1 & mf
	h2 -= y1 & mg
	t1, c = bits.Add64(l1, l2, 0)
	hi := h1 + h2 + c
	t1, c = bits.Add64(t1, cy, 0)
	t2 = hi + c + uint64(int64(cy)>>63)
	return
}

// jacTop64 returns the top 64 bits of the 192-bit values (x2:x1:x0) and
// (y2:y1:y0), both shifted by the same amount so that the larger one has
// its top bit set (not both zero).
func jacTop64(x2, x1, x0, y2, y1, y0 uint64) (hx, hy uint64) {
	if x2|y2 == 0 {
		x2, x1, x0 = x1, x0, 0
		y2, y1, y0 = y1, y0, 0
		if x2|y2 == 0 {
			x2, x1 = x1, 0
			y2, y1 = y1, 0
		}
	}
	s := uint(bits.LeadingZeros64(x2 | y2))
	return x2<<s | x1>>(64-s), y2<<s | y1>>(64-s)
}

// jacAbs192 returns whether the signed 192-bit value (t2:t1:t0) is negative,
// and its absolute value.
func jacAbs192(t2, t1, t0 uint64) (neg bool, r2, r1, r0 uint64) {
	if int64(t2) >= 0 {
		return false, t2, t1, t0
	}
	var c uint64
	r0, c = bits.Sub64(0, t0, 0)
	r1, c = bits.Sub64(0, t1, c)
	r2, _ = bits.Sub64(0, t2, c)
	return true, r2, r1, r0
}

// jacobiInner runs jacobiSteps binary-GCD steps on the word approximations
// xa, xb (xb odd) and returns the packed update matrix rows
// fg0 = f0 + 2^32*g0 and fg1 = f1 + 2^32*g1 (f, g signed, |f|+|g| <=
// 2^jacobiSteps) together with the updated symbol bit ls. Runs of
// halvings are done at once with a trailing-zero count, and the swap is
// written with conditional assignments that the compiler turns into
// conditional moves. It is a separate function so that its state stays
// in registers.
func jacobiInner(xa, xb, ls uint64) (fg0, fg1, ls2 uint64) {
	fg0 = 1
	fg1 = 1 << 32
	rem := uint(jacobiSteps) // halvings left
	// OR-ing in 1<<rem caps the count at rem (and handles xa == 0).
	z := uint(bits.TrailingZeros64(xa | 1<<(rem&63)))
	xa >>= z & 63
	fg1 <<= z & 63
	rem -= z
	ls ^= uint64(z) & ((xb + 2) >> 2) // (2/b)^z: -1 iff z odd, b = 3, 5 mod 8
	for rem > 0 {
		// xa is odd: swap if xa < xb, then subtract. The trailing-zero
		// count of the difference does not depend on its sign, so it is
		// computed before the swap is resolved.
		d := xa - xb
		z := uint(bits.TrailingZeros64(d | 1<<(rem&63)))
		_, borrow := bits.Sub64(xa, xb, 0)
		ls ^= -borrow & (xa & xb >> 1) // reciprocity: -1 iff a = b = 3 mod 4
		na, nb := d, xb
		nf0, nf1 := fg0-fg1, fg1
		if xa < xb {
			na, nb = xb-xa, xa
			nf0, nf1 = fg1-fg0, fg0
		}
		xa, xb = na>>(z&63), nb
		fg0, fg1 = nf0, nf1<<(z&63)
		rem -= z
		ls ^= uint64(z) & ((xb + 2) >> 2)
	}
	return fg0, fg1, ls
}

// jacLinComb sets, in place,
//
//	a, b = |f0*a + g0*b| / 2^k, |f1*a + g1*b| / 2^k
//
// using tmp (same length) as scratch, and reports the signs of the two
// combinations. Both divisions are exact and |f|+|g| <= 2^k <= 2^60 for
// each row, so the results are at most max(a, b). The returned slices are
// the new a and b (a's storage is exchanged with tmp's) and the new tmp.
func jacLinComb(a, b, tmp []uint64, f0, g0, f1, g1 int64, k uint) (na, nb, ntmp []uint64, negA, negB bool) {
	negA = jacLinRow(tmp, a, b, f0, g0, k)
	negB = jacLinRow(b, a, b, f1, g1, k) // in place: row 1 is computed last
	return tmp, b, a, negA, negB
}

// jacLinRow sets dst = |f*x + g*y| / 2^k and reports whether
// f*x + g*y < 0. dst may be x or y itself.
func jacLinRow(dst, x, y []uint64, f, g int64, k uint) (neg bool) {
	switch {
	case f >= 0 && g >= 0:
		jacAddRow(dst, x, y, uint64(f), uint64(g), k)
		return false
	case f < 0 && g < 0:
		jacAddRow(dst, x, y, uint64(-f), uint64(-g), k)
		return true
	case g < 0:
		neg = jacSubRow(dst, x, y, uint64(f), uint64(-g), k)
	default:
		neg = jacSubRow(dst, y, x, uint64(g), uint64(-f), k)
	}
	if neg {
		jacNeg(dst)
	}
	return neg
}

// jacAddRow sets dst = (u*x + v*y) / 2^k, for u, v >= 0 with
// u+v <= 2^k, 0 < k < 64, and an exact division. dst may alias x or y (same
// start): limb i-1 is written only after limb i of x and y has been read.
func jacAddRow(dst, x, y []uint64, u, v uint64, k uint) {
	k &= 63
	n := len(x)
	y = y[:n]
	dst = dst[:n]
	h1, l1 := bits.Mul64(u, x[0])
	h2, l2 := bits.Mul64(v, y[0])
	p, cc := bits.Add64(l1, l2, 0)
	c := h1 + h2 + cc
	for i := 1; i < n; i++ {
		h1, l1 := bits.Mul64(u, x[i])
		h2, l2 := bits.Mul64(v, y[i])
		lo, cc := bits.Add64(l1, l2, 0)
		hi := h1 + h2 + cc
		lo, cc = bits.Add64(lo, c, 0)
		c = hi + cc
		dst[i-1] = p>>k | lo<<((64-k)&63)
		p = lo
	}
	dst[n-1] = p>>k | c<<((64-k)&63)
}

// jacSubRow sets dst = (u*x - v*y) / 2^k in two's complement and
// reports whether the result is negative, for u, v >= 0 with
// u+v <= 2^k, 0 < k < 64, and an exact division. dst may alias x or y.
func jacSubRow(dst, x, y []uint64, u, v uint64, k uint) (neg bool) {
	k &= 63
	n := len(x)
	y = y[:n]
	dst = dst[:n]
	h1, l1 := bits.Mul64(u, x[0])
	h2, l2 := bits.Mul64(v, y[0])
	p, bw := bits.Sub64(l1, l2, 0)
	c := h1 - h2 - bw // signed carry
	for i := 1; i < n; i++ {
		h1, l1 := bits.Mul64(u, x[i])
		h2, l2 := bits.Mul64(v, y[i])
		lo, bw := bits.Sub64(l1, l2, 0)
		hi := h1 - h2 - bw
		lo, cc := bits.Add64(lo, c, 0)
		c = hi + cc + uint64(int64(c)>>63)
		dst[i-1] = p>>k | lo<<((64-k)&63)
		p = lo
	}
	dst[n-1] = p>>k | c<<((64-k)&63)
	return int64(c) < 0
}

// jacNeg negates x in place (two's complement over len(x) limbs).
func jacNeg(x []uint64) {
	var c uint64
	for i := range x {
		x[i], c = bits.Sub64(0, x[i], c)
	}
}

// jacBitLen returns the bit length of x.
func jacBitLen(x []uint64) int {
	for i := len(x) - 1; i >= 0; i-- {
		if x[i] != 0 {
			return i*64 + bits.Len64(x[i])
		}
	}
	return 0
}

// jacBinaryStep runs one exact binary step on a != 0, b odd (both
// nonnegative, same length): if a is even it divides a by its largest
// power-of-two factor; otherwise it swaps a and b if a < b, subtracts b
// from a and removes the factors of two of the result. In both cases
// bitlen(a)+bitlen(b) decreases by at least 1. It returns the (possibly
// swapped) slices and the updated symbol bit.
func jacBinaryStep(a, b []uint64, ls uint64) ([]uint64, []uint64, uint64) {
	if a[0]&1 != 0 {
		if jacCmp(a, b) < 0 {
			ls ^= a[0] & b[0] >> 1
			a, b = b, a
		}
		var c uint64
		for i := range a {
			a[i], c = bits.Sub64(a[i], b[i], c)
		}
	}
	z := jacTrailingZeros(a)
	if z == 0 {
		// a == b before the subtraction: a = 0 now, nothing to shift.
		return a, b, ls
	}
	jacRsh(a, z)
	ls ^= uint64(z) & ((b[0] + 2) >> 2)
	return a, b, ls
}

// jacCmp returns -1, 0 or 1 as x <, ==, > y.
func jacCmp(x, y []uint64) int {
	for i := len(x) - 1; i >= 0; i-- {
		if x[i] != y[i] {
			if x[i] < y[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// jacTrailingZeros returns the number of trailing zero bits of x, or 0 if x == 0.
func jacTrailingZeros(x []uint64) uint {
	for i, w := range x {
		if w != 0 {
			return uint(i*64 + bits.TrailingZeros64(w))
		}
	}
	return 0
}

// jacRsh sets x = x >> z, for 0 < z < 64*len(x).
func jacRsh(x []uint64, z uint) {
	w, s := int(z/64), z%64
	n := len(x)
	if s == 0 {
		copy(x, x[w:])
	} else {
		for i := 0; i+w < n; i++ {
			v := x[i+w] >> s
			if i+w+1 < n {
				v |= x[i+w+1] << (64 - s)
			}
			x[i] = v
		}
	}
	clear(x[n-w:])
}

// jacobiWord returns (-1)^ls * (a/b) for single words, b odd. It is the
// exact binary algorithm, with runs of halvings done at once and the swap
// done with conditional moves.
func jacobiWord(a, b, ls uint64) int {
	if a != 0 {
		z := uint(bits.TrailingZeros64(a))
		a >>= z & 63
		ls ^= uint64(z) & ((b + 2) >> 2)
		for a != b {
			// a and b are odd and distinct.
			d := a - b
			z := uint(bits.TrailingZeros64(d))
			_, borrow := bits.Sub64(a, b, 0)
			ls ^= -borrow & (a & b >> 1)
			na, nb := d, b
			if a < b {
				na, nb = b-a, a
			}
			a, b = na>>(z&63), nb
			ls ^= uint64(z) & ((b + 2) >> 2)
		}
		// a == b == gcd.
	}
	if b != 1 {
		return 0
	}
	return 1 - 2*int(ls&1)
}
