// Known-answer tests of web/dh.js, the JavaScript cryptography (with
// modp.js and bytes.js), against the published vectors of docs/vectors.json
// (written from the Go dh package by dh/vectors_test.go) and the independent
// vectors of dh/testdata (Node.js/OpenSSL and Python).
import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

import * as kr from "../dh.js";

const here = dirname(fileURLToPath(import.meta.url));
const readJSON = (...p) => JSON.parse(readFileSync(join(here, ...p), "utf8"));
const vectors = readJSON("..", "..", "docs", "vectors.json");
const ecVectors = readJSON("..", "..", "dh", "testdata", "ec_vectors.json");
const seedVectors = readJSON("..", "..", "dh", "testdata", "seed_vectors.json");
const messageVectors = readJSON("..", "..", "dh", "testdata", "message_vectors.json");
const nodePrimes = readJSON("..", "..", "dh", "testdata", "rfc3526-node.json");

const { subtle } = globalThis.crypto;
const b64url = (s) => kr.base64ToBytes(s.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(s.length / 4) * 4, "="));

/** Imports a fixed private key (hex) as a key pair usable by dh.js. */
async function keyPairFromPrivate(group, privHex) {
  if (group !== "x25519" && group !== "p256") return kr._modpKeyPairFromPrivate(group, privHex);
  const priv = kr.hexToBytes(privHex);
  const prefix = group === "x25519"
    ? "302e020100300506032b656e04220420"
    : "3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420";
  const alg = group === "x25519" ? { name: "X25519" } : { name: "ECDH", namedCurve: "P-256" };
  const pkcs8 = new Uint8Array([...kr.hexToBytes(prefix), ...priv]);
  const key = await subtle.importKey("pkcs8", pkcs8, alg, true, ["deriveBits"]);
  const jwk = await subtle.exportKey("jwk", key);
  const pub = group === "x25519" ? b64url(jwk.x) : new Uint8Array([4, ...b64url(jwk.x), ...b64url(jwk.y)]);
  return kr.keyPairFromCryptoKey(group, key, kr.bytesToHex(pub));
}

test("docs/vectors.json covers every group", () => {
  const names = vectors.groups.map((g) => g.group);
  for (const g of kr.GROUPS) assert.ok(names.includes(g), g);
  assert.equal(vectors.aad, "keyrelay/v1/msg");
});

for (const v of vectors.groups) {
  const name = v.note ? `${v.group} (leading zeros)` : v.group;
  test(`${name}: public keys, Z, K and safety number match the vectors`, async () => {
    const alice = await keyPairFromPrivate(v.group, v.alice_private);
    const bob = await keyPairFromPrivate(v.group, v.bob_private);
    assert.equal(kr.bytesToHex(kr.parsePublicKey(v.group, v.alice_public)), v.alice_public_bytes);
    assert.equal(kr.bytesToHex(kr.parsePublicKey(v.group, v.bob_public)), v.bob_public_bytes);
    assert.equal(alice.publicKeyHex, v.alice_public);
    assert.equal(bob.publicKeyHex, v.bob_public);
    const za = await kr.sharedSecret(alice, bob.publicKeyHex);
    const zb = await kr.sharedSecret(bob, alice.publicKeyHex);
    assert.equal(kr.bytesToHex(za), v.shared_secret);
    assert.equal(kr.bytesToHex(zb), v.shared_secret);
    assert.equal(kr.bytesToHex(await kr.deriveKey(v.group, za, v.alice_public, v.bob_public)), v.key);
    assert.equal(kr.bytesToHex(await kr.deriveKey(v.group, za, v.bob_public, v.alice_public)), v.key);
    assert.equal(await kr.safetyNumber(v.group, v.alice_public, v.bob_public), v.safety_number);
    assert.equal(await kr.safetyNumber(v.group, v.bob_public, v.alice_public), v.safety_number);
  });

  test(`${name}: JS opens every published body and seals the same bytes`, async () => {
    const z = kr.hexToBytes(v.shared_secret);
    for (const sender of ["alice", "bob"]) {
      const [self, peer] = sender === "alice" ? [v.alice_public, v.bob_public] : [v.bob_public, v.alice_public];
      const tx = await kr.Channel.create(v.group, z, self, peer); // the sender, in JS
      const rx = await kr.Channel.create(v.group, z, peer, self); // the receiver, in JS
      const msgs = v.messages.filter((m) => m.sender === sender);
      assert.equal(msgs.length, 4);
      for (const m of msgs) {
        assert.equal(tx.role, m.role);
        assert.equal(rx.role, 1 - m.role);
        tx.setState({ nextSend: m.counter, nextReceive: 0 });
        assert.equal(tx.state().nextSend, BigInt(m.counter));
        const sealed = await tx.seal(kr.hexToBytes(m.plaintext));
        assert.equal(kr.bytesToHex(sealed), m.body, `seal ${sender} counter ${m.counter}`);
        assert.equal(kr.bytesToBase64(sealed), m.body_base64);
        const opened = await rx.open(kr.base64ToBytes(m.body_base64));
        assert.equal(kr.bytesToHex(opened), m.plaintext);
      }
      // Replaying a body is refused.
      await assert.rejects(rx.open(kr.hexToBytes(msgs[2].body)), { code: "replay" });
    }
  });
}

