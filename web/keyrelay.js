// keyrelay.js: the JavaScript client of the keyrelay relay (docs/protocol.md),
// the counterpart of Go's relay/client: the Client class, its frames,
// requests and replies, resume and acknowledgements. An ES module with no
// dependencies and no build step. It runs in browsers and in Node.js >= 20
// (pass a WebSocket implementation to Client.connect where there is no
// global one).
//
// The library is three modules; import this one, which re-exports the
// others' API:
// - keyrelay.js (this file): the client;
// - wire.js: the protocol's vocabulary (SUBPROTOCOL, FrameType, Code,
//   CloseCode, Reason), checked against Go's wire/codes.json by the tests;
// - dh.js (with modp.js and bytes.js): all cryptography, like Go's package
//   dh. Key pairs are generated there, in the client; the relay only ever
//   sees public keys and ciphertext.
//
// At about 950 lines this file is over the ~600 the other modules keep,
// because nearly all of it is one class: Client is one state machine over
// one connection, and its frame dispatch, requests, resume, events and acks
// share the same private state (pending requests, the room, the waiters).
// Splitting the class across modules would mean exposing that state. The
// one part that could stand alone is the event delivery (on, onevent,
// events(), the backlog), about 130 lines, as a named queue type.
//
// This module never logs: no key, token or plaintext is ever printed.

import {
  Channel, DEFAULT_GROUP, GROUPS, MESSAGE_OVERHEAD, base64ToBytes, bytesToBase64, checkGroup,
  generateKeyPair, parsePublicKey, safetyNumber, sharedSecret, utf8Decode, utf8Encode,
} from "./dh.js";
import { bytesEqual, fail } from "./bytes.js";
import { CloseCode, Code, FrameType, PATH, Reason, SUBPROTOCOL } from "./wire.js";

export {
  Channel, DEFAULT_GROUP, DHCode, FALLBACK_GROUP, GROUPS, KEY_SIZE, KeyrelayError, MESSAGE_OVERHEAD,
  _modpKeyPairFromPrivate, _modpPublicFromPrivate, base64ToBytes, bytesToBase64, bytesToHex, deriveKey,
  generateKeyPair, hexToBytes, isGroupSupported, keyPairFromCryptoKey, parsePublicKey, publicKeySize,
  safetyNumber, sharedSecret, utf8Decode, utf8Encode,
} from "./dh.js";
export { CloseCode, Code, FrameType, PATH, Reason, SUBPROTOCOL } from "./wire.js";

/**
 * The codes of the errors (and "error" events) the client raises itself
 * that are neither relay codes (Code) nor the cryptography's (DHCode).
 */
export const LocalCode = Object.freeze({
  CONNECT_FAILED: "connect_failed", // the WebSocket could not be opened
  DISCONNECTED: "disconnected", // the connection ended: call resume()
  CLOSED: "closed", // close() was called
  ABORTED: "aborted", // the request's AbortSignal fired
  PEER_KEY_CHANGED: "peer_key_changed", // the relay forwarded another key for the same peer
  TOO_LARGE: "too_large", // the message is longer than maxPlaintext
  BAD_MESSAGE: "bad_message", // an "error" event: a message that could not be opened
});

/** The relay's default frame-size limit (bytes). */
export const DEFAULT_MAX_FRAME_SIZE = 64 * 1024;

const ACK_BATCH = 16; // ack at once when this many delivered messages are unacknowledged
const ACK_DELAY_MS = 200; // else ack after this delay, covering every message since

// ---------------------------------------------------------------------------
// Client (the protocol of §1-§4, like Go's relay/client)

/**
 * The relay's WebSocket URL for a page the relay serves: ws(s)://host/v1/ws
 * from the page's location (wss: for an https: page).
 * @param {{protocol: string, host: string}} [loc=globalThis.location]
 * @returns {string}
 */
export function relayURLFromLocation(loc = globalThis.location) {
  if (!loc || !loc.host) throw fail(LocalCode.CONNECT_FAILED, "no location to derive the relay URL from");
  return `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}${PATH}`;
}


function relayError(f) {
  return fail(String(f.code || Code.INTERNAL), typeof f.message === "string" ? f.message : "", {
    fromRelay: true,
    relayMessage: typeof f.message === "string" ? f.message : "",
  });
}

