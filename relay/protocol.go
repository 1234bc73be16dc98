package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/limits"
	"github.com/keyrelay/keyrelay/session"
	"github.com/keyrelay/keyrelay/wire"
)

// allowedFields lists, per type, the fields besides type and id that a
// frame may carry; required ones are marked true.
var allowedFields = map[wire.FrameType]map[string]bool{
	wire.TypeCreate: {"group": false, "room": false},
	wire.TypeJoin:   {"room": true},
	wire.TypeResume: {"room": true, "peer": true, "resume_token": true, "last_seq": false, "sent_seq": false},
	wire.TypeKey:    {"public_key": true, "group": true},
	wire.TypeMsg:    {"body": true},
	wire.TypeAck:    {"seq": true},
	wire.TypeLeave:  {},
}

// wireError is an error with a wire code, sent to the client in an error
// frame. Its message is safe to show.
type wireError struct {
	code wire.Code
	msg  string
}

func (e *wireError) Error() string { return string(e.code) + ": " + e.msg }

func newWireError(code wire.Code, format string, args ...any) *wireError {
	return &wireError{code: code, msg: fmt.Sprintf(format, args...)}
}

// errRoomExpired is the error of a frame acting on the connection's room
// when the store no longer has the room: it expired under the member,
// who is now in no room.
var errRoomExpired = errors.New("relay: the room expired")

// errGroupNotAllowed is the error of a legacy group the operator has not
// allowed (Config.AllowLegacyGroups).
var errGroupNotAllowed = errors.New("relay: legacy group not allowed")

// legacyGroups are the groups below the strength clients accept by
// default: served only with Config.AllowLegacyGroups.
var legacyGroups = map[string]bool{"modp5": true}

// IsLegacyGroup reports whether the group with this wire name is served
// only with Config.AllowLegacyGroups.
func IsLegacyGroup(name string) bool { return legacyGroups[name] }

// lookupGroup returns the group with wire name name: the names only (the
// tutorial API's numeric aliases are not part of the protocol), and a
// legacy group only where the operator allows it.
func (s *Server) lookupGroup(name string) (*dh.Group, error) {
	g, err := dh.LookupGroup(name)
	switch {
	case err != nil:
		return nil, err
	case g.Name() != name:
		return nil, fmt.Errorf("%w %q: name the group (%s)", dh.ErrUnknownGroup, truncate(name, 32), g.Name())
	case legacyGroups[name] && !s.cfg.AllowLegacyGroups:
		return nil, errGroupNotAllowed
	}
	return g, nil
}

