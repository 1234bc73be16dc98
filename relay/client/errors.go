package client

import (
	"errors"
	"fmt"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/wire"
)

// Errors returned by the Client's methods. Branch on them with errors.Is.
//
// A method's error starts with its operation ("join: ", "send: ", "dial
// URL: " …) once, followed by the cause, so that a program can print it
// after its own name as it is: "keyrelay-chat: join: the room already has
// two peers (room_full)". The sentinels below read as causes and carry no
// package prefix.
var (
	// ErrClosed reports a call on a Client after Close.
	ErrClosed = errors.New("client closed")
	// ErrDisconnected reports that the connection to the relay ended. When
	// the relay closed it with a close frame the error is a *CloseError
	// (which matches ErrDisconnected), else it wraps the network error.
	// Either way it also wraps coder/websocket's error, so
	// websocket.CloseStatus gives the close code. The room, keys and
	// counters are kept: call Resume to take the place back within the
	// relay's grace period.
	ErrDisconnected = errors.New("disconnected from the relay")
	// ErrNotInRoom reports a call that needs a room (SendKey, Handshake,
	// Send, Resume, Leave) outside one, or a room that ended while the
	// call waited (the client left, or the room expired).
	ErrNotInRoom = errors.New("not in a room")
	// ErrHandshakeIncomplete reports Send before the handshake completed.
	ErrHandshakeIncomplete = errors.New("handshake not complete")
	// ErrTooLarge reports a plaintext longer than Client.MaxPlaintext, whose
	// frame the relay would refuse.
	ErrTooLarge = errors.New("message too large")
	// ErrPeerKeyChanged reports a peer_key frame with a key other than the
	// one the same peer sent before (after a resume, say): the relay, or
	// someone in its place, tried to swap the peer's key. It comes in a
	// *KeyChangeError, which Next returns once, as soon as the frame
	// arrives; Send and Handshake return it from then on. The room is
	// unusable: tell the user, and leave.
	ErrPeerKeyChanged = errors.New("the peer's public key changed")
	// ErrBadMessage reports a message from the peer that could not be
	// opened; it also wraps the dh error that says why (dh.ErrDecrypt,
	// dh.ErrReplay, dh.ErrShortMessage) or a base64 error. The message is
	// acknowledged and dropped; the next call to Next goes on with the
	// following one.
	ErrBadMessage = errors.New("a message could not be opened")
	// ErrGroupChanged reports a room, key_ok, peer_key or
	// handshake_complete frame whose group is not the one the client
	// pinned (the group given to Create or JoinGroup, or the first one the
	// relay reported): a relay or proxy tried to change the room's group,
	// for instance to downgrade x25519 to modp5. It comes wrapped in a
	// *GroupError that says which groups. The room is unusable.
	ErrGroupChanged = errors.New("the relay changed the room's group")
	// ErrLegacyGroup reports a legacy group (modp5, 1536-bit, below today's
	// recommendations) that Options.AllowLegacyGroups does not allow: asked
	// for in Create or JoinGroup, or reported by the relay (then wrapped in
	// a *GroupError; the room is unusable).
	ErrLegacyGroup = errors.New("legacy group refused")
	// ErrUnconfirmed reports a message that was sealed and handed to the
	// relay but not confirmed with sent: the connection dropped first (the
	// error also wraps ErrDisconnected), the relay answered unavailable
	// (its store failed), or the caller's context ended. The relay may or
	// may not have stored it. The client keeps the sealed body and sends
	// the same body (same counter) again, in order: after the next
	// successful Resume, or, after unavailable, before the next message
	// (see Send). The peer's client drops the copy if the first one did
	// arrive. Do not call Send again for it.
	ErrUnconfirmed = errors.New("message not confirmed; it is sent again after Resume")
	// ErrSuperseded reports that the relay closed the connection with
	// close code 4409 (wire.CloseSuperseded): another connection resumed
	// this client's place with its resume token. A *CloseError with code
	// 4409 matches it, and ErrDisconnected, but the place is the other connection's now: Resume
	// refuses to take it back (which would only close the other one in
	// turn) and returns ErrSuperseded.
	ErrSuperseded = errors.New("another connection took this client's place (close 4409)")
	// ErrResumeGaveUp reports that Resume (or Restore) tried every URL,
	// with backoff, until the room's resume grace period had passed since
	// the drop, without taking the seat back. It comes with the last
	// attempt's error. The relay has most likely freed the seat; Resume
	// may still be called again (it then tries each URL once).
	ErrResumeGaveUp = errors.New("gave up: the relay's grace period for the seat has passed")
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

// Error returns, for instance, "the relay changed the group from x25519 to
// modp5 (room frame); refusing".
func (e *GroupError) Error() string {
	got := e.Got
	if got == "" {
		got = "none"
	}
	switch {
	case errors.Is(e.Err, ErrLegacyGroup):
		return fmt.Sprintf("the room's group %s is a legacy group (%s frame); refusing", got, e.Frame)
	case e.Want == "":
		return fmt.Sprintf("the relay gave the group %q (%s frame): %v; refusing", e.Got, e.Frame, e.Err)
	}
	return fmt.Sprintf("the relay changed the group from %s to %s (%s frame); refusing", e.Want, got, e.Frame)
}

// Unwrap returns Err.
func (e *GroupError) Unwrap() error { return e.Err }

// Error is an error frame from the relay (docs/protocol.md §4). Code is
// stable and is one of package wire's Code constants; Message is for
// humans and may change. Unless the protocol says otherwise, the
// connection, room and keys are unchanged after an Error, and the client
// may go on.
//
//	var e *client.Error
//	if errors.As(err, &e) && e.Code == wire.CodeRoomFull { … }
type Error struct {
	Code    wire.Code
	Message string
}

// Error returns the relay's message and the code, such as "the room
// already has two peers (room_full)", or the code alone if the relay gave
// no message.
func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return e.Message + " (" + string(e.Code) + ")"
}

