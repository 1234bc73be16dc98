package sessiontest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/keyrelay/keyrelay/session"
)

func testConcurrency(t *testing.T, open opener) {
	const rooms = 200

	t.Run("racing joins admit two", func(t *testing.T) {
		t.Parallel()
		const racers = 8
		s := open(t)
		var errs [rooms][racers]error
		race(t, s, rooms, nil, func(ctx context.Context, i int, room string) []func() {
			var fns []func()
			for j := range racers {
				fns = append(fns, func() { _, errs[i][j] = s.Join(ctx, room, member(fmt.Sprint("p", j))) })
			}
			return fns
		})
		for i := range rooms {
			var won []string
			for j, err := range errs[i] {
				if err == nil {
					won = append(won, fmt.Sprint("p", j))
				} else if !errors.Is(err, session.ErrRoomFull) {
					t.Errorf("room %d: Join(p%d) = %v, want nil or %v", i, j, err, session.ErrRoomFull)
				}
			}
			got := memberIDs(getRoom(t, s, fmt.Sprint("r", i)))
			slices.Sort(got)
			if len(won) != 2 || !slices.Equal(got, won) {
				t.Fatalf("room %d: %d Joins succeeded (%v), members %v; want 2, the same", i, len(won), won, got)
			}
		}
	})

	t.Run("racing SetKeys fix one group", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var errs [rooms][2]error
		race(t, s, rooms, []string{"a", "b"}, func(ctx context.Context, i int, room string) []func() {
			return []func(){
				func() { _, errs[i][0] = s.SetKey(ctx, room, "a", "modp14", "aa") },
				func() { _, errs[i][1] = s.SetKey(ctx, room, "b", "x25519", "bb") },
			}
		})
		for i := range rooms {
			r := getRoom(t, s, fmt.Sprint("r", i))
			a, _ := r.Member("a")
			b, _ := r.Member("b")
			ea, eb := errs[i][0], errs[i][1]
			switch {
			case ea == nil && errors.Is(eb, session.ErrGroupMismatch):
				if r.Group != "modp14" || a.PublicKey != "aa" || b.PublicKey != "" {
					t.Fatalf("room %d: a won, but Group, keys = %q, %q, %q", i, r.Group, a.PublicKey, b.PublicKey)
				}
			case eb == nil && errors.Is(ea, session.ErrGroupMismatch):
				if r.Group != "x25519" || b.PublicKey != "bb" || a.PublicKey != "" {
					t.Fatalf("room %d: b won, but Group, keys = %q, %q, %q", i, r.Group, a.PublicKey, b.PublicKey)
				}
			default:
				t.Fatalf("room %d: SetKey(a), SetKey(b) = %v, %v; want one nil and one %v", i, ea, eb, session.ErrGroupMismatch)
			}
		}
	})

	t.Run("racing SetKeys by one member store one key", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var errs [rooms][2]error
		race(t, s, rooms, []string{"a"}, func(ctx context.Context, i int, room string) []func() {
			return []func(){
				func() { _, errs[i][0] = s.SetKey(ctx, room, "a", "p256", "k0") },
				func() { _, errs[i][1] = s.SetKey(ctx, room, "a", "p256", "k1") },
			}
		})
		for i := range rooms {
			a, _ := getRoom(t, s, fmt.Sprint("r", i)).Member("a")
			e0, e1 := errs[i][0], errs[i][1]
			switch {
			case e0 == nil && errors.Is(e1, session.ErrKeySet) && a.PublicKey == "k0":
			case e1 == nil && errors.Is(e0, session.ErrKeySet) && a.PublicKey == "k1":
			default:
				t.Fatalf("room %d: SetKey(k0), SetKey(k1) = %v, %v with key %q; want one nil, one %v, and its key", i, e0, e1, a.PublicKey, session.ErrKeySet)
			}
		}
	})

	t.Run("racing appends get distinct sequence numbers", func(t *testing.T) {
		t.Parallel()
		const appendRooms, each = 50, 10
		s := open(t)
		var seqs [appendRooms][2][each]uint64
		var errs [appendRooms][2]error
		race(t, s, appendRooms, []string{"a", "b"}, func(ctx context.Context, i int, room string) []func() {
			keyAll(t, s, room, "a", "b")
			var fns []func()
			for k, from := range []string{"a", "b"} {
				fns = append(fns, func() {
					for n := range each {
						seqs[i][k][n], errs[i][k] = s.Append(ctx, room, from, "", []byte(fmt.Sprint(from, n)))
						if errs[i][k] != nil {
							return
						}
					}
				})
			}
			return fns
		})
		for i := range appendRooms {
			room := fmt.Sprint("r", i)
			var all []uint64
			for k, from := range []string{"a", "b"} {
				wantErr(t, fmt.Sprintf("room %d: Append(%s)", i, from), errs[i][k], nil)
				all = append(all, seqs[i][k][:]...)
				to := []string{"b", "a"}[k]
				var want []session.Message
				for n, seq := range seqs[i][k] {
					want = append(want, session.Message{Seq: seq, From: from, Body: []byte(fmt.Sprint(from, n))})
				}
				checkPending(t, s, room, to, 0, want...)
			}
			slices.Sort(all)
			for n, seq := range all {
				if seq != uint64(n+1) {
					t.Fatalf("room %d: sequence numbers %v, want 1 to %d", i, all, 2*each)
				}
			}
		}
	})
}

// race creates rooms r0, r1, … with members, then runs every function
// that racers returns for each room at once, and waits for them.
func race(t *testing.T, s session.Store, rooms int, members []string, racers func(ctx context.Context, i int, room string) []func()) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range rooms {
		room := fmt.Sprint("r", i)
		setup(t, s, room, longCfg, members...)
		for _, fn := range racers(t.Context(), i, room) {
			wg.Go(func() {
				<-start
				fn()
			})
		}
	}
	close(start)
	wg.Wait()
}
