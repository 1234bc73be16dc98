package session

import (
	"context"
	"errors"
)

// maxSettle bounds the ledgers one sweep settles (in all partitions), so that a sweep after a
// long outage (every instance down while many rooms expired) stays short;
// the rest wait for the next sweeps, the most overdue first.
const maxSettle = 100

// settleLedgers is the sweeper's part of the Budget (lib.lua describes the
// keys): it runs settle.lua for each ledger that the census found due in
// each partition (due, by partition), at most maxSettle in all, which
// gives back the bytes of the rooms Redis expired by itself and of the
// members whose grace is over. Every instance's sweeper does it;
// settle.lua makes that safe. Redis being unreachable is left for the
// next sweep (Ready reports it).
func (s *RedisStore) settleLedgers(ctx context.Context, due [][]string) {
	budget := maxSettle
	for i, entries := range due {
		for _, entry := range entries {
			if len(entry) < genLen {
				// Not written by this store: drop it, or it would stay
				// first in line for ever.
				s.log.Error("budget sweep: malformed ledger index entry; removed")
				s.client.ZRem(ctx, s.parts[i].ledgers, entry)
				continue
			}
			gen, room := entry[:genLen], entry[genLen:]
			_, err := s.run(ctx, "settle", scriptSettle, room, gen)
			if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) {
				return
			}
			if err != nil {
				// A bug, for this ledger: the others still get settled.
				s.log.Error("budget sweep failed", "err", err)
			}
			if budget--; budget == 0 {
				return
			}
		}
	}
}
