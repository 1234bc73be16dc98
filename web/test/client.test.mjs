// Unit tests of web/keyrelay.js's Client against a scripted fake relay (a
// fake WebSocket class passed to Client.connect): request/reply matching,
// relay errors, the handshake with a peer simulated by the test, message
// decryption, duplicate and bad messages, batched acks, and a relay that
// swaps or corrupts the peer's key.
import test from "node:test";
import assert from "node:assert/strict";

import * as kr from "../keyrelay.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Makes a fake WebSocket class; relay(ws, frame) answers each client frame. */
function fakeWebSocket({ protocol = "keyrelay.v1", relay }) {
  const sockets = [];
  class FakeWS extends EventTarget {
    constructor(url, protocols) {
      super();
      this.url = url;
      this.offered = protocols;
      this.protocol = "";
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
      setTimeout(() => {
        this.protocol = protocol;
        this.readyState = 1;
        this.dispatchEvent(new Event("open"));
      }, 0);
    }
    send(data) {
      if (this.readyState !== 1) throw new Error("not open");
      const f = JSON.parse(data);
      this.sent.push(f);
      setTimeout(() => relay(this, f), 0);
    }
    deliver(frame) {
      this.dispatchEvent(new MessageEvent("message", { data: JSON.stringify(frame) }));
    }
    close(code = 1000, reason = "") {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.dispatchEvent(Object.assign(new Event("close"), { code, reason })), 0);
    }
  }
  FakeWS.sockets = sockets;
  return FakeWS;
}

const ROOM = "6f1c0b8e-58a4-4d8e-9c6e-2f2b6c3a9d10";

/** A relay that answers create and key like the real one, without a peer. */
function basicRelay(extra = () => false) {
  return (ws, f) => {
    if (extra(ws, f)) return;
    switch (f.type) {
      case "create":
        ws.deliver({ type: "room", id: f.id, room: ROOM, peer: "p1", resume_token: "tok", group: f.group || "", peers: 1, resumed: false });
        break;
      case "key":
        ws.deliver({ type: "key_ok", group: f.group });
        ws.lastKey = f.public_key;
        ws.deliver({ type: "key_ok", id: f.id, group: f.group });
        break;
      case "msg":
        ws.seq = (ws.seq || 100) + 1;
        ws.deliver({ type: "sent", id: f.id, seq: ws.seq });
        break;
      case "leave":
        ws.deliver({ type: "left", id: f.id });
        break;
    }
  };
}

test("connect offers keyrelay.v1 and refuses another subprotocol", async () => {
  const WS = fakeWebSocket({ protocol: "", relay: () => {} });
  await assert.rejects(kr.Client.connect("ws://x/v1/ws", { WebSocket: WS }), { code: "connect_failed" });
  assert.deepEqual(WS.sockets[0].offered, ["keyrelay.v1"]);
  assert.equal(WS.sockets[0].readyState, 3);
});

test("a relay error frame rejects its request with .code", async () => {
  const WS = fakeWebSocket({
    relay: (ws, f) => ws.deliver({ type: "error", id: f.id, code: "too_many_rooms", message: "the relay is full" }),
  });
  const c = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS });
  await assert.rejects(c.create("x25519"), (e) => e instanceof kr.KeyrelayError && e.code === "too_many_rooms" && e.fromRelay && e.relayMessage === "the relay is full");
  await assert.rejects(c.create("nope"), { code: "unknown_group" });
  await assert.rejects(c.send("x"), { code: "not_in_room" });
  await c.close();
  await assert.rejects(c.create(), { code: "closed" });
});

test("an unsolicited error (room_expired) is an event and ends the room", async () => {
  const WS = fakeWebSocket({ relay: basicRelay() });
  const c = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS });
  await c.create("x25519");
  assert.equal(c.room.room, ROOM);
  const ev = c.nextEvent("error");
  WS.sockets[0].deliver({ type: "error", code: "room_expired", message: "expired" });
  assert.deepEqual(await ev, { type: "error", code: "room_expired", message: "expired" });
  assert.equal(c.room, null);
  await c.close();
});

