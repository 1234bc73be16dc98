// Unit tests of web/keyrelay.js's Client against a scripted fake relay (a
// fake WebSocket class passed to Client.connect): request/reply matching,
// relay errors, the handshake with a peer simulated by the test, message
// decryption, duplicate and bad messages, batched acks, a relay that swaps,
// corrupts or reflects the peer's key or changes the group, messages sent
// again after a drop, close 4409 and a peer whose grace period expired.
import test from "node:test";
import assert from "node:assert/strict";

import * as kr from "../keyrelay.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Makes a fake WebSocket class; relay(ws, frame) answers each client frame.
 * A socket whose URL is in down fails to connect, as a stopped instance.
 */
function fakeWebSocket({ protocol = "keyrelay.v1", relay, down = new Set() }) {
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
      if (down.has(url)) {
        setTimeout(() => {
          this.readyState = 3;
          this.dispatchEvent(new Event("error"));
        }, 0);
        return;
      }
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
async function handshaken(group = "x25519", extra = undefined) {
  const WS = fakeWebSocket({ relay: basicRelay(extra) });
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
  await c.close();
});

test("the client refuses its own key sent back as the peer's (reflection): same_key", async () => {
  const WS = fakeWebSocket({ relay: basicRelay() });
  const c = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS });
  await c.create("x25519");
  const ws = WS.sockets[0];
  const hs = c.handshake();
  while (!ws.lastKey) await sleep(1);
  ws.deliver({ type: "peer_key", public_key: ws.lastKey.toUpperCase(), group: "x25519" }); // same bytes, other spelling
  ws.deliver({ type: "handshake_complete", group: "x25519" });
  await assert.rejects(hs, { code: "same_key" });
  await assert.rejects(c.send("x"), { code: "same_key" });
  await c.close();
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
  // Wait for the frame (bounded): under load the send takes more than a tick.
  for (let i = 0; i < 2000 && !ws2.sent.some((f) => f.type === "msg"); i++) await sleep(1);
  const msg = ws2.sent.find((f) => f.type === "msg");
  assert.equal(kr.utf8Decode(await peerChannel.open(kr.base64ToBytes(msg.body))), "after");
  assert.equal(await seq, 101); // the fake relay's sent reply
  await c.close();
});

// ---------------------------------------------------------------------------
// Group pinning (issue 12 C1, C2): a relay or proxy that changes the group
// is refused, and so is a legacy group the application did not allow.

/** A relay that also answers join, with the room reply room(f) returns. */
function joinRelay(roomGroup) {
  return basicRelay((ws, f) => {
    if (f.type !== "join") return false;
    ws.deliver({ type: "room", id: f.id, room: ROOM, peer: "p2", resume_token: "tok2", group: roomGroup, peers: 2, resumed: false });
    return true;
  });
}

test("create pins its group: a relay that rewrites it (x25519 to modp5) is refused", async () => {
  // The downgrade of issue 12 §3: the relay creates the room in modp5.
  const WS = fakeWebSocket({
    relay: basicRelay((ws, f) => {
      if (f.type !== "create") return false;
      ws.deliver({ type: "room", id: f.id, room: ROOM, peer: "p1", resume_token: "tok", group: "modp5", peers: 1, resumed: false });
      return true;
    }),
  });
  const c = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS, allowLegacyGroups: true }); // refused even so
  const events = [];
  c.on("error", (ev) => events.push(ev));
  await assert.rejects(c.create("x25519"), (e) => e instanceof kr.KeyrelayError && e.code === kr.LocalCode.GROUP_CHANGED &&
    e.expected === "x25519" && e.got === "modp5" && !e.fromRelay && /from x25519 to modp5/.test(e.message));
  assert.equal(c.room, null);
  await sleep(5);
  const ws = WS.sockets[0];
  assert.deepEqual(ws.sent.map((f) => f.type), ["create", "leave"], "the client left the room");
  assert.equal(ws.sent[0].group, "x25519");
  assert.deepEqual(events.map((e) => [e.code, e.expected, e.got]), [["group_changed", "x25519", "modp5"]]);
  await assert.rejects(c.handshake(), { code: "not_in_room" });
  await c.close();
});