function newPeerState() {
  return { keyHex: null, keyBytes: null, group: null, complete: false, gone: false, err: null, channel: null, hs: null, deriving: null };
}

/**
 * A connection to a relay and the client's place in at most one room, like
 * Go's relay/client. It generates its key pair locally, validates the peer's
 * key itself, and encrypts and decrypts every message end to end.
 *
 * Events (objects with a `type`) arrive in the order the relay sent them:
 * - `{type: "message", seq, text, bytes}`: a decrypted message
 * - `{type: "peer_joined", resumed}`, `{type: "peer_left", reason}` ("left"
 *   or "dropped")
 * - `{type: "peer_key", publicKey, group}`: the peer's key arrived and is valid
 * - `{type: "error", code, message, seq?}`: a relay error that answers no
 *   request (room_expired, rate_limited …), or code "bad_message" for a
 *   message that could not be opened (it is acknowledged and dropped)
 * - `{type: "closed", code, reason}`: the connection ended; call resume()
 *
 * Read them with `on(type, fn)` (type "*" for all), the `onevent` property,
 * or `for await (const ev of client)`. Events that arrive while nobody
 * listens wait until a listener or iterator is attached. Messages are
 * acknowledged once handed to the application, in batches (acks count
 * against the relay's rate limit).
 *
 * Requests (create, join, handshake, send, resume, leave) reject with a
 * KeyrelayError; for a relay error frame, `.code` is the relay's code and
 * `.fromRelay` is true. Every request takes an optional `{signal}`
 * (AbortSignal) to stop waiting.
 */
export class Client {
  /** Use Client.connect. */
  constructor(url, opts) {
    this._url = url;
    this._WS = opts.WebSocket;
    this._protocols = opts.protocols;
    this._defaultGroup = opts.group;
    this._maxFrameSize = opts.maxFrameSize;
    this._connectTimeoutMs = opts.connectTimeoutMs;
    this._conn = null;
    this._room = null;
    this._nextId = 0;
    this._pending = new Map();
    this._waiters = new Set();
    this._chain = Promise.resolve();
    this._sendChain = Promise.resolve();
    this._keyLock = Promise.resolve();
    this._resuming = null;
    this._closed = false;
    this._listeners = new Map();
    this._onevent = null;
    this._iterators = new Set();
    this._backlog = [];
    this._ackTimer = null;
  }

  /**
   * Connects to the relay's WebSocket endpoint (for instance
   * "ws://localhost:8080/v1/ws"), offering the keyrelay.v1 subprotocol.
   * @param {string} url
   * @param {object} [opts]
   * @param {Function} [opts.WebSocket=globalThis.WebSocket] a WHATWG-style
   *   WebSocket constructor (new WebSocket(url, protocols))
   * @param {string[]} [opts.protocols=["keyrelay.v1"]] subprotocols offered
   * @param {string} [opts.group=DEFAULT_GROUP] the group handshake() uses
   *   when neither the room nor the peer's key has fixed one
   * @param {number} [opts.maxFrameSize=65536] the relay's frame-size limit
   * @param {number} [opts.connectTimeoutMs=10000]
   * @returns {Promise<Client>}
   * @throws {KeyrelayError} connect_failed
   */
  static async connect(url, opts = {}) {
    const o = {
      WebSocket: opts.WebSocket || globalThis.WebSocket,
      protocols: opts.protocols || [SUBPROTOCOL],
      group: opts.group || DEFAULT_GROUP,
      maxFrameSize: opts.maxFrameSize || DEFAULT_MAX_FRAME_SIZE,
      connectTimeoutMs: opts.connectTimeoutMs || 10000,
    };
    if (typeof o.WebSocket !== "function") throw fail(LocalCode.CONNECT_FAILED, "no WebSocket implementation: pass one as opts.WebSocket");
    checkGroup(o.group);
    const c = new Client(url, o);
    c._conn = await c._dial();
    return c;
  }

  // -- connection ----------------------------------------------------------

