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
// At about 1,200 lines this file is over the ~600 the other modules keep,
// because nearly all of it is one class: Client is one state machine over
// one connection, and its frame dispatch, requests, group pinning, resume
// and re-sending, events and acks share the same private state (pending
// requests, the room, the waiters).
// Splitting the class across modules would mean exposing that state. The
// one part that could stand alone is the event delivery (on, onevent,
// events(), the backlog), about 130 lines, as a named queue type.
//
// This module never logs: no key, token or plaintext is ever printed.

import {
  Channel, DEFAULT_GROUP, GROUPS, MESSAGE_OVERHEAD, base64ToBytes, bytesToBase64, checkGroup,
  generateKeyPair, parsePublicKey, safetyNumber, sharedSecret, utf8Decode, utf8Encode,
} from "./dh.js";
import { DHCode, bytesEqual, fail } from "./bytes.js";
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
  GROUP_CHANGED: "group_changed", // the relay reported a group other than the one the client pinned
  SUPERSEDED: "superseded", // close 4409: another connection resumed this place; do not resume
  RESUME_GAVE_UP: "resume_gave_up", // resume() tried every URL until the relay's grace period for the seat passed
});

/**
 * The legacy groups (modp5, 1536-bit): below the minimum the client accepts
 * unless Client.connect's allowLegacyGroups is set (protocol.md, issue 12 C2).
 * A room, key or share link in one of them is refused with group_not_allowed.
 */
export const LEGACY_GROUPS = Object.freeze(["modp5"]);

/** The relay's default frame-size limit (bytes). */
export const DEFAULT_MAX_FRAME_SIZE = 64 * 1024;

const ACK_BATCH = 16; // ack at once when this many delivered messages are unacknowledged
const ACK_DELAY_MS = 200; // else ack after this delay, covering every message since
const RESEND_DELAY_MS = 500; // after "unavailable", the first wait before sending the same body again
const RESEND_MAX_DELAY_MS = 4000; // and the longest, doubling from the first

/** The resume grace period assumed when the relay's room frame gives none: the relay's default, 2 minutes. */
export const DEFAULT_RESUME_GRACE_MS = 120_000;
/** resume()'s wait before its first retry after a round of every URL (ms); it doubles each time… */
export const RESUME_BACKOFF_MIN_MS = 100;
/** …up to this (ms); each wait is varied at random by ±20%. */
export const RESUME_BACKOFF_MAX_MS = 5000;
const RESUME_JITTER = 0.2;

/**
 * The wait after the k-th retry round of resume() (k >= 1): 100 ms doubling
 * up to 5 s, ±20% at random, so that the clients of a stopped instance do
 * not all come back at the same instant.
 * @param {number} k
 * @param {() => number} [random=Math.random]
 * @returns {number} milliseconds
 */
export function resumeBackoffMs(k, random = Math.random) {
  const base = Math.min(RESUME_BACKOFF_MIN_MS * 2 ** Math.min(k - 1, 16), RESUME_BACKOFF_MAX_MS);
  return base * (1 - RESUME_JITTER + 2 * RESUME_JITTER * random());
}

// The errors of one resume attempt after which another attempt, perhaps on
// another instance, may succeed.
const RETRY_RESUME = new Set([LocalCode.CONNECT_FAILED, LocalCode.DISCONNECTED, LocalCode.ABORTED, Code.UNAVAILABLE, Code.RATE_LIMITED, Code.JOIN_RATE_LIMITED, Code.INTERNAL]);

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

/**
 * The relay URLs for a page the relay serves: the page's own relay
 * (relayURLFromLocation) first, then the other instances listed in
 * `others`, a string of ws: or wss: URLs separated by spaces or commas (a
 * page's <meta name="keyrelay-relays" content="…">). Other entries and
 * repeats are dropped.
 * @param {{protocol: string, host: string}} [loc=globalThis.location]
 * @param {string} [others=""]
 * @returns {string[]}
 */
export function relayURLs(loc = globalThis.location, others = "") {
  const urls = [relayURLFromLocation(loc)];
  for (const u of String(others || "").split(/[\s,]+/)) {
    if (/^wss?:\/\/[^\s/]+/.test(u) && !urls.includes(u)) urls.push(u);
  }
  return urls;
}


