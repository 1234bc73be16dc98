// dh.js: keyrelay's cryptography in JavaScript, the counterpart of the Go
// package github.com/keyrelay/keyrelay/dh: the groups of protocol.md §5.1,
// key generation, public-key validation (§5.2), the shared secret, key
// derivation (§5.3), the message Channel (§5.4) and the safety number
// (§5.5), byte for byte those of Go. An ES module with no build step and no
// dependencies but modp.js and bytes.js beside it, for browsers and Node.js
// >= 20. It knows nothing of the relay or its protocol; keyrelay.js (the
// client) imports it and re-exports its API, so most code imports
// keyrelay.js alone.
//
// All cryptography runs here, in the client: key pairs are generated locally,
// the relay only ever sees public keys and ciphertext. X25519 and P-256 use
// WebCrypto; the RFC 3526 MODP groups use BigInt arithmetic (modp.js).
// HKDF-SHA256 (built on WebCrypto's HMAC), AES-256-GCM and SHA-512 come from
// WebCrypto.
//
// This module never logs: no key or plaintext is ever printed.

import {
  DHCode, bytesEqual, bytesToBigInt, bytesToHex, compareBytes, concatBytes, encoder, fail, hexToBytes,
  readUint64BE, uint64BE,
} from "./bytes.js";
import { isModp, modpGenerateKeyPair, modpParsePublicKey, modpSharedSecret, modpSize } from "./modp.js";

export {
  DHCode, KeyrelayError, base64ToBytes, bytesToBase64, bytesToHex, hexToBytes, utf8Decode, utf8Encode,
} from "./bytes.js";
export { _modpKeyPairFromPrivate, _modpPublicFromPrivate } from "./modp.js";

/**
 * Every group name of protocol.md §5.1, MODP groups first in increasing
 * size, then the elliptic curves (the order of Go's dh.Groups()).
 * @type {readonly string[]}
 */
export const GROUPS = Object.freeze(["modp5", "modp14", "modp15", "modp16", "modp17", "modp18", "x25519", "p256"]);

/** The group a client uses when nothing else decides: "x25519". */
export const DEFAULT_GROUP = "x25519";

/**
 * The MODP group to fall back to where WebCrypto lacks X25519 (generateKeyPair
 * then rejects with code "unsupported_group").
 */
export const FALLBACK_GROUP = "modp14";

/** Bytes a sealed body adds to its plaintext: 8-byte counter, 16-byte tag. */
export const MESSAGE_OVERHEAD = 24;

/** Length in bytes of the message key K. */
export const KEY_SIZE = 32;

const MAX_UINT64 = (1n << 64n) - 1n;
const AAD = encoder.encode("keyrelay/v1/msg");
const KEY_LABEL = encoder.encode("keyrelay/v1/key");
const SAFETY_LABEL = encoder.encode("keyrelay/v1/safety-number");

function subtle() {
  const c = globalThis.crypto;
  if (!c || !c.subtle) throw fail(DHCode.UNSUPPORTED_GROUP, "WebCrypto (crypto.subtle) is not available: a secure context (https or localhost) is required");
  return c.subtle;
}

// ---------------------------------------------------------------------------
// Public keys (protocol.md §5.1, §5.2)

