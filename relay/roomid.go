package relay

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"

	"github.com/google/uuid"
)

// newToken returns a resume token (32 random bytes, base64url) and its
// SHA-256.
func newToken() (string, [32]byte, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", [32]byte{}, err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), sha256.Sum256(b[:]), nil
}

// maxRoomIDLength bounds client-chosen room IDs.
const maxRoomIDLength = 64

// roomID reports whether s can name a room: a relay-made ID, or, when the
// relay allows them, a client-chosen one.
func (s *Server) roomID(id string) bool {
	return isRoomID(id) || (s.cfg.ClientRoomIDs && s.clientRoomID(id))
}

// clientRoomID reports whether id is a well-formed client-chosen room ID.
func (s *Server) clientRoomID(id string) bool {
	if len(id) < s.cfg.MinRoomIDLength || len(id) > maxRoomIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch b := id[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '-', b == '_':
		default:
			return false
		}
	}
	return true
}

// isRoomID reports whether s is a UUID in the canonical lowercase form the
// relay hands out.
func isRoomID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}