test("create without a group asks for and pins the client's default group", async () => {
  const WS = fakeWebSocket({ relay: basicRelay() });
  const c = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS, group: "p256" });
  assert.equal((await c.create()).group, "p256");
  assert.equal(WS.sockets[0].sent[0].group, "p256");
  await c.close();
  // A reply to create without the group asked for is refused too.
  const WS2 = fakeWebSocket({
    relay: basicRelay((ws, f) => {
      if (f.type !== "create") return false;
      ws.deliver({ type: "room", id: f.id, room: ROOM, peer: "p1", resume_token: "tok", group: "", peers: 1, resumed: false });
      return true;
    }),
  });
  const c2 = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS2 });
  await assert.rejects(c2.create("x25519"), { code: "group_changed", expected: "x25519", got: "" });
  await c2.close();
});

test("a key_ok, peer_key or handshake_complete in another group is refused", async () => {
  const x = await kr.generateKeyPair("x25519");
  const m = await kr.generateKeyPair("modp5");
  const cases = [
    {
      name: "key_ok",
      relay: (ws, f) => {
        if (f.type !== "key") return false;
        ws.lastKey = f.public_key;
        ws.deliver({ type: "key_ok", id: f.id, group: "modp5" });
        return true;
      },
      after: () => {},
    },
    { name: "peer_key", after: (ws) => ws.deliver({ type: "peer_key", public_key: m.publicKeyHex, group: "modp5" }) },
    {
      name: "handshake_complete",
      after: (ws) => {
        ws.deliver({ type: "peer_key", public_key: x.publicKeyHex, group: "x25519" });
        ws.deliver({ type: "handshake_complete", group: "modp5" });
      },
    },
    { name: "peer_key without a group", after: (ws) => ws.deliver({ type: "peer_key", public_key: x.publicKeyHex }), got: "" },
  ];
  for (const tc of cases) {
    const WS = fakeWebSocket({ relay: basicRelay(tc.relay) });
    const c = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS });
    const events = [];
    c.on("error", (ev) => events.push(ev));
    await c.create("x25519");
    const ws = WS.sockets[0];
    const got = tc.got ?? "modp5";
    const refused = assert.rejects(c.handshake(), (e) => e.code === "group_changed" && e.expected === "x25519" && e.got === got, tc.name);
    while (!ws.lastKey) await sleep(1);
    tc.after(ws);
    await refused;
    assert.equal(c.room, null, tc.name);
    assert.deepEqual(events.map((e) => e.code), ["group_changed"], tc.name);
    await sleep(5);
    assert.equal(ws.sent.at(-1).type, "leave", tc.name);
    await c.close();
  }
});

test("join pins the group of the share link, and refuses a room in another", async () => {
  const WS = fakeWebSocket({ relay: joinRelay("modp14") });
  const c = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS });
  await assert.rejects(c.join(ROOM, { group: "x25519" }), { code: "group_changed", expected: "x25519", got: "modp14" });
  assert.equal(c.room, null);
  await c.close();

  // The same group: joined, pinned.
  const WS2 = fakeWebSocket({ relay: joinRelay("x25519") });
  const c2 = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS2 });
  assert.equal((await c2.join(ROOM, { group: "x25519" })).group, "x25519");
  await c2.close();

  // A room whose group is not fixed yet: the link's group is pinned, and
  // the key goes out in it (every key frame carries its group).
  const WS3 = fakeWebSocket({ relay: joinRelay("") });
  const c3 = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS3 }); // default x25519
  assert.equal((await c3.join(ROOM, { group: "p256" })).group, "p256");
  await c3.sendKey();
  const key = WS3.sockets[0].sent.find((f) => f.type === "key");
  assert.equal(key.group, "p256");
  assert.equal(kr.hexToBytes(key.public_key).length, 65);
  await c3.close();

  // A link with an unknown group is refused before anything is sent.
  const c4 = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS3 });
  await assert.rejects(c4.join(ROOM, { group: "14" }), { code: "unknown_group" });
  await c4.close();
});

