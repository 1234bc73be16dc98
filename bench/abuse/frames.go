package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/keyrelay/keyrelay/wire"
)

// msgOverhead is the bytes of a msg frame (without id) besides its
// base64 body: {"type":"msg","body":""}.
var msgOverhead = len(`{"type":"msg","body":""}`)

// largestBody returns the length, before base64, of the largest body whose
// msg frame (without id) fits in maxFrame bytes: 49 134 for the relay's
// default 64 KiB.
func largestBody(maxFrame int) int {
	return (maxFrame - msgOverhead) / 4 * 3
}

// msgFrame returns the msg frame carrying body, in base64.
func msgFrame(body []byte) []byte {
	b, err := json.Marshal(wire.ClientFrame{Type: wire.TypeMsg, Body: ptr(base64.StdEncoding.EncodeToString(body))})
	if err != nil {
		panic(err) // a ClientFrame always marshals
	}
	return b
}

// bigFrame returns a msg frame of size bytes (at least msgOverhead + 4)
// whose body is canonical base64 but for up to 3 bytes of padding spaces
// before the closing brace.
func bigFrame(size int) []byte {
	n := (size - msgOverhead) / 4 * 4
	b := make([]byte, 0, size)
	b = append(b, `{"type":"msg","body":"`...)
	b = append(b, strings.Repeat("A", n)...)
	b = append(b, `"`...)
	for len(b) < size-1 {
		b = append(b, ' ')
	}
	return append(b, '}')
}

// nestedFrame returns a frame of at most size bytes whose body is an array
// nested as deeply as fits.
func nestedFrame(size int) []byte {
	head, tail := `{"type":"msg","body":`, `}`
	depth := (size - len(head) - len(tail)) / 2
	return []byte(head + strings.Repeat("[", depth) + strings.Repeat("]", depth) + tail)
}

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// clientFrame returns payload as one final client frame of opcode op,
// masked (as RFC 6455 requires of a client) with the zero key, which leaves
// the payload as it is.
func clientFrame(op byte, payload []byte) []byte {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, 0, 0, 0, 0) // the masking key
	return append(b, payload...)
}

// parseAddrs parses a comma-separated list of IPv4 addresses and ranges
// (127.0.1.1-127.0.1.32, both ends included).
func parseAddrs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := netip.ParseAddr(lo)
		if err != nil || !first.Is4() {
			return nil, fmt.Errorf("address %q: not an IPv4 address", lo)
		}
		last := first
		if isRange {
			if last, err = netip.ParseAddr(hi); err != nil || !last.Is4() {
				return nil, fmt.Errorf("address %q: not an IPv4 address", hi)
			}
			if last.Less(first) {
				return nil, fmt.Errorf("range %q: the end is below the start", part)
			}
		}
		for a := first; ; a = a.Next() {
			out = append(out, a)
			if len(out) > 1<<16 {
				return nil, fmt.Errorf("%q: more than 65536 addresses", s)
			}
			if a == last {
				break
			}
		}
	}
	return out, nil
}
