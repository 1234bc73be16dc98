package client

import (
	"errors"

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
)

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
