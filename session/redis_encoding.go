package session

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// decodeRoom decodes a snapshot reply of the scripts (lib.lua's snapshot,
// after the status).
func decodeRoom(id string, v []string) (Room, error) {
	bad := func(what string) (Room, error) {
		return Room{}, fmt.Errorf("session: redis: malformed room %s", what)
	}
	const head = 10 // fields before the members'
	if len(v) < head {
		return bad("reply")
	}
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	ttl, grace, maxp, seq, exp, maxb, n := num(v[0]), num(v[1]), num(v[2]), num(v[5]), num(v[6]), num(v[7]), num(v[9])
	empty := num(v[8])
	if ttl < 0 || grace < 0 || maxp < 0 || seq < 0 || exp < 0 || maxb < 0 || empty < 0 || n < 0 || n > 2 || len(v) != head+6*int(n) {
		return bad("fields")
	}
	r := Room{
		ID:        id,
		Config:    RoomConfig{Group: v[3], TTL: time.Duration(ttl), ResumeGrace: time.Duration(grace), MaxPending: int(maxp), MaxPendingBytes: maxb, EmptyTTL: time.Duration(empty)},
		Group:     v[4],
		LastSeq:   uint64(seq),
		ExpiresAt: time.UnixMilli(exp),
		Members:   make([]Member, n),
	}
	for i := range r.Members {
		f := v[head+6*i:]
		m := Member{ID: f[0], PublicKey: f[2], Connected: f[3] == "1"}
		if m.Generation = uint64(num(f[5])); num(f[5]) < 1 {
			return bad("Generation")
		}
		tok, err := hex.DecodeString(f[1])
		if err != nil || len(tok) != len(m.TokenHash) {
			return bad("token hash")
		}
		copy(m.TokenHash[:], tok)
		if !m.Connected {
			dat := num(f[4])
			if dat < 0 {
				return bad("DisconnectedAt")
			}
			m.DisconnectedAt = time.UnixMilli(dat)
		}
		r.Members[i] = m
	}
	return r, nil
}

// eventVersion is the first byte of an encoded event.
const eventVersion = 1

// encodeEvent encodes ev for Pub/Sub: eventVersion, then Type, Room, Peer,
// Key, Group, Reason and Conn, each as a uvarint length and bytes, Seq as
// a uvarint, and Body last, without a length.
func encodeEvent(ev Event) []byte {
	strs := [...]string{string(ev.Type), ev.Room, ev.Peer, ev.Key, ev.Group, string(ev.Reason), ev.Conn}
	n := 1 + binary.MaxVarintLen64 + len(ev.Body)
	for _, s := range strs {
		n += binary.MaxVarintLen64 + len(s)
	}
	b := make([]byte, 0, n)
	b = append(b, eventVersion)
	for _, s := range strs {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, ev.Seq)
	return append(b, ev.Body...)
}

// decodeEvent decodes what encodeEvent encoded.
func decodeEvent(p string) (Event, error) {
	malformed := errors.New("session: redis: malformed event")
	if len(p) == 0 || p[0] != eventVersion {
		return Event{}, malformed
	}
	b := []byte(p[1:])
	var strs [7]string
	for i := range strs {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return Event{}, malformed
		}
		strs[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	seq, k := binary.Uvarint(b)
	if k <= 0 {
		return Event{}, malformed
	}
	return Event{
		Type: EventType(strs[0]), Room: strs[1], Peer: strs[2], Key: strs[3],
		Group: strs[4], Reason: Reason(strs[5]), Conn: strs[6], Seq: seq, Body: b[k:],
	}, nil
}