test("legacy groups (modp5) are refused unless allowLegacyGroups", async () => {
  assert.deepEqual([...kr.LEGACY_GROUPS], ["modp5"]);
  const WS = fakeWebSocket({ relay: joinRelay("modp5") });
  // Asked for by the application: refused before anything is sent.
  await assert.rejects(kr.Client.connect("ws://x/v1/ws", { WebSocket: WS, group: "modp5" }), { code: "group_not_allowed" });
  const c = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS });
  await assert.rejects(c.create("modp5"), (e) => e.code === kr.Code.GROUP_NOT_ALLOWED && !e.fromRelay);
  await assert.rejects(c.join(ROOM, { group: "modp5" }), { code: "group_not_allowed" });
  assert.deepEqual(WS.sockets[0].sent, []);
  // A join without a link group accepts the room's group, unless legacy.
  await assert.rejects(c.join(ROOM), { code: "group_not_allowed", got: "modp5" });
  assert.equal(c.room, null);
  await c.close();
  // A room not fixed yet whose peer key arrives in modp5.
  const WS2 = fakeWebSocket({ relay: joinRelay("") });
  const c2 = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS2 });
  assert.equal((await c2.join(ROOM)).group, null);
  const m = await kr.generateKeyPair("modp5");
  const refused = c2.nextEvent("error");
  WS2.sockets[0].deliver({ type: "peer_key", public_key: m.publicKeyHex, group: "modp5" });
  assert.deepEqual(await refused, { type: "error", code: "group_not_allowed", got: "modp5",
    message: "the relay's peer_key is in modp5, a legacy group below the minimum this client accepts" });
  assert.equal(c2.room, null);
  await c2.close();
  // Allowed by the application: the room's modp5 is accepted and pinned.
  const c3 = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS, allowLegacyGroups: true });
  assert.equal((await c3.join(ROOM)).group, "modp5");
  await c3.close();
  const WS4 = fakeWebSocket({ relay: basicRelay() });
  const c4 = await kr.Client.connect("ws://x/v1/ws", { WebSocket: WS4, allowLegacyGroups: true });
  assert.equal((await c4.create("modp5")).group, "modp5");
  await c4.close();
});

// ---------------------------------------------------------------------------
// Duplicates and sending again (issue 12 C5, C6).

test("a copy of a message already accepted is dropped silently and acknowledged", async () => {
  const { c, ws, peerChannel } = await handshaken("x25519");
  const events = [];
  c.on("*", (ev) => events.push(ev));
  const body1 = kr.bytesToBase64(await peerChannel.seal("once"));
  ws.deliver({ type: "msg", seq: 1, body: body1 });
  // The peer sent the same body again (it got no sent): a new seq, the
  // same counter.
  ws.deliver({ type: "msg", seq: 2, body: body1 });
  await sleep(400); // the delayed ack
  assert.deepEqual(events.filter((e) => e.type !== "peer_joined" && e.type !== "peer_key").map((e) => [e.type, e.seq, e.text]), [["message", 1, "once"]]);
  assert.deepEqual(ws.sent.filter((f) => f.type === "ack").map((f) => f.seq), [2]);
  // The next message is delivered as usual.
  ws.deliver({ type: "msg", seq: 3, body: kr.bytesToBase64(await peerChannel.seal("next")) });
  await sleep(5);
  assert.deepEqual(events.at(-1), { type: "message", seq: 3, text: "next", bytes: kr.utf8Encode("next") });
  assert.equal(events.filter((e) => e.type === "error").length, 0);
  await c.close();
});

test("a msg that got no sent before a drop is sent again, the same body, after resume", async () => {
  // The first connection stores nothing and answers no msg.
  const { c, ws } = await handshaken("x25519", (sock, f) => f.type === "msg" && sock.constructor.sockets[0] === sock);
  c.on("*", () => {});
  const first = c.send("first");
  const second = c.send("second");
  let settled = false;
  first.finally(() => (settled = true)).catch(() => {});
  while (!ws.sent.some((f) => f.type === "msg")) await sleep(1);
  await sleep(20);
  const sent1 = ws.sent.filter((f) => f.type === "msg");
  assert.equal(sent1.length, 1, "one message at a time: the second waits for the first's sent");
  ws.close(1006, "");
  await sleep(10);
  assert.equal(settled, false, "send() waits for resume()");
  await assert.rejects(c.send("while down"), { code: "disconnected" });

  const WS = ws.constructor;
  const resumed = c.resume();
  while (WS.sockets.length < 2 || WS.sockets[1].sent.length === 0) await sleep(1);
  const ws2 = WS.sockets[1];
  ws2.deliver({ type: "room", id: ws2.sent[0].id, room: ROOM, peer: "p1", resume_token: "tok", group: "x25519", peers: 2, resumed: true });
  await resumed;
  assert.equal(await first, 101);
  assert.equal(await second, 102);
  const msgs2 = ws2.sent.filter((f) => f.type === "msg");
  assert.equal(msgs2.length, 2);
  assert.equal(msgs2[0].body, sent1[0].body, "the same sealed body, the same counter");
  assert.notEqual(msgs2[1].body, sent1[0].body);
  await c.close();
});

