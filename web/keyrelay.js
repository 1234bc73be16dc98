// keyrelay.js: the JavaScript client of the keyrelay relay (docs/protocol.md),
// an ES module with no dependencies and no build step. It runs in browsers and
// in Node.js >= 20 (pass a WebSocket implementation to Client.connect where
// there is no global one).
//
// All cryptography runs here, in the client: key pairs are generated locally,
// the relay only ever sees public keys and ciphertext. X25519 and P-256 use
// WebCrypto; the RFC 3526 MODP groups use BigInt arithmetic. HKDF-SHA256
// (built on WebCrypto's HMAC), AES-256-GCM and SHA-512 come from WebCrypto.
// Byte for byte, the key
// derivation (§5.3), the messages (§5.4) and the safety number (§5.5) are
// those of the Go package github.com/keyrelay/keyrelay/dh.
//
// This module never logs: no key, token or plaintext is ever printed.

/** The WebSocket subprotocol the relay requires. */
export const SUBPROTOCOL = "keyrelay.v1";

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

/** The relay's default frame-size limit (bytes). */
export const DEFAULT_MAX_FRAME_SIZE = 64 * 1024;

// RFC 3526 primes, lowercase big-endian hex (copied from dh/rfc3526.go).
const PRIMES_HEX = {
  modp5:
    "ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74" +
    "020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f1437" +
    "4fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7ed" +
    "ee386bfb5a899fa5ae9f24117c4b1fe649286651ece45b3dc2007cb8a163bf05" +
    "98da48361c55d39a69163fa8fd24cf5f83655d23dca3ad961c62f356208552bb" +
    "9ed529077096966d670c354e4abc9804f1746c08ca237327ffffffffffffffff",
  modp14:
    "ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74" +
    "020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f1437" +
    "4fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7ed" +
    "ee386bfb5a899fa5ae9f24117c4b1fe649286651ece45b3dc2007cb8a163bf05" +
    "98da48361c55d39a69163fa8fd24cf5f83655d23dca3ad961c62f356208552bb" +
    "9ed529077096966d670c354e4abc9804f1746c08ca18217c32905e462e36ce3b" +
    "e39e772c180e86039b2783a2ec07a28fb5c55df06f4c52c9de2bcbf695581718" +
    "3995497cea956ae515d2261898fa051015728e5a8aacaa68ffffffffffffffff",
  modp15:
    "ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74" +
    "020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f1437" +
    "4fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7ed" +
    "ee386bfb5a899fa5ae9f24117c4b1fe649286651ece45b3dc2007cb8a163bf05" +
    "98da48361c55d39a69163fa8fd24cf5f83655d23dca3ad961c62f356208552bb" +
    "9ed529077096966d670c354e4abc9804f1746c08ca18217c32905e462e36ce3b" +
    "e39e772c180e86039b2783a2ec07a28fb5c55df06f4c52c9de2bcbf695581718" +
    "3995497cea956ae515d2261898fa051015728e5a8aaac42dad33170d04507a33" +
    "a85521abdf1cba64ecfb850458dbef0a8aea71575d060c7db3970f85a6e1e4c7" +
    "abf5ae8cdb0933d71e8c94e04a25619dcee3d2261ad2ee6bf12ffa06d98a0864" +
    "d87602733ec86a64521f2b18177b200cbbe117577a615d6c770988c0bad946e2" +
    "08e24fa074e5ab3143db5bfce0fd108e4b82d120a93ad2caffffffffffffffff",
  modp16:
    "ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74" +
    "020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f1437" +
    "4fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7ed" +
    "ee386bfb5a899fa5ae9f24117c4b1fe649286651ece45b3dc2007cb8a163bf05" +
    "98da48361c55d39a69163fa8fd24cf5f83655d23dca3ad961c62f356208552bb" +
    "9ed529077096966d670c354e4abc9804f1746c08ca18217c32905e462e36ce3b" +
    "e39e772c180e86039b2783a2ec07a28fb5c55df06f4c52c9de2bcbf695581718" +
    "3995497cea956ae515d2261898fa051015728e5a8aaac42dad33170d04507a33" +
    "a85521abdf1cba64ecfb850458dbef0a8aea71575d060c7db3970f85a6e1e4c7" +
    "abf5ae8cdb0933d71e8c94e04a25619dcee3d2261ad2ee6bf12ffa06d98a0864" +
    "d87602733ec86a64521f2b18177b200cbbe117577a615d6c770988c0bad946e2" +
    "08e24fa074e5ab3143db5bfce0fd108e4b82d120a92108011a723c12a787e6d7" +
    "88719a10bdba5b2699c327186af4e23c1a946834b6150bda2583e9ca2ad44ce8" +
    "dbbbc2db04de8ef92e8efc141fbecaa6287c59474e6bc05d99b2964fa090c3a2" +
    "233ba186515be7ed1f612970cee2d7afb81bdd762170481cd0069127d5b05aa9" +
    "93b4ea988d8fddc186ffb7dc90a6c08f4df435c934063199ffffffffffffffff",
  modp17:
    "ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74" +
    "020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f1437" +
    "4fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7ed" +
    "ee386bfb5a899fa5ae9f24117c4b1fe649286651ece45b3dc2007cb8a163bf05" +
    "98da48361c55d39a69163fa8fd24cf5f83655d23dca3ad961c62f356208552bb" +
    "9ed529077096966d670c354e4abc9804f1746c08ca18217c32905e462e36ce3b" +
    "e39e772c180e86039b2783a2ec07a28fb5c55df06f4c52c9de2bcbf695581718" +
    "3995497cea956ae515d2261898fa051015728e5a8aaac42dad33170d04507a33" +
    "a85521abdf1cba64ecfb850458dbef0a8aea71575d060c7db3970f85a6e1e4c7" +
    "abf5ae8cdb0933d71e8c94e04a25619dcee3d2261ad2ee6bf12ffa06d98a0864" +
    "d87602733ec86a64521f2b18177b200cbbe117577a615d6c770988c0bad946e2" +
    "08e24fa074e5ab3143db5bfce0fd108e4b82d120a92108011a723c12a787e6d7" +
    "88719a10bdba5b2699c327186af4e23c1a946834b6150bda2583e9ca2ad44ce8" +
    "dbbbc2db04de8ef92e8efc141fbecaa6287c59474e6bc05d99b2964fa090c3a2" +
    "233ba186515be7ed1f612970cee2d7afb81bdd762170481cd0069127d5b05aa9" +
    "93b4ea988d8fddc186ffb7dc90a6c08f4df435c93402849236c3fab4d27c7026" +
    "c1d4dcb2602646dec9751e763dba37bdf8ff9406ad9e530ee5db382f413001ae" +
    "b06a53ed9027d831179727b0865a8918da3edbebcf9b14ed44ce6cbaced4bb1b" +
    "db7f1447e6cc254b332051512bd7af426fb8f401378cd2bf5983ca01c64b92ec" +
    "f032ea15d1721d03f482d7ce6e74fef6d55e702f46980c82b5a84031900b1c9e" +
    "59e7c97fbec7e8f323a97a7e36cc88be0f1d45b7ff585ac54bd407b22b4154aa" +
    "cc8f6d7ebf48e1d814cc5ed20f8037e0a79715eef29be32806a1d58bb7c5da76" +
    "f550aa3d8a1fbff0eb19ccb1a313d55cda56c9ec2ef29632387fe8d76e3c0468" +
    "043e8f663f4860ee12bf2d5b0b7474d6e694f91e6dcc4024ffffffffffffffff",
  modp18:
    "ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74" +
    "020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f1437" +
    "4fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7ed" +
    "ee386bfb5a899fa5ae9f24117c4b1fe649286651ece45b3dc2007cb8a163bf05" +
    "98da48361c55d39a69163fa8fd24cf5f83655d23dca3ad961c62f356208552bb" +
    "9ed529077096966d670c354e4abc9804f1746c08ca18217c32905e462e36ce3b" +
    "e39e772c180e86039b2783a2ec07a28fb5c55df06f4c52c9de2bcbf695581718" +
    "3995497cea956ae515d2261898fa051015728e5a8aaac42dad33170d04507a33" +
    "a85521abdf1cba64ecfb850458dbef0a8aea71575d060c7db3970f85a6e1e4c7" +
    "abf5ae8cdb0933d71e8c94e04a25619dcee3d2261ad2ee6bf12ffa06d98a0864" +
    "d87602733ec86a64521f2b18177b200cbbe117577a615d6c770988c0bad946e2" +
    "08e24fa074e5ab3143db5bfce0fd108e4b82d120a92108011a723c12a787e6d7" +
    "88719a10bdba5b2699c327186af4e23c1a946834b6150bda2583e9ca2ad44ce8" +
    "dbbbc2db04de8ef92e8efc141fbecaa6287c59474e6bc05d99b2964fa090c3a2" +
    "233ba186515be7ed1f612970cee2d7afb81bdd762170481cd0069127d5b05aa9" +
    "93b4ea988d8fddc186ffb7dc90a6c08f4df435c93402849236c3fab4d27c7026" +
    "c1d4dcb2602646dec9751e763dba37bdf8ff9406ad9e530ee5db382f413001ae" +
    "b06a53ed9027d831179727b0865a8918da3edbebcf9b14ed44ce6cbaced4bb1b" +
    "db7f1447e6cc254b332051512bd7af426fb8f401378cd2bf5983ca01c64b92ec" +
    "f032ea15d1721d03f482d7ce6e74fef6d55e702f46980c82b5a84031900b1c9e" +
    "59e7c97fbec7e8f323a97a7e36cc88be0f1d45b7ff585ac54bd407b22b4154aa" +
    "cc8f6d7ebf48e1d814cc5ed20f8037e0a79715eef29be32806a1d58bb7c5da76" +
    "f550aa3d8a1fbff0eb19ccb1a313d55cda56c9ec2ef29632387fe8d76e3c0468" +
    "043e8f663f4860ee12bf2d5b0b7474d6e694f91e6dbe115974a3926f12fee5e4" +
    "38777cb6a932df8cd8bec4d073b931ba3bc832b68d9dd300741fa7bf8afc47ed" +
    "2576f6936ba424663aab639c5ae4f5683423b4742bf1c978238f16cbe39d652d" +
    "e3fdb8befc848ad922222e04a4037c0713eb57a81a23f0c73473fc646cea306b" +
    "4bcbc8862f8385ddfa9d4b7fa2c087e879683303ed5bdd3a062b3cf5b3a278a6" +
    "6d2a13f83f44f82ddf310ee074ab6a364597e899a0255dc164f31cc50846851d" +
    "f9ab48195ded7ea1b1d510bd7ee74d73faf36bc31ecfa268359046f4eb879f92" +
    "4009438b481c6cd7889a002ed5ee382bc9190da6fc026e479558e4475677e9aa" +
    "9e3050e2765694dfc81f56e880b96e7160c980dd98edd3dfffffffffffffffff",
};