/** Sets up a client in a room with a simulated peer; returns helpers. */
async function handshaken(group = "x25519") {
  const WS = fakeWebSocket({ relay: basicRelay() });
  const c = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS });
  await c.create(group);
  const ws = WS.sockets[0];
  const peer = await kr.generateKeyPair(group);
  const hsP = c.handshake();
  // The relay forwards the peer's key once ours is stored.
  while (!ws.lastKey) await sleep(1);
  ws.deliver({ type: "peer_joined", resumed: false });
  ws.deliver({ type: "peer_key", public_key: peer.publicKeyHex, group });
  ws.deliver({ type: "handshake_complete", group });
  const hs = await hsP;
  const z = await kr.sharedSecret(peer, ws.lastKey);
  const peerChannel = await kr.Channel.create(group, z, peer.publicKeyHex, ws.lastKey);
  return { c, ws, peer, hs, peerChannel };
}

test("handshake with a simulated peer, messages, duplicates, bad messages and batched acks", async () => {
  const { c, ws, peer, hs, peerChannel } = await handshaken("x25519");
  assert.equal(hs.group, "x25519");
  assert.equal(hs.peerPublicKey, peer.publicKeyHex);
  assert.equal(hs.safetyNumber, await kr.safetyNumber("x25519", peer.publicKeyHex, ws.lastKey));
  const keyFrame = ws.sent.find((f) => f.type === "key");
  assert.deepEqual(Object.keys(keyFrame).sort(), ["group", "id", "public_key", "type"]);

  // Events that arrived before any consumer wait for the first one.
  const it = c.events();
  assert.deepEqual((await it.next()).value, { type: "peer_joined", resumed: false });
  assert.deepEqual((await it.next()).value, { type: "peer_key", publicKey: peer.publicKeyHex, group: "x25519" });

  // The client's message: sealed with counter 0, opened by the peer.
  const seq = await c.send("to the peer");
  assert.equal(seq, 101);
  const msg = ws.sent.find((f) => f.type === "msg");
  assert.equal(kr.utf8Decode(await peerChannel.open(kr.base64ToBytes(msg.body))), "to the peer");

  // 20 messages from the peer; seq 5 again (a duplicate); one tampered.
  for (let i = 1; i <= 20; i++) {
    ws.deliver({ type: "msg", seq: i, body: kr.bytesToBase64(await peerChannel.seal(`m${i}`)) });
  }
  ws.deliver({ type: "msg", seq: 5, body: "AAAA" });
  const bad = await peerChannel.seal("tampered");
  bad[10] ^= 1;
  ws.deliver({ type: "msg", seq: 21, body: kr.bytesToBase64(bad) });
  for (let i = 1; i <= 20; i++) {
    const { value } = await it.next();
    assert.deepEqual([value.type, value.seq, value.text], ["message", i, `m${i}`]);
  }
  const { value: badEv } = await it.next();
  assert.deepEqual([badEv.type, badEv.code, badEv.seq, badEv.cause], ["error", "bad_message", 21, "decrypt"]);
  // One ack at 16 at once, then one for the rest after a short delay.
  assert.deepEqual(ws.sent.filter((f) => f.type === "ack").map((f) => f.seq), [16]);
  await sleep(400);
  assert.deepEqual(ws.sent.filter((f) => f.type === "ack").map((f) => f.seq), [16, 21]);
  await it.return();
  await c.close();
});

test("a relay that swaps the peer's key is caught", async () => {
  const { c, ws } = await handshaken("p256");
  const other = await kr.generateKeyPair("p256");
  ws.deliver({ type: "peer_key", public_key: other.publicKeyHex, group: "p256" });
  await sleep(20);
  await assert.rejects(c.send("x"), { code: "peer_key_changed" });
  await c.close();
});