test("send({queue: true}) while the connection is down waits for resume, then goes after the unconfirmed one", async () => {
  // The first connection stores nothing and answers no msg.
  const { c, ws, peerChannel } = await handshaken("x25519", (sock, f) => f.type === "msg" && sock.constructor.sockets[0] === sock);
  c.on("*", () => {});
  const first = c.send("before the drop");
  while (!ws.sent.some((f) => f.type === "msg")) await sleep(1);
  ws.close(1006, "");
  await sleep(10);
  await assert.rejects(c.send("not queued"), { code: "disconnected" });
  let settled = false;
  const queued = c.send("typed while down", { queue: true });
  queued.finally(() => (settled = true)).catch(() => {});
  await sleep(20);
  assert.equal(settled, false, "a queued send waits for resume()");

  const WS = ws.constructor;
  const resumed = c.resume();
  while (WS.sockets.length < 2 || WS.sockets[1].sent.length === 0) await sleep(1);
  const ws2 = WS.sockets[1];
  ws2.deliver({ type: "room", id: ws2.sent[0].id, room: ROOM, peer: "p1", resume_token: "tok", group: "x25519", peers: 2, resumed: true });
  await resumed;
  assert.equal(await first, 101);
  assert.equal(await queued, 102);
  const texts = [];
  for (const f of ws2.sent.filter((f) => f.type === "msg")) texts.push(kr.utf8Decode(await peerChannel.open(kr.base64ToBytes(f.body))));
  assert.deepEqual(texts, ["before the drop", "typed while down"], "in order, each once");
  await c.close();
});

test("a queued send rejects with closed when the client is closed before resuming", async () => {
  const { c, ws } = await handshaken("x25519");
  c.on("*", () => {});
  ws.close(1006, "");
  await sleep(10);
  const queued = c.send("never sent", { queue: true });
  await sleep(10);
  await c.close();
  await assert.rejects(queued, { code: "closed" });
  assert.equal(ws.sent.filter((f) => f.type === "msg").length, 0);
});

test("a msg answered unavailable is sent again, the same body", async () => {
  let tries = 0;
  const { c, ws } = await handshaken("x25519", (sock, f) => {
    if (f.type !== "msg" || ++tries > 1) return false;
    sock.deliver({ type: "error", id: f.id, code: "unavailable", message: "the session store is unavailable; try again" });
    return true;
  });
  assert.equal(await c.send("retry me"), 101);
  const msgs = ws.sent.filter((f) => f.type === "msg");
  assert.equal(msgs.length, 2);
  assert.equal(msgs[1].body, msgs[0].body);
  await c.close();
});

test("close 4409 (superseded) is final: no resume, a closed event that says so", async () => {
  const { c, ws } = await handshaken("x25519", (sock, f) => f.type === "msg"); // no sent
  const events = [];
  c.on("*", (ev) => events.push(ev));
  const pending = assert.rejects(c.send("unconfirmed"), { code: kr.LocalCode.SUPERSEDED });
  while (!ws.sent.some((f) => f.type === "msg")) await sleep(1);
  ws.close(kr.CloseCode.SUPERSEDED, "superseded");
  await sleep(10);
  const closed = events.find((e) => e.type === "closed");
  assert.deepEqual(closed, { type: "closed", code: 4409, reason: "superseded", final: true });
  await pending;
  await assert.rejects(c.resume(), { code: "superseded" });
  assert.equal(ws.constructor.sockets.length, 1, "resume() did not dial");
  assert.equal(c.room, null);
  await c.close();
  // Any other close is not final.
  const h = await handshaken("x25519");
  const ev = h.c.nextEvent("closed");
  h.ws.close(1001, "going away");
  assert.equal((await ev).final, false);
  await h.c.close();
});