// Private exponent sizes in bits (protocol.md §5.1: twice the group's
// strength, at least 256).
const MODP_EXPONENT_BITS = { modp5: 256, modp14: 256, modp15: 256, modp16: 304, modp17: 352, modp18: 400 };

const MAX_UINT64 = (1n << 64n) - 1n;
const ACK_BATCH = 16; // ack at once when this many delivered messages are unacknowledged
const ACK_DELAY_MS = 200; // else ack after this delay, covering every message since
const encoder = new TextEncoder();
const AAD = encoder.encode("keyrelay/v1/msg");
const KEY_LABEL = encoder.encode("keyrelay/v1/key");
const SAFETY_LABEL = encoder.encode("keyrelay/v1/safety-number");

// ---------------------------------------------------------------------------
// Errors

/**
 * The error every function of this module throws. `code` is stable:
 * a relay error code of protocol.md §4 for errors the relay sent
 * (`fromRelay` is then true), or one of these local codes:
 * `unknown_group`, `unsupported_group` (the group is valid but this
 * environment's WebCrypto lacks it: use FALLBACK_GROUP), `malformed_key`,
 * `invalid_public_key`, `group_mismatch`, `same_key`, `bad_hex`,
 * `bad_base64`, `short_message`, `replay`, `decrypt`, `counter_exhausted`,
 * `counter_regression`, `connect_failed`, `disconnected` (call resume()),
 * `closed`, `not_in_room`, `handshake_incomplete`, `peer_key_changed`,
 * `too_large`, `aborted`.
 */
