package client

import (
	"errors"
	"fmt"

	"github.com/keyrelay/keyrelay/wire"
)

// Errors returned by the Client's methods. Branch on them with errors.Is.
var (
	// ErrClosed reports a call on a Client after Close.
	ErrClosed = errors.New("client: closed")
	// ErrDisconnected reports that the connection to the relay ended. It
	// wraps the cause (a websocket.CloseError carrying the relay's close
	// code, or a network error). The room, keys and counters are kept:
	// call Resume to take the place back within the relay's grace period.
	ErrDisconnected = errors.New("client: disconnected")
	// ErrNotInRoom reports a call that needs a room (SendKey, Handshake,
	// Send, Resume, Leave) outside one, or a room that ended while the
	// call waited (the client left, or the room expired).
	ErrNotInRoom = errors.New("client: not in a room")
	// ErrHandshakeIncomplete reports Send before the handshake completed.
	ErrHandshakeIncomplete = errors.New("client: handshake not complete")
	// ErrTooLarge reports a plaintext longer than Client.MaxPlaintext, whose
	// frame the relay would refuse.
	ErrTooLarge = errors.New("client: message too large")
	// ErrPeerKeyChanged reports a peer_key frame with a key other than the
	// one the same peer sent before: the relay, or someone in its place,
	// tried to swap the peer's key. The room is unusable.
	ErrPeerKeyChanged = errors.New("client: the peer's public key changed")
	// ErrBadMessage reports a message from the peer that could not be
	// opened; it also wraps the dh error that says why (dh.ErrDecrypt,
	// dh.ErrReplay, dh.ErrShortMessage) or a base64 error. The message is
	// acknowledged and dropped; the next call to Next goes on with the
	// following one.
	ErrBadMessage = errors.New("client: message refused")
	// ErrGroupChanged reports a room, key_ok, peer_key or
	// handshake_complete frame whose group is not the one the client
	// pinned (the group given to Create or JoinGroup, or the first one the
	// relay reported): a relay or proxy tried to change the room's group,
	// for instance to downgrade x25519 to modp5. It comes wrapped in a
	// *GroupError that says which groups. The room is unusable.
	ErrGroupChanged = errors.New("client: the relay changed the room's group")
	// ErrLegacyGroup reports a legacy group (modp5, 1536-bit, below today's
	// recommendations) that Options.AllowLegacyGroups does not allow: asked
	// for in Create or JoinGroup, or reported by the relay (then wrapped in
	// a *GroupError; the room is unusable).
	ErrLegacyGroup = errors.New("client: legacy group refused")
	// ErrUnconfirmed reports a message that was sealed and handed to the
	// relay but not confirmed with sent: the connection dropped first (the
	// error also wraps ErrDisconnected), the relay answered unavailable
	// (its store failed), or the caller's context ended. The relay may or
	// may not have stored it. The client keeps the sealed body and sends
	// the same body (same counter) again, in order: after the next
	// successful Resume, or, after unavailable, before the next message
	// (see Send). The peer's client drops the copy if the first one did
	// arrive. Do not call Send again for it.
	ErrUnconfirmed = errors.New("client: message not confirmed; it is sent again after Resume")
	// ErrSuperseded reports that the relay closed the connection with
	// close code 4409 (wire.CloseSuperseded): another connection resumed
	// this client's place with its resume token. It comes with
	// ErrDisconnected, but the place is the other connection's now: Resume
	// refuses to take it back (which would only close the other one in
	// turn) and returns ErrSuperseded.
	ErrSuperseded = errors.New("client: another connection took this client's place (close 4409)")
	// ErrResumeGaveUp reports that Resume (or Restore) tried every URL,
	// with backoff, until the room's resume grace period had passed since
	// the drop, without taking the seat back. It comes with the last
	// attempt's error. The relay has most likely freed the seat; Resume
	// may still be called again (it then tries each URL once).
	ErrResumeGaveUp = errors.New("client: gave up resuming: the relay's grace period for the seat has passed")
)

// GroupError is a group the client refused in a frame from the relay. It
// wraps Err: ErrGroupChanged (Want is not Got), ErrLegacyGroup (Got is a
// legacy group the options do not allow), or dh.ErrUnknownGroup (Got is
// not a group name of package dh).
//
//	var ge *client.GroupError
//	if errors.As(err, &ge) { fmt.Printf("expected %s, the relay said %s", ge.Want, ge.Got) }
type GroupError struct {
	// Frame is the type of the frame that carried the group.
	Frame wire.FrameType
	// Want is the group the client expected, "" if it had none yet.
	Want string
	// Got is the group the frame carried, as the relay wrote it ("" for
	// none, where one was due).
	Got string
	// Err is ErrGroupChanged, ErrLegacyGroup or dh.ErrUnknownGroup.
	Err error
}

// Error returns, for instance, "client: the relay changed the group from
// x25519 to modp5 (room frame); refusing".
func (e *GroupError) Error() string {
	got := e.Got
	if got == "" {
		got = "none"
	}
	switch {
	case errors.Is(e.Err, ErrLegacyGroup):
		return fmt.Sprintf("client: the room's group %s is a legacy group (%s frame); refusing", got, e.Frame)
	case e.Want == "":
		return fmt.Sprintf("client: the relay gave the group %q (%s frame): %v; refusing", e.Got, e.Frame, e.Err)
	}
	return fmt.Sprintf("client: the relay changed the group from %s to %s (%s frame); refusing", e.Want, got, e.Frame)
}

// Unwrap returns Err.
func (e *GroupError) Unwrap() error { return e.Err }

// Error is an error frame from the relay (docs/protocol.md §4). Code is
// stable and is one of package wire's Code constants; Message is for humans and may
// change. Unless the protocol says otherwise, the connection, room and
// keys are unchanged after an Error, and the client may go on.
//
//	var e *client.Error
//	if errors.As(err, &e) && e.Code == wire.CodeRoomFull { … }
type Error struct {
	Code    wire.Code
	Message string
}

// Error returns "keyrelay: code: message".
func (e *Error) Error() string {
	if e.Message == "" {
		return "keyrelay: " + string(e.Code)
	}
	return "keyrelay: " + string(e.Code) + ": " + e.Message
}