test("peer_left expired resets the peer: a new peer's key is accepted", async () => {
  const { c, ws, peer, hs } = await handshaken("x25519");
  const events = [];
  c.on("*", (ev) => events.push(ev));
  ws.deliver({ type: "peer_left", reason: "dropped" });
  ws.deliver({ type: "peer_left", reason: kr.Reason.EXPIRED });
  await sleep(5);
  assert.deepEqual(events.slice(-2).map((e) => [e.type, e.reason]), [["peer_left", "dropped"], ["peer_left", "expired"]]);
  assert.equal(c.handshakeInfo, null, "no handshake with the expired peer");
  const before = ws.sent.length;
  await assert.rejects(c.send("to nobody"), { code: "handshake_incomplete" });
  assert.equal(ws.sent.length, before, "nothing sent");

  // A new peer takes the seat: its key is accepted, not peer_key_changed.
  const next = await kr.generateKeyPair("x25519");
  const hs2P = c.handshake();
  ws.deliver({ type: "peer_joined", resumed: false });
  ws.deliver({ type: "peer_key", public_key: next.publicKeyHex, group: "x25519" });
  ws.deliver({ type: "handshake_complete", group: "x25519" });
  const hs2 = await hs2P;
  assert.equal(hs2.peerPublicKey, next.publicKeyHex);
  assert.notEqual(hs2.safetyNumber, hs.safetyNumber);
  assert.notEqual(peer.publicKeyHex, next.publicKeyHex);
  assert.equal(await c.send("to the new peer"), 101);
  await c.close();
});

// ---------------------------------------------------------------------------
// Failover: several relay URLs, resume() across them with backoff for as
// long as the relay keeps the seat.

const URL_A = "ws://a.example/v1/ws";
const URL_B = "ws://b.example/v1/ws";

/** A relay that answers create (with a grace of graceMs) and resume. */
function failoverRelay(graceMs, onResume = (ws, f) => ws.deliver({ type: "room", id: f.id, room: ROOM, peer: "p1", group: "x25519", peers: 2, resumed: true, resume_grace_ms: graceMs })) {
  return basicRelay((ws, f) => {
    if (f.type === "create") {
      ws.deliver({ type: "room", id: f.id, room: ROOM, peer: "p1", resume_token: "tok", group: f.group, peers: 1, resumed: false, resume_grace_ms: graceMs });
      return true;
    }
    if (f.type === "resume") {
      onResume(ws, f);
      return true;
    }
    return false;
  });
}

test("connect takes the first URL that answers, and says why none did", async () => {
  const down = new Set([URL_A]);
  const WS = fakeWebSocket({ relay: failoverRelay(60000), down });
  const c = await kr.Client.connect([URL_A, URL_B], { WebSocket: WS });
  assert.equal(c.url, URL_B);
  assert.deepEqual(WS.sockets.map((w) => w.url), [URL_A, URL_B]);
  await c.close();
  down.add(URL_B);
  await assert.rejects(kr.Client.connect([URL_A, URL_B], { WebSocket: WS }), (e) => e.code === "connect_failed" && e.message.includes(URL_A) && e.message.includes(URL_B));
});

test("resume tries the other instance when its own is down, and reports each attempt", async () => {
  const down = new Set();
  const WS = fakeWebSocket({ relay: failoverRelay(60000), down });
  const c = await kr.Client.connect([URL_A, URL_B], { WebSocket: WS });
  const room = await c.create("x25519");
  assert.equal(room.resumeGraceMs, 60000);
  const events = [];
  c.on("*", (ev) => events.push(ev));
  down.add(URL_A); // instance A stops
  WS.sockets[0].close(1001, "going away");
  await sleep(10);
  const resumed = await c.resume();
  assert.equal(resumed.room, ROOM);
  assert.equal(c.url, URL_B);
  const tries = events.filter((e) => e.type === "reconnecting");
  assert.deepEqual(tries.map((e) => [e.url, e.attempt, e.error]), [[URL_A, 1, null], [URL_B, 2, "connect_failed"]]);
  for (const e of tries) assert.ok(e.leftMs > 55000 && e.leftMs <= 60000, `leftMs ${e.leftMs}`);
  const rf = WS.sockets.at(-1).sent[0];
  assert.equal(rf.type, "resume");
  await c.close();
});

