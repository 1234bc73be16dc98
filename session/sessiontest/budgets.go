package sessiontest

import (
	"strings"
	"testing"

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
		_, err := s.Append(t.Context(), "r", "a", []byte("y"))
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
		_, err = s.Append(t.Context(), "r", "a", []byte(body(5)))
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
		_, err := s.Append(t.Context(), "r", "a", []byte(body(11)))
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
