// Package relay is keyrelay's WebSocket relay: it pairs two peers in a room,
// validates their Diffie-Hellman public keys with package dh before
// forwarding them, and then forwards their end-to-end encrypted messages.
// It never sees a private key or a plaintext. docs/protocol.md specifies
// the protocol completely; this comment summarises it.
//
// Protocol flow (JSON text frames, subprotocol "keyrelay.v1", at /v1/ws):
//
//	A → create {group}            A ← room {room, peer, resume_token, …}
//	A → key {public_key}          A ← key_ok          (validated and stored)
//	B → join {room}               B ← room {…}, peer_key {A's key}
//	                              A ← peer_joined
//	B → key {public_key}          B ← key_ok, handshake_complete
//	                              A ← peer_key {B's key}, handshake_complete
//	A → msg {body}                A ← sent {seq}      (stored until acked)
//	                              B ← msg {seq, body}
//	B → ack {seq}
//	(B drops)                     A ← peer_left {reason: dropped}
//	B' → resume {room, peer, resume_token, last_seq}
//	                              B' ← room {resumed}, peer_key, handshake_complete, msg…
//	                              A ← peer_joined {resumed}
//
// Bad input gets an error frame with a stable code (see the Code
// constants) and leaves the connection, the room and the peer untouched;
// only an oversized frame (1009), a slow reader (4408), too many
// connections from one IP (4429) and a missing subprotocol (4400) close the
// connection.
//
// # Shape
//
// A [Server] is an http.Handler and holds no listener. Each connection has a
// reader loop (the handler's goroutine), a writer goroutine fed by a bounded
// queue, a pinger, and, while it is in a room, a pump that turns the room's
// events from the session store into frames. The relay depends only on the
// [session.Store] interface: with the memory store it serves one process;
// with a shared store, the pump is how a message sent to one instance
// reaches the peer connected to another.
package relay
