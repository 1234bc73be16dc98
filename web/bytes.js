// bytes.js: what keyrelay's JavaScript modules share at the bottom: the
// KeyrelayError every function throws, the codes of the errors the
// cryptography raises itself (DHCode), and the byte encodings (hex, base64,
// UTF-8, big-endian integers). It imports nothing and is not an API of its
// own: dh.js and keyrelay.js re-export what users need.

/**
 * The codes of the errors the cryptography (dh.js, modp.js, bytes.js) raises
 * itself, like the sentinel errors of Go's package dh. Three name the same
 * failure as the relay's code of the same word, since the relay validates
 * keys by the same rules: unknown_group, malformed_key and
 * invalid_public_key. unsupported_group means the group is valid but this
 * environment's WebCrypto lacks it (use FALLBACK_GROUP).
 */
export const DHCode = Object.freeze({
  UNKNOWN_GROUP: "unknown_group",
  UNSUPPORTED_GROUP: "unsupported_group",
  MALFORMED_KEY: "malformed_key",
  INVALID_PUBLIC_KEY: "invalid_public_key",
  INVALID_PRIVATE_KEY: "invalid_private_key",
  SAME_KEY: "same_key",
  BAD_HEX: "bad_hex",
  BAD_BASE64: "bad_base64",
  BAD_SECRET: "bad_secret",
  BAD_STATE: "bad_state",
  SHORT_MESSAGE: "short_message",
  REPLAY: "replay",
  DECRYPT: "decrypt",
  COUNTER_EXHAUSTED: "counter_exhausted",
  COUNTER_REGRESSION: "counter_regression",
  INTERNAL: "internal",
});

export const encoder = new TextEncoder();

// ---------------------------------------------------------------------------
// Errors

/**
 * The error every function of keyrelay's modules throws. `code` is stable:
 * a relay error code of protocol.md §4 (Code in wire.js) for errors the
 * relay sent (`fromRelay` is then true), or a code the library raised
 * itself: one of DHCode (the cryptography: `unknown_group`,
 * `unsupported_group`, `malformed_key`, `invalid_public_key`, `same_key`,
 * `bad_hex`, `bad_base64`, `short_message`, `replay`, `decrypt`,
 * `counter_exhausted`, `counter_regression` …), one of the client's
 * LocalCode (`connect_failed`, `disconnected` (call resume()), `closed`,
 * `peer_key_changed`, `too_large`, `aborted`), or a relay code the client
 * detected before asking (`not_in_room`, `handshake_incomplete`,
 * `group_mismatch`).
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

/** A KeyrelayError with code, message and extra properties. */
export function fail(code, message, extra) {
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
    throw fail(DHCode.BAD_HEX, "not an even-length hex string");
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
    throw fail(DHCode.BAD_BASE64, "not standard base64 with padding");
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

// Helpers of the other modules (not re-exported).

export function concatBytes(...parts) {
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

/** Compares byte strings lexicographically: < 0, 0 or > 0. */
export function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

export function bytesEqual(a, b) {
  return a.length === b.length && compareBytes(a, b) === 0;
}

export function bytesToBigInt(b) {
  return b.length === 0 ? 0n : BigInt("0x" + bytesToHex(b));
}

/** n as len big-endian bytes. */
export function bigIntToBytes(n, len) {
  const hex = n.toString(16).padStart(2 * len, "0");
  if (hex.length > 2 * len) throw fail(DHCode.INTERNAL, "integer too long");
  return hexToBytes(hex);
}

export function uint64BE(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, n);
  return out;
}

export function readUint64BE(b, off) {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off);
}

/** n bytes from the platform's CSPRNG (crypto.getRandomValues). */
export function randomBytes(n) {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}
