package client

import (
	"encoding/json"
	"strconv"
)

// Frame types of docs/protocol.md §2.
const (
	typeCreate = "create"
	typeJoin   = "join"
	typeResume = "resume"
	typeKey    = "key"
	typeMsg    = "msg"
	typeAck    = "ack"
	typeLeave  = "leave"

	typeRoom              = "room"
	typePeerJoined        = "peer_joined"
	typePeerLeft          = "peer_left"
	typeKeyOK             = "key_ok"
	typePeerKey           = "peer_key"
	typeHandshakeComplete = "handshake_complete"
	typeSent              = "sent"
	typeLeft              = "left"
	typeError             = "error"
)

// outFrame is a frame to the relay. The relay refuses unknown fields, so
// every field but type is omitted when zero: each frame type sets only its
// own fields (a msg body, a seq or an id is never zero or empty).
type outFrame struct {
	Type        string `json:"type"`
	ID          uint64 `json:"id,omitempty"`
	Group       string `json:"group,omitempty"`
	Room        string `json:"room,omitempty"`
	Peer        string `json:"peer,omitempty"`
	ResumeToken string `json:"resume_token,omitempty"`
	LastSeq     uint64 `json:"last_seq,omitempty"`
	PublicKey   string `json:"public_key,omitempty"`
	Body        string `json:"body,omitempty"`
	Seq         uint64 `json:"seq,omitempty"`
}

// marshal encodes the frame.
func (f *outFrame) marshal() ([]byte, error) { return json.Marshal(f) }

// inFrame is a frame from the relay: the union of the fields of §2.2.
// Unknown fields are ignored, so that a newer relay can add some.
type inFrame struct {
	Type        string          `json:"type"`
	ID          json.RawMessage `json:"id"`
	Code        string          `json:"code"`
	Message     string          `json:"message"`
	Room        string          `json:"room"`
	Peer        string          `json:"peer"`
	ResumeToken string          `json:"resume_token"`
	Group       string          `json:"group"`
	Peers       int             `json:"peers"`
	Resumed     bool            `json:"resumed"`
	Reason      string          `json:"reason"`
	PublicKey   string          `json:"public_key"`
	Seq         uint64          `json:"seq"`
	Body        string          `json:"body"`

	raw []byte // the frame as received
}

// parseFrame decodes a relay frame. A frame that is not a JSON object with
// a string type is an error.
func parseFrame(data []byte) (*inFrame, error) {
	f := &inFrame{raw: data}
	if err := json.Unmarshal(data, f); err != nil {
		return nil, err
	}
	if f.Type == "" {
		return nil, errNoType
	}
	return f, nil
}

type frameError string

func (e frameError) Error() string { return string(e) }

const errNoType = frameError("frame has no type")

// idKey returns the key under which a reply's id is matched with its
// request: the decimal digits of an integer id, the text of a string id,
// or "" when there is none.
func idKey(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		if u, err := strconv.ParseUint(n.String(), 10, 64); err == nil {
			return strconv.FormatUint(u, 10)
		}
		return n.String()
	}
	return string(raw)
}

// relayError returns the *Error an error frame carries.
func (f *inFrame) relayError() *Error {
	return &Error{Code: f.Code, Message: f.Message}
}