// errorCodes maps the errors of dh and session to wire codes: the one table
// between the packages' sentinels and the protocol.
var errorCodes = []struct {
	err  error
	code wire.Code
	msg  string
}{
	{dh.ErrUnknownGroup, wire.CodeUnknownGroup, "unknown group"},
	{dh.ErrMalformedKey, wire.CodeMalformedKey, ""},
	{dh.ErrInvalidPublicKey, wire.CodeInvalidPublicKey, ""},
	{session.ErrGroupMismatch, wire.CodeGroupMismatch, "the key's group is not the room's"},
	{session.ErrKeySet, wire.CodeKeyAlreadySet, "you already sent a key in this room"},
	{session.ErrKeyReflected, wire.CodeKeyReflected, "this key is the other peer's: send your own"},
	{errGroupNotAllowed, wire.CodeGroupNotAllowed, "this relay does not allow the legacy group modp5; use x25519, p256 or modp14 and up"},
	{session.ErrHandshakeIncomplete, wire.CodeHandshakeIncomplete, "both peers must send their keys first"},
	{errRoomExpired, wire.CodeRoomExpired, "the room expired"},
	{session.ErrRoomNotFound, wire.CodeRoomNotFound, "no such room"},
	{session.ErrRoomExists, wire.CodeRoomExists, "a room with this ID exists; choose another"},
	{limits.ErrJoinRate, wire.CodeJoinRateLimited, "too many creates, joins and resumes from your address; wait and retry"},
	{limits.ErrRoomAttempts, wire.CodeTooManyAttempts, "too many join attempts on this room from your address; wait and retry"},
	{limits.ErrRoomsPerIP, wire.CodeTooManyRooms, "too many rooms created from your address; wait and retry"},
	{limits.ErrKeyReused, wire.CodeKeyReused, "this public key was used in another room; generate a new key pair"},
	{limits.ErrClosed, wire.CodeUnavailable, "the relay is shutting down; reconnect and resume"},
	{session.ErrRoomFull, wire.CodeRoomFull, "the room already has two peers"},
	{session.ErrTooManyRooms, wire.CodeTooManyRooms, "the relay holds its maximum number of rooms"},
	{session.ErrSourceOverBudget, wire.CodeMailboxFull, "too many bytes of your address's messages wait unacknowledged on this relay; send again once your peers have acknowledged some"},
	{session.ErrStoreOverBudget, wire.CodeMailboxFull, "the relay holds its maximum of unacknowledged message bytes; send again later"},
	{session.ErrMailboxFull, wire.CodeMailboxFull, "the peer has too many unacknowledged messages, or bytes of them; send again later"},
	{session.ErrMessagesLost, wire.CodeMessagesLost, "the relay's store lost messages it had accepted; they cannot be recovered"},
	{session.ErrBadToken, wire.CodeInvalidResume, "unknown peer or wrong resume token"},
	{session.ErrNotMember, wire.CodeInvalidResume, "unknown peer or wrong resume token"},
	{session.ErrResumeExpired, wire.CodeResumeExpired, "the resume grace period is over"},
	{session.ErrUnavailable, wire.CodeUnavailable, "the session store is unavailable; try again"},
	{limits.ErrUnavailable, wire.CodeUnavailable, "the admission limits are unavailable; try again"},
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
	return &wireError{code: wire.CodeInternal, msg: "internal error"}, false
}

// decodeFrame parses and checks a client frame: a JSON object with a known
// type, only the fields of that type, each of the right JSON type, and an id
// of at most 64 characters.
func decodeFrame(data []byte) (*wire.ClientFrame, *wireError) {
	if !utf8.Valid(data) {
		// RFC 6455 text frames are UTF-8; nothing of this frame, not even
		// its id, is echoed.
		return nil, newWireError(wire.CodeBadFrame, "a frame must be UTF-8 text")
	}
	if nestedDeeper(data, maxDepth) {
		// No client frame nests: refuse before a JSON decoder spends
		// time on it.
		return nil, newWireError(wire.CodeBadFrame, "a frame nests at most %d levels deep", maxDepth)
	}
	if f := decodeFast(data); f != nil {
		return f, nil
	}
	return decodeSlow(data)
}

// maxDepth bounds the nesting of a frame's JSON: a client frame is one
// object of strings and numbers (depth 1); bad ones may carry a little
// more, to be told which field is wrong.
const maxDepth = 8

// nestedDeeper reports whether the JSON text data nests arrays and objects
// more than max levels deep, counting brackets outside strings.
func nestedDeeper(data []byte, max int) bool {
	depth, inString := 0, false
	for i := 0; i < len(data); i++ {
		switch ch := data[i]; {
		case inString:
			if ch == '\\' {
				i++
			} else if ch == '"' {
				inString = false
			}
		case ch == '"':
			inString = true
		case ch == '{' || ch == '[':
			if depth++; depth > max {
				return true
			}
		case ch == '}' || ch == ']':
			depth--
		}
	}
	return false
}

