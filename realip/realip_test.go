package realip_test

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/realip"
)

func TestClientIP(t *testing.T) {
	const trusted = "10.0.0.0/8, 127.0.0.1, 2001:db8:f::/48"
	tests := []struct {
		name    string
		trusted string // comma-separated prefixes
		remote  string
		xff     []string // X-Forwarded-For lines, in order
		want    string
	}{
		// No trusted proxies: headers never count.
		{"no proxies, no header", "", "192.0.2.7:5000", nil, "192.0.2.7"},
		{"no proxies, header ignored", "", "127.0.0.1:5000", []string{"198.51.100.1"}, "127.0.0.1"},

		// An untrusted peer cannot choose its address.
		{"untrusted peer spoofs", trusted, "192.0.2.7:5000", []string{"198.51.100.1"}, "192.0.2.7"},
		{"untrusted peer claims a trusted address", trusted, "192.0.2.7:5000", []string{"10.0.0.1"}, "192.0.2.7"},
		{"untrusted peer sends garbage", trusted, "192.0.2.7:5000", []string{"not an ip"}, "192.0.2.7"},

		// A trusted peer.
		{"trusted peer, no header", trusted, "10.0.0.2:5000", nil, "10.0.0.2"},
		{"trusted peer, empty header", trusted, "10.0.0.2:5000", []string{""}, "10.0.0.2"},
		{"one hop", trusted, "10.0.0.2:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client prepends a spoofed entry", trusted, "10.0.0.2:5000", []string{"203.0.113.9, 198.51.100.1"}, "198.51.100.1"},
		{"client prepends a trusted address", trusted, "10.0.0.2:5000", []string{"10.9.9.9, 198.51.100.1"}, "198.51.100.1"},
		{"two trusted hops", trusted, "10.0.0.2:5000", []string{"198.51.100.1, 10.0.0.3"}, "198.51.100.1"},
		{"trusted hops around spoofing", trusted, "127.0.0.1:5000", []string{"203.0.113.9,198.51.100.1,10.1.1.1,10.0.0.3"}, "198.51.100.1"},
		{"all trusted", trusted, "10.0.0.2:5000", []string{"10.0.0.5, 10.0.0.4"}, "10.0.0.5"},
		{"spaces and empty items", trusted, "10.0.0.2:5000", []string{" , 198.51.100.1 ,, "}, "198.51.100.1"},

		// Multiple lines are one list, in order.
		{"two lines", trusted, "10.0.0.2:5000", []string{"203.0.113.9", "198.51.100.1"}, "198.51.100.1"},
		{"two lines, last all trusted", trusted, "10.0.0.2:5000", []string{"198.51.100.1", "10.0.0.3, 10.0.0.4"}, "198.51.100.1"},
		{"two lines, last empty", trusted, "10.0.0.2:5000", []string{"198.51.100.1", ""}, "198.51.100.1"},

		// Ports and brackets.
		{"IPv4 with port", trusted, "10.0.0.2:5000", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"IPv6 with port", trusted, "10.0.0.2:5000", []string{"[2001:db8::1]:4711"}, "2001:db8::1"},
		{"IPv6 in brackets", trusted, "10.0.0.2:5000", []string{"[2001:db8::1]"}, "2001:db8::1"},
		{"IPv6 bare", trusted, "10.0.0.2:5000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"IPv6 normalised", trusted, "10.0.0.2:5000", []string{"2001:DB8:0:0::1"}, "2001:db8::1"},
		{"IPv4-mapped entry", trusted, "10.0.0.2:5000", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"IPv6 trusted peer", trusted, "[2001:db8:f::2]:443", []string{"198.51.100.1"}, "198.51.100.1"},
		{"IPv6 untrusted peer", trusted, "[2001:db8:e::2]:443", []string{"198.51.100.1"}, "2001:db8:e::2"},
		{"IPv6 trusted hop", trusted, "10.0.0.2:5000", []string{"2001:db8::1, 2001:db8:f::9"}, "2001:db8::1"},
		{"IPv4-mapped peer", trusted, "[::ffff:10.0.0.2]:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"IPv4-mapped untrusted peer", trusted, "[::ffff:192.0.2.7]:5000", nil, "192.0.2.7"},

		// Malformed entries stop the walk at the last good address.
		{"garbage only", trusted, "10.0.0.2:5000", []string{"garbage"}, "10.0.0.2"},
		{"unknown", trusted, "10.0.0.2:5000", []string{"unknown"}, "10.0.0.2"},
		{"garbage left of client", trusted, "10.0.0.2:5000", []string{"garbage, 198.51.100.1"}, "198.51.100.1"},
		{"garbage after a trusted hop", trusted, "10.0.0.2:5000", []string{"198.51.100.1, garbage, 10.0.0.3"}, "10.0.0.3"},
		{"garbage right of client", trusted, "10.0.0.2:5000", []string{"198.51.100.1, garbage"}, "10.0.0.2"},
		{"hostname", trusted, "10.0.0.2:5000", []string{"client.example"}, "10.0.0.2"},
		{"CIDR", trusted, "10.0.0.2:5000", []string{"198.51.100.0/24"}, "10.0.0.2"},
		{"zone", trusted, "10.0.0.2:5000", []string{"fe80::1%eth0"}, "10.0.0.2"},
		{"bracketed IPv4", trusted, "10.0.0.2:5000", []string{"[198.51.100.1]"}, "10.0.0.2"},
		{"bad port", trusted, "10.0.0.2:5000", []string{"198.51.100.1:http"}, "10.0.0.2"},
		{"quoted", trusted, "10.0.0.2:5000", []string{`"198.51.100.1"`}, "10.0.0.2"},
		{"Forwarded syntax", trusted, "10.0.0.2:5000", []string{"for=198.51.100.1"}, "10.0.0.2"},
		{"NUL byte", trusted, "10.0.0.2:5000", []string{"198.51.100.1\x00"}, "10.0.0.2"},
		{"long list", trusted, "10.0.0.2:5000", []string{strings.Repeat("203.0.113.9, ", 1000) + "198.51.100.1"}, "198.51.100.1"},

		// RemoteAddr that is not an address.
		{"remote without port", trusted, "192.0.2.7", nil, "192.0.2.7"},
		{"remote not an address", trusted, "pipe", []string{"198.51.100.1"}, "pipe"},
		{"remote with zone", "fe80::/10", "[fe80::1%eth0]:5000", []string{"198.51.100.1"}, "fe80::1%eth0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := realip.Parse(tt.trusted)
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest("GET", "http://relay.example/v1/ws", nil)
			req.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			// A Forwarded header is never read.
			req.Header.Set("Forwarded", "for=203.0.113.66")
			if got := r.ClientIP(req); got != tt.want {
				t.Errorf("ClientIP(RemoteAddr %q, X-Forwarded-For %q) = %q, want %q", tt.remote, tt.xff, got, tt.want)
			}
		})
	}
}

func TestZeroResolverTrustsNoOne(t *testing.T) {
	req, _ := http.NewRequest("GET", "/", nil)
	req.RemoteAddr = "127.0.0.1:1"
	req.Header.Set("X-Forwarded-For", "198.51.100.1")
	for name, r := range map[string]*realip.Resolver{"zero": {}, "nil": nil} {
		if got := r.ClientIP(req); got != "127.0.0.1" {
			t.Errorf("%s Resolver: ClientIP = %q, want 127.0.0.1", name, got)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    string // the prefixes, formatted; "error" for an error
		trusted []string
		not     []string
	}{
		{"", "[]", nil, []string{"127.0.0.1", "::1"}},
		{" , ", "[]", nil, []string{"127.0.0.1"}},
		{"10.0.0.0/8,127.0.0.1/32", "[10.0.0.0/8 127.0.0.1/32]", []string{"10.255.0.1", "127.0.0.1", "::ffff:10.0.0.1"}, []string{"127.0.0.2", "11.0.0.1", "::1"}},
		{"127.0.0.1, ::1", "[127.0.0.1/32 ::1/128]", []string{"127.0.0.1", "::1"}, []string{"::2"}},
		{"10.1.2.3/8", "[10.0.0.0/8]", []string{"10.9.9.9"}, nil},
		{"fd00::/8", "[fd00::/8]", []string{"fd12::1"}, []string{"fe80::1", "10.0.0.1"}},
		{"::ffff:10.0.0.0/104", "[10.0.0.0/8]", []string{"10.1.1.1", "::ffff:10.1.1.1"}, nil},
		{"10.0.0.0/33", "error", nil, nil},
		{"10.0.0.0/8,bogus", "error", nil, nil},
		{"localhost", "error", nil, nil},
		{"fe80::1%eth0", "error", nil, nil},
		{"10.0.0.0/8/8", "error", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := realip.Parse(tt.in)
			if tt.want == "error" {
				if err == nil {
					t.Fatalf("Parse(%q) = %v, want an error", tt.in, r.Prefixes())
				}
				if !strings.Contains(err.Error(), "realip:") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got := fmt.Sprint(r.Prefixes()); got != tt.want {
				t.Errorf("Parse(%q) = %s, want %s", tt.in, got, tt.want)
			}
			for _, s := range tt.trusted {
				if !r.Trusted(netip.MustParseAddr(s)) {
					t.Errorf("Trusted(%s) = false, want true", s)
				}
			}
			for _, s := range tt.not {
				if r.Trusted(netip.MustParseAddr(s)) {
					t.Errorf("Trusted(%s) = true, want false", s)
				}
			}
		})
	}
}

func TestNewInvalidPrefix(t *testing.T) {
	if _, err := realip.New([]netip.Prefix{{}}); err == nil {
		t.Error("New with the zero Prefix: no error")
	}
}

func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.2:5000", "198.51.100.1, 10.0.0.3")
	f.Add("10.0.0.2:5000", "[2001:db8::1]:80,garbage")
	f.Add("192.0.2.1:1", "10.0.0.1")
	r, err := realip.Parse("10.0.0.0/8, 2001:db8:f::/48")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		req := &http.Request{RemoteAddr: remote, Header: http.Header{"X-Forwarded-For": {xff}}}
		got := r.ClientIP(req)
		host := remote
		if h, _, err := net.SplitHostPort(remote); err == nil {
			host = h
		}
		peer, err := netip.ParseAddr(host)
		if err != nil {
			if got != remote {
				t.Fatalf("ClientIP(%q, %q) = %q, want the RemoteAddr unchanged", remote, xff, got)
			}
			return
		}
		// An untrusted peer is its own client, whatever the header says.
		if !r.Trusted(peer) && got != peer.Unmap().String() {
			t.Fatalf("untrusted peer %q got client %q from header %q", remote, got, xff)
		}
		if r.Trusted(peer) {
			if _, err := netip.ParseAddr(got); err != nil {
				t.Fatalf("ClientIP(%q, %q) = %q: not an address", remote, xff, got)
			}
		}
	})
}

func ExampleResolver_ClientIP() {
	r, err := realip.Parse("10.0.0.0/8")
	if err != nil {
		panic(err)
	}
	req, _ := http.NewRequest("GET", "/v1/ws", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9, 198.51.100.1, 10.0.0.3")

	req.RemoteAddr = "10.0.0.2:41234" // the load balancer
	fmt.Println(r.ClientIP(req))

	req.RemoteAddr = "192.0.2.7:41234" // a client that forged the header
	fmt.Println(r.ClientIP(req))
	// Output:
	// 198.51.100.1
	// 192.0.2.7
}

// TestSource checks the blocks clients are counted under.
func TestSource(t *testing.T) {
	for _, tt := range []struct{ ip, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not an address", "not an address"},
		{"", ""},
	} {
		if got := realip.Source(tt.ip); got != tt.want {
			t.Errorf("Source(%q) = %q, want %q", tt.ip, got, tt.want)
		}
	}
}
