package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/session"
)

// Subprotocol is the WebSocket subprotocol a client must offer.
const Subprotocol = "keyrelay.v1"

// Frame types, client to relay.
const (
	TypeCreate = "create"
	TypeJoin   = "join"
	TypeResume = "resume"
	TypeKey    = "key"
	TypeMsg    = "msg"
	TypeAck    = "ack"
	TypeLeave  = "leave"
)

// Frame types, relay to client.
const (
	TypeRoom              = "room"
	TypePeerJoined        = "peer_joined"
	TypePeerLeft          = "peer_left"
	TypeKeyOK             = "key_ok"
	TypePeerKey           = "peer_key"
	TypeHandshakeComplete = "handshake_complete"
	TypeSent              = "sent"
	TypeLeft              = "left"
	TypeError             = "error"
)

// Error codes of error frames (docs/protocol.md §4).
const (
	CodeBadFrame            = "bad_frame"
	CodeBadRequest          = "bad_request"
	CodeUnknownType         = "unknown_type"
	CodeUnknownGroup        = "unknown_group"
	CodeMalformedKey        = "malformed_key"
	CodeInvalidPublicKey    = "invalid_public_key"
	CodeGroupMismatch       = "group_mismatch"
	CodeKeyAlreadySet       = "key_already_set"
	CodeRoomNotFound        = "room_not_found"
	CodeRoomExists          = "room_exists"
	CodeKeyReused           = "key_reused"
	CodeJoinRateLimited     = "join_rate_limited"
	CodeTooManyAttempts     = "too_many_attempts"
	CodeRoomFull            = "room_full"
	CodeRoomExpired         = "room_expired"
	CodeTooManyRooms        = "too_many_rooms"
	CodeAlreadyInRoom       = "already_in_room"
	CodeNotInRoom           = "not_in_room"
	CodeHandshakeIncomplete = "handshake_incomplete"
	CodeMailboxFull         = "mailbox_full"
	CodeInvalidResume       = "invalid_resume"
	CodeResumeExpired       = "resume_expired"
	CodeRateLimited         = "rate_limited"
	CodeUnavailable         = "unavailable"
	CodeInternal            = "internal"
)

// Close codes (docs/protocol.md §4), besides the standard 1000, 1001 and
// 1009.
const (
	CloseNoSubprotocol     websocket.StatusCode = 4400
	CloseSlowReader        websocket.StatusCode = 4408
	CloseTooManyConnsPerIP websocket.StatusCode = 4429
)

// clientFrame is any frame a client sends; which fields may be present
// depends on Type (see allowedFields).
type clientFrame struct {
	Type        string          `json:"type"`
	ID          json.RawMessage `json:"id,omitempty"`
	Group       *string         `json:"group,omitempty"`
	Room        *string         `json:"room,omitempty"`
	Peer        *string         `json:"peer,omitempty"`
	ResumeToken *string         `json:"resume_token,omitempty"`
	LastSeq     *uint64         `json:"last_seq,omitempty"`
	PublicKey   *string         `json:"public_key,omitempty"`
	Body        *string         `json:"body,omitempty"`
	Seq         *uint64         `json:"seq,omitempty"`
}

// allowedFields lists, per type, the fields besides type and id that a
// frame may carry; required ones are marked true.
var allowedFields = map[string]map[string]bool{
	TypeCreate: {"group": false, "room": false},
	TypeJoin:   {"room": true},
	TypeResume: {"room": true, "peer": true, "resume_token": true, "last_seq": false},
	TypeKey:    {"public_key": true, "group": false},
	TypeMsg:    {"body": true},
	TypeAck:    {"seq": true},
	TypeLeave:  {},
}