// decodeSlow is decodeFrame for any frame: it finds what is wrong with a
// bad one.
func decodeSlow(data []byte) (*wire.ClientFrame, *wireError) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return nil, newWireError(wire.CodeBadFrame, "a frame must be one JSON object")
	}
	if name, dup := duplicateKey(data); dup {
		// Parsers disagree on which of two values counts; the relay and
		// every client must read a frame the same way, so none counts.
		return nil, newWireError(wire.CodeBadRequest, "field %q appears twice", truncate(name, 32))
	}
	var f wire.ClientFrame
	if raw, ok := fields["id"]; ok {
		if err := checkID(raw); err != nil {
			return nil, err
		}
		f.ID = raw
	}
	var typ string
	if err := json.Unmarshal(fields["type"], &typ); err != nil {
		return &f, newWireError(wire.CodeUnknownType, "missing or non-string type")
	}
	allowed, ok := allowedFields[wire.FrameType(typ)]
	if !ok {
		return &f, newWireError(wire.CodeUnknownType, "unknown type %q", truncate(typ, 32))
	}
	for name := range fields {
		if _, ok := allowed[name]; !ok && name != "type" && name != "id" {
			return &f, newWireError(wire.CodeBadRequest, "field %q is not allowed in %s", truncate(name, 32), typ)
		}
	}
	for name, required := range allowed {
		if _, ok := fields[name]; required && !ok {
			return &f, newWireError(wire.CodeBadRequest, "%s needs field %q", typ, name)
		}
	}
	if err := json.Unmarshal(data, &f); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &f, newWireError(wire.CodeBadRequest, "field %q has the wrong type", te.Field)
		}
		return &f, newWireError(wire.CodeBadRequest, "malformed field")
	}
	for name := range allowed {
		if bytes.Equal(fields[name], []byte("null")) {
			return &f, newWireError(wire.CodeBadRequest, "field %q must not be null", name)
		}
	}
	f.Type = wire.FrameType(typ)
	return &f, nil
}

// duplicateKey reports whether the JSON object data (valid JSON) names a
// member twice at its top level, and which.
func duplicateKey(data []byte) (string, bool) {
	d := json.NewDecoder(bytes.NewReader(data))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	seen := map[string]bool{}
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return "", false
		}
		name, _ := t.(string)
		if seen[name] {
			return name, true
		}
		seen[name] = true
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			return "", false
		}
	}
	return "", false
}

// checkID accepts a string of at most 64 characters (Unicode code points)
// or an integer; null is neither.
func checkID(raw json.RawMessage) *wireError {
	var s *string
	if json.Unmarshal(raw, &s) == nil && s != nil {
		if utf8.RuneCountInString(*s) > 64 {
			return newWireError(wire.CodeBadRequest, "id longer than 64 characters")
		}
		return nil
	}
	if _, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return nil
	}
	return newWireError(wire.CodeBadRequest, "id must be a string or an integer")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// fieldNames are the client frame's field names, exactly; a frame whose
// keys are not all among them goes to decodeSlow.
var fieldNames = [...]string{"type", "id", "group", "room", "peer", "resume_token", "last_seq", "sent_seq", "public_key", "body", "seq"}

// present reports, per fieldNames entry, whether f's field is set.
func present(f *wire.ClientFrame) [len(fieldNames)]bool {
	return [...]bool{f.Type != "", f.ID != nil, f.Group != nil, f.Room != nil, f.Peer != nil,
		f.ResumeToken != nil, f.LastSeq != nil, f.SentSeq != nil, f.PublicKey != nil, f.Body != nil, f.Seq != nil}
}

// decodeFast decodes a well-formed frame in one pass, for the common case;
// it returns nil for anything decodeSlow must judge (any error, and any
// doubt: escaped or unknown keys, nulls). What it accepts, decodeSlow
// accepts with the same result (FuzzDecodeFrame checks it).
func decodeFast(data []byte) *wire.ClientFrame {
	var f wire.ClientFrame
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
				if _, ok := allowed[name]; (!ok && i > 1) || seen[i] {
					return false // not allowed, or twice: decodeSlow says which
				}
				seen[i] = true
				return true
			}
		}
		return false
	}) {
		return nil
	}
	set := present(&f)
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