test("dh/testdata/ec_vectors.json (OpenSSL) for x25519 and p256", async () => {
  for (const v of ecVectors) {
    const alice = await keyPairFromPrivate(v.group, v.alice_private);
    const bob = await keyPairFromPrivate(v.group, v.bob_private);
    assert.equal(alice.publicKeyHex, v.alice_public);
    assert.equal(bob.publicKeyHex, v.bob_public);
    const z = await kr.sharedSecret(bob, v.alice_public);
    assert.equal(kr.bytesToHex(z), v.shared_secret);
    assert.equal(kr.bytesToHex(await kr.deriveKey(v.group, z, v.alice_public, v.bob_public)), v.key);
    assert.equal(await kr.safetyNumber(v.group, v.alice_public, v.bob_public), v.safety_number);
  }
});

test("dh/testdata/seed_vectors.json (Python): every MODP group", async () => {
  for (const s of seedVectors.seed) {
    assert.equal(kr._modpPublicFromPrivate(s.group, s.alice_private), s.alice_public, s.group);
    assert.equal(kr._modpPublicFromPrivate(s.group, s.bob_private), s.bob_public, s.group);
  }
  for (const d of seedVectors.derived) {
    const seed = seedVectors.seed.find((s) => s.group === d.group);
    const bob = kr._modpKeyPairFromPrivate(d.group, seed.bob_private);
    const z = await kr.sharedSecret(bob, d.alice_public);
    assert.equal(kr.bytesToHex(z), d.shared_secret, d.group);
    assert.equal(kr.bytesToHex(await kr.deriveKey(d.group, z, d.alice_public, d.bob_public)), d.key, d.group);
    assert.equal(await kr.safetyNumber(d.group, d.bob_public, d.alice_public), d.safety_number, d.group);
  }
});

test("dh/testdata/message_vectors.json: sealed bodies", async () => {
  const v = messageVectors;
  const z = kr.hexToBytes(v.shared_secret);
  for (const m of v.messages) {
    const [self, peer] = m.sender === "alice" ? [v.alice_public, v.bob_public] : [v.bob_public, v.alice_public];
    const tx = await kr.Channel.create(v.group, z, self, peer);
    const rx = await kr.Channel.create(v.group, z, peer, self);
    tx.setState({ nextSend: m.counter, nextReceive: 0 });
    assert.equal(kr.bytesToHex(await tx.seal(kr.hexToBytes(m.plaintext))), m.body);
    assert.equal(kr.bytesToHex(await rx.open(kr.base64ToBytes(m.body_base64))), m.plaintext);
  }
});

test("generated key pairs agree in every group", async () => {
  for (const group of kr.GROUPS) {
    const a = await kr.generateKeyPair(group);
    const b = await kr.generateKeyPair(group);
    assert.equal(a.group, group);
    assert.match(a.publicKeyHex, /^[0-9a-f]+$/);
    assert.deepEqual(kr.parsePublicKey(group, a.publicKeyHex).length, kr.publicKeySize(group));
    const za = await kr.sharedSecret(a, b.publicKeyHex);
    const zb = await kr.sharedSecret(b, a.publicKeyHex);
    assert.deepEqual(za, zb, group);
    const ca = await kr.Channel.create(group, za, a.publicKeyHex, b.publicKeyHex);
    const cb = await kr.Channel.create(group, zb, b.publicKeyHex, a.publicKeyHex);
    assert.equal(ca.role + cb.role, 1);
    const body = await ca.seal("héllo");
    assert.equal(kr.utf8Decode(await cb.open(body)), "héllo");
    assert.equal(await kr.safetyNumber(group, a.publicKeyHex, b.publicKeyHex), await kr.safetyNumber(group, b.publicKeyHex, a.publicKeyHex));
    // The private key prints nothing secret.
    assert.ok(!JSON.stringify(a).includes("privateKey\":{\"x"));
  }
});

