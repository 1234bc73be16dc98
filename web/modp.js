// modp.js: the RFC 3526 MODP groups (modp5, modp14-18; g = 2) for dh.js,
// in BigInt arithmetic: the primes, key generation, public-key validation
// and the shared secret. dh.js dispatches to it for MODP groups and is the
// API; this module is separate only because the primes are long.
//
// BigInt arithmetic is NOT constant-time: the timing of modPow depends on
// the secret exponent, and BigInt values cannot be wiped from memory. This
// is the fallback for environments without X25519 in WebCrypto; prefer
// x25519 (or p256) wherever WebCrypto offers it.

import { DHCode, bigIntToBytes, bytesToBigInt, fail, randomBytes } from "./bytes.js";

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

// ---------------------------------------------------------------------------
// Arithmetic and private keys

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

/** Reports whether group is one of the MODP groups. */
export function isModp(group) {
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
  if (!isModp(group)) throw fail(DHCode.UNKNOWN_GROUP, `${group} is not a MODP group`);
  if (typeof xHex !== "string" || !/^[0-9a-fA-F]+$/.test(xHex)) throw fail(DHCode.MALFORMED_KEY, "private exponent is not hex");
  const x = BigInt("0x" + xHex);
  const { q } = modpParams(group);
  if (x < 1n || x >= q) throw fail(DHCode.INVALID_PRIVATE_KEY, "exponent outside [1, q-1]");
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
// What dh.js calls for a MODP group

/** The byte length of the group's p, the length of its fixed-length encodings. */
export function modpSize(group) {
  return modpParams(group).size;
}

/**
 * The MODP part of dh.js's parsePublicKey, for hex that dh.js already found
 * to be non-empty unsigned hexadecimal: y must be in [2, p-2] and in the
 * subgroup of prime order q. Returns y left-padded to the byte length of p.
 * @throws {KeyrelayError} malformed_key or invalid_public_key
 */
export function modpParsePublicKey(group, hex) {
  const { p, size } = modpParams(group);
  if (hex.length > 2 * size) throw fail(DHCode.MALFORMED_KEY, "longer than the group allows");
  const y = BigInt("0x" + hex);
  if (y < 2n || y > p - 2n) throw fail(DHCode.INVALID_PUBLIC_KEY, "out of range");
  // p is a safe prime: y^q ≡ 1 (mod p) exactly when (y/p) = 1 (Euler's criterion).
  if (jacobi(y, p) !== 1) throw fail(DHCode.INVALID_PUBLIC_KEY, "not in the prime-order subgroup");
  return bigIntToBytes(y, size);
}

/** A fresh key pair of the MODP group. */
export function modpGenerateKeyPair(group) {
  const { expBits } = modpParams(group);
  for (;;) {
    // x uniform in [1, 2^expBits - 1], which lies inside [1, q - 1].
    const x = bytesToBigInt(randomBytes(expBits / 8));
    if (x !== 0n) return modpKeyPair(group, x);
  }
}

/**
 * Z = peer^x mod p, left-padded to the byte length of p, for a peer key
 * already validated by modpParsePublicKey (its fixed-length encoding).
 * @throws {KeyrelayError} invalid_private_key, invalid_public_key
 */
export function modpSharedSecret(keyPair, peer) {
  const group = keyPair.group;
  const x = modpSecrets.get(keyPair.privateKey);
  if (x === undefined) throw fail(DHCode.INVALID_PRIVATE_KEY, "not a MODP private key of this module");
  const { p, size } = modpParams(group);
  const z = modPow(bytesToBigInt(peer), x, p);
  if (z <= 1n) throw fail(DHCode.INVALID_PUBLIC_KEY, "the shared secret is the identity");
  return bigIntToBytes(z, size);
}