// serverFrame is any frame the relay sends. Zero fields are omitted except
// where the protocol always carries them (see the constructors).
type serverFrame struct {
	Type        string          `json:"type"`
	ID          json.RawMessage `json:"id,omitempty"`
	Code        string          `json:"code,omitempty"`
	Message     string          `json:"message,omitempty"`
	Room        string          `json:"room,omitempty"`
	Peer        string          `json:"peer,omitempty"`
	ResumeToken string          `json:"resume_token,omitempty"`
	Group       *string         `json:"group,omitempty"`
	Peers       int             `json:"peers,omitempty"`
	Resumed     *bool           `json:"resumed,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	PublicKey   string          `json:"public_key,omitempty"`
	Seq         uint64          `json:"seq,omitempty"`
	Body        string          `json:"body,omitempty"`
}

// wireError is an error with a wire code, sent to the client in an error
// frame. Its message is safe to show.
type wireError struct {
	code string
	msg  string
}

func (e *wireError) Error() string { return e.code + ": " + e.msg }

func newWireError(code, format string, args ...any) *wireError {
	return &wireError{code: code, msg: fmt.Sprintf(format, args...)}
}

// errorCodes maps the errors of dh and session to wire codes: the one table
// between the packages' sentinels and the protocol.
var errorCodes = []struct {
	err  error
	code string
	msg  string
}{
	{dh.ErrUnknownGroup, CodeUnknownGroup, "unknown group"},
	{dh.ErrMalformedKey, CodeMalformedKey, ""},
	{dh.ErrInvalidPublicKey, CodeInvalidPublicKey, ""},
	{session.ErrGroupMismatch, CodeGroupMismatch, "the key's group is not the room's"},
	{session.ErrKeySet, CodeKeyAlreadySet, "you already sent a key in this room"},
	{session.ErrRoomNotFound, CodeRoomNotFound, "no such room"},
	{session.ErrRoomExists, CodeRoomExists, "a room with this ID exists; choose another"},
	{limits.ErrJoinRate, CodeJoinRateLimited, "too many creates, joins and resumes from your address; wait and retry"},
	{limits.ErrRoomAttempts, CodeTooManyAttempts, "too many join attempts on this room; wait and retry"},
	{limits.ErrKeyReused, CodeKeyReused, "this public key was used in another room; generate a new key pair"},
	{limits.ErrClosed, CodeUnavailable, "the relay is shutting down; reconnect and resume"},
	{limits.ErrUnavailable, CodeUnavailable, "the admission limits are unavailable; try again"},
	{session.ErrRoomFull, CodeRoomFull, "the room already has two peers"},
	{session.ErrTooManyRooms, CodeTooManyRooms, "the relay holds its maximum number of rooms"},
	{session.ErrMailboxFull, CodeMailboxFull, "the peer has too many unacknowledged messages"},
	{session.ErrBadToken, CodeInvalidResume, "unknown peer or wrong resume token"},
	{session.ErrNotMember, CodeInvalidResume, "unknown peer or wrong resume token"},
	{session.ErrResumeExpired, CodeResumeExpired, "the resume grace period is over"},
	{session.ErrUnavailable, CodeUnavailable, "the session store is unavailable; try again"},
}

// toWireError converts err to the error frame the client gets. Errors with
// no entry in errorCodes are internal: the client sees a generic message
// and the caller logs the details.
func toWireError(err error) (*wireError, bool) {
	var we *wireError
	if errors.As(err, &we) {
		return we, true
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			msg := e.msg
			if msg == "" {
				msg = err.Error() // dh's messages name the rule, never the key
			}
			return &wireError{code: e.code, msg: msg}, true
		}
	}
	return &wireError{code: CodeInternal, msg: "internal error"}, false
}

// decodeFrame parses and checks a client frame: a JSON object with a known
// type, only the fields of that type, each of the right JSON type, and an id
// of at most 64 characters.
func decodeFrame(data []byte) (*clientFrame, *wireError) {
	if !utf8.Valid(data) {
		// RFC 6455 text frames are UTF-8; nothing of this frame, not even
		// its id, is echoed.
		return nil, newWireError(CodeBadFrame, "a frame must be UTF-8 text")
	}
	if f := decodeFast(data); f != nil {
		return f, nil
	}
	return decodeSlow(data)
}

// decodeSlow is decodeFrame for any frame: it finds what is wrong with a
// bad one.
func decodeSlow(data []byte) (*clientFrame, *wireError) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return nil, newWireError(CodeBadFrame, "a frame must be one JSON object")
	}
	var f clientFrame
	if raw, ok := fields["id"]; ok {
		if err := checkID(raw); err != nil {
			return nil, err
		}
		f.ID = raw
	}
	var typ string
	if err := json.Unmarshal(fields["type"], &typ); err != nil {
		return &f, newWireError(CodeUnknownType, "missing or non-string type")
	}
	allowed, ok := allowedFields[typ]
	if !ok {
		return &f, newWireError(CodeUnknownType, "unknown type %q", truncate(typ, 32))
	}
	for name := range fields {
		if _, ok := allowed[name]; !ok && name != "type" && name != "id" {
			return &f, newWireError(CodeBadRequest, "field %q is not allowed in %s", truncate(name, 32), typ)
		}
	}
	for name, required := range allowed {
		if _, ok := fields[name]; required && !ok {
			return &f, newWireError(CodeBadRequest, "%s needs field %q", typ, name)
		}
	}
	if err := json.Unmarshal(data, &f); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &f, newWireError(CodeBadRequest, "field %q has the wrong type", te.Field)
		}
		return &f, newWireError(CodeBadRequest, "malformed field")
	}
	for name := range allowed {
		if bytes.Equal(fields[name], []byte("null")) {
			return &f, newWireError(CodeBadRequest, "field %q must not be null", name)
		}
	}
	f.Type = typ
	return &f, nil
}

// checkID accepts a string of at most 64 characters (Unicode code points)
// or an integer; null is neither.
func checkID(raw json.RawMessage) *wireError {
	var s *string
	if json.Unmarshal(raw, &s) == nil && s != nil {
		if utf8.RuneCountInString(*s) > 64 {
			return newWireError(CodeBadRequest, "id longer than 64 characters")
		}
		return nil
	}
	if _, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return nil
	}
	return newWireError(CodeBadRequest, "id must be a string or an integer")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// fieldNames are the client frame's field names, exactly; a frame whose
// keys are not all among them goes to decodeSlow.
var fieldNames = [...]string{"type", "id", "group", "room", "peer", "resume_token", "last_seq", "public_key", "body", "seq"}

// present reports, per fieldNames entry, whether f's field is set.
func (f *clientFrame) present() [len(fieldNames)]bool {
	return [...]bool{f.Type != "", f.ID != nil, f.Group != nil, f.Room != nil, f.Peer != nil,
		f.ResumeToken != nil, f.LastSeq != nil, f.PublicKey != nil, f.Body != nil, f.Seq != nil}
}

// decodeFast decodes a well-formed frame in one pass, for the common case;
// it returns nil for anything decodeSlow must judge (any error, and any
// doubt: escaped or unknown keys, nulls). What it accepts, decodeSlow
// accepts with the same result (FuzzDecodeFrame checks it).
func decodeFast(data []byte) *clientFrame {
	var f clientFrame
	if json.Unmarshal(data, &f) != nil { // also refuses what is not an object
		return nil
	}
	allowed, ok := allowedFields[f.Type]
	if !ok {
		return nil
	}
	// encoding/json matches keys without regard to case and skips unknown
	// ones: the keys must be checked as written.
	var seen [len(fieldNames)]bool
	if !eachKey(data, func(k []byte) bool {
		for i, name := range fieldNames {
			if string(k) == name {
				if _, ok := allowed[name]; !ok && i > 1 {
					return false
				}
				seen[i] = true
				return true
			}
		}
		return false
	}) {
		return nil
	}
	set := f.present()
	for i, name := range fieldNames {
		if seen[i] != set[i] && i != 1 { // a key whose value was null
			return nil
		}
		if required := allowed[name]; required && !seen[i] {
			return nil
		}
	}
	if seen[1] && checkID(f.ID) != nil {
		return nil
	}
	return &f
}

// eachKey calls fn with each top-level key of data, a JSON object that
// encoding/json has already accepted, until fn returns false. It returns
// false if fn did, or if a key holds an escape (the caller then takes the
// slow path, which decodes keys fully).
func eachKey(data []byte, fn func(key []byte) bool) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i++
	for {
		i = skipSpace(data, i)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case '}':
			return true
		case ',':
			i++
			continue
		case '"':
		default:
			return false
		}
		end := i + 1
		for end < len(data) && data[end] != '"' {
			if data[end] == '\\' {
				return false
			}
			end++
		}
		if end >= len(data) || !fn(data[i+1:end]) {
			return false
		}
		i = skipSpace(data, end+1)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		if i = skipValue(data, i+1); i < 0 {
			return false
		}
	}
}

// skipSpace returns the index of the first non-space byte at or after i.
func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just after the JSON value starting at or
// after i (valid JSON assumed), or -1.
func skipValue(data []byte, i int) int {
	depth := 0
	for i = skipSpace(data, i); i < len(data); i++ {
		switch c := data[i]; c {
		case '"':
			for i++; i < len(data) && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
			if i >= len(data) {
				return -1
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // the end of the enclosing object
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case ',':
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}
