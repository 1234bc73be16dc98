// Package realip finds the address of the client behind trusted reverse
// proxies, for per-client limits.
//
// A Resolver trusts a fixed list of address prefixes (the load balancers
// and proxies in front of the relay). For a request whose peer is not
// trusted, the client is the peer itself and every forwarding header is
// ignored, so nobody outside can choose the address they are counted
// under. For a request from a trusted peer, the Resolver walks
// X-Forwarded-For from the right (the entry the nearest proxy appended)
// to the left, skips trusted addresses, and returns the first untrusted
// one: the "rightmost untrusted" rule. Entries to the left of it were
// written by the client or by proxies nobody vouches for, and are never
// read.
//
// Only X-Forwarded-For is read. The standard Forwarded header (RFC 7239)
// is ignored: nginx and Caddy write X-Forwarded-For, and a proxy that
// appends to X-Forwarded-For but passes a client's Forwarded header
// through unchanged would let the client pick its address if both were
// honoured.
package realip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Header is the header the Resolver reads.
const Header = "X-Forwarded-For"

// Resolver finds a request's client address. The zero value, like a
// Resolver with no prefixes, trusts no proxy: the client is always the
// connection's peer. A Resolver is safe for concurrent use.
type Resolver struct {
	// Static after construction.
	trusted []netip.Prefix
}

// New returns a Resolver that trusts peers within the given prefixes.
// Prefixes are masked (10.1.2.3/8 means 10.0.0.0/8); an IPv4-mapped IPv6
// prefix (::ffff:10.0.0.0/104) is the IPv4 prefix it maps. New returns an
// error for an invalid prefix.
func New(prefixes []netip.Prefix) (*Resolver, error) {
	r := &Resolver{trusted: make([]netip.Prefix, 0, len(prefixes))}
	for _, p := range prefixes {
		if !p.IsValid() {
			return nil, fmt.Errorf("realip: invalid prefix %v", p)
		}
		p = p.Masked()
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		r.trusted = append(r.trusted, p)
	}
	return r, nil
}

// Parse returns a Resolver for a comma-separated list of CIDR prefixes
// ("10.0.0.0/8, 127.0.0.1/32, fd00::/8"). A bare address (127.0.0.1, ::1)
// is a prefix of that one address. Spaces and empty items are ignored; an
// empty list trusts no proxy. Parse returns an error naming the first item
// that is neither a prefix nor an address.
func Parse(list string) (*Resolver, error) {
	var prefixes []netip.Prefix
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.Contains(item, "/") {
			p, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("realip: trusted proxy %q: %w", item, err)
			}
			prefixes = append(prefixes, p)
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("realip: trusted proxy %q is neither a CIDR prefix nor an address", item)
		}
		prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
	}
	return New(prefixes)
}

// Prefixes returns a copy of the trusted prefixes, for logs.
func (r *Resolver) Prefixes() []netip.Prefix {
	if r == nil {
		return nil
	}
	return append([]netip.Prefix(nil), r.trusted...)
}

// Trusted reports whether addr is within a trusted prefix. An IPv4-mapped
// IPv6 address is treated as the IPv4 address it maps; an address with a
// zone is never trusted.
func (r *Resolver) Trusted(addr netip.Addr) bool {
	if r == nil || addr.Zone() != "" {
		return false
	}
	addr = addr.Unmap()
	for _, p := range r.trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ClientIP returns the client address of req as a string (an IPv4-mapped
// address in its IPv4 form, so that one client has one spelling):
//
//   - RemoteAddr's host, if it is not within a trusted prefix (headers
//     are ignored entirely) or if req has no X-Forwarded-For;
//   - otherwise the rightmost X-Forwarded-For entry that is not trusted,
//     reading every X-Forwarded-For line in order as one list;
//   - if an entry is malformed (not an address, an address with a port
//     or in brackets is fine), the walk stops there and the last good
//     address (the last trusted entry, or the peer) is returned;
//   - if every entry is trusted, the leftmost one.
//
// Empty list items are skipped, as RFC 9110 asks. If RemoteAddr itself is
// not an address (a Unix socket, a test's "pipe"), it is returned as it is
// and headers are ignored.
func (r *Resolver) ClientIP(req *http.Request) string {
	peer, ok := parseHost(req.RemoteAddr)
	if !ok {
		return req.RemoteAddr
	}
	if !r.Trusted(peer) {
		return peer.String()
	}
	lines := req.Header.Values(Header)
	last := peer
	for i := len(lines) - 1; i >= 0; i-- {
		rest := lines[i]
		for rest != "" {
			var item string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				item, rest = rest[j+1:], rest[:j]
			} else {
				item, rest = rest, ""
			}
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			a, ok := parseEntry(item)
			if !ok {
				return last.String()
			}
			if !r.Trusted(a) {
				return a.String()
			}
			last = a
		}
	}
	return last.String()
}

// parseHost parses a RemoteAddr ("host:port" or a bare host).
func parseHost(s string) (netip.Addr, bool) {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// parseEntry parses one X-Forwarded-For entry: an address, optionally
// with a port ("192.0.2.1:4711", "[2001:db8::1]:4711") or in brackets
// ("[2001:db8::1]"). An address with a zone is refused: it names an
// interface of the proxy's host, not a client.
func parseEntry(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if ap, err2 := netip.ParseAddrPort(s); err2 == nil {
			a, err = ap.Addr(), nil
		} else if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
			a, err = netip.ParseAddr(s[1 : len(s)-1])
			if err == nil && !a.Is6() {
				err = fmt.Errorf("bracketed IPv4")
			}
		}
	}
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// SourcePrefix returns the block a client at addr is counted under by
// limits that a host could otherwise dodge by changing address: its own
// address for IPv4 (a /32), its /64 for IPv6, the smallest block a host is
// normally given. An IPv4-mapped IPv6 address counts as its IPv4 address;
// a zone is dropped.
func SourcePrefix(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap().WithZone("")
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

// Source returns the key of SourcePrefix for the address ip: an IPv4
// address as it is, an IPv6 /64 in prefix notation ("2001:db8::/64"), or
// ip unchanged if it is not an IP address (a Unix socket's name, say).
func Source(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	p := SourcePrefix(a)
	if p.Addr().Is4() {
		return p.Addr().String()
	}
	return p.String()
}
