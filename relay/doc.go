// Package relay is keyrelay's WebSocket relay: it pairs two peers in a room,
// validates their Diffie-Hellman public keys with package dh before
// forwarding them, and then forwards their end-to-end encrypted messages.
// It never sees a private key or a plaintext. docs/protocol.md specifies
// the protocol completely; package wire holds its vocabulary (frame types,
// frames, error and close codes) and its flow in a comment.
//
// Bad input gets an error frame with a stable code (wire.Code) and leaves
// the connection, the room and the peer untouched; only an oversized
// message (1009), a slow reader (4408), too many connections from one IP
// (4429) and a missing subprotocol (4400) close the connection, besides a
// newer connection resuming the same seat (4409), the relay shutting down
// (1001) and the relay losing its session store (1013).
//
// # Shape
//
// A [Server] is an http.Handler and holds no listener (server.go). Each
// connection (conn.go) has a reader loop (the handler's goroutine), a send
// queue whose writer goroutine runs only while frames wait
// (sendqueue.go), a keepalive timer, and, while it is in a room, a
// forwarder that turns the room's events from the session store into
// frames (room.go). The relay depends only on the [session.Store]
// interface and on its own [Limiter]: with the memory store it serves one
// process; with a shared store, the forwarder is how a message sent to one
// instance reaches the peer connected to another.
//
// # The life of a message
//
// Where each step happens, for a newcomer who wants to follow one:
//
//  1. Decoded: conn.serve (conn.go) reads the WebSocket frame, checks the
//     frame rate (bucket.go), and decodeFrame (protocol.go) turns the JSON
//     into a wire.ClientFrame, refusing what is malformed with the codes of
//     the one error table, errorCodes (protocol.go).
//  2. Handled: conn.handle (handlers.go) dispatches by type. Before any
//     message, handleKey (handlers.go) validates each peer's public key with
//     dh.Group.ParsePublicKey (dh/group.go, the rules of NIST SP 800-56A),
//     stores it (Store.SetKey) and forwards it (peer_key).
//  3. Stored: handleMsg (handlers.go) calls Store.Append (session/memory.go
//     or session/redis.go with session/redis/append.lua), which stores the
//     body in the recipient's mailbox and announces it to the room in one
//     atomic step; the sender then gets sent with the sequence number.
//  4. Forwarded: the recipient's connection, on whichever instance holds
//     it, receives the announcement in forwardEvents (room.go) and queues a
//     msg frame (conn.send, sendqueue.go); the send queue's writer writes
//     it. A member that resumes gets its mailbox from Store.Pending in
//     conn.entered (room.go) instead.
//  5. Removed: the recipient's ack reaches handleAck (handlers.go), and
//     Store.Ack (session/memory.go, session/redis.go with ack.lua) drops
//     every message up to that sequence number from its mailbox.
package relay
