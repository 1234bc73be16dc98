package sessiontest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyrelay/keyrelay/session"
)

// testPendingBytes checks RoomConfig.MaxPendingBytes: the bodies waiting
// for one member never add up to more, Ack and Leave release them, and a
// refused message leaves no trace.
func testPendingBytes(t *testing.T, open opener) {
	cfg := longCfg
	cfg.MaxPendingBytes = 10
	body := func(n int) string { return strings.Repeat("x", n) }

	t.Run("bound and Ack", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", cfg, "a", "b")
		keyAll(t, s, "r", "a", "b")
		if got := getRoom(t, s, "r").Config; got != cfg {
			t.Errorf("Config = %+v, want %+v", got, cfg)
		}
		appendMsg(t, s, "r", "a", body(4))
		appendMsg(t, s, "r", "a", body(6)) // exactly 10 bytes waiting
		_, err := s.Append(t.Context(), "r", "a", "", []byte("y"))
		wantErr(t, "Append(a, 1 byte) over 10 bytes", err, session.ErrMailboxFull)
		if got := getRoom(t, s, "r").LastSeq; got != 2 {
			t.Errorf("LastSeq after a refused Append = %d, want 2", got)
		}
		// The budget is per recipient: b may still send to a.
		appendMsg(t, s, "r", "b", body(10))
		// Empty bodies cost nothing in bytes.
		appendMsg(t, s, "r", "a", "")
		checkPending(t, s, "r", "b", 0, msg(1, "a", body(4)), msg(2, "a", body(6)), msg(4, "a", ""))

		// Acking the 4-byte message makes room for 4 bytes, not 5.
		wantErr(t, "Ack(b, 1)", s.Ack(t.Context(), "r", "b", 1), nil)
		_, err = s.Append(t.Context(), "r", "a", "", []byte(body(5)))
		wantErr(t, "Append(a, 5 bytes) with 6 waiting", err, session.ErrMailboxFull)
		if got := appendMsg(t, s, "r", "a", body(4)); got != 5 {
			t.Errorf("Append(a, 4 bytes) = %d, want 5", got)
		}
		wantErr(t, "Ack(b, 5)", s.Ack(t.Context(), "r", "b", 5), nil)
		appendMsg(t, s, "r", "a", body(10))
	})

	t.Run("a body over the whole budget", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", cfg, "a", "b")
		keyAll(t, s, "r", "a", "b")
		_, err := s.Append(t.Context(), "r", "a", "", []byte(body(11)))
		wantErr(t, "Append(a, 11 bytes) to an empty mailbox", err, session.ErrMailboxFull)
		checkPending(t, s, "r", "b", 0)
	})

	t.Run("Leave releases the mailbox", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", cfg, "a", "b")
		keyAll(t, s, "r", "a", "b")
		appendMsg(t, s, "r", "a", body(10))
		wantErr(t, "Leave(b)", s.Leave(t.Context(), "r", "b"), nil)
		join(t, s, "r", "c")
		keyAll(t, s, "r", "c")
		appendMsg(t, s, "r", "a", body(10))
		checkPending(t, s, "r", "c", 0, msg(2, "a", body(10)))
	})

	t.Run("zero means no bound in bytes", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", longCfg, "a", "b")
		keyAll(t, s, "r", "a", "b")
		appendMsg(t, s, "r", "a", body(1<<16))
	})
}

// testGraceEnds checks that a member whose grace is over goes, with its
// mailbox, when the grace ends: no Join is needed to remove it.
func testGraceEnds(t *testing.T, open opener) {
	s := open(t)
	cfg := longCfg
	cfg.ResumeGrace = shortGrace
	cfg.MaxPendingBytes = 10
	setup(t, s, "r", cfg, "a", "b")
	keyAll(t, s, "r", "a", "b")
	appendMsg(t, s, "r", "a", body10)
	disconnect(t, s, "r", "b")
	waitFor(t, patience, "b removed after its grace", func() bool {
		r, err := s.Room(t.Context(), "r")
		wantErr(t, "Room", err, nil)
		_, ok := r.Member("b")
		return !ok
	})
	if got, want := memberIDs(getRoom(t, s, "r")), []string{"a"}; !slices.Equal(got, want) {
		t.Errorf("members = %v, want %v", got, want)
	}
	_, err := s.Reconnect(t.Context(), "r", "b", token("b"))
	wantErr(t, "Reconnect(b) after its removal", err, session.ErrResumeExpired)
	// a, connected, keeps the room; a newcomer gets b's seat and an empty
	// mailbox with the whole byte budget.
	join(t, s, "r", "c")
	keyAll(t, s, "r", "c")
	checkPending(t, s, "r", "c", 0)
	appendMsg(t, s, "r", "a", body10)
}

