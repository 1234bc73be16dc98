// Package wire is the vocabulary of keyrelay's WebSocket protocol
// (docs/protocol.md): the subprotocol name, the frame types, the frames
// themselves, the error codes, the close codes and the reasons a peer
// leaves. The relay, the Go client and the load tester all import it, so
// each constant is written once; the JavaScript client checks its copy
// against codes.json, which a test in this package writes from these
// declarations. The package imports nothing of keyrelay.
//
// Protocol flow (JSON text frames, subprotocol [Subprotocol], at /v1/ws):
//
//	A → create {group}            A ← room {room, peer, resume_token, …}
//	A → key {public_key, group}   A ← key_ok          (validated and stored)
//	B → join {room}               B ← room {…}, peer_key {A's key}
//	                              A ← peer_joined
//	B → key {public_key, group}   B ← key_ok, handshake_complete
//	                              A ← peer_key {B's key}, handshake_complete
//	A → msg {body}                A ← sent {seq}      (stored until acked)
//	                              B ← msg {seq, body}
//	B → ack {seq}
//	(B drops)                     A ← peer_left {reason: dropped}
//	B' → resume {room, peer, resume_token, last_seq}
//	                              B' ← room {resumed}, peer_key, handshake_complete, msg…
//	                              A ← peer_joined {resumed}
package wire

import "github.com/coder/websocket"

// Subprotocol is the WebSocket subprotocol a client must offer; a
// connection without it is closed with [CloseNoSubprotocol].
const Subprotocol = "keyrelay.v1"

// Path is where the relay serves its WebSocket endpoint.
const Path = "/v1/ws"

// FrameType is a frame's "type" field.
type FrameType string

// Frame types, client to relay (docs/protocol.md §2.1).
const (
	TypeCreate FrameType = "create"
	TypeJoin   FrameType = "join"
	TypeResume FrameType = "resume"
	TypeKey    FrameType = "key"
	TypeMsg    FrameType = "msg" // also relay to client
	TypeAck    FrameType = "ack"
	TypeLeave  FrameType = "leave"
)

// Frame types, relay to client (docs/protocol.md §2.2), besides [TypeMsg].
const (
	TypeRoom              FrameType = "room"
	TypePeerJoined        FrameType = "peer_joined"
	TypePeerLeft          FrameType = "peer_left"
	TypeKeyOK             FrameType = "key_ok"
	TypePeerKey           FrameType = "peer_key"
	TypeHandshakeComplete FrameType = "handshake_complete"
	TypeSent              FrameType = "sent"
	TypeLeft              FrameType = "left"
	TypeError             FrameType = "error"
)

// Code is the "code" of an error frame (docs/protocol.md §4). Codes are
// stable; the message beside them is for humans and may change.
type Code string

// Error codes (docs/protocol.md §4). Unless the protocol says otherwise,
// the connection, the room and the keys are unchanged after an error.
const (
	CodeBadFrame            Code = "bad_frame"            // not a JSON object, not UTF-8, or binary
	CodeBadRequest          Code = "bad_request"          // a missing, unknown or wrongly typed field
	CodeUnknownType         Code = "unknown_type"         // type missing or not a client frame type
	CodeUnknownGroup        Code = "unknown_group"        // the group name is not supported
	CodeMalformedKey        Code = "malformed_key"        // public_key is not a hex key of the group
	CodeInvalidPublicKey    Code = "invalid_public_key"   // the key fails validation
	CodeGroupMismatch       Code = "group_mismatch"       // the key's group is not the room's
	CodeKeyAlreadySet       Code = "key_already_set"      // this peer already stored a key here
	CodeKeyReflected        Code = "key_reflected"        // the key is the other peer's own key
	CodeGroupNotAllowed     Code = "group_not_allowed"    // a legacy group the operator has not allowed
	CodeRoomNotFound        Code = "room_not_found"       // no such room (or it expired)
	CodeRoomExists          Code = "room_exists"          // create named a room ID in use
	CodeKeyReused           Code = "key_reused"           // the key was used in another room
	CodeJoinRateLimited     Code = "join_rate_limited"    // too many create/join/resume from this IP
	CodeTooManyAttempts     Code = "too_many_attempts"    // too many join/resume attempts on this room
	CodeRoomFull            Code = "room_full"            // the room has two peers
	CodeRoomExpired         Code = "room_expired"         // the room you were in expired
	CodeTooManyRooms        Code = "too_many_rooms"       // the relay holds its maximum of rooms
	CodeAlreadyInRoom       Code = "already_in_room"      // create/join/resume while in a room
	CodeNotInRoom           Code = "not_in_room"          // key/msg/ack/leave outside a room
	CodeHandshakeIncomplete Code = "handshake_incomplete" // msg before both keys are stored
	CodeMailboxFull         Code = "mailbox_full"         // the peer has too many unacknowledged messages
	CodeMessagesLost        Code = "messages_lost"        // the relay's store lost messages (or the room) it had accepted
	CodeInvalidResume       Code = "invalid_resume"       // unknown peer or wrong resume token
	CodeResumeExpired       Code = "resume_expired"       // the grace period is over
	CodeRateLimited         Code = "rate_limited"         // too many frames per second; frame ignored
	CodeUnavailable         Code = "unavailable"          // the session store cannot be reached
	CodeInternal            Code = "internal"             // an unexpected relay error
)

// Close codes the relay sends (docs/protocol.md §4). The standard ones are
// the websocket package's; the 4xxx ones are keyrelay's.
const (
	// CloseNormal: a normal close.
	CloseNormal = websocket.StatusNormalClosure
	// CloseGoingAway: the relay is shutting down; reconnect and resume.
	CloseGoingAway = websocket.StatusGoingAway
	// CloseTooBig: a frame was larger than the frame-size limit.
	CloseTooBig = websocket.StatusMessageTooBig
	// CloseStoreUnavailable: the relay lost its session store after sending
	// error unavailable; reconnect and resume after a pause.
	CloseStoreUnavailable = websocket.StatusTryAgainLater
	// CloseNoSubprotocol: the client did not offer [Subprotocol].
	CloseNoSubprotocol websocket.StatusCode = 4400
	// CloseSlowReader: the client did not read its frames fast enough;
	// reconnect and resume.
	CloseSlowReader websocket.StatusCode = 4408
	// CloseSuperseded: another connection resumed this connection's seat;
	// do not resume from here.
	CloseSuperseded websocket.StatusCode = 4409
	// CloseTooManyConnsPerIP: too many connections from the client's IP.
	CloseTooManyConnsPerIP websocket.StatusCode = 4429
)

// Reason is the "reason" of a peer_left frame.
type Reason string

// Reasons of peer_left (docs/protocol.md §2.2).
const (
	// ReasonLeft: the peer sent leave; it is gone for good.
	ReasonLeft Reason = "left"
	// ReasonDropped: the peer's connection ended; it may resume within the
	// grace period.
	ReasonDropped Reason = "dropped"
	// ReasonExpired: the peer dropped and its grace period ended; its seat
	// is free and a new peer may take it (with a new handshake).
	ReasonExpired Reason = "expired"
)