test("a relay that forwards an invalid peer key fails the handshake", async () => {
  const WS = fakeWebSocket({ relay: basicRelay() });
  const c = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS });
  await c.create("modp14");
  const ws = WS.sockets[0];
  const hsP = c.handshake();
  while (!ws.lastKey) await sleep(1);
  ws.deliver({ type: "peer_key", public_key: "b", group: "modp14" }); // not in the subgroup
  ws.deliver({ type: "handshake_complete", group: "modp14" });
  await assert.rejects(hsP, { code: "invalid_public_key" });
  // Its own key reflected back is refused too.
  const WS2 = fakeWebSocket({ relay: basicRelay() });
  const c2 = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS2 });
  await c2.create("x25519");
  const ws2 = WS2.sockets[0];
  const hs2 = c2.handshake();
  while (!ws2.lastKey) await sleep(1);
  ws2.deliver({ type: "peer_key", public_key: ws2.lastKey, group: "x25519" });
  ws2.deliver({ type: "handshake_complete", group: "x25519" });
  await assert.rejects(hs2, { code: "same_key" });
  await c.close();
  await c2.close();
});

test("a dropped connection rejects waiting requests and emits closed; resume sends last_seq", async () => {
  const { c, ws, peerChannel } = await handshaken("x25519");
  const events = [];
  c.on("*", (ev) => events.push(ev));
  ws.deliver({ type: "msg", seq: 7, body: kr.bytesToBase64(await peerChannel.seal("before")) });
  await sleep(10);
  ws.close(1001, "shutting down");
  await sleep(10);
  // The events that waited for a consumer come first.
  assert.deepEqual(events.map((e) => e.type), ["peer_joined", "peer_key", "message", "closed"]);
  assert.equal(events.at(-1).code, 1001);
  await assert.rejects(c.send("x"), { code: "disconnected" });
  // resume dials again (a new fake socket) and sends resume with last_seq 7.
  const WS = ws.constructor;
  const p = c.resume();
  while (WS.sockets.length < 2 || WS.sockets[1].sent.length === 0) await sleep(1);
  const ws2 = WS.sockets[1];
  const rf = ws2.sent[0];
  assert.deepEqual({ ...rf, id: 0 }, { type: "resume", room: ROOM, peer: "p1", resume_token: "tok", last_seq: 7, id: 0 });
  ws2.deliver({ type: "room", id: rf.id, room: ROOM, peer: "p1", resume_token: "tok", group: "x25519", peers: 2, resumed: true });
  await p;
  // The Channel survives: the peer opens what the client sends after resuming.
  const seq = c.send("after");
  await sleep(5);
  const msg = ws2.sent.find((f) => f.type === "msg");
  assert.equal(kr.utf8Decode(await peerChannel.open(kr.base64ToBytes(msg.body))), "after");
  assert.equal(await seq, 101); // the fake relay's sent reply
  await c.close();
});

test("relayURLFromLocation", () => {
  assert.equal(kr.relayURLFromLocation({ protocol: "https:", host: "relay.example:8443" }), "wss://relay.example:8443/v1/ws");
  assert.equal(kr.relayURLFromLocation({ protocol: "http:", host: "localhost:8080" }), "ws://localhost:8080/v1/ws");
});

test("exports the names the page codes against", () => {
  assert.deepEqual([...kr.GROUPS], ["modp5", "modp14", "modp15", "modp16", "modp17", "modp18", "x25519", "p256"]);
  assert.equal(kr.DEFAULT_GROUP, "x25519");
  for (const name of ["generateKeyPair", "sharedSecret", "deriveKey", "safetyNumber", "Channel", "Client", "bytesToHex", "hexToBytes", "bytesToBase64", "base64ToBytes"]) {
    assert.equal(typeof kr[name], "function", name);
  }
});

test("keyrelay.js re-exports the API of dh.js, the same objects", async () => {
  const dh = await import("../dh.js");
  const internal = new Set(["checkGroup"]); // used by the client, not re-exported
  for (const name of Object.keys(dh)) {
    if (internal.has(name)) continue;
    assert.ok(name in kr, `keyrelay.js does not export ${name}`);
    assert.equal(kr[name], dh[name], name);
  }
});