const X25519_P = (1n << 255n) - 19n;
// The canonical X25519 u-coordinates of small order (little-endian hex):
// 0, 1, the two points of order 8, and p - 1.
const X25519_LOW_ORDER = new Set([
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
  "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]);
const P256_P = BigInt("0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff");
const P256_B = BigInt("0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b");

/**
 * Throws unless group is one of GROUPS.
 * @param {string} group
 * @throws {KeyrelayError} unknown_group
 */
export function checkGroup(group) {
  if (!GROUPS.includes(group)) throw fail(DHCode.UNKNOWN_GROUP, `unknown group ${JSON.stringify(String(group))}`);
}

/**
 * The length in bytes of a group's fixed-length public-key encoding: the
 * byte length of p (MODP), 32 (x25519) or 65 (p256).
 * @param {string} group
 * @returns {number}
 */
export function publicKeySize(group) {
  checkGroup(group);
  if (group === "x25519") return 32;
  if (group === "p256") return 65;
  return modpSize(group);
}

function sharedSecretSize(group) {
  return isModp(group) ? modpSize(group) : 32;
}

/**
 * Decodes and fully validates a public key as the relay does (§5.2), and
 * returns its fixed-length encoding (§5.3): 32 bytes (x25519), 65 bytes
 * (p256), or y left-padded to the byte length of p (MODP).
 * @param {string} group
 * @param {string} hex the wire encoding (either case)
 * @returns {Uint8Array}
 * @throws {KeyrelayError} unknown_group, malformed_key or invalid_public_key
 */
export function parsePublicKey(group, hex) {
  checkGroup(group);
  if (typeof hex !== "string" || hex.length === 0) throw fail(DHCode.MALFORMED_KEY, "empty");
  if (hex[0] === "+" || hex[0] === "-") throw fail(DHCode.MALFORMED_KEY, "signed");
  if (!/^[0-9a-fA-F]+$/.test(hex)) throw fail(DHCode.MALFORMED_KEY, "not hexadecimal");
  if (isModp(group)) return modpParsePublicKey(group, hex);
  const size = publicKeySize(group);
  if (hex.length > 2 * size) throw fail(DHCode.MALFORMED_KEY, "longer than the group allows");
  if (hex.length !== 2 * size) throw fail(DHCode.MALFORMED_KEY, "wrong length for the group");
  const b = hexToBytes(hex);
  if (group === "x25519") {
    const u = bytesToBigInt(b.slice().reverse());
    if (u >= X25519_P) throw fail(DHCode.INVALID_PUBLIC_KEY, "out of range");
    if (X25519_LOW_ORDER.has(bytesToHex(b))) throw fail(DHCode.INVALID_PUBLIC_KEY, "low-order point");
    return b;
  }
  // p256: an uncompressed point on y^2 = x^3 - 3x + b.
  if (b[0] !== 4) throw fail(DHCode.INVALID_PUBLIC_KEY, "not a point on the curve");
  const x = bytesToBigInt(b.subarray(1, 33));
  const y = bytesToBigInt(b.subarray(33, 65));
  if (x >= P256_P || y >= P256_P || (y * y - (x * x * x - 3n * x + P256_B)) % P256_P !== 0n) {
    throw fail(DHCode.INVALID_PUBLIC_KEY, "not a point on the curve");
  }
  return b;
}

// ---------------------------------------------------------------------------
// Key pairs and shared secrets

/**
 * Reports whether this environment can generate keys of group (x25519 needs
 * WebCrypto X25519; p256 WebCrypto ECDH; MODP groups only BigInt).
 * @param {string} group
 * @returns {Promise<boolean>}
 */
export async function isGroupSupported(group) {
  try {
    await generateKeyPair(group);
    return true;
  } catch (e) {
    if (e && e.code === DHCode.UNSUPPORTED_GROUP) return false;
    throw e;
  }
}

/**
 * Generates an ephemeral key pair. privateKey is opaque (a non-extractable
 * CryptoKey for x25519/p256, an object holding nothing printable for MODP);
 * publicKeyHex is the wire encoding of §5.1 (lowercase hex).
 * @param {string} [group=DEFAULT_GROUP]
 * @returns {Promise<{group: string, publicKeyHex: string, privateKey: object}>}
 * @throws {KeyrelayError} unknown_group, or unsupported_group where WebCrypto
 *   lacks the curve (then use FALLBACK_GROUP, "modp14")
 */
export async function generateKeyPair(group = DEFAULT_GROUP) {
  checkGroup(group);
  if (isModp(group)) return modpGenerateKeyPair(group);
  const algorithm = group === "x25519" ? { name: "X25519" } : { name: "ECDH", namedCurve: "P-256" };
  let kp;
  try {
    kp = await subtle().generateKey(algorithm, false, ["deriveBits"]);
  } catch (e) {
    if (e && e.code === DHCode.UNSUPPORTED_GROUP) throw e;
    throw fail(DHCode.UNSUPPORTED_GROUP, `${group} is not supported by this environment's WebCrypto; use ${FALLBACK_GROUP}`);
  }
  const pub = new Uint8Array(await subtle().exportKey("raw", kp.publicKey));
  return Object.freeze({ group, publicKeyHex: bytesToHex(pub), privateKey: kp.privateKey });
}

/**
 * Wraps a WebCrypto private CryptoKey (x25519 or p256, with the deriveBits
 * usage) and its public key into a key pair, for keys imported by the caller
 * (tests import fixed keys from PKCS#8 or JWK).
 * @param {string} group "x25519" or "p256"
 * @param {CryptoKey} privateKey
 * @param {string} publicKeyHex
 */
export function keyPairFromCryptoKey(group, privateKey, publicKeyHex) {
  if (group !== "x25519" && group !== "p256") throw fail(DHCode.UNKNOWN_GROUP, "x25519 or p256 expected");
  parsePublicKey(group, publicKeyHex);
  return Object.freeze({ group, publicKeyHex: publicKeyHex.toLowerCase(), privateKey });
}

/**
 * Computes the raw shared secret Z (§5.1) with the peer's public key, after
 * validating it (§5.2): 32 bytes for x25519 and p256, y^x mod p left-padded
 * to the byte length of p for MODP. Z is not a key: pass it to deriveKey or
 * Channel.create.
 * @param {{group: string, privateKey: object}} keyPair from generateKeyPair
 * @param {string} peerPublicKeyHex
 * @returns {Promise<Uint8Array>}
 * @throws {KeyrelayError} malformed_key or invalid_public_key
 */
export async function sharedSecret(keyPair, peerPublicKeyHex) {
  const group = keyPair.group;
  const peer = parsePublicKey(group, peerPublicKeyHex);
  if (isModp(group)) return modpSharedSecret(keyPair, peer);
  const s = subtle();
  const algorithm = group === "x25519" ? { name: "X25519" } : { name: "ECDH", namedCurve: "P-256" };
  let z;
  try {
    const pub = await s.importKey("raw", peer, algorithm, true, []);
    z = new Uint8Array(await s.deriveBits({ name: algorithm.name, public: pub }, keyPair.privateKey, 256));
  } catch (e) {
    throw fail(DHCode.INVALID_PUBLIC_KEY, `${group} key agreement failed`);
  }
  if (z.every((v) => v === 0)) throw fail(DHCode.INVALID_PUBLIC_KEY, "low-order point");
  return z;
}

// ---------------------------------------------------------------------------
// Key derivation and safety number (§5.3, §5.5)

function transcript(label, group, a, b) {
  const [lo, hi] = compareBytes(a, b) <= 0 ? [a, b] : [b, a];
  return concatBytes(label, [0], encoder.encode(group), [0], lo, hi);
}

async function deriveKeyBytes(group, z, a, b) {
  if (!(z instanceof Uint8Array) || z.length !== sharedSecretSize(group)) {
    throw fail(DHCode.BAD_SECRET, `the shared secret of ${group} is ${sharedSecretSize(group)} bytes`);
  }
  return hkdfSha256(z, transcript(KEY_LABEL, group, a, b));
}

async function hmacSha256(key, data) {
  const s = subtle();
  const k = await s.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await s.sign("HMAC", k, data));
}

/**
 * HKDF-SHA256 (RFC 5869) with an empty salt and L = 32, from WebCrypto's
 * HMAC rather than its HKDF: OpenSSL (Node.js) refuses an HKDF info longer
 * than 2048 bytes, and the info of the larger MODP groups is longer. An
 * empty salt is HashLen zero bytes (RFC 5869 §2.2), and 32 bytes are one
 * block: K = HMAC(PRK, info ‖ 0x01).
 */
async function hkdfSha256(ikm, info) {
  const prk = await hmacSha256(new Uint8Array(32), ikm);
  const k = await hmacSha256(prk, concatBytes(info, [1]));
  prk.fill(0);
  return k;
}

/**
 * Derives the 32-byte message key K (§5.3): HKDF-SHA256 with IKM = Z, an
 * empty salt and info = "keyrelay/v1/key" ‖ 0 ‖ group ‖ 0 ‖ lo ‖ hi over the
 * keys' fixed-length encodings. The two keys may come in either order.
 * @param {string} group
 * @param {Uint8Array} z the shared secret from sharedSecret
 * @param {string} pubAHex
 * @param {string} pubBHex
 * @returns {Promise<Uint8Array>}
 */
export async function deriveKey(group, z, pubAHex, pubBHex) {
  return deriveKeyBytes(group, z, parsePublicKey(group, pubAHex), parsePublicKey(group, pubBHex));
}

async function safetyNumberBytes(group, a, b) {
  const h = new Uint8Array(await subtle().digest("SHA-512", transcript(SAFETY_LABEL, group, a, b)));
  const groups = [];
  for (let i = 0; i < 12; i++) {
    let v = 0;
    for (let j = 0; j < 5; j++) v = v * 256 + h[5 * i + j]; // < 2^40: exact in a Number
    groups.push(String(v % 100000).padStart(5, "0"));
  }
  return groups.join(" ");
}

/**
 * The safety number of two public keys (§5.5): 60 digits in twelve groups
 * of five, the same for both peers; users compare it out of band.
 * @param {string} group
 * @param {string} pubAHex
 * @param {string} pubBHex
 * @returns {Promise<string>}
 */
export async function safetyNumber(group, pubAHex, pubBHex) {
  return safetyNumberBytes(group, parsePublicKey(group, pubAHex), parsePublicKey(group, pubBHex));
}

// ---------------------------------------------------------------------------
// Channel (§5.4)

function toUint64(v, what) {
  let n;
  try {
    n = BigInt(v);
  } catch {
    throw fail(DHCode.BAD_STATE, `${what} is not an integer`);
  }
  if (n < 0n || n > MAX_UINT64) throw fail(DHCode.BAD_STATE, `${what} is out of range`);
  return n;
}

/**
 * A Channel encrypts the messages one peer sends and decrypts those it
 * receives (protocol.md §5.4, like Go's dh.Channel): AES-256-GCM under K,
 * nonce uint32_be(role) ‖ uint64_be(counter), additional data
 * "keyrelay/v1/msg", body uint64_be(counter) ‖ ciphertext ‖ tag. The peer
 * whose fixed-length public key sorts first has role 0. Counters are BigInt.
 */
export class Channel {
  #key;
  #role;
  #nextSend = 0n;
  #nextReceive = 0n;

  /** Use Channel.create. */
  constructor(key, role) {
    if (!key || (role !== 0 && role !== 1)) throw fail(DHCode.INTERNAL, "use Channel.create");
    this.#key = key;
    this.#role = role;
  }

  /**
   * Derives K from Z and the two public keys and returns the Channel of the
   * peer whose key is selfPubHex. Both counters start at 0.
   * @param {string} group
   * @param {Uint8Array} z the shared secret (sharedSecret)
   * @param {string} selfPubHex
   * @param {string} peerPubHex
   * @returns {Promise<Channel>}
   * @throws {KeyrelayError} same_key if the two keys are equal, and the
   *   errors of parsePublicKey
   */
  static async create(group, z, selfPubHex, peerPubHex) {
    const self = parsePublicKey(group, selfPubHex);
    const peer = parsePublicKey(group, peerPubHex);
    if (bytesEqual(self, peer)) throw fail(DHCode.SAME_KEY, "the peer's public key is one's own");
    const k = await deriveKeyBytes(group, z, self, peer);
    const key = await subtle().importKey("raw", k, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
    k.fill(0);
    return new Channel(key, compareBytes(self, peer) < 0 ? 0 : 1);
  }

  /** This side's role, 0 or 1. @returns {number} */
  get role() {
    return this.#role;
  }

  #nonce(role, counter) {
    const n = new Uint8Array(12);
    const dv = new DataView(n.buffer);
    dv.setUint32(0, role);
    dv.setBigUint64(4, counter);
    return n;
  }

  /**
   * Encrypts plaintext with the next send counter. Concurrent calls get
   * distinct counters in call order (but may resolve out of order: a caller
   * that sends them must keep the order, as Client does).
   * @param {Uint8Array|string} plaintext bytes (a string is UTF-8 encoded)
   * @returns {Promise<Uint8Array>} the body, plaintext.length + 24 bytes
   * @throws {KeyrelayError} counter_exhausted after 2^64 - 1 messages
   */
  async seal(plaintext) {
    const pt = typeof plaintext === "string" ? encoder.encode(plaintext) : plaintext;
    const c = this.#nextSend;
    if (c >= MAX_UINT64) throw fail(DHCode.COUNTER_EXHAUSTED, "the send counter would wrap");
    this.#nextSend = c + 1n;
    const ct = await subtle().encrypt(
      { name: "AES-GCM", iv: this.#nonce(this.#role, c), additionalData: AAD, tagLength: 128 }, this.#key, pt);
    return concatBytes(uint64BE(c), new Uint8Array(ct));
  }

  /**
   * Authenticates and decrypts a body sealed by the peer. A refused body
   * changes nothing.
   * @param {Uint8Array} body
   * @returns {Promise<Uint8Array>} the plaintext
   * @throws {KeyrelayError} short_message, replay (counter not above the
   *   last accepted, or 2^64 - 1), decrypt (authentication failed)
   */
  async open(body) {
    if (!(body instanceof Uint8Array) || body.length < MESSAGE_OVERHEAD) throw fail(DHCode.SHORT_MESSAGE, "body shorter than 24 bytes");
    const c = readUint64BE(body, 0);
    if (c === MAX_UINT64 || c < this.#nextReceive) throw fail(DHCode.REPLAY, "counter not above the last accepted");
    let pt;
    try {
      pt = await subtle().decrypt(
        { name: "AES-GCM", iv: this.#nonce(1 - this.#role, c), additionalData: AAD, tagLength: 128 }, this.#key, body.subarray(8));
    } catch {
      throw fail(DHCode.DECRYPT, "message authentication failed");
    }
    if (c < this.#nextReceive) throw fail(DHCode.REPLAY, "counter not above the last accepted"); // a concurrent open won
    this.#nextReceive = c + 1n;
    return new Uint8Array(pt);
  }

  /**
   * The counters, to keep across a reconnection or restart.
   * @returns {{nextSend: bigint, nextReceive: bigint}}
   */
  state() {
    return { nextSend: this.#nextSend, nextReceive: this.#nextReceive };
  }

  /**
   * Restores counters saved with state() (bigint, number or decimal string).
   * @param {{nextSend: bigint|number|string, nextReceive: bigint|number|string}} s
   * @throws {KeyrelayError} counter_regression if a counter would go back
   */
  setState(s) {
    const send = toUint64(s.nextSend, "nextSend");
    const recv = toUint64(s.nextReceive, "nextReceive");
    if (send < this.#nextSend || recv < this.#nextReceive) throw fail(DHCode.COUNTER_REGRESSION, "channel counters cannot go backwards");
    this.#nextSend = send;
    this.#nextReceive = recv;
  }

  /** A description without the key. */
  toString() {
    return `[keyrelay Channel role ${this.#role}]`;
  }

  toJSON() {
    return { role: this.#role };
  }
}
