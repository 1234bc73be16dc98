package wire

import "encoding/json"

// ClientFrame is any frame a client sends (docs/protocol.md §2.1). Which
// fields a frame may carry depends on its Type; a nil field is absent, so
// that a decoder can tell a missing field from a zero one. ID is copied
// into the relay's direct reply as it was received.
type ClientFrame struct {
	Type        FrameType       `json:"type"`
	ID          json.RawMessage `json:"id,omitempty"`
	Group       *string         `json:"group,omitempty"`
	Room        *string         `json:"room,omitempty"`
	Peer        *string         `json:"peer,omitempty"`
	ResumeToken *string         `json:"resume_token,omitempty"`
	LastSeq     *uint64         `json:"last_seq,omitempty"`
	SentSeq     *uint64         `json:"sent_seq,omitempty"`
	PublicKey   *string         `json:"public_key,omitempty"`
	Body        *string         `json:"body,omitempty"`
	Seq         *uint64         `json:"seq,omitempty"`
}

// ServerFrame is any frame the relay sends (docs/protocol.md §2.2): the
// union of every type's fields. Zero fields are omitted, except Group and
// Resumed, which the frames that carry them always carry. A client must
// ignore fields it does not know, so that a newer relay can add some.
type ServerFrame struct {
	Type        FrameType       `json:"type"`
	ID          json.RawMessage `json:"id,omitempty"`
	Code        Code            `json:"code,omitempty"`
	Message     string          `json:"message,omitempty"`
	Room        string          `json:"room,omitempty"`
	Peer        string          `json:"peer,omitempty"`
	ResumeToken string          `json:"resume_token,omitempty"`
	Group       *string         `json:"group,omitempty"`
	Peers       int             `json:"peers,omitempty"`
	Resumed     *bool           `json:"resumed,omitempty"`
	Reason      Reason          `json:"reason,omitempty"`
	PublicKey   string          `json:"public_key,omitempty"`
	Seq         uint64          `json:"seq,omitempty"`
	Body        string          `json:"body,omitempty"`

	// ResumeGraceMS, in a room frame, is the room's resume grace period in
	// milliseconds: how long the relay keeps the member's seat after its
	// connection drops (docs/protocol.md §3.8). A client retries its
	// resume, across instances, for that long after a drop. Zero (absent)
	// from a relay older than the field: assume 2 minutes.
	ResumeGraceMS int64 `json:"resume_grace_ms,omitempty"`
}