test("the embedded RFC 3526 primes are Node.js's (OpenSSL) ones", () => {
  for (const [group, hex] of Object.entries(nodePrimes.primes)) {
    const p = BigInt("0x" + hex);
    assert.equal(kr.publicKeySize(group), hex.length / 2);
    // p - 1 is out of range and p - 2 in range (refused only as a
    // non-residue: p ≡ 7 mod 8 makes -2 one): together they pin the embedded p.
    assert.throws(() => kr.parsePublicKey(group, (p - 1n).toString(16)), /out of range/);
    assert.throws(() => kr.parsePublicKey(group, (p - 2n).toString(16)), /not in the prime-order subgroup/);
    assert.equal(kr.parsePublicKey(group, "4").length, hex.length / 2);
    assert.equal(kr._modpPublicFromPrivate(group, "ff"), (1n << 255n).toString(16));
  }
});

test("MODP private exponents are range-checked", () => {
  assert.throws(() => kr._modpKeyPairFromPrivate("modp14", "0"), { code: "invalid_private_key" });
  assert.equal(kr._modpPublicFromPrivate("modp14", "1"), "2");
  assert.equal(kr._modpPublicFromPrivate("modp14", "a"), "400");
});

test("public-key validation refuses what the relay refuses", () => {
  const p14 = kr.publicKeySize("modp14");
  const cases = [
    ["modp14", "", "malformed_key"],
    ["modp14", "+5", "malformed_key"],
    ["modp14", "-5", "malformed_key"],
    ["modp14", "0x05", "malformed_key"],
    ["modp14", "zz", "malformed_key"],
    ["modp14", "1".repeat(2 * p14 + 1), "malformed_key"],
    ["modp14", "1", "invalid_public_key"], // y < 2
    ["modp14", "0", "invalid_public_key"],
    ["modp14", "b", "invalid_public_key"], // 11 is not a quadratic residue mod the modp14 prime (checked in Go)
    ["x25519", "00".repeat(31), "malformed_key"],
    ["x25519", "00".repeat(33), "malformed_key"],
    ["x25519", "00".repeat(32), "invalid_public_key"],
    ["x25519", "01" + "00".repeat(31), "invalid_public_key"],
    ["x25519", "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", "invalid_public_key"],
    ["x25519", "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", "invalid_public_key"],
    ["x25519", "09" + "00".repeat(30) + "80", "invalid_public_key"],
    ["p256", "04" + "00".repeat(64), "invalid_public_key"],
    ["p256", "02" + "11".repeat(64), "invalid_public_key"],
    ["p256", "04" + "11".repeat(63), "malformed_key"],
    ["nope", "00", "unknown_group"],
  ];
  for (const [group, hex, code] of cases) {
    assert.throws(() => kr.parsePublicKey(group, hex), { code }, `${group} ${hex.slice(0, 12)}`);
  }
  const v = vectors.groups.find((g) => g.group === "modp14");
  assert.equal(kr.parsePublicKey("modp14", v.alice_public.toUpperCase()).length, p14);
  assert.equal(kr.parsePublicKey("modp14", v.alice_public.padStart(2 * p14, "0")).length, p14);
  assert.throws(() => kr.parsePublicKey("modp14", v.alice_public.padStart(2 * p14 + 1, "0")), { code: "malformed_key" });
  assert.equal(kr.parsePublicKey("modp14", "4").length, p14); // 4 = 2^2 is a residue
});

