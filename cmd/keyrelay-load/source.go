package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/keyrelay/keyrelay/relay/client"
)

// maxSourceAddrs bounds --source-addrs: far more addresses than a run can
// use, small enough to hold their transports.
const maxSourceAddrs = 1 << 16

// parseSourceAddrs parses --source-addrs: IPv4 addresses and inclusive
// ranges (first-last), separated by commas. "" gives nil. It refuses IPv6
// (and IPv4-mapped IPv6) addresses, ranges whose end is before their start,
// duplicates, and more than maxSourceAddrs addresses.
func parseSourceAddrs(s string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	seen := make(map[netip.Addr]bool)
	add := func(a netip.Addr) error {
		if seen[a] {
			return fmt.Errorf("%s given twice", a)
		}
		if len(addrs) == maxSourceAddrs {
			return fmt.Errorf("more than %d addresses", maxSourceAddrs)
		}
		seen[a] = true
		addrs = append(addrs, a)
		return nil
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		first, last, isRange := strings.Cut(item, "-")
		from, err := parseIPv4(first)
		if err != nil {
			return nil, err
		}
		if !isRange {
			if err := add(from); err != nil {
				return nil, err
			}
			continue
		}
		to, err := parseIPv4(last)
		if err != nil {
			return nil, err
		}
		if to.Less(from) {
			return nil, fmt.Errorf("range %q ends before it starts", item)
		}
		for a := from; ; a = a.Next() {
			if err := add(a); err != nil {
				return nil, err
			}
			if a == to {
				break
			}
		}
	}
	if s != "" && len(addrs) == 0 {
		return nil, errors.New("no address given")
	}
	return addrs, nil
}

// parseIPv4 parses one IPv4 address in dotted-decimal form.
func parseIPv4(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 address", s)
	}
	if !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 address (IPv6 is not supported)", s)
	}
	return a, nil
}

// sources hands out client options whose connections come from the
// configured local addresses in turn. Each address has one http.Transport
// whose dialer binds to it.
type sources struct {
	// Static after newSources.
	base    client.Options
	addrs   []netip.Addr
	clients []*http.Client // one per address

	next atomic.Uint64 // index of the next address
}

// newSources returns the sources of addrs; base (nil means defaults) is
// copied into every option set handed out. With no addrs, the options are
// base's.
func newSources(base *client.Options, addrs []netip.Addr) *sources {
	s := &sources{addrs: addrs}
	if base != nil {
		s.base = *base
	}
	for _, a := range addrs {
		d := sourceDialer(a)
		s.clients = append(s.clients, &http.Client{Transport: &http.Transport{DialContext: d.DialContext}})
	}
	return s
}

// sourceDialer returns a dialer whose connections leave from address a.
func sourceDialer(a netip.Addr) *net.Dialer {
	return &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))}
}

// options returns the options of one client: base, with the HTTP client of
// the next address if addresses are configured.
func (s *sources) options() *client.Options {
	o := s.base
	if len(s.clients) > 0 {
		o.HTTPClient = s.clients[s.nextIndex()]
	}
	return &o
}

func (s *sources) nextIndex() int {
	return int((s.next.Add(1) - 1) % uint64(len(s.addrs)))
}

// droppable returns the options of one client whose connection can be
// dropped: its HTTP client dials through a transport of its own (from the
// next address, if addresses are configured) that remembers the last TCP
// connection it made, and drop closes that connection abruptly (reset, no
// WebSocket close frame): a network drop as the relay sees it. It replaces
// base's HTTPClient, if any.
func (s *sources) droppable() (*client.Options, func()) {
	o := s.base
	d := &net.Dialer{}
	if len(s.addrs) > 0 {
		d = sourceDialer(s.addrs[s.nextIndex()])
	}
	var (
		mu   sync.Mutex
		last net.Conn
	)
	o.HTTPClient = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				mu.Lock()
				last = c
				mu.Unlock()
			}
			return c, err
		},
	}}
	return &o, func() {
		mu.Lock()
		c := last
		mu.Unlock()
		if c == nil {
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // reset rather than a graceful FIN
		}
		_ = c.Close()
	}
}
