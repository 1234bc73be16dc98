package main

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/keyrelay/keyrelay/internal/clienttest"
	"github.com/keyrelay/keyrelay/relay/client"
)

// generateKeyPool fills l.pool with cfg.keyPool distinct public keys of the
// group, for --client-crypto relay-only. It runs before the clock starts.
func (l *load) generateKeyPool() error {
	l.pool = make([]string, 0, l.cfg.keyPool)
	seen := make(map[string]bool, l.cfg.keyPool)
	for len(l.pool) < l.cfg.keyPool {
		k, err := l.cfg.group.GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("key pool: %w", err)
		}
		h := k.PublicKey().Hex()
		if !seen[h] {
			seen[h] = true
			l.pool = append(l.pool, h)
		}
	}
	return nil
}

// sendPoolKey is the relay-only handshake of one peer: it sends pool key k
// (mod the pool's size) and waits for the relay's key_ok and then for the
// peer's key, which the relay forwards only once it has validated and
// stored both keys (handshake_complete follows it in the same burst). The
// client validates the forwarded key as usual but derives nothing.
func (l *load) sendPoolKey(ctx context.Context, c *client.Client, k int) error {
	_, err := clienttest.Request(ctx, c, map[string]any{
		"type":       "key",
		"public_key": l.pool[k%len(l.pool)],
		"group":      l.cfg.group.Name(),
	})
	if err != nil {
		return err
	}
	for {
		ev, err := c.Next(ctx)
		if err != nil {
			return err
		}
		if ev.Type == client.EventPeerKey {
			return nil
		}
	}
}
