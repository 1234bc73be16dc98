package relay

import (
	"testing"

	"github.com/keyrelay/keyrelay/wire"
)

// BenchmarkDecodeFrame measures the frame decoder on a typical msg frame:
// decodeFrame (the fast path) against decodeSlow, the path that explains
// refusals.
func BenchmarkDecodeFrame(b *testing.B) {
	data := []byte(`{"type":"msg","id":3,"body":"ZGVjb2RlIGZyYW1lIGJlbmNobWFyayBib2R5IGJ5dGVzIGJ5dGVzIGJ5dGVzIGJ5dGVzIGJ5dGVzIGJ5dGVz"}`)
	for _, bm := range []struct {
		name   string
		decode func([]byte) (*wire.ClientFrame, *wireError)
	}{{"decodeFrame", decodeFrame}, {"decodeSlow", decodeSlow}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bm.decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
