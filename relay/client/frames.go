package client

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/keyrelay/keyrelay/wire"
)

// outFrame builds a frame to the relay. The relay refuses unknown fields
// and nulls, so every optional field is set only when it has a value: each
// frame type sets only its own fields (a msg body, a seq or an id is never
// zero or empty).
type outFrame struct {
	Type        wire.FrameType
	Group       string
	Room        string
	Peer        string
	ResumeToken string
	LastSeq     uint64
	SentSeq     uint64
	PublicKey   string
	Body        string
	Seq         uint64
}

// frame returns f as the wire's client frame, with id (0 for none).
func (f *outFrame) frame(id uint64) *wire.ClientFrame {
	w := &wire.ClientFrame{Type: f.Type, Group: opt(f.Group), Room: opt(f.Room), Peer: opt(f.Peer),
		ResumeToken: opt(f.ResumeToken), LastSeq: opt(f.LastSeq), SentSeq: opt(f.SentSeq), PublicKey: opt(f.PublicKey),
		Body: opt(f.Body), Seq: opt(f.Seq)}
	if id != 0 {
		w.ID = strconv.AppendUint(nil, id, 10)
	}
	return w
}

// opt returns nil for the zero value, else a pointer to v.
func opt[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

// marshal encodes the frame with id (0 for none).
func (f *outFrame) marshal(id uint64) ([]byte, error) { return json.Marshal(f.frame(id)) }

// inFrame is a frame from the relay. Unknown fields are ignored, so that a
// newer relay can add some.
type inFrame struct {
	wire.ServerFrame
	raw []byte // the frame as received
}

// group returns the frame's group, or "" for none.
func (f *inFrame) group() string {
	if f.Group == nil {
		return ""
	}
	return *f.Group
}

// resumeGrace returns the room frame's resume grace period, or
// DefaultResumeGrace if it has none.
func (f *inFrame) resumeGrace() time.Duration {
	if f.ResumeGraceMS <= 0 {
		return DefaultResumeGrace
	}
	return time.Duration(f.ResumeGraceMS) * time.Millisecond
}

// resumed reports the frame's resumed flag.
func (f *inFrame) resumed() bool { return f.Resumed != nil && *f.Resumed }

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
