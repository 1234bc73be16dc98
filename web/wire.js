// wire.js: the vocabulary of keyrelay's WebSocket protocol (docs/protocol.md),
// the JavaScript copy of Go's package wire: the subprotocol, the path, the
// frame types, the relay's error codes, its close codes and the reasons a
// peer leaves. It imports nothing. keyrelay.js uses these names instead of
// string literals and re-exports them; users should import them from there.
//
// Every table must equal wire/codes.json, which package wire generates from
// its Go declarations: web/test/wire.test.mjs checks that, value for value,
// so a code added in Go fails the JavaScript tests until it is added here.
// Property names are the values in upper case (close codes: codes.json's
// names in upper case).

/** The WebSocket subprotocol the relay requires (wire.Subprotocol). */
export const SUBPROTOCOL = "keyrelay.v1";

/** Where the relay serves its WebSocket endpoint (wire.Path). */
export const PATH = "/v1/ws";

/**
 * Every frame's "type" (protocol.md §2), client to relay first, then relay
 * to client ("msg" goes both ways).
 */
export const FrameType = Object.freeze({
  // client to relay (§2.1)
  CREATE: "create",
  JOIN: "join",
  RESUME: "resume",
  KEY: "key",
  MSG: "msg",
  ACK: "ack",
  LEAVE: "leave",
  // relay to client (§2.2)
  ROOM: "room",
  PEER_JOINED: "peer_joined",
  PEER_LEFT: "peer_left",
  KEY_OK: "key_ok",
  PEER_KEY: "peer_key",
  HANDSHAKE_COMPLETE: "handshake_complete",
  SENT: "sent",
  LEFT: "left",
  ERROR: "error",
});

/**
 * The "code" of the relay's error frames (protocol.md §4): a relay
 * KeyrelayError (fromRelay true) carries one of these. Codes are stable; the
 * message beside them is for humans. The client also raises a few of them
 * itself where it detects the same condition before asking the relay
 * (not_in_room, handshake_incomplete, group_mismatch, bad_request).
 */
export const Code = Object.freeze({
  BAD_FRAME: "bad_frame",
  BAD_REQUEST: "bad_request",
  UNKNOWN_TYPE: "unknown_type",
  UNKNOWN_GROUP: "unknown_group",
  MALFORMED_KEY: "malformed_key",
  INVALID_PUBLIC_KEY: "invalid_public_key",
  GROUP_MISMATCH: "group_mismatch",
  KEY_ALREADY_SET: "key_already_set",
  KEY_REFLECTED: "key_reflected",
  GROUP_NOT_ALLOWED: "group_not_allowed",
  ROOM_NOT_FOUND: "room_not_found",
  ROOM_EXISTS: "room_exists",
  KEY_REUSED: "key_reused",
  JOIN_RATE_LIMITED: "join_rate_limited",
  TOO_MANY_ATTEMPTS: "too_many_attempts",
  ROOM_FULL: "room_full",
  ROOM_EXPIRED: "room_expired",
  TOO_MANY_ROOMS: "too_many_rooms",
  ALREADY_IN_ROOM: "already_in_room",
  NOT_IN_ROOM: "not_in_room",
  HANDSHAKE_INCOMPLETE: "handshake_incomplete",
  MAILBOX_FULL: "mailbox_full",
  MESSAGES_LOST: "messages_lost",
  INVALID_RESUME: "invalid_resume",
  RESUME_EXPIRED: "resume_expired",
  RATE_LIMITED: "rate_limited",
  UNAVAILABLE: "unavailable",
  INTERNAL: "internal",
});

/**
 * The WebSocket close codes of the relay (protocol.md §4); a "closed" event
 * and a "disconnected" KeyrelayError carry one as closeCode.
 */
export const CloseCode = Object.freeze({
  NORMAL: 1000, // a normal close
  GOING_AWAY: 1001, // the relay is shutting down: reconnect and resume
  TOO_BIG: 1009, // a frame exceeded the frame-size limit
  STORE_UNAVAILABLE: 1013, // the relay lost its session store: resume after a pause
  NO_SUBPROTOCOL: 4400, // the client did not offer SUBPROTOCOL
  SLOW_READER: 4408, // the client read too slowly: reconnect and resume
  SUPERSEDED: 4409, // another connection resumed this seat: do not resume from here
  TOO_MANY_CONNS_PER_IP: 4429, // too many connections from the client's IP
});

/** The "reason" of a peer_left frame (protocol.md §2.2). */
export const Reason = Object.freeze({
  LEFT: "left", // the peer sent leave: gone for good
  DROPPED: "dropped", // the peer's connection ended: it may resume
  EXPIRED: "expired", // the dropped peer's grace period ended: its seat is free
});
