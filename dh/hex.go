package dh

// decodeHex decodes the hex text s into dst, right-aligned, with the syntax
// rules of Group.ParsePublicKey. With variable set, s may have any length up
// to 2*len(dst) digits (leading zeros, odd lengths); otherwise it must be
// exactly 2*len(dst) digits. It checks the length before it reads the text,
// so that its work is bounded by len(dst), and never panics.
func decodeHex(dst []byte, s string, variable bool) error {
	switch {
	case s == "":
		return ErrKeyEmpty
	case s[0] == '-' || s[0] == '+':
		return ErrKeySigned
	case len(s) > 2*len(dst):
		return ErrKeyTooLong
	case !variable && len(s) != 2*len(dst):
		return ErrKeyLength
	}
	for i := range dst {
		dst[i] = 0
	}
	// Walk from the last digit; digit j (from the right) lands in the low or
	// high nibble of byte len(dst)-1-j/2.
	for j := 0; j < len(s); j++ {
		v, ok := fromHexChar(s[len(s)-1-j])
		if !ok {
			return ErrKeyNotHex
		}
		dst[len(dst)-1-j/2] |= v << (4 * (j % 2))
	}
	return nil
}

func fromHexChar(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