const body10 = "0123456789"

// testUnattended checks how long rooms live with no connected member: a
// room whose members are all disconnected goes when the last grace ends
// (plus GraceMargin), however long its TTL; a room with no member goes
// after EmptyTTL; a room with a connected member lives its TTL.
func testUnattended(t *testing.T, open opener) {
	cfg := longCfg
	cfg.ResumeGrace = shortGrace
	cfg.EmptyTTL = shortTTL
	grace := shortGrace + session.GraceMargin(shortGrace)
	const slack = time.Second // for a backend with its own clock

	t.Run("all members disconnected", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", cfg, "a", "b")
		keyAll(t, s, "r", "a", "b")
		appendMsg(t, s, "r", "a", "m1")
		disconnect(t, s, "r", "b")
		if r := getRoom(t, s, "r"); r.ExpiresAt.Before(time.Now().Add(cfg.TTL - slack)) {
			t.Errorf("ExpiresAt with a connected = %v, want TTL (%v) from now", r.ExpiresAt, cfg.TTL)
		}
		disconnect(t, s, "r", "a")
		last := time.Now()
		// Activity does not keep a room with no connected member alive.
		wantErr(t, "Touch", s.Touch(t.Context(), "r"), nil)
		if r, err := s.Room(t.Context(), "r"); err == nil && r.ExpiresAt.After(last.Add(grace+slack)) {
			t.Errorf("ExpiresAt = %v, want by the end of a's grace plus margin, %v", r.ExpiresAt, last.Add(grace))
		}
		waitFor(t, patience, "the room to expire", func() bool {
			_, err := s.Room(t.Context(), "r")
			return errors.Is(err, session.ErrRoomNotFound)
		})
	})

	t.Run("a resume keeps the room", func(t *testing.T) {
		s := open(t)
		setup(t, s, "r", cfg, "a", "b")
		disconnect(t, s, "r", "a")
		disconnect(t, s, "r", "b")
		if _, err := s.Reconnect(t.Context(), "r", "b", token("b")); err != nil {
			t.Fatalf("Reconnect(b): %v", err)
		}
		if r := getRoom(t, s, "r"); r.ExpiresAt.Before(time.Now().Add(cfg.TTL - slack)) {
			t.Errorf("ExpiresAt after b resumed = %v, want TTL (%v) from now", r.ExpiresAt, cfg.TTL)
		}
		time.Sleep(2 * grace)
		if got, want := memberIDs(getRoom(t, s, "r")), []string{"b"}; !slices.Equal(got, want) {
			waitFor(t, patience, "a removed", func() bool {
				return slices.Equal(memberIDs(getRoom(t, s, "r")), want)
			})
		}
	})

	t.Run("no member", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", cfg)
		if r := getRoom(t, s, "r"); r.ExpiresAt.After(time.Now().Add(cfg.EmptyTTL + slack)) {
			t.Errorf("ExpiresAt of a new room = %v, want EmptyTTL (%v) from now", r.ExpiresAt, cfg.EmptyTTL)
		}
		join(t, s, "r", "a")
		// A member waiting alone for its peer keeps the TTL.
		if r := getRoom(t, s, "r"); r.ExpiresAt.Before(time.Now().Add(cfg.TTL - slack)) {
			t.Errorf("ExpiresAt with a member = %v, want TTL (%v) from now", r.ExpiresAt, cfg.TTL)
		}
		join(t, s, "r", "b")
		wantErr(t, "Leave(a)", s.Leave(t.Context(), "r", "a"), nil)
		wantErr(t, "Leave(b)", s.Leave(t.Context(), "r", "b"), nil)
		left := time.Now()
		waitFor(t, patience, "the empty room to expire", func() bool {
			_, err := s.Room(t.Context(), "r")
			return errors.Is(err, session.ErrRoomNotFound)
		})
		if d := time.Since(left); d < cfg.EmptyTTL-slack {
			t.Errorf("empty room expired after %v, want about EmptyTTL (%v)", d, cfg.EmptyTTL)
		}
	})

	t.Run("EmptyTTL zero means TTL", func(t *testing.T) {
		s := open(t)
		create(t, s, "r", longCfg)
		if r := getRoom(t, s, "r"); r.ExpiresAt.Before(time.Now().Add(longCfg.TTL - slack)) {
			t.Errorf("ExpiresAt = %v, want TTL (%v) from now", r.ExpiresAt, longCfg.TTL)
		}
	})
}