export class KeyrelayError extends Error {
  /**
   * @param {string} code stable error code
   * @param {string} [message] human-readable detail
   * @param {object} [extra] extra properties (fromRelay, closeCode …)
   */
  constructor(code, message, extra) {
    super(message ? `keyrelay: ${code}: ${message}` : `keyrelay: ${code}`);
    this.name = "KeyrelayError";
    /** @type {string} */
    this.code = code;
    /** @type {boolean} true if the relay sent this error */
    this.fromRelay = false;
    if (extra) Object.assign(this, extra);
  }
}

function fail(code, message, extra) {
  return new KeyrelayError(code, message, extra);
}

// ---------------------------------------------------------------------------
// Encodings

const HEX_TABLE = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * Lowercase hex of bytes.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function bytesToHex(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += HEX_TABLE[bytes[i]];
  return s;
}

/**
 * Decodes hex (either case, even length, no prefix).
 * @param {string} hex
 * @returns {Uint8Array}
 * @throws {KeyrelayError} code "bad_hex"
 */
export function hexToBytes(hex) {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw fail("bad_hex", "not an even-length hex string");
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

/**
 * Standard base64 with padding (RFC 4648 §4), as the relay's msg bodies.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function bytesToBase64(bytes) {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/**
 * Decodes standard base64 with padding; anything else (URL alphabet, missing
 * padding, spaces) is refused.
 * @param {string} b64
 * @returns {Uint8Array}
 * @throws {KeyrelayError} code "bad_base64"
 */
export function base64ToBytes(b64) {
  if (typeof b64 !== "string" || b64.length % 4 !== 0 ||
      !/^[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(b64)) {
    throw fail("bad_base64", "not standard base64 with padding");
  }
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** UTF-8 encoding of a string. @param {string} s @returns {Uint8Array} */
export function utf8Encode(s) {
  return encoder.encode(s);
}

/** UTF-8 decoding (invalid sequences become U+FFFD). @param {Uint8Array} b @returns {string} */
export function utf8Decode(b) {
  return new TextDecoder().decode(b);
}

function concatBytes(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function bytesEqual(a, b) {
  return a.length === b.length && compareBytes(a, b) === 0;
}

function bytesToBigInt(b) {
  return b.length === 0 ? 0n : BigInt("0x" + bytesToHex(b));
}

function bigIntToBytes(n, len) {
  const hex = n.toString(16).padStart(2 * len, "0");
  if (hex.length > 2 * len) throw fail("internal", "integer too long");
  return hexToBytes(hex);
}

function uint64BE(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, n);
  return out;
}

function readUint64BE(b, off) {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off);
}

function subtle() {
  const c = globalThis.crypto;
  if (!c || !c.subtle) throw fail("unsupported_group", "WebCrypto (crypto.subtle) is not available: a secure context (https or localhost) is required");
  return c.subtle;
}

function randomBytes(n) {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}

// ---------------------------------------------------------------------------
// MODP arithmetic (RFC 3526 groups, g = 2).
//
// BigInt arithmetic is NOT constant-time: the timing of modPow depends on
// the secret exponent, and BigInt values cannot be wiped from memory. This
// is the fallback for environments without X25519 in WebCrypto; prefer
// x25519 (or p256) wherever WebCrypto offers it.

const modpCache = new Map();

function modpParams(group) {
  let m = modpCache.get(group);
  if (!m) {
    const p = BigInt("0x" + PRIMES_HEX[group]);
    m = { p, q: (p - 1n) >> 1n, size: PRIMES_HEX[group].length / 2, expBits: MODP_EXPONENT_BITS[group] };
    modpCache.set(group, m);
  }
  return m;
}

function isModp(group) {
  return Object.prototype.hasOwnProperty.call(PRIMES_HEX, group);
}

/** base^exp mod m by left-to-right square-and-multiply (not constant-time). */
function modPow(base, exp, m) {
  let result = 1n;
  base %= m;
  const bits = exp.toString(2);
  for (let i = 0; i < bits.length; i++) {
    result = (result * result) % m;
    if (bits.charCodeAt(i) === 49) result = (result * base) % m;
  }
  return result;
}

/** The Jacobi symbol (a/n) for odd n > 0. */
function jacobi(a, n) {
  a %= n;
  let t = 1;
  while (a !== 0n) {
    let z = 0;
    while ((a & 0xffffn) === 0n) {
      a >>= 16n;
      z += 16;
    }
    while ((a & 1n) === 0n) {
      a >>= 1n;
      z++;
    }
    const r = n & 7n;
    if ((z & 1) === 1 && (r === 3n || r === 5n)) t = -t;
    [a, n] = [n, a];
    if ((a & 3n) === 3n && (n & 3n) === 3n) t = -t;
    a %= n;
  }
  return n === 1n ? t : 0;
}

// MODP private exponents live here, keyed by the opaque private-key object,
// so that the object itself holds nothing to print or serialise.
const modpSecrets = new WeakMap();

function modpPrivateKey(group, x) {
  const key = Object.freeze({
    type: "modp-private",
    group,
    toString() {
      return `[keyrelay ${group} private key]`;
    },
    toJSON() {
      return { type: "modp-private", group };
    },
  });
  modpSecrets.set(key, x);
  return key;
}

function modpKeyPair(group, x) {
  const { p } = modpParams(group);
  const y = modPow(2n, x, p);
  return Object.freeze({ group, publicKeyHex: y.toString(16), privateKey: modpPrivateKey(group, x) });
}

/**
 * For tests: the MODP key pair of the private exponent xHex (hex, as Go's
 * PrivateKey.Hex prints it). Never use a fixed exponent for real.
 * @param {string} group a MODP group name
 * @param {string} xHex
 * @returns {{group: string, publicKeyHex: string, privateKey: object}}
 */
export function _modpKeyPairFromPrivate(group, xHex) {
  if (!isModp(group)) throw fail("unknown_group", `${group} is not a MODP group`);
  if (typeof xHex !== "string" || !/^[0-9a-fA-F]+$/.test(xHex)) throw fail("malformed_key", "private exponent is not hex");
  const x = BigInt("0x" + xHex);
  const { q } = modpParams(group);
  if (x < 1n || x >= q) throw fail("invalid_private_key", "exponent outside [1, q-1]");
  return modpKeyPair(group, x);
}

/**
 * For tests: y = 2^x mod p as lowercase hex without leading zeros.
 * @param {string} group a MODP group name
 * @param {string} xHex the private exponent in hex
 * @returns {string}
 */
export function _modpPublicFromPrivate(group, xHex) {
  return _modpKeyPairFromPrivate(group, xHex).publicKeyHex;
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

function checkGroup(group) {
  if (!GROUPS.includes(group)) throw fail("unknown_group", `unknown group ${JSON.stringify(String(group))}`);
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
  return modpParams(group).size;
}

function sharedSecretSize(group) {
  return isModp(group) ? modpParams(group).size : 32;
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
  if (typeof hex !== "string" || hex.length === 0) throw fail("malformed_key", "empty");
  if (hex[0] === "+" || hex[0] === "-") throw fail("malformed_key", "signed");
  if (!/^[0-9a-fA-F]+$/.test(hex)) throw fail("malformed_key", "not hexadecimal");
  const size = publicKeySize(group);
  if (isModp(group)) {
    if (hex.length > 2 * size) throw fail("malformed_key", "longer than the group allows");
    const { p } = modpParams(group);
    const y = BigInt("0x" + hex);
    if (y < 2n || y > p - 2n) throw fail("invalid_public_key", "out of range");
    // p is a safe prime: y^q ≡ 1 (mod p) exactly when (y/p) = 1 (Euler's criterion).
    if (jacobi(y, p) !== 1) throw fail("invalid_public_key", "not in the prime-order subgroup");
    return bigIntToBytes(y, size);
  }
  if (hex.length > 2 * size) throw fail("malformed_key", "longer than the group allows");
  if (hex.length !== 2 * size) throw fail("malformed_key", "wrong length for the group");
  const b = hexToBytes(hex);
  if (group === "x25519") {
    const u = bytesToBigInt(b.slice().reverse());
    if (u >= X25519_P) throw fail("invalid_public_key", "out of range");
    if (X25519_LOW_ORDER.has(bytesToHex(b))) throw fail("invalid_public_key", "low-order point");
    return b;
  }
  // p256: an uncompressed point on y^2 = x^3 - 3x + b.
  if (b[0] !== 4) throw fail("invalid_public_key", "not a point on the curve");
  const x = bytesToBigInt(b.subarray(1, 33));
  const y = bytesToBigInt(b.subarray(33, 65));
  if (x >= P256_P || y >= P256_P || (y * y - (x * x * x - 3n * x + P256_B)) % P256_P !== 0n) {
    throw fail("invalid_public_key", "not a point on the curve");
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
    if (e && e.code === "unsupported_group") return false;
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
  if (isModp(group)) {
    const { expBits } = modpParams(group);
    for (;;) {
      // x uniform in [1, 2^expBits - 1], which lies inside [1, q - 1].
      const x = bytesToBigInt(randomBytes(expBits / 8));
      if (x !== 0n) return modpKeyPair(group, x);
    }
  }
  const algorithm = group === "x25519" ? { name: "X25519" } : { name: "ECDH", namedCurve: "P-256" };
  let kp;
  try {
    kp = await subtle().generateKey(algorithm, false, ["deriveBits"]);
  } catch (e) {
    if (e && e.code === "unsupported_group") throw e;
    throw fail("unsupported_group", `${group} is not supported by this environment's WebCrypto; use ${FALLBACK_GROUP}`);
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
  if (group !== "x25519" && group !== "p256") throw fail("unknown_group", "x25519 or p256 expected");
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
  if (isModp(group)) {
    const x = modpSecrets.get(keyPair.privateKey);
    if (x === undefined) throw fail("invalid_private_key", "not a MODP private key of this module");
    const { p, size } = modpParams(group);
    const z = modPow(bytesToBigInt(peer), x, p);
    if (z <= 1n) throw fail("invalid_public_key", "the shared secret is the identity");
    return bigIntToBytes(z, size);
  }
  const s = subtle();
  const algorithm = group === "x25519" ? { name: "X25519" } : { name: "ECDH", namedCurve: "P-256" };
  let z;
  try {
    const pub = await s.importKey("raw", peer, algorithm, true, []);
    z = new Uint8Array(await s.deriveBits({ name: algorithm.name, public: pub }, keyPair.privateKey, 256));
  } catch (e) {
    throw fail("invalid_public_key", `${group} key agreement failed`);
  }
  if (z.every((v) => v === 0)) throw fail("invalid_public_key", "low-order point");
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
    throw fail("bad_secret", `the shared secret of ${group} is ${sharedSecretSize(group)} bytes`);
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
    throw fail("bad_state", `${what} is not an integer`);
  }
  if (n < 0n || n > MAX_UINT64) throw fail("bad_state", `${what} is out of range`);
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
    if (!key || (role !== 0 && role !== 1)) throw fail("internal", "use Channel.create");
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
    if (bytesEqual(self, peer)) throw fail("same_key", "the peer's public key is one's own");
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
    if (c >= MAX_UINT64) throw fail("counter_exhausted", "the send counter would wrap");
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
    if (!(body instanceof Uint8Array) || body.length < MESSAGE_OVERHEAD) throw fail("short_message", "body shorter than 24 bytes");
    const c = readUint64BE(body, 0);
    if (c === MAX_UINT64 || c < this.#nextReceive) throw fail("replay", "counter not above the last accepted");
    let pt;
    try {
      pt = await subtle().decrypt(
        { name: "AES-GCM", iv: this.#nonce(1 - this.#role, c), additionalData: AAD, tagLength: 128 }, this.#key, body.subarray(8));
    } catch {
      throw fail("decrypt", "message authentication failed");
    }
    if (c < this.#nextReceive) throw fail("replay", "counter not above the last accepted"); // a concurrent open won
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
    if (send < this.#nextSend || recv < this.#nextReceive) throw fail("counter_regression", "channel counters cannot go backwards");
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

// ---------------------------------------------------------------------------
// Client (the protocol of §1-§4, like Go's relay/client)

/**
 * The relay's WebSocket URL for a page the relay serves: ws(s)://host/v1/ws
 * from the page's location (wss: for an https: page).
 * @param {{protocol: string, host: string}} [loc=globalThis.location]
 * @returns {string}
 */
export function relayURLFromLocation(loc = globalThis.location) {
  if (!loc || !loc.host) throw fail("connect_failed", "no location to derive the relay URL from");
  return `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}/v1/ws`;
}


function relayError(f) {
  return fail(String(f.code || "internal"), typeof f.message === "string" ? f.message : "", {
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
    if (typeof o.WebSocket !== "function") throw fail("connect_failed", "no WebSocket implementation: pass one as opts.WebSocket");
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
        reject(fail("connect_failed", e && e.message ? e.message : "WebSocket constructor failed"));
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
        reject(fail("connect_failed", "timed out"));
      }, this._connectTimeoutMs);
      ws.addEventListener("open", () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (ws.protocol !== SUBPROTOCOL) {
          ws.close(1000);
          reject(fail("connect_failed", `the relay selected subprotocol ${JSON.stringify(ws.protocol)}, not ${SUBPROTOCOL}`));
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
          reject(fail("connect_failed", `closed during the handshake (code ${ev.code})`, { closeCode: ev.code }));
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
        reject(fail("connect_failed", "the WebSocket connection failed"));
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
    const err = this._closed ? fail("closed", "the client was closed") : fail("disconnected", `connection closed (code ${code})`, { closeCode: code });
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
    if (this._closed) throw fail("closed", "the client was closed");
    if (!conn || !conn.open || conn.ws.readyState !== 1) throw fail("disconnected", "the connection is not open");
    conn.ws.send(JSON.stringify(frame));
  }

  /** Writes a request and returns the promise of its reply. */
  _start(frame, apply, signal) {
    const conn = this._conn;
    const id = ++this._nextId;
    const key = String(id);
    return new Promise((resolve, reject) => {
      if (signal && signal.aborted) {
        reject(fail("aborted", "aborted"));
        return;
      }
      const entry = { conn, apply, resolve, reject };
      this._pending.set(key, entry);
      if (signal) {
        const onAbort = () => {
          if (this._pending.get(key) === entry) {
            this._pending.delete(key);
            reject(fail("aborted", "aborted"));
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
        reject(fail("aborted", "aborted"));
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
      if (this._closed) return w.reject(fail("closed", "the client was closed"));
      this._waiters.add(w);
      this._changed();
      if (this._waiters.has(w) && (!w.conn || !w.conn.open)) w.reject(fail("disconnected", "the connection is not open"));
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
      case "room":
      case "key_ok":
      case "sent":
      case "left":
      case "error": {
        const key = f.id === undefined || f.id === null ? "" : String(f.id);
        const p = key ? this._pending.get(key) : undefined;
        if (p) {
          this._pending.delete(key);
          if (f.type === "error") {
            p.reject(relayError(f));
          } else {
            if (p.apply) p.apply(f);
            p.resolve(f);
          }
          this._changed();
          return;
        }
        if (f.type !== "error") return; // a reply nobody waits for
        if (f.code === "room_expired" && this._room) {
          this._room.expired = true;
          this._room = null;
          this._changed();
        }
        this._emit({ type: "error", code: String(f.code), message: typeof f.message === "string" ? f.message : "" }, null);
        return;
      }
      case "peer_key":
        return this._onPeerKey(f);
      case "handshake_complete": {
        const rs = this._room;
        if (!rs) return;
        rs.setGroup(f.group);
        rs.peer.complete = true;
        rs.keyStored = rs.priv !== null;
        await this._derive(rs, rs.peer);
        this._changed();
        return;
      }
      case "peer_joined":
      case "peer_left":
        return this._onPeerEvent(f);
      case "msg":
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
      if (rs.group && f.group !== rs.group) throw fail("group_mismatch", `the peer key's group ${f.group} is not the room's ${rs.group}`);
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
      ps.err = fail("peer_key_changed", "the relay forwarded a different key for the same peer");
      this._changed();
    }
  }

  _onPeerEvent(f) {
    const rs = this._room;
    if (!rs) return;
    let ev;
    if (f.type === "peer_joined") {
      const resumed = f.resumed === true;
      if (!resumed && rs.peers === 2 && !rs.peer.gone) return; // the peer was already here
      rs.peers = 2;
      if (!resumed && rs.peer.gone) rs.peer = newPeerState(); // a new peer in the old one's place
      ev = { type: "peer_joined", resumed };
    } else {
      rs.peers = 1;
      rs.peer.gone = true;
      if (f.reason === "left") rs.peer = newPeerState();
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
      if (!ps.channel) throw fail("handshake_incomplete", "message before the handshake");
      const pt = await ps.channel.open(base64ToBytes(f.body));
      ev = { type: "message", seq, text: utf8Decode(pt), bytes: pt };
    } catch (e) {
      ev = { type: "error", code: "bad_message", message: `message ${seq} refused: ${e && e.code ? e.code : "error"}`, seq, cause: e && e.code };
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
        if (priv.group !== ps.group) throw fail("group_mismatch", "the keys belong to different groups");
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
          reject(fail("aborted", "aborted"));
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
      this._write(this._conn, { type: "ack", seq: rs.delivered });
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
    const frame = { type: "create" };
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
    return this._enter({ type: "join", room: String(room) }, signal);
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
        if (!rs) throw fail("not_in_room", "not in a room");
        if (rs.keyStored && rs.priv) return rs.priv.publicKeyHex;
        const group = rs.group || rs.peer.group || this._defaultGroup;
        if (!rs.priv || rs.priv.group !== group) {
          const kp = await generateKeyPair(group);
          if (this._room !== rs) throw fail("not_in_room", "the room ended");
          rs.priv = kp;
          rs.keySent = false;
        }
        const priv = rs.priv;
        const resend = rs.keySent;
        rs.keySent = true;
        try {
          await this._start({ type: "key", public_key: priv.publicKeyHex, group }, () => {
            if (rs.priv === priv) rs.keyStored = true;
          }, signal);
          return priv.publicKeyHex;
        } catch (e) {
          if (e.fromRelay && e.code === "key_already_set" && resend) {
            if (rs.priv === priv) rs.keyStored = true; // stored before a drop; its key_ok was lost
            return priv.publicKeyHex;
          }
          if (e.fromRelay) {
            if (rs.priv === priv) {
              rs.priv = null;
              rs.keySent = false;
            }
            if (e.code === "group_mismatch" && !retried) {
              retried = true;
              await this._waitState(() => {
                if (this._room !== rs) throw fail("not_in_room", "the room ended");
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
    if (!rs) throw fail("not_in_room", "not in a room");
    return this._waitState(() => {
      if (this._room !== rs) throw fail("not_in_room", "the room ended");
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
    const pt = typeof message === "string" ? encoder.encode(message) : message;
    if (!(pt instanceof Uint8Array)) throw fail("bad_request", "send takes a string or a Uint8Array");
    if (pt.length > this.maxPlaintext) throw fail("too_large", `longer than ${this.maxPlaintext} bytes`);
    const rs = this._room;
    if (!rs) throw fail("not_in_room", "not in a room");
    const ps = rs.peer;
    if (ps.err) throw ps.err;
    const ch = ps.channel;
    if (!ch) throw fail("handshake_incomplete", "the handshake is not complete");
    // Seal and write one after the other, so counters go out in order.
    const step = this._sendChain.then(async () => {
      if (this._conn === null || !this._conn.open) throw fail("disconnected", "the connection is not open");
      const body = await ch.seal(pt);
      return { reply: this._start({ type: "msg", body: bytesToBase64(body) }, null, signal) };
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
    if (this._closed) throw fail("closed", "the client was closed");
    const rs = this._room;
    if (!rs) throw fail("not_in_room", "not in a room");
    const old = this._conn;
    if (old) {
      old.replaced = true;
      old.open = false;
      try {
        old.ws.close(1000);
      } catch {
        // already closed
      }
      // Requests on the old connection get no reply now.
      await this._serial(() => this._onClose(old, 1000, "replaced"));
    }
    const conn = await this._dial();
    if (this._closed) {
      conn.ws.close(1000);
      throw fail("closed", "the client was closed");
    }
    this._conn = conn;
    const frame = { type: "resume", room: rs.id, peer: rs.peerID, resume_token: rs.token };
    if (rs.lastSeq > 0) frame.last_seq = rs.lastSeq;
    try {
      await this._start(frame, (f) => {
        rs.peers = Number(f.peers) || rs.peers;
        rs.setGroup(f.group);
        this._room = rs;
      }, signal);
    } catch (e) {
      if (e.fromRelay && (e.code === "resume_expired" || e.code === "room_not_found") && this._room === rs) {
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
    if (!rs) throw fail("not_in_room", "not in a room");
    this._ackNow(rs);
    await this._start({ type: "leave" }, () => {
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
    const err = fail("closed", "the client was closed");
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
          conn.ws.close(1000);
        } catch {
          clearTimeout(t);
          resolve();
        }
      });
    }
  }
}