// CloseError is the close frame with which the relay ended the
// connection: calls waiting on it, and Next once the events are drained,
// return it (wrapped in the operation). It matches ErrDisconnected with
// errors.Is, and ErrSuperseded too when Code is wire.CloseSuperseded
// (4409). It wraps coder/websocket's error, so that errors.As with a
// websocket.CloseError and websocket.CloseStatus work as well.
//
//	var ce *client.CloseError
//	if errors.As(err, &ce) && ce.Code == wire.CloseTooManyConnsPerIP { … }
type CloseError struct {
	// Code is the close code (docs/protocol.md §4; package wire's Close
	// constants).
	Code websocket.StatusCode
	// Reason is the reason the relay gave in the close frame, for humans;
	// often empty.
	Reason string

	err error // coder/websocket's error
}

// Error returns, for instance, "the relay closed the connection (4429):
// too many connections from your address": the code and CloseText of it,
// or for a code without one the relay's reason, if any.
func (e *CloseError) Error() string {
	text := CloseText(e.Code)
	if text == "" {
		text = e.Reason
	}
	if text == "" {
		return fmt.Sprintf("the relay closed the connection (%d)", int(e.Code))
	}
	return fmt.Sprintf("the relay closed the connection (%d): %s", int(e.Code), text)
}

// Is reports whether target is ErrDisconnected, or ErrSuperseded for code
// 4409.
func (e *CloseError) Is(target error) bool {
	return target == ErrDisconnected || target == ErrSuperseded && e.Code == wire.CloseSuperseded
}

// Unwrap returns coder/websocket's error, which holds a
// websocket.CloseError.
func (e *CloseError) Unwrap() error { return e.err }

// closeTexts says what each close code of docs/protocol.md §4 means, in
// words for the user of a client.
var closeTexts = map[websocket.StatusCode]string{
	wire.CloseNormal:                        "normal close",
	wire.CloseGoingAway:                     "the relay is shutting down (going away)",
	wire.CloseTooBig:                        "a frame was larger than the relay's size limit (too big)",
	websocket.StatusInternalError:           "the relay's pings went unanswered, or it failed (internal error)",
	wire.CloseStoreUnavailable:              "the relay lost its session store (try again later)",
	wire.CloseNoSubprotocol:                 "the keyrelay.v1 subprotocol was not offered",
	wire.CloseSlowReader:                    "frames were not read fast enough (slow reader)",
	wire.CloseSuperseded:                    "another connection took this seat (superseded)",
	wire.CloseTooManyConnsPerIP:             "too many connections from your address",
	websocket.StatusPolicyViolation:         "policy violation",
	websocket.StatusProtocolError:           "protocol error",
	websocket.StatusUnsupportedData:         "unsupported data",
	websocket.StatusInvalidFramePayloadData: "invalid frame payload",
}

// CloseText returns a short description of a close code the relay sends
// (docs/protocol.md §4), such as "too many connections from your address"
// for 4429 (wire.CloseTooManyConnsPerIP) or "the relay is shutting down
// (going away)" for 1001. It returns "" for other codes.
func CloseText(code websocket.StatusCode) string { return closeTexts[code] }

// KeyChangeError reports that the relay forwarded, for the peer of the
// current key exchange, a public key other than the one the exchange
// used: the relay, or someone between, tried to swap the peer's key (the
// relay never lets a peer change its key). It matches ErrPeerKeyChanged.
// Next returns it once, as soon as the key arrives; Send and Handshake
// return it from then on, and the room is unusable.
//
// Tell the user at once that the room is not safe, and show SafetyNumber:
// it differs from the number the other person sees, which shows the swap.
type KeyChangeError struct {
	// Old is the peer's key of the exchange.
	Old *dh.PublicKey
	// New is the key the relay forwarded since, nil if it is not a valid
	// key of the room's group (Err says why).
	New *dh.PublicKey
	// SafetyNumber is dh.SafetyNumber of the client's key and New: the
	// number the swapped key gives. "" if New is nil or the client has no
	// key yet.
	SafetyNumber string
	// Err is why New is not valid (wrapping dh.ErrInvalidPublicKey or
	// dh.ErrMalformedKey), nil if it is.
	Err error
}

// Error returns "the relay forwarded another public key for the peer" and,
// for an invalid one, why it is not valid.
func (e *KeyChangeError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("the relay forwarded another public key for the peer, and an invalid one: %v", e.Err)
	}
	return "the relay forwarded another public key for the peer"
}

// Unwrap returns ErrPeerKeyChanged and Err.
func (e *KeyChangeError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrPeerKeyChanged}
	}
	return []error{ErrPeerKeyChanged, e.Err}
}
