package dh

import (
	"errors"
	"fmt"
)

// The errors of this package form two families, so that callers (the relay's
// wire-code table, the HTTP API) can branch with [errors.Is] on either the
// family or the exact cause:
//
//   - ErrMalformedKey: the text or bytes are not an encoding of a key of the
//     group (ErrKeyEmpty, ErrKeyTooLong, ErrKeyLength, ErrKeySigned,
//     ErrKeyNotHex).
//   - ErrInvalidPublicKey: the encoding is fine but the key fails validation
//     (ErrKeyOutOfRange, ErrKeyNotInSubgroup, ErrKeyNotOnCurve, ErrLowOrder).
//
// Every specific error wraps its family, so errors.Is(err, ErrMalformedKey)
// holds for ErrKeyNotHex, for instance.
var (
	// ErrMalformedKey is the family of encoding errors.
	ErrMalformedKey = errors.New("dh: malformed key")
	// ErrKeyEmpty reports an empty key.
	ErrKeyEmpty = fmt.Errorf("%w: empty", ErrMalformedKey)
	// ErrKeyTooLong reports a key with more digits or bytes than the group's
	// size allows.
	ErrKeyTooLong = fmt.Errorf("%w: longer than the group allows", ErrMalformedKey)
	// ErrKeyLength reports a key of a fixed-size encoding (x25519, p256,
	// private exponents) that is shorter than that size or has an odd number
	// of hex digits.
	ErrKeyLength = fmt.Errorf("%w: wrong length for the group", ErrMalformedKey)
	// ErrKeySigned reports a key that starts with '+' or '-'.
	ErrKeySigned = fmt.Errorf("%w: signed", ErrMalformedKey)
	// ErrKeyNotHex reports a key with a character other than 0-9, a-f, A-F
	// (this includes a "0x" prefix, spaces and underscores).
	ErrKeyNotHex = fmt.Errorf("%w: not hexadecimal", ErrMalformedKey)

	// ErrInvalidPublicKey is the family of validation errors.
	ErrInvalidPublicKey = errors.New("dh: invalid public key")
	// ErrKeyOutOfRange reports a MODP key outside [2, p-2], or an X25519 key
	// that is not canonical (u >= 2^255-19).
	ErrKeyOutOfRange = fmt.Errorf("%w: out of range", ErrInvalidPublicKey)
	// ErrKeyNotInSubgroup reports a MODP key outside the subgroup of prime
	// order q = (p-1)/2 (y^q mod p != 1).
	ErrKeyNotInSubgroup = fmt.Errorf("%w: not in the prime-order subgroup", ErrInvalidPublicKey)
	// ErrKeyNotOnCurve reports a P-256 key that is not an uncompressed point
	// on the curve.
	ErrKeyNotOnCurve = fmt.Errorf("%w: not a point on the curve", ErrInvalidPublicKey)
	// ErrLowOrder reports an X25519 key of small order, whose shared secret
	// would be all zeros.
	ErrLowOrder = fmt.Errorf("%w: low-order point", ErrInvalidPublicKey)

	// ErrInvalidPrivateKey reports a private key outside [1, q-1] (MODP) or
	// otherwise unusable for its group.
	ErrInvalidPrivateKey = errors.New("dh: invalid private key")
	// ErrGroupMismatch reports keys of two different groups used together.
	ErrGroupMismatch = errors.New("dh: keys belong to different groups")
	// ErrUnknownGroup reports a group name or number that is not supported.
	ErrUnknownGroup = errors.New("dh: unknown group")
)