  _dial() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new this._WS(this._url, this._protocols);
      } catch (e) {
        reject(fail(LocalCode.CONNECT_FAILED, e && e.message ? e.message : "WebSocket constructor failed"));
        return;
      }
      try {
        ws.binaryType = "arraybuffer";
      } catch {
        // not settable: binary frames are ignored anyway
      }
      const conn = { ws, open: false, replaced: false };
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        try {
          ws.close();
        } catch {
          // ignore
        }
        reject(fail(LocalCode.CONNECT_FAILED, "timed out"));
      }, this._connectTimeoutMs);
      ws.addEventListener("open", () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (ws.protocol !== SUBPROTOCOL) {
          ws.close(CloseCode.NORMAL);
          reject(fail(LocalCode.CONNECT_FAILED, `the relay selected subprotocol ${JSON.stringify(ws.protocol)}, not ${SUBPROTOCOL}`));
          return;
        }
        conn.open = true;
        resolve(conn);
      });
      ws.addEventListener("message", (ev) => this._onData(conn, ev.data));
      ws.addEventListener("close", (ev) => {
        conn.open = false;
        if (!settled) {
          settled = true;
          clearTimeout(timer);
          reject(fail(LocalCode.CONNECT_FAILED, `closed during the handshake (code ${ev.code})`, { closeCode: ev.code }));
          return;
        }
        this._serial(() => this._onClose(conn, ev.code, ev.reason));
      });
      ws.addEventListener("error", () => {
        // After the open, a close event follows. Before it, some
        // implementations (Node.js 20's) send no close event at all.
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        try {
          ws.close();
        } catch {
          // ignore
        }
        reject(fail(LocalCode.CONNECT_FAILED, "the WebSocket connection failed"));
      });
    });
  }

  _serial(fn) {
    this._chain = this._chain.then(fn).catch(() => {
      // A handler's failure must not stop the frames that follow.
    });
    return this._chain;
  }

  _onData(conn, data) {
    if (typeof data !== "string") return; // the relay sends text frames only
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      return;
    }
    if (!f || typeof f !== "object" || typeof f.type !== "string") return;
    this._serial(() => this._dispatch(conn, f));
  }

  _onClose(conn, code, reason) {
    const err = this._closed ? fail(LocalCode.CLOSED, "the client was closed") : fail(LocalCode.DISCONNECTED, `connection closed (code ${code})`, { closeCode: code });
    for (const [id, p] of this._pending) {
      if (p.conn === conn) {
        this._pending.delete(id);
        p.reject(err);
      }
    }
    for (const w of this._waiters) {
      if (w.conn === conn) w.reject(err);
    }
    if (conn === this._conn && !conn.replaced) {
      this._emit({ type: "closed", code, reason: reason || "" }, null);
    }
  }

  _write(conn, frame) {
    if (this._closed) throw fail(LocalCode.CLOSED, "the client was closed");
    if (!conn || !conn.open || conn.ws.readyState !== 1) throw fail(LocalCode.DISCONNECTED, "the connection is not open");
    conn.ws.send(JSON.stringify(frame));
  }

  /** Writes a request and returns the promise of its reply. */
  _start(frame, apply, signal) {
    const conn = this._conn;
    const id = ++this._nextId;
    const key = String(id);
    return new Promise((resolve, reject) => {
      if (signal && signal.aborted) {
        reject(fail(LocalCode.ABORTED, "aborted"));
        return;
      }
      const entry = { conn, apply, resolve, reject };
      this._pending.set(key, entry);
      if (signal) {
        const onAbort = () => {
          if (this._pending.get(key) === entry) {
            this._pending.delete(key);
            reject(fail(LocalCode.ABORTED, "aborted"));
          }
        };
        signal.addEventListener("abort", onAbort, { once: true });
      }
      try {
        this._write(conn, Object.assign({}, frame, { id }));
      } catch (e) {
        this._pending.delete(key);
        reject(e);
      }
    });
  }

  /** Resolves when check() returns a truthy value; check may throw. */
  _waitState(check, signal) {
    return new Promise((resolve, reject) => {
      const w = { conn: this._conn, resolve: null, reject: null };
      const done = () => {
        this._waiters.delete(w);
        if (signal) signal.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        done();
        reject(fail(LocalCode.ABORTED, "aborted"));
      };
      w.resolve = (v) => {
        done();
        resolve(v);
      };
      w.reject = (e) => {
        done();
        reject(e);
      };
      w.check = check;
      if (signal) {
        if (signal.aborted) return onAbort();
        signal.addEventListener("abort", onAbort, { once: true });
      }
      if (this._closed) return w.reject(fail(LocalCode.CLOSED, "the client was closed"));
      this._waiters.add(w);
      this._changed();
      if (this._waiters.has(w) && (!w.conn || !w.conn.open)) w.reject(fail(LocalCode.DISCONNECTED, "the connection is not open"));
    });
  }

  _changed() {
    for (const w of [...this._waiters]) {
      let v;
      try {
        v = w.check();
      } catch (e) {
        w.reject(e);
        continue;
      }
      if (v) w.resolve(v);
    }
  }

  // -- frames from the relay -----------------------------------------------

  async _dispatch(conn, f) {
    if (conn !== this._conn) return; // a connection resume() replaced
    switch (f.type) {
      case FrameType.ROOM:
      case FrameType.KEY_OK:
      case FrameType.SENT:
      case FrameType.LEFT:
      case FrameType.ERROR: {
        const key = f.id === undefined || f.id === null ? "" : String(f.id);
        const p = key ? this._pending.get(key) : undefined;
        if (p) {
          this._pending.delete(key);
          if (f.type === FrameType.ERROR) {
            p.reject(relayError(f));
          } else {
            if (p.apply) p.apply(f);
            p.resolve(f);
          }
          this._changed();
          return;
        }
        if (f.type !== FrameType.ERROR) return; // a reply nobody waits for
        if (f.code === Code.ROOM_EXPIRED && this._room) {
          this._room.expired = true;
          this._room = null;
          this._changed();
        }
        this._emit({ type: "error", code: String(f.code), message: typeof f.message === "string" ? f.message : "" }, null);
        return;
      }
      case FrameType.PEER_KEY:
        return this._onPeerKey(f);
      case FrameType.HANDSHAKE_COMPLETE: {
        const rs = this._room;
        if (!rs) return;
        rs.setGroup(f.group);
        rs.peer.complete = true;
        rs.keyStored = rs.priv !== null;
        await this._derive(rs, rs.peer);
        this._changed();
        return;
      }
      case FrameType.PEER_JOINED:
      case FrameType.PEER_LEFT:
        return this._onPeerEvent(f);
      case FrameType.MSG:
        return this._onMsg(f);
      default:
        return; // unknown frame types are ignored
    }
  }

  _onPeerKey(f) {
    const rs = this._room;
    if (!rs) return;
    const ps = rs.peer;
    let bytes;
    try {
      checkGroup(f.group);
      if (rs.group && f.group !== rs.group) throw fail(Code.GROUP_MISMATCH, `the peer key's group ${f.group} is not the room's ${rs.group}`);
      bytes = parsePublicKey(f.group, f.public_key);
    } catch (e) {
      ps.err = e; // the relay forwarded an invalid key: the exchange failed
      this._changed();
      return;
    }
    if (ps.keyBytes === null) {
      rs.setGroup(f.group);
      ps.keyHex = String(f.public_key).toLowerCase();
      ps.keyBytes = bytes;
      ps.group = f.group;
      this._changed();
      this._emit({ type: "peer_key", publicKey: ps.keyHex, group: f.group }, rs);
    } else if (!bytesEqual(ps.keyBytes, bytes) || ps.group !== f.group) {
      ps.err = fail(LocalCode.PEER_KEY_CHANGED, "the relay forwarded a different key for the same peer");
      this._changed();
    }
  }

  _onPeerEvent(f) {
    const rs = this._room;
    if (!rs) return;
    let ev;
    if (f.type === FrameType.PEER_JOINED) {
      const resumed = f.resumed === true;
      if (!resumed && rs.peers === 2 && !rs.peer.gone) return; // the peer was already here
      rs.peers = 2;
      if (!resumed && rs.peer.gone) rs.peer = newPeerState(); // a new peer in the old one's place
      ev = { type: "peer_joined", resumed };
    } else {
      rs.peers = 1;
      rs.peer.gone = true;
      if (f.reason === Reason.LEFT) rs.peer = newPeerState();
      ev = { type: "peer_left", reason: String(f.reason || "") };
    }
    this._changed();
    this._emit(ev, rs);
  }

  async _onMsg(f) {
    const rs = this._room;
    if (!rs) return;
    const seq = Number(f.seq);
    if (!(seq > rs.lastSeq)) return; // already received
    rs.lastSeq = seq;
    const ps = rs.peer;
    let ev;
    try {
      await this._derive(rs, ps);
      if (ps.err) throw ps.err;
      if (!ps.channel) throw fail(Code.HANDSHAKE_INCOMPLETE, "message before the handshake");
      const pt = await ps.channel.open(base64ToBytes(f.body));
      ev = { type: "message", seq, text: utf8Decode(pt), bytes: pt };
    } catch (e) {
      ev = { type: "error", code: LocalCode.BAD_MESSAGE, message: `message ${seq} refused: ${e && e.code ? e.code : "error"}`, seq, cause: e && e.code };
    }
    this._emit(ev, rs, seq);
  }

  /** Derives the Channel once both keys are known and the relay said complete. */
  _derive(rs, ps) {
    if (ps.hs || ps.err) return Promise.resolve();
    if (ps.deriving) return ps.deriving;
    if (!ps.complete || !ps.keyHex || !rs.priv) return Promise.resolve();
    const priv = rs.priv;
    ps.deriving = (async () => {
      try {
        if (priv.group !== ps.group) throw fail(Code.GROUP_MISMATCH, "the keys belong to different groups");
        const z = await sharedSecret(priv, ps.keyHex);
        const ch = await Channel.create(priv.group, z, priv.publicKeyHex, ps.keyHex);
        const sn = await safetyNumber(priv.group, priv.publicKeyHex, ps.keyHex);
        z.fill(0);
        ps.channel = ch;
        ps.hs = Object.freeze({ group: priv.group, safetyNumber: sn, peerPublicKey: ps.keyHex, publicKey: priv.publicKeyHex });
      } catch (e) {
        ps.err = e;
      }
      this._changed();
    })();
    return ps.deriving;
  }

  // -- events ----------------------------------------------------------------

  _hasConsumers() {
    return this._listeners.size > 0 || this._onevent !== null || this._iterators.size > 0;
  }

  _emit(ev, rs, seq) {
    const item = { ev, rs, seq };
    if (this._hasConsumers() && this._backlog.length === 0) this._deliver(item);
    else this._backlog.push(item);
  }

  _flush() {
    while (this._backlog.length > 0 && this._hasConsumers()) this._deliver(this._backlog.shift());
  }

  _deliver({ ev, rs, seq }) {
    if (rs && rs !== this._room && !rs.expired) return; // the client left that room
    for (const type of [ev.type, "*"]) {
      const set = this._listeners.get(type);
      if (!set) continue;
      for (const fn of [...set]) {
        try {
          fn(ev);
        } catch {
          // a listener's exception must not stop delivery
        }
      }
    }
    if (this._onevent) {
      try {
        this._onevent(ev);
      } catch {
        // likewise
      }
    }
    for (const it of this._iterators) it.push(ev);
    if (seq !== undefined && rs) this._delivered(rs, seq);
  }

  /**
   * Calls handler for every event of type ("message", "peer_joined",
   * "peer_left", "peer_key", "error", "closed", or "*" for all).
   * @param {string} type
   * @param {(ev: object) => void} handler
   * @returns {() => void} a function that removes the handler
   */
  on(type, handler) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(handler);
    queueMicrotask(() => this._flush());
    return () => {
      set.delete(handler);
      if (set.size === 0 && this._listeners.get(type) === set) this._listeners.delete(type);
    };
  }

  /** A handler called with every event, or null. @type {((ev: object) => void) | null} */
  get onevent() {
    return this._onevent;
  }

  set onevent(fn) {
    this._onevent = typeof fn === "function" ? fn : null;
    queueMicrotask(() => this._flush());
  }

  /**
   * An async iterator over the events from now on (and any that waited for
   * a consumer); it ends when the client is closed.
   * @returns {AsyncIterableIterator<object>}
   */
  events() {
    const queue = [];
    let wake = null;
    let ended = false;
    const it = {
      push: (ev) => {
        queue.push(ev);
        if (wake) wake();
      },
      end: () => {
        ended = true;
        if (wake) wake();
      },
    };
    this._iterators.add(it);
    queueMicrotask(() => this._flush());
    const self = this;
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next() {
        for (;;) {
          if (queue.length > 0) return { value: queue.shift(), done: false };
          if (ended) return { value: undefined, done: true };
          await new Promise((r) => (wake = r));
          wake = null;
        }
      },
      async return() {
        ended = true;
        self._iterators.delete(it);
        return { value: undefined, done: true };
      },
    };
  }

  [Symbol.asyncIterator]() {
    return this.events();
  }

  /** Waits for the next event of type (or any type for "*"). */
  nextEvent(type = "*", { signal } = {}) {
    return new Promise((resolve, reject) => {
      const off = this.on(type, (ev) => {
        off();
        resolve(ev);
      });
      if (signal) {
        signal.addEventListener("abort", () => {
          off();
          reject(fail(LocalCode.ABORTED, "aborted"));
        }, { once: true });
      }
    });
  }

  // -- acknowledgements --------------------------------------------------------

  _delivered(rs, seq) {
    if (seq > rs.delivered) rs.delivered = seq;
    if (rs !== this._room) return;
    if (rs.delivered - rs.acked >= ACK_BATCH) {
      this._ackNow(rs);
    } else if (this._ackTimer === null) {
      this._ackTimer = setTimeout(() => {
        this._ackTimer = null;
        if (this._room === rs) this._ackNow(rs);
      }, ACK_DELAY_MS);
    }
  }

  _ackNow(rs) {
    if (rs.delivered <= rs.acked) return;
    try {
      this._write(this._conn, { type: FrameType.ACK, seq: rs.delivered });
      rs.acked = rs.delivered;
    } catch {
      // not sent: the messages stay stored at the relay; resume() acks again
    }
  }

  // -- requests ----------------------------------------------------------------

  /**
   * The client's room, or null outside one.
   * @returns {{room: string, peer: string, group: string|null, peers: number} | null}
   */
  get room() {
    const rs = this._room;
    return rs ? { room: rs.id, peer: rs.peerID, group: rs.group, peers: rs.peers } : null;
  }

  /** The completed handshake, or null. @returns {{group, safetyNumber, peerPublicKey, publicKey} | null} */
  get handshakeInfo() {
    return this._room && this._room.peer.hs ? this._room.peer.hs : null;
  }

  /** The longest plaintext (in bytes) send() accepts. @type {number} */
  get maxPlaintext() {
    return Math.max(Math.floor((this._maxFrameSize - 128) / 4) * 3 - MESSAGE_OVERHEAD, 0);
  }

  _newRoom(f) {
    const rs = {
      id: String(f.room), peerID: String(f.peer), token: String(f.resume_token), group: null, peers: Number(f.peers) || 1,
      priv: null, keySent: false, keyStored: false, peer: newPeerState(), expired: false,
      lastSeq: 0, delivered: 0, acked: 0,
      setGroup(name) {
        if (name && !this.group && GROUPS.includes(name)) this.group = name;
      },
    };
    rs.setGroup(f.group);
    return rs;
  }

  async _enter(frame, signal) {
    let room;
    await this._start(frame, (f) => {
      this._room = this._newRoom(f);
      room = this.room;
    }, signal);
    return room;
  }

  /**
   * Creates a room and joins it.
   * @param {string} [group] fixes the room's group; omitted, the first key does
   * @param {{signal?: AbortSignal}} [opts]
   * @returns {Promise<{room: string, peer: string, group: string|null, peers: number}>}
   */
  async create(group, { signal } = {}) {
    const frame = { type: FrameType.CREATE };
    if (group) {
      checkGroup(group);
      frame.group = group;
    }
    return this._enter(frame, signal);
  }

  /**
   * Joins the existing room (a UUID). Relay errors: room_not_found,
   * room_full, already_in_room …
   * @param {string} room
   * @param {{signal?: AbortSignal}} [opts]
   */
  async join(room, { signal } = {}) {
    return this._enter({ type: FrameType.JOIN, room: String(room) }, signal);
  }

  async _withKeyLock(fn) {
    const prev = this._keyLock;
    let release;
    this._keyLock = new Promise((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /**
   * Generates the key pair (if not done) and sends the public key; resolves
   * with it once the relay stored it. The group is the room's, else the
   * peer key's, else the client's default group.
   * @param {{signal?: AbortSignal}} [opts]
   * @returns {Promise<string>} the public key (hex)
   */
  sendKey({ signal } = {}) {
    return this._withKeyLock(async () => {
      let retried = false;
      for (;;) {
        const rs = this._room;
        if (!rs) throw fail(Code.NOT_IN_ROOM, "not in a room");
        if (rs.keyStored && rs.priv) return rs.priv.publicKeyHex;
        const group = rs.group || rs.peer.group || this._defaultGroup;
        if (!rs.priv || rs.priv.group !== group) {
          const kp = await generateKeyPair(group);
          if (this._room !== rs) throw fail(Code.NOT_IN_ROOM, "the room ended");
          rs.priv = kp;
          rs.keySent = false;
        }
        const priv = rs.priv;
        const resend = rs.keySent;
        rs.keySent = true;
        try {
          await this._start({ type: FrameType.KEY, public_key: priv.publicKeyHex, group }, () => {
            if (rs.priv === priv) rs.keyStored = true;
          }, signal);
          return priv.publicKeyHex;
        } catch (e) {
          if (e.fromRelay && e.code === Code.KEY_ALREADY_SET && resend) {
            if (rs.priv === priv) rs.keyStored = true; // stored before a drop; its key_ok was lost
            return priv.publicKeyHex;
          }
          if (e.fromRelay) {
            if (rs.priv === priv) {
              rs.priv = null;
              rs.keySent = false;
            }
            if (e.code === Code.GROUP_MISMATCH && !retried) {
              retried = true;
              await this._waitState(() => {
                if (this._room !== rs) throw fail(Code.NOT_IN_ROOM, "the room ended");
                return rs.group || rs.peer.group;
              }, signal);
              continue;
            }
          }
          throw e;
        }
      }
    });
  }

  /**
   * Performs the key exchange: sends this client's public key, waits for
   * the peer's (validated here, not trusted from the relay) and for
   * handshake_complete, and derives the message key. Once complete it
   * resolves at once with the same result, until a new peer takes the
   * other place. Show safetyNumber to the user, to compare out of band.
   * @param {{signal?: AbortSignal}} [opts]
   * @returns {Promise<{group: string, safetyNumber: string, peerPublicKey: string, publicKey: string}>}
   * @throws {KeyrelayError} relay errors, malformed_key / invalid_public_key
   *   for a bad peer key, same_key, peer_key_changed, unsupported_group,
   *   not_in_room, disconnected (resume(), then handshake() again)
   */
  async handshake({ signal } = {}) {
    await this.sendKey({ signal });
    const rs = this._room;
    if (!rs) throw fail(Code.NOT_IN_ROOM, "not in a room");
    return this._waitState(() => {
      if (this._room !== rs) throw fail(Code.NOT_IN_ROOM, "the room ended");
      const ps = rs.peer;
      if (ps.err) throw ps.err;
      if (ps.hs) return ps.hs;
      this._derive(rs, ps);
      return null;
    }, signal);
  }

  /**
   * Encrypts a message for the peer and sends it; resolves with the seq the
   * relay gave it once stored. Concurrent sends go out in call order.
   * @param {string|Uint8Array} message text (sent as UTF-8) or bytes
   * @param {{signal?: AbortSignal}} [opts]
   * @returns {Promise<number>} the relay's seq
   * @throws {KeyrelayError} too_large, not_in_room, handshake_incomplete,
   *   relay errors (mailbox_full, rate_limited: not stored, send again
   *   later), disconnected (it may or may not have been stored)
   */
  async send(message, { signal } = {}) {
    const pt = typeof message === "string" ? utf8Encode(message) : message;
    if (!(pt instanceof Uint8Array)) throw fail(Code.BAD_REQUEST, "send takes a string or a Uint8Array");
    if (pt.length > this.maxPlaintext) throw fail(LocalCode.TOO_LARGE, `longer than ${this.maxPlaintext} bytes`);
    const rs = this._room;
    if (!rs) throw fail(Code.NOT_IN_ROOM, "not in a room");
    const ps = rs.peer;
    if (ps.err) throw ps.err;
    const ch = ps.channel;
    if (!ch) throw fail(Code.HANDSHAKE_INCOMPLETE, "the handshake is not complete");
    // Seal and write one after the other, so counters go out in order.
    const step = this._sendChain.then(async () => {
      if (this._conn === null || !this._conn.open) throw fail(LocalCode.DISCONNECTED, "the connection is not open");
      const body = await ch.seal(pt);
      return { reply: this._start({ type: FrameType.MSG, body: bytesToBase64(body) }, null, signal) };
    });
    this._sendChain = step.catch(() => {});
    const { reply } = await step;
    const f = await reply;
    return Number(f.seq);
  }

  /**
   * Takes the client's place back after its connection dropped: closes the
   * current connection if still open, dials again, and sends resume with the
   * room, peer ID, resume token and the highest seq received. Keys, Channel
   * counters and undelivered events are kept; the relay then re-sends the
   * messages not yet received. After resume_expired or room_not_found the
   * client is in no room.
   * @param {{signal?: AbortSignal}} [opts]
   * @returns {Promise<{room: string, peer: string, group: string|null, peers: number}>}
   */
  resume({ signal } = {}) {
    if (!this._resuming) {
      this._resuming = this._resume(signal).finally(() => {
        this._resuming = null;
      });
    }
    return this._resuming;
  }

  async _resume(signal) {
    if (this._closed) throw fail(LocalCode.CLOSED, "the client was closed");
    const rs = this._room;
    if (!rs) throw fail(Code.NOT_IN_ROOM, "not in a room");
    const old = this._conn;
    if (old) {
      old.replaced = true;
      old.open = false;
      try {
        old.ws.close(CloseCode.NORMAL);
      } catch {
        // already closed
      }
      // Requests on the old connection get no reply now.
      await this._serial(() => this._onClose(old, CloseCode.NORMAL, "replaced"));
    }
    const conn = await this._dial();
    if (this._closed) {
      conn.ws.close(CloseCode.NORMAL);
      throw fail(LocalCode.CLOSED, "the client was closed");
    }
    this._conn = conn;
    const frame = { type: FrameType.RESUME, room: rs.id, peer: rs.peerID, resume_token: rs.token };
    if (rs.lastSeq > 0) frame.last_seq = rs.lastSeq;
    try {
      await this._start(frame, (f) => {
        rs.peers = Number(f.peers) || rs.peers;
        rs.setGroup(f.group);
        this._room = rs;
      }, signal);
    } catch (e) {
      if (e.fromRelay && (e.code === Code.RESUME_EXPIRED || e.code === Code.ROOM_NOT_FOUND) && this._room === rs) {
        this._room = null; // the place is gone
        this._changed();
      }
      throw e;
    }
    // Messages delivered but not acknowledged before the drop.
    this._ackNow(rs);
    return this.room;
  }

  /**
   * Leaves the room for good (the peer sees peer_left "left"); the
   * connection stays open for another room.
   * @param {{signal?: AbortSignal}} [opts]
   */
  async leave({ signal } = {}) {
    const rs = this._room;
    if (!rs) throw fail(Code.NOT_IN_ROOM, "not in a room");
    this._ackNow(rs);
    await this._start({ type: FrameType.LEAVE }, () => {
      if (this._room === rs) this._room = null;
    }, signal);
  }

  /**
   * Closes the connection (a normal close: the relay treats it as a drop, so
   * call leave() first to leave for good). Pending requests reject with
   * code "closed"; iterators end. Resolves once the socket closed (or
   * after 2 s).
   * @returns {Promise<void>}
   */
  async close() {
    if (this._closed) return;
    if (this._room) this._ackNow(this._room);
    this._closed = true;
    if (this._ackTimer !== null) {
      clearTimeout(this._ackTimer);
      this._ackTimer = null;
    }
    const conn = this._conn;
    const err = fail(LocalCode.CLOSED, "the client was closed");
    for (const [id, p] of this._pending) {
      this._pending.delete(id);
      p.reject(err);
    }
    for (const w of [...this._waiters]) w.reject(err);
    for (const it of this._iterators) it.end();
    this._iterators.clear();
    if (conn && conn.ws.readyState !== 3) {
      await new Promise((resolve) => {
        const t = setTimeout(resolve, 2000);
        conn.ws.addEventListener("close", () => {
          clearTimeout(t);
          resolve();
        });
        try {
          conn.ws.close(CloseCode.NORMAL);
        } catch {
          clearTimeout(t);
          resolve();
        }
      });
    }
  }
}