test("the subgroup test (Jacobi symbol) agrees with Euler's criterion y^q mod p", () => {
  const modPow = (b, e, m) => {
    let r = 1n;
    for (b %= m; e > 0n; e >>= 1n, b = (b * b) % m) if (e & 1n) r = (r * b) % m;
    return r;
  };
  for (const group of ["modp5", "modp14"]) {
    const p = BigInt("0x" + nodePrimes.primes[group]);
    const q = (p - 1n) / 2n;
    const size = kr.publicKeySize(group);
    assert.equal(size * 2, nodePrimes.primes[group].length);
    let seed = 12345n;
    let residues = 0;
    for (let i = 0; i < 24; i++) {
      seed = (seed * 6364136223846793005n + 1442695040888963407n) & ((1n << 64n) - 1n);
      const y = ((seed << BigInt(8 * size - 70)) | seed) % p;
      let accepted = true;
      try {
        kr.parsePublicKey(group, y.toString(16));
      } catch (e) {
        assert.equal(e.code, "invalid_public_key");
        accepted = false;
      }
      const euler = modPow(y, q, p) === 1n;
      if (euler) residues++;
      assert.equal(accepted, euler, `${group} #${i}`);
    }
    assert.ok(residues > 3 && residues < 21, `${group}: ${residues} residues of 24`);
    // The range ends: p - 2 is out of the subgroup (p ≡ 3 mod 4), 2 is in it.
    assert.throws(() => kr.parsePublicKey(group, (p - 1n).toString(16)), { code: "invalid_public_key" });
    assert.throws(() => kr.parsePublicKey(group, p.toString(16)), { code: "invalid_public_key" });
    assert.equal(kr.parsePublicKey(group, "2").length, size);
  }
});

test("sharedSecret refuses invalid peer keys", async () => {
  const kp = await kr.generateKeyPair("x25519");
  await assert.rejects(kr.sharedSecret(kp, "00".repeat(32)), { code: "invalid_public_key" });
  const mp = await kr.generateKeyPair("modp14");
  await assert.rejects(kr.sharedSecret(mp, "b"), { code: "invalid_public_key" });
  await assert.rejects(kr.sharedSecret(mp, "xyz"), { code: "malformed_key" });
});

test("Channel refuses short, tampered, replayed and wrong-role bodies", async () => {
  const v = vectors.groups.find((g) => g.group === "x25519");
  const z = kr.hexToBytes(v.shared_secret);
  const a = await kr.Channel.create("x25519", z, v.alice_public, v.bob_public);
  const b = await kr.Channel.create("x25519", z, v.bob_public, v.alice_public);
  await assert.rejects(kr.Channel.create("x25519", z, v.alice_public, v.alice_public), { code: "same_key" });
  await assert.rejects(b.open(new Uint8Array(23)), { code: "short_message" });
  const body = await a.seal(kr.utf8Encode("secret"));
  const bad = body.slice();
  bad[bad.length - 1] ^= 1;
  await assert.rejects(b.open(bad), { code: "decrypt" });
  await assert.rejects(a.open(body), { code: "decrypt" }); // own role: wrong nonce
  assert.equal(kr.utf8Decode(await b.open(body)), "secret");
  await assert.rejects(b.open(body), { code: "replay" });
  const max = new Uint8Array(24).fill(0xff);
  await assert.rejects(b.open(max), { code: "replay" });
  assert.deepEqual(b.state(), { nextSend: 0n, nextReceive: 1n });
  assert.throws(() => b.setState({ nextSend: 0, nextReceive: 0 }), { code: "counter_regression" });
  b.setState({ nextSend: "5", nextReceive: 1n });
  assert.deepEqual(b.state(), { nextSend: 5n, nextReceive: 1n });
  a.setState({ nextSend: (1n << 64n) - 1n, nextReceive: 0n });
  await assert.rejects(a.seal(new Uint8Array(0)), { code: "counter_exhausted" });
  assert.equal(String(a), "[keyrelay Channel role 0]");
  assert.equal(JSON.stringify(a), '{"role":0}');
});

test("hex and base64 helpers", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(kr.hexToBytes(kr.bytesToHex(all)), all);
  assert.deepEqual(kr.hexToBytes("ABcd"), new Uint8Array([0xab, 0xcd]));
  assert.throws(() => kr.hexToBytes("abc"), { code: "bad_hex" });
  assert.throws(() => kr.hexToBytes("0g"), { code: "bad_hex" });
  for (let n = 0; n < 6; n++) {
    const b = all.subarray(250 - n, 250);
    assert.equal(kr.bytesToBase64(b), Buffer.from(b).toString("base64"));
    assert.deepEqual(kr.base64ToBytes(kr.bytesToBase64(b)), new Uint8Array(b));
  }
  const big = new Uint8Array(100000).map((_, i) => i * 31);
  assert.equal(kr.bytesToBase64(big), Buffer.from(big).toString("base64"));
  for (const bad of ["A", "AA", "AA=", "AA=A", "A-==", "AAA_", " AAA"]) {
    assert.throws(() => kr.base64ToBytes(bad), { code: "bad_base64" }, bad);
  }
});
