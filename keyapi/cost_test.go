package keyapi

import (
	"crypto/rand"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/dh"
)

// BenchmarkCost measures a shared key (parse the private key, which
// derives its public key, then the shared secret) in every MODP group,
// with a generated and with a full-length exponent, and reports the cost
// model's estimate beside it (model-ns/op), to recalibrate nsPerExpBit2048:
//
//	go test ./keyapi -run '^$' -bench Cost -benchtime 3x
func BenchmarkCost(b *testing.B) {
	for _, g := range dh.Groups() {
		if g.ID() == 0 {
			continue
		}
		gen, _ := g.GenerateKey(rand.Reader)
		peer, _ := g.GenerateKey(rand.Reader)
		pub := peer.PublicKey().Hex()
		full := "3" + strings.Repeat("a", 2*g.Size()-1)
		for name, priv := range map[string]string{"generated": gen.Hex(), "full": full} {
			b.Run(g.Name()+"/"+name, func(b *testing.B) {
				for b.Loop() {
					if _, err := sharedSecret(g, priv, pub); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(sharedCost(g, priv).Nanoseconds()), "model-ns/op")
			})
		}
	}
}