test("resume gives up once the relay's grace period has passed, with growing waits", async () => {
  const down = new Set();
  const WS = fakeWebSocket({ relay: failoverRelay(700), down });
  const c = await kr.Client.connect([URL_A, URL_B], { WebSocket: WS });
  await c.create("x25519");
  const tries = [];
  c.on("reconnecting", (ev) => tries.push({ ...ev, at: Date.now() }));
  down.add(URL_A);
  down.add(URL_B);
  WS.sockets[0].close(1001, "going away");
  await sleep(5);
  const t0 = Date.now();
  await assert.rejects(c.resume(), (e) => e.code === "resume_gave_up" && e.cause && e.cause.code === "connect_failed");
  const took = Date.now() - t0;
  assert.ok(took < 700 + 500, `gave up after ${took} ms`);
  // A, B at once, then 0.1, 0.2, 0.4 s (±20%): about 5 attempts in 0.7 s.
  assert.ok(tries.length >= 4 && tries.length <= 7, `${tries.length} attempts`);
  tries.forEach((e, i) => assert.equal(e.url, [URL_A, URL_B][i % 2]));
  for (let i = 1; i < tries.length; i++) assert.ok(tries[i].leftMs <= tries[i - 1].leftMs);
  // (The last wait may be cut short by the end of the grace period.)
  for (let i = 3; i < tries.length - 1; i++) {
    assert.ok(tries[i].at - tries[i - 1].at >= tries[i - 1].at - tries[i - 2].at - 40, "the waits grow");
  }
  assert.ok(c.room, "the client stays in the room: resume() may be tried again");
  await c.close();
});

test("resume stops at once on a refusal no retry can fix", async () => {
  const WS = fakeWebSocket({ relay: failoverRelay(60000, (ws, f) => ws.deliver({ type: "error", id: f.id, code: "resume_expired", message: "the grace period is over" })) });
  const c = await kr.Client.connect([URL_A, URL_B], { WebSocket: WS });
  await c.create("x25519");
  const tries = [];
  c.on("reconnecting", (ev) => tries.push(ev));
  WS.sockets[0].close(1006, "");
  await sleep(5);
  await assert.rejects(c.resume(), { code: "resume_expired" });
  assert.equal(tries.length, 1);
  assert.equal(c.room, null);
  await c.close();
});

test("resumeBackoffMs doubles from 100 ms to 5 s, within ±20%", () => {
  const bases = [100, 200, 400, 800, 1600, 3200, 5000, 5000];
  bases.forEach((base, i) => {
    assert.ok(Math.abs(kr.resumeBackoffMs(i + 1, () => 0) - base * 0.8) < 1e-6);
    assert.ok(Math.abs(kr.resumeBackoffMs(i + 1, () => 1) - base * 1.2) < 1e-6);
    const d = kr.resumeBackoffMs(i + 1);
    assert.ok(d >= base * 0.8 && d <= base * 1.2, `${d}`);
  });
  assert.equal(kr.resumeBackoffMs(1000, () => 0.5), 5000);
});

test("relayURLs: the page's relay, then the listed others", () => {
  const loc = { protocol: "https:", host: "chat.example" };
  assert.deepEqual(kr.relayURLs(loc), ["wss://chat.example/v1/ws"]);
  assert.deepEqual(kr.relayURLs(loc, " wss://r1.example/v1/ws,wss://r2.example/v1/ws  wss://chat.example/v1/ws javascript:x https://r3/ "),
    ["wss://chat.example/v1/ws", "wss://r1.example/v1/ws", "wss://r2.example/v1/ws"]);
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

test("resume sends sent_seq, the highest seq the relay confirmed", async () => {
  const { c, ws } = await handshaken("x25519");
  c.on("*", () => {});
  assert.equal(await c.send("one"), 101);
  assert.equal(await c.send("two"), 102);
  ws.close(1001, "shutting down");
  await sleep(10);
  const WS = ws.constructor;
  const p = c.resume();
  while (WS.sockets.length < 2 || WS.sockets[1].sent.length === 0) await sleep(1);
  const ws2 = WS.sockets[1];
  const rf = ws2.sent[0];
  // After a Redis failover that lost writes, the relay numbers new
  // messages above it (protocol.md §3.8).
  assert.deepEqual({ ...rf, id: 0 }, { type: "resume", room: ROOM, peer: "p1", resume_token: "tok", sent_seq: 102, id: 0 });
  ws2.deliver({ type: "room", id: rf.id, room: ROOM, peer: "p1", resume_token: "tok", group: "x25519", peers: 2, resumed: true });
  await p;
  await c.close();
});
