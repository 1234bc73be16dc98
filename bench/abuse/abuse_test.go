package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/relay"
	"github.com/keyrelay/keyrelay/relay/relaytest"
)

func TestLargestBody(t *testing.T) {
	for _, maxFrame := range []int{1024, 4096, 65535, 65536, 65537, 65538, 65539} {
		n := largestBody(maxFrame)
		if got := len(msgFrame(make([]byte, n))); got > maxFrame {
			t.Errorf("maxFrame %d: body %d makes a frame of %d bytes", maxFrame, n, got)
		}
		if got := len(msgFrame(make([]byte, n+1))); got <= maxFrame {
			t.Errorf("maxFrame %d: body %d+1 still fits (%d bytes): %d is not the largest", maxFrame, n, got, n)
		}
	}
	if got, want := largestBody(65536), 49134; got != want {
		t.Errorf("largestBody(65536) = %d, want %d (issue 13's figure)", got, want)
	}
}

func TestFloodFrames(t *testing.T) {
	big := bigFrame(65536)
	if len(big) != 65536 || !json.Valid(big) {
		t.Errorf("bigFrame(65536): %d bytes, valid JSON %v", len(big), json.Valid(big))
	}
	// encoding/json refuses to nest more than 10 000 deep: check the
	// shape on a small frame, and the size and depth on the large one.
	if small := nestedFrame(100); !json.Valid(small) || len(small) > 100 {
		t.Errorf("nestedFrame(100) = %s: not valid JSON of at most 100 bytes", small)
	}
	nested := nestedFrame(65536)
	if len(nested) > 65536 || len(nested) < 65530 {
		t.Errorf("nestedFrame(65536): %d bytes", len(nested))
	}
	if depth := bytes.Count(nested, []byte("[")); depth < 32000 || depth != bytes.Count(nested, []byte("]")) {
		t.Errorf("nestedFrame(65536) nests %d deep, want more than 32000 and balanced", depth)
	}
}

func TestClientFrame(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		f := clientFrame(opText, bytes.Repeat([]byte("x"), n))
		if f[0] != 0x81 || f[1]&0x80 == 0 {
			t.Fatalf("length %d: header %x, want FIN, text and the mask bit", n, f[:2])
		}
		var length, hdr int
		switch l := int(f[1] & 0x7F); l {
		case 126:
			length, hdr = int(binary.BigEndian.Uint16(f[2:])), 4
		case 127:
			length, hdr = int(binary.BigEndian.Uint64(f[2:])), 10
		default:
			length, hdr = l, 2
		}
		if length != n || len(f) != hdr+4+n {
			t.Errorf("length %d: encoded length %d, frame %d bytes, want %d", n, length, len(f), hdr+4+n)
		}
	}
}

func TestParseAddrs(t *testing.T) {
	got, err := parseAddrs("127.0.1.1-127.0.1.3, 127.0.0.9,127.0.0.255-127.0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	var want []netip.Addr
	for _, s := range []string{"127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.0.9", "127.0.0.255", "127.0.1.0"} {
		want = append(want, netip.MustParseAddr(s))
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"", "::1", "127.0.0.3-127.0.0.1", "127.0.0.1-x", "localhost"} {
		if _, err := parseAddrs(bad); err == nil {
			t.Errorf("parseAddrs(%q): no error", bad)
		}
	}
}

// TestAttacks runs every subcommand briefly against a relay with the
// default limits and checks that each did what it says.
func TestAttacks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs attacks for a few seconds")
	}
	srv := relaytest.NewServer(t, relaytest.NewMemoryStore(), relay.Config{Limiter: relaytest.NewLimiter(t, limits.Config{})})
	addr := strings.TrimSuffix(strings.TrimPrefix(srv.URL, "ws://"), "/v1/ws")
	tests := []struct {
		name string
		args []string
		want []string // counters (or fields) that must be present and non-zero
	}{
		{"mailbox", []string{"mailbox", "-url", srv.URL, "-sources", "127.0.0.1", "-workers", "1", "-duration", "6s"},
			[]string{"rooms_ready", "msg:sent", "msg:mailbox_full"}},
		{"rooms", []string{"rooms", "-url", srv.URL, "-sources", "127.0.0.4-127.0.0.5", "-duration", "4s"},
			[]string{"rooms_created", "create:too_many_rooms"}},
		{"lockout", []string{"lockout", "-url", srv.URL, "-a", "127.0.0.6", "-b", "127.0.0.7", "-stranger", "127.0.0.8", "-resume-every", "1s", "-duration", "8s"},
			[]string{"b:resumes_ok", "stranger:room_full", "a:msg_received"}},
		{"ping flood", []string{"flood", "-addr", addr, "-source", "127.0.0.9", "-mode", "ping", "-conns", "2", "-duration", "1s"},
			[]string{"frames_written", "pongs"}},
		{"nested flood", []string{"flood", "-addr", addr, "-source", "127.0.0.10", "-mode", "nested", "-conns", "2", "-duration", "1s"},
			[]string{"frames_written", "error:bad_frame"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := run(context.Background(), tt.args, &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			var r struct {
				Counts map[string]int64 `json:"counts"`
			}
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				t.Fatalf("report %q: %v", out.String(), err)
			}
			for _, k := range tt.want {
				if r.Counts[k] == 0 {
					t.Errorf("counter %s is zero; report:\n%s", k, out.String())
				}
			}
		})
	}
	t.Run("create", func(t *testing.T) {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"create", "-url", srv.URL, "-source", "127.0.0.11"}, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), `"result": "room"`) {
			t.Errorf("create: %s, want result room", out.String())
		}
	})
}
