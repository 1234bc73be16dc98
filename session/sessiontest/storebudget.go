package sessiontest

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/session"
)

// RunBudget runs the conformance tests of session.Budget: the bytes of
// the bodies waiting in a store, per source and in total. newStore must
// return a new, empty store with budget b each time it is called; Run's
// rules for newStore apply.
func RunBudget(t *testing.T, newStore func(t *testing.T, b session.Budget) session.Store) {
	for _, tc := range []struct {
		name string
		test func(*testing.T, budgetOpener)
	}{
		{"PerSource", testSourceBudget},
		{"Total", testTotalBudget},
		{"Releases", testBudgetReleases},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, func(t *testing.T, b session.Budget) session.Store {
				t.Helper()
				s := newStore(t, b)
				t.Cleanup(func() {
					if err := s.Close(); err != nil && !errors.Is(err, session.ErrClosed) {
						t.Errorf("Close: %v", err)
					}
				})
				return s
			})
		})
	}
}

// budgetOpener returns a new store with a budget, closed when the test
// ends.
type budgetOpener func(t *testing.T, b session.Budget) session.Store

// sendFrom appends body from member from of room, sent from source, and
// checks the error: want nil, or the sentinel Append must return.
func sendFrom(t *testing.T, s session.Store, room, from, source string, n int, want error) {
	t.Helper()
	_, err := s.Append(t.Context(), room, from, source, []byte(strings.Repeat("x", n)))
	wantErr(t, "Append("+room+", "+from+", "+source+")", err, want)
	if want != nil && !errors.Is(err, session.ErrMailboxFull) {
		t.Errorf("Append over a budget: %v does not match ErrMailboxFull", err)
	}
}

// keyedRooms creates rooms with members a and b, both keyed.
func keyedRooms(t *testing.T, s session.Store, rooms ...string) {
	t.Helper()
	for _, r := range rooms {
		setup(t, s, r, longCfg, "a", "b")
		keyAll(t, s, r, "a", "b")
	}
}

// testSourceBudget checks Budget.PerSource: it counts a source's bodies
// in every room and mailbox, other sources are not refused, source ""
// is not counted, and Ack gives the bytes back.
func testSourceBudget(t *testing.T, open budgetOpener) {
	s := open(t, session.Budget{PerSource: 10})
	keyedRooms(t, s, "r1", "r2")
	sendFrom(t, s, "r1", "a", "s1", 4, nil)
	sendFrom(t, s, "r1", "b", "s1", 2, nil)
	sendFrom(t, s, "r2", "a", "s1", 4, nil) // exactly 10 from s1
	sendFrom(t, s, "r2", "b", "s1", 1, session.ErrSourceOverBudget)
	if got := getRoom(t, s, "r2").LastSeq; got != 1 {
		t.Errorf("LastSeq after a refused Append = %d, want 1", got)
	}
	checkPending(t, s, "r2", "a", 0)
	sendFrom(t, s, "r2", "b", "s2", 10, nil)
	sendFrom(t, s, "r2", "b", "", 64, nil)
	// b of r1 acknowledges the 4 bytes from s1: 4, not 5, fit again.
	wantErr(t, "Ack(r1, b, 1)", s.Ack(t.Context(), "r1", "b", 1), nil)
	sendFrom(t, s, "r1", "a", "s1", 5, session.ErrSourceOverBudget)
	sendFrom(t, s, "r1", "a", "s1", 4, nil)
}

// testTotalBudget checks Budget.Total: every source's bodies count, and
// Leave gives back the bytes of the mailbox it removes.
func testTotalBudget(t *testing.T, open budgetOpener) {
	s := open(t, session.Budget{PerSource: 100, Total: 10})
	keyedRooms(t, s, "r1", "r2")
	sendFrom(t, s, "r1", "a", "s1", 6, nil)
	sendFrom(t, s, "r2", "a", "s2", 2, nil)
	sendFrom(t, s, "r2", "b", "", 2, nil) // exactly 10 in all
	sendFrom(t, s, "r2", "b", "s3", 1, session.ErrStoreOverBudget)
	checkPending(t, s, "r2", "a", 0, msg(2, "b", "xx"))
	wantErr(t, "Leave(r1, b)", s.Leave(t.Context(), "r1", "b"), nil)
	sendFrom(t, s, "r2", "b", "s3", 6, nil)
	sendFrom(t, s, "r2", "b", "s3", 1, session.ErrStoreOverBudget)
}

// testBudgetReleases checks that the bytes of mailboxes the store removes
// by itself come back: a member's whose grace ended, and a whole room's
// when it expires.
func testBudgetReleases(t *testing.T, open budgetOpener) {
	t.Run("grace end", func(t *testing.T) {
		s := open(t, session.Budget{PerSource: 10})
		cfg := longCfg
		cfg.ResumeGrace = shortGrace
		setup(t, s, "r", cfg, "a", "b")
		keyAll(t, s, "r", "a", "b")
		keyedRooms(t, s, "other")
		sendFrom(t, s, "r", "a", "s1", 10, nil)
		disconnect(t, s, "r", "b")
		waitFor(t, patience, "b's mailbox released at the end of its grace", func() bool {
			_, err := s.Append(t.Context(), "other", "a", "s1", []byte(body10))
			if err != nil && !errors.Is(err, session.ErrSourceOverBudget) {
				t.Fatalf("Append: %v", err)
			}
			return err == nil
		})
	})

	t.Run("room expiry", func(t *testing.T) {
		s := open(t, session.Budget{Total: 10})
		// Both members stay connected: the room goes by its TTL, with
		// both mailboxes, long before any grace ends.
		cfg := longCfg
		cfg.TTL = shortTTL
		setup(t, s, "r", cfg, "a", "b")
		keyAll(t, s, "r", "a", "b")
		keyedRooms(t, s, "other")
		sendFrom(t, s, "r", "a", "s1", 5, nil)
		sendFrom(t, s, "r", "b", "s2", 5, nil)
		waitFor(t, patience, "the expired room's bytes released", func() bool {
			_, err := s.Append(t.Context(), "other", "a", "s3", []byte(body10))
			if err != nil && !errors.Is(err, session.ErrStoreOverBudget) {
				t.Fatalf("Append: %v", err)
			}
			return err == nil
		})
		if _, err := s.Room(t.Context(), "r"); !errors.Is(err, session.ErrRoomNotFound) {
			t.Errorf("Room(r) after its expiry: %v, want ErrRoomNotFound", err)
		}
	})
}