function relayError(f) {
  return fail(String(f.code || Code.INTERNAL), typeof f.message === "string" ? f.message : "", {
    fromRelay: true,
    relayMessage: typeof f.message === "string" ? f.message : "",
  });
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(fail(LocalCode.ABORTED, "aborted"));
    const onAbort = () => {
      clearTimeout(t);
      reject(fail(LocalCode.ABORTED, "aborted"));
    };
    const t = setTimeout(() => {
      if (signal) signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    if (signal) signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Throws unknown_group for a name not in GROUPS, group_not_allowed for a legacy group not allowed. */
function checkAllowed(group, allowLegacy) {
  checkGroup(group);
  if (LEGACY_GROUPS.includes(group) && !allowLegacy) {
    throw fail(Code.GROUP_NOT_ALLOWED, `${group} is a legacy group, below the minimum this client accepts (allowLegacyGroups is not set)`, { got: group });
  }
}

/** The resume grace period a room frame gives (ms), or the default. */
function graceOf(f) {
  const ms = Number(f.resume_grace_ms);
  return Number.isFinite(ms) && ms > 0 ? ms : DEFAULT_RESUME_GRACE_MS;
}

function newPeerState() {
  return { keyHex: null, keyBytes: null, group: null, complete: false, gone: false, err: null, channel: null, hs: null, deriving: null };
}

/**
 * A connection to a relay and the client's place in at most one room, like
 * Go's relay/client. It generates its key pair locally, validates the peer's
 * key itself, and encrypts and decrypts every message end to end.
 *
 * Group pinning: the client insists on one group per room. create(group)
 * pins the group it asks for; join(room, {group}) pins the group the share
 * link carried; a join without one accepts the room's group unless it is a
 * legacy group (LEGACY_GROUPS, refused unless allowLegacyGroups). A `room`
 * reply, `key_ok`, `peer_key` or `handshake_complete` in another group is
 * refused: the client leaves the room, the pending request rejects with
 * group_changed (err.expected, err.got) or group_not_allowed (err.got), and
 * an "error" event with the same code says so.
 *
 * Events (objects with a `type`) arrive in the order the relay sent them:
 * - `{type: "message", seq, text, bytes}`: a decrypted message. A copy of a
 *   message already accepted (its counter is below the next expected: the
 *   sender sent the same body again, see send()) is acknowledged and dropped
 *   without an event.
 * - `{type: "peer_joined", resumed}`, `{type: "peer_left", reason}` ("left",
 *   "dropped", or "expired": the dropped peer's grace period ended; after
 *   "left" and "expired" the next peer is a new one, with a new key)
 * - `{type: "peer_key", publicKey, group}`: the peer's key arrived and is valid
 * - `{type: "error", code, message, seq?}`: a relay error that answers no
 *   request (room_expired, rate_limited …); code "bad_message" for a
 *   message that could not be opened (it is acknowledged and dropped);
 *   group_changed or group_not_allowed when the client refused the room's
 *   group (see above; it has left the room)
 * - `{type: "closed", code, reason, final}`: the connection ended; call
 *   resume(), unless final is true: close code 4409 (CloseCode.SUPERSEDED),
 *   another connection resumed this client's place, so this client is in no
 *   room any more and resume() rejects with code "superseded"
 * - `{type: "reconnecting", url, attempt, leftMs, error}`: resume() is
 *   about to try url (its attempt-th try; the relay keeps the seat leftMs
 *   longer; error is the previous attempt's code, null for the first)
 *
 * Read them with `on(type, fn)` (type "*" for all), the `onevent` property,
 * or `for await (const ev of client)`. Events that arrive while nobody
 * listens wait until a listener or iterator is attached. Messages are
 * acknowledged once handed to the application, in batches (acks count
 * against the relay's rate limit).
 *
 * Failover: give connect() the URLs of several instances of one relay
 * (sharing one store); resume() tries them in turn with jittered backoff
 * for as long as the relay keeps the seat (the grace period its room frame
 * gives, 2 minutes by default), and reports each attempt.
 *
 * Requests (create, join, handshake, send, resume, leave) reject with a
 * KeyrelayError; for a relay error frame, `.code` is the relay's code and
 * `.fromRelay` is true. Every request takes an optional `{signal}`
 * (AbortSignal) to stop waiting.
 */
export class Client {
  /** Use Client.connect. */
  constructor(urls, opts) {
    this._urls = urls; // the relay's instances, tried in turn by resume()
    this._urlIdx = 0; // the index of the current (or last) connection's URL
    this._WS = opts.WebSocket;
    this._protocols = opts.protocols;
    this._defaultGroup = opts.group;
    this._allowLegacy = opts.allowLegacyGroups;
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
    this._superseded = null; // the error after close 4409: resume() refuses
    this._listeners = new Map();
    this._onevent = null;
    this._iterators = new Set();
    this._backlog = [];
    this._ackTimer = null;
  }

  /**
   * Connects to the relay's WebSocket endpoint (for instance
   * "ws://localhost:8080/v1/ws"), offering the keyrelay.v1 subprotocol.
   * Given several URLs (instances of one relay sharing one store), it
   * connects to the first that answers, each tried once in order, and
   * resume() tries them all in turn.
   * @param {string|string[]} url one URL, or several
   * @param {object} [opts]
   * @param {Function} [opts.WebSocket=globalThis.WebSocket] a WHATWG-style
   *   WebSocket constructor (new WebSocket(url, protocols))
   * @param {string[]} [opts.protocols=["keyrelay.v1"]] subprotocols offered
   * @param {string} [opts.group=DEFAULT_GROUP] the group create() asks for
   *   when given none, and handshake() uses when neither the room nor the
   *   peer's key has fixed one
   * @param {boolean} [opts.allowLegacyGroups=false] accept the legacy groups
   *   (LEGACY_GROUPS: modp5) in create, join, share links and the relay's
   *   frames; without it they are refused with group_not_allowed
   * @param {number} [opts.maxFrameSize=65536] the relay's frame-size limit
   * @param {number} [opts.connectTimeoutMs=10000] bounds each connection
   *   attempt, and in resume() each attempt's resume reply
   * @returns {Promise<Client>}
   * @throws {KeyrelayError} connect_failed (with every URL's reason);
   *   unknown_group or group_not_allowed for opts.group
   */
  static async connect(url, opts = {}) {
    const o = {
      WebSocket: opts.WebSocket || globalThis.WebSocket,
      protocols: opts.protocols || [SUBPROTOCOL],
      group: opts.group || DEFAULT_GROUP,
      allowLegacyGroups: opts.allowLegacyGroups === true,
      maxFrameSize: opts.maxFrameSize || DEFAULT_MAX_FRAME_SIZE,
      connectTimeoutMs: opts.connectTimeoutMs || 10000,
    };
    if (typeof o.WebSocket !== "function") throw fail(LocalCode.CONNECT_FAILED, "no WebSocket implementation: pass one as opts.WebSocket");
    checkAllowed(o.group, o.allowLegacyGroups);
    const urls = (Array.isArray(url) ? url : [url]).map(String);
    if (urls.length === 0) throw fail(LocalCode.CONNECT_FAILED, "no relay URL");
    const c = new Client(urls, o);
    const reasons = [];
    for (let i = 0; i < urls.length; i++) {
      try {
        c._conn = await c._dial(urls[i]);
        c._urlIdx = i;
        return c;
      } catch (e) {
        reasons.push(`${urls[i]}: ${e.message.replace(/^keyrelay: [a-z_]+: /, "")}`);
      }
    }
    throw fail(LocalCode.CONNECT_FAILED, reasons.join("; "));
  }

  /** The URL of the relay the client is connected to, or was last. @type {string} */
  get url() {
    return this._urls[this._urlIdx];
  }

  // -- connection ----------------------------------------------------------

  _dial(url) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new this._WS(url, this._protocols);
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
    const current = conn === this._conn && !conn.replaced;
    // 4409: a newer connection resumed this place. It is final: resuming
    // from here would close the newer one in turn.
    const superseded = current && !this._closed && code === CloseCode.SUPERSEDED;
    let err;
    if (this._closed) err = fail(LocalCode.CLOSED, "the client was closed");
    else if (superseded) err = fail(LocalCode.SUPERSEDED, "another connection resumed this client's place in the room (close 4409); do not resume from here", { closeCode: code });
    else err = fail(LocalCode.DISCONNECTED, `connection closed (code ${code})`, { closeCode: code });
    for (const [id, p] of this._pending) {
      if (p.conn === conn) {
        this._pending.delete(id);
        p.reject(err);
      }
    }
    for (const w of this._waiters) {
      if (w.conn === conn) w.reject(err);
    }
    if (superseded) {
      this._superseded = err;
      if (this._room) {
        this._room.err = err;
        this._room = null;
      }
    }
    if (current && this._room && this._room.droppedAt === null) this._room.droppedAt = Date.now(); // the seat's grace runs from here
    this._changed(); // sends waiting for a connection (send()) look again
    if (current) {
      this._emit({ type: "closed", code, reason: reason || "", final: superseded }, null);
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

  /**
   * Resolves when check() returns a truthy value; check may throw. The wait
   * ends with the current connection unless acrossDrops, which waits on
   * through resume() (check decides when to give up).
   */
  _waitState(check, signal, acrossDrops = false) {
    return new Promise((resolve, reject) => {
      const w = { conn: acrossDrops ? null : this._conn, resolve: null, reject: null };
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
      if (this._waiters.has(w) && !acrossDrops && (!w.conn || !w.conn.open)) w.reject(fail(LocalCode.DISCONNECTED, "the connection is not open"));
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
            try {
              if (p.apply) p.apply(f); // may refuse the reply (a group other than the pinned one)
              p.resolve(f);
            } catch (e) {
              p.reject(e);
            }
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
        try {
          this._pinGroup(rs, f.group, FrameType.HANDSHAKE_COMPLETE);
        } catch {
          return; // refused: the client left the room
        }
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
    try {
      this._pinGroup(rs, f.group, FrameType.PEER_KEY);
    } catch {
      return; // refused: the client left the room
    }
    let bytes;
    try {
      bytes = parsePublicKey(f.group, f.public_key);
    } catch (e) {
      ps.err = e; // the relay forwarded an invalid key: the exchange failed
      this._changed();
      return;
    }
    if (ps.keyBytes === null) {
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
      // After leave or the end of the grace period the place is free: the
      // next peer is a new one, whose key is accepted (not peer_key_changed).
      if (f.reason === Reason.LEFT || f.reason === Reason.EXPIRED) rs.peer = newPeerState();
      ev = { type: "peer_left", reason: String(f.reason || "") };
    }
    this._changed();
    this._emit(ev, rs);
  }

  /**
   * A message from the peer. One whose seq is not above the last processed
   * is skipped before decrypting (a re-delivery; its ack is already due).
   * One whose counter the Channel already accepted (the sender sent the same
   * body again after a drop or "unavailable") is a duplicate: acknowledged,
   * no event. One that cannot be opened (a bad tag …) is acknowledged too,
   * so the relay does not deliver it again at every resume, and reported
   * as a "bad_message" error event.
   */
  async _onMsg(f) {
    const rs = this._room;
    if (!rs) return;
    const seq = Number(f.seq);
    if (!(seq > rs.lastSeq)) return; // already processed
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
      if (e && e.code === DHCode.REPLAY) {
        ev = null; // a duplicate: acknowledged in its turn, not shown
      } else {
        ev = { type: "error", code: LocalCode.BAD_MESSAGE, message: `message ${seq} refused: ${e && e.code ? e.code : "error"}`, seq, cause: e && e.code };
      }
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
    if (ev === null) {
      // A silent item (a duplicate message): only its ack, in order.
      if (seq !== undefined && rs) this._delivered(rs, seq);
      return;
    }
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
   * "peer_left", "peer_key", "error", "closed", "reconnecting", or "*" for
   * all).
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
   * The client's room, or null outside one. resumeGraceMs is how long the
   * relay keeps the seat after a drop, as its room frame said
   * (DEFAULT_RESUME_GRACE_MS if it did not): how long resume() tries.
   * @returns {{room: string, peer: string, group: string|null, peers: number, resumeGraceMs: number} | null}
   */
  get room() {
    const rs = this._room;
    return rs ? { room: rs.id, peer: rs.peerID, group: rs.group, peers: rs.peers, resumeGraceMs: rs.graceMs } : null;
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
    return {
      id: String(f.room), peerID: String(f.peer), token: String(f.resume_token), peers: Number(f.peers) || 1,
      group: null, // the pinned group: every later group must equal it
      err: null, // why the client refused the room (group_changed …), or superseded
      conn: null, // the connection on which the client is in the room
      priv: null, keySent: false, keyStored: false, peer: newPeerState(), expired: false,
      lastSeq: 0, delivered: 0, acked: 0, sentSeq: 0,
      graceMs: graceOf(f), // the room's resume grace period
      droppedAt: null, // when the connection holding the seat ended (Date.now()); null while connected
    };
  }

  /**
   * Checks the group of a frame of the room against the pinned group, and
   * pins it if none was: a name that differs from the pinned group is
   * refused (group_changed), and so is a legacy group when the client pins
   * one itself (group_not_allowed). A `room` reply may carry no group (the
   * room's group is not fixed yet), except the reply to create, which asked
   * for one; every other frame must carry one. A refusal leaves the room
   * (_refuse) and throws.
   */
  _pinGroup(rs, name, what, required = true) {
    if (rs.err) throw rs.err;
    const got = typeof name === "string" ? name : "";
    if (got === "" && !required) return;
    if (rs.group !== null) {
      if (got !== rs.group) {
        const said = got === "" ? "no group" : got;
        throw this._refuse(rs, fail(LocalCode.GROUP_CHANGED,
          `the relay changed the group from ${rs.group} to ${said} (in ${what}); this room is not safe`, { expected: rs.group, got }));
      }
      return;
    }
    if (!GROUPS.includes(got)) {
      throw this._refuse(rs, fail(DHCode.UNKNOWN_GROUP, `the relay's ${what} is in ${got === "" ? "no group" : `an unknown group ${JSON.stringify(got)}`}`, { got }));
    }
    if (LEGACY_GROUPS.includes(got) && !this._allowLegacy) {
      throw this._refuse(rs, fail(Code.GROUP_NOT_ALLOWED, `the relay's ${what} is in ${got}, a legacy group below the minimum this client accepts`, { got }));
    }
    rs.group = got;
  }

  /**
   * Refuses the room rs for good: records err as the room's failure (every
   * request and wait on it rejects with it), leaves the room at the relay
   * (best effort, no reply awaited: the peer sees peer_left "left"), and
   * emits an "error" event with err's code. Returns err.
   */
  _refuse(rs, err) {
    if (rs.err) return rs.err;
    rs.err = err;
    if (this._room === rs) {
      this._room = null;
      try {
        this._write(this._conn, { type: FrameType.LEAVE });
      } catch {
        // not connected: the relay frees the place after its grace period
      }
    }
    this._changed();
    const ev = { type: "error", code: err.code, message: err.message.replace(/^keyrelay: [a-z_]+: /, "") };
    if (err.expected !== undefined) ev.expected = err.expected;
    if (err.got !== undefined) ev.got = err.got;
    this._emit(ev, null);
    return err;
  }

  async _enter(frame, expected, signal) {
    let room;
    await this._start(frame, (f) => {
      const rs = this._newRoom(f);
      rs.group = expected;
      rs.conn = this._conn;
      this._room = rs;
      // The reply to create must carry the group asked for; a join's may
      // carry none (the room's group is not fixed yet).
      this._pinGroup(rs, f.group, FrameType.ROOM, frame.type === FrameType.CREATE);
      room = this.room;
    }, signal);
    return room;
  }

  /**
   * Creates a room in group and joins it. The group is pinned: a relay that
   * answers or forwards another group is refused (group_changed), see the
   * class comment. Share the room ID together with the group (the page's
   * link: #room=<id>&group=<group>), so the joiner can pin it too.
   * @param {string} [group=opts.group of connect, DEFAULT_GROUP by default]
   * @param {{signal?: AbortSignal}} [opts]
   * @returns {Promise<{room: string, peer: string, group: string, peers: number}>}
   * @throws {KeyrelayError} unknown_group, group_not_allowed (a legacy
   *   group without allowLegacyGroups), group_changed, relay errors
   *   (too_many_rooms …)
   */
  async create(group, { signal } = {}) {
    const g = group || this._defaultGroup;
    checkAllowed(g, this._allowLegacy);
    return this._enter({ type: FrameType.CREATE, group: g }, g, signal);
  }

  /**
   * Joins the existing room (a UUID). With opts.group (the group the share
   * link carried) the client pins it, and refuses a room in another group
   * (group_changed); without it, it accepts the room's group unless that
   * is a legacy group (group_not_allowed).
   * @param {string} room
   * @param {{group?: string, signal?: AbortSignal}} [opts]
   * @returns {Promise<{room: string, peer: string, group: string|null, peers: number}>}
   * @throws {KeyrelayError} unknown_group, group_not_allowed,
   *   group_changed, relay errors (room_not_found, room_full,
   *   already_in_room …)
   */
  async join(room, { group, signal } = {}) {
    if (group !== undefined && group !== null && group !== "") checkAllowed(group, this._allowLegacy);
    else group = null;
    return this._enter({ type: FrameType.JOIN, room: String(room) }, group, signal);
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
        // The pinned group, else the client's default (a room whose group
        // is not fixed yet); every key frame carries its group.
        const group = rs.group || this._defaultGroup;
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
          await this._start({ type: FrameType.KEY, public_key: priv.publicKeyHex, group }, (f) => {
            if (f.group !== group) {
              const err = fail(LocalCode.GROUP_CHANGED, `the relay changed the group from ${group} to ${f.group || "no group"} (in key_ok); this room is not safe`,
                { expected: group, got: typeof f.group === "string" ? f.group : "" });
              throw this._refuse(rs, err);
            }
            this._pinGroup(rs, f.group, FrameType.KEY_OK);
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
                if (rs.err) throw rs.err;
                if (this._room !== rs) throw fail(Code.NOT_IN_ROOM, "the room ended");
                return rs.group;
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
   *   for a bad peer key, same_key (the relay sent this client's own key
   *   back), peer_key_changed, group_changed / group_not_allowed (the
   *   client refused the room's group and left), unsupported_group,
   *   not_in_room, disconnected (resume(), then handshake() again),
   *   superseded
   */
  async handshake({ signal } = {}) {
    await this.sendKey({ signal });
    const rs = this._room;
    if (!rs) throw fail(Code.NOT_IN_ROOM, "not in a room");
    return this._waitState(() => {
      if (rs.err) throw rs.err;
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
   * relay gave it once stored. Sends go out one at a time, in call order:
   * each waits for the previous one's `sent`, so that the bodies reach the
   * relay in counter order even when one has to be sent again.
   *
   * Sending again (protocol.md, "a msg that got no sent"): once written, a
   * message that gets no `sent` may or may not have been stored. If the
   * connection drops first, the promise stays pending; when resume()
   * succeeds the client sends the *same* sealed body (same counter) again,
   * before any later message. If the relay answers `unavailable`, it sends
   * the same body again on the same connection after a pause (0.5 s,
   * doubling up to 4 s), or after resume() if the connection drops
   * meanwhile. The peer drops a copy it already has without a word (its
   * counter was accepted) and acknowledges it. The promise rejects when the
   * room ends (not_in_room), the peer changes before the message was
   * confirmed (handshake_incomplete), the client is closed, superseded, or
   * the signal aborts (the body may then have been stored or not).
   *
   * Queueing: when the connection is down at the call, send() rejects with
   * disconnected at once, unless `queue` is true: the message then waits
   * for resume() like one that got no `sent`, and is sealed and sent once
   * the client is back in the room, after every message sent before it.
   * It rejects as above if that never happens (the room ends, the client
   * is closed, superseded or gives up resuming and is closed). A chat page
   * queues what its user types while it reconnects; an application that
   * does not resume by itself should not queue.
   * @param {string|Uint8Array} message text (sent as UTF-8) or bytes
   * @param {{signal?: AbortSignal, queue?: boolean}} [opts] queue: wait for
   *   resume() instead of rejecting with disconnected (default false)
   * @returns {Promise<number>} the relay's seq
   * @throws {KeyrelayError} too_large, not_in_room, handshake_incomplete,
   *   disconnected (the connection was down when send() was called and
   *   queue was not set: nothing was sealed or sent), relay errors
   *   (mailbox_full, rate_limited, handshake_incomplete: not stored, send
   *   again later), closed, superseded, aborted
   */
  async send(message, { signal, queue = false } = {}) {
    const pt = typeof message === "string" ? utf8Encode(message) : message;
    if (!(pt instanceof Uint8Array)) throw fail(Code.BAD_REQUEST, "send takes a string or a Uint8Array");
    if (pt.length > this.maxPlaintext) throw fail(LocalCode.TOO_LARGE, `longer than ${this.maxPlaintext} bytes`);
    const rs = this._room;
    if (!rs) throw fail(Code.NOT_IN_ROOM, "not in a room");
    const ch = rs.peer.channel;
    if (rs.peer.err) throw rs.peer.err;
    if (!ch) throw fail(Code.HANDSHAKE_INCOMPLETE, "the handshake is not complete");
    if (!this._sendable(rs, ch) && !queue) throw fail(LocalCode.DISCONNECTED, "the connection is not open");
    const step = this._sendChain.then(() => this._sendOne(rs, ch, pt, signal));
    this._sendChain = step.catch(() => {});
    return step;
  }

  /**
   * Whether a message sealed with ch can go out now: true when the client
   * is in room rs on an open connection, false while it is not (before
   * resume()); throws when it never will.
   */
  _sendable(rs, ch) {
    if (this._closed) throw fail(LocalCode.CLOSED, "the client was closed");
    if (rs.err) throw rs.err;
    if (this._room !== rs) throw fail(Code.NOT_IN_ROOM, "the room ended");
    if (rs.peer.err) throw rs.peer.err;
    if (rs.peer.channel !== ch) throw fail(Code.HANDSHAKE_INCOMPLETE, "the peer changed before the message was confirmed");
    return rs.conn === this._conn && this._conn !== null && this._conn.open;
  }

  async _sendOne(rs, ch, pt, signal) {
    await this._waitState(() => this._sendable(rs, ch), signal, true);
    const body = bytesToBase64(await ch.seal(pt));
    let delay = RESEND_DELAY_MS;
    for (;;) {
      try {
        const f = await this._start({ type: FrameType.MSG, body }, null, signal);
        const seq = Number(f.seq);
        // resume()'s sent_seq: after a Redis failover that lost writes,
        // the relay numbers new messages above it.
        if (seq > rs.sentSeq) rs.sentSeq = seq;
        return seq;
      } catch (e) {
        if (e && e.fromRelay && e.code === Code.UNAVAILABLE) {
          await sleep(delay, signal);
          delay = Math.min(delay * 2, RESEND_MAX_DELAY_MS);
        } else if (!(e && e.code === LocalCode.DISCONNECTED)) {
          throw e;
        }
      }
      // No sent: the same body again, once the client is back in the room.
      await this._waitState(() => this._sendable(rs, ch), signal, true);
    }
  }

  /**
   * Takes the client's place back after its connection dropped: closes the
   * current connection if still open, dials again, and sends resume with the
   * room, peer ID, resume token and the highest seq received. Keys, Channel
   * counters and undelivered events are kept; the relay then re-sends the
   * messages not yet received, and the client sends again the message that
   * got no `sent` (see send()). After resume_expired or room_not_found the
   * client is in no room. The room's group must still be the pinned one
   * (else group_changed). After close 4409 (superseded) it rejects with
   * code "superseded" without dialling: a newer connection has the place.
   *
   * It tries the client's URLs (see connect) in turn, starting with the one
   * it was connected to: one round at once, then one attempt after each wait
   * of 100 ms, doubling up to 5 s, ±20% at random (resumeBackoffMs), each
   * attempt bounded by connectTimeoutMs, for as long as the relay keeps the
   * seat: the room's resume grace period (room.resumeGraceMs), counted from
   * when the client saw its connection end; every URL is tried at least
   * once. Before each attempt it emits `{type: "reconnecting", url, attempt,
   * leftMs, error}` (error: the previous attempt's code, or null), so a page
   * can show which relay it tries and for how long it will go on. Attempts
   * that failed with connect_failed, disconnected, a timeout, unavailable,
   * rate_limited, join_rate_limited or internal are tried again; any other
   * error rejects at once. Once the grace period has passed it rejects with
   * resume_gave_up (err.cause: the last attempt's error); the client stays
   * in the room and resume() may be called again.
   * @param {{signal?: AbortSignal}} [opts]
   * @returns {Promise<{room: string, peer: string, group: string|null, peers: number, resumeGraceMs: number}>}
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
    if (this._superseded) throw this._superseded;
    const rs = this._room;
    if (!rs) throw fail(Code.NOT_IN_ROOM, "not in a room");
    if (rs.droppedAt === null) rs.droppedAt = Date.now(); // still connected: the drop is now
    const deadline = rs.droppedAt + rs.graceMs;
    const n0 = this._urls.length;
    const first = this._urlIdx;
    let last = null;
    for (let n = 1; ; n++) {
      let left = deadline - Date.now();
      if (n > n0) {
        if (left <= 0) {
          throw fail(LocalCode.RESUME_GAVE_UP,
            `gave up after ${n - 1} attempts: the relay keeps a seat ${Math.round(rs.graceMs / 1000)} s after a drop (last: ${last && last.message})`, { cause: last });
        }
        await sleep(Math.min(resumeBackoffMs(n - n0), left), signal);
        left = deadline - Date.now();
      }
      if (this._closed) throw fail(LocalCode.CLOSED, "the client was closed");
      const i = (first + n - 1) % n0;
      this._emit({ type: "reconnecting", url: this._urls[i], attempt: n, leftMs: Math.max(left, 0), error: last ? last.code : null }, null);
      try {
        return await this._resumeOnce(rs, i, signal);
      } catch (e) {
        if ((signal && signal.aborted) || !e || !RETRY_RESUME.has(e.code)) throw e;
        last = e;
        // A connection the attempt left open is in no room: close it until
        // the next attempt (sends wait for a resumed connection).
        const c = this._conn;
        if (c && c.open && !c.replaced) {
          c.replaced = true;
          c.open = false;
          try {
            c.ws.close(CloseCode.NORMAL);
          } catch {
            // already closed
          }
          await this._serial(() => this._onClose(c, CloseCode.NORMAL, "replaced"));
        }
      }
    }
  }

  /** One attempt of resume(), on this._urls[i]. */
  async _resumeOnce(rs, i, signal) {
    const old = this._conn;
    if (old && !old.replaced) {
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
    const conn = await this._dial(this._urls[i]);
    if (this._closed) {
      conn.ws.close(CloseCode.NORMAL);
      throw fail(LocalCode.CLOSED, "the client was closed");
    }
    this._conn = conn;
    this._urlIdx = i;
    const frame = { type: FrameType.RESUME, room: rs.id, peer: rs.peerID, resume_token: rs.token };
    if (rs.lastSeq > 0) frame.last_seq = rs.lastSeq;
    if (rs.sentSeq > 0) frame.sent_seq = rs.sentSeq;
    // The attempt's reply is awaited for connectTimeoutMs at most.
    const attempt = new AbortController();
    const timer = setTimeout(() => attempt.abort(), this._connectTimeoutMs);
    const onAbort = () => attempt.abort();
    if (signal) signal.addEventListener("abort", onAbort, { once: true });
    try {
      await this._start(frame, (f) => {
        if (rs.err) throw rs.err;
        rs.peers = Number(f.peers) || rs.peers;
        if (f.resume_grace_ms !== undefined) rs.graceMs = graceOf(f);
        rs.droppedAt = null;
        this._room = rs;
        rs.conn = this._conn;
        this._pinGroup(rs, f.group, FrameType.ROOM, false);
      }, attempt.signal);
    } catch (e) {
      if (e.fromRelay && (e.code === Code.RESUME_EXPIRED || e.code === Code.ROOM_NOT_FOUND) && this._room === rs) {
        this._room = null; // the place is gone
        this._changed();
      }
      throw e;
    } finally {
      clearTimeout(timer);
      if (signal) signal.removeEventListener("abort", onAbort);
    }
    // Messages delivered but not acknowledged before the drop, and the last
    // ack again: written just before the drop, it may have been lost, and
    // the relay would keep those messages stored (one ack frame).
    if (rs.delivered > 0) rs.acked = 0; // so _ackNow sends ack(delivered)
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
