// Writes message_vectors.json: known answers for package dh's Channel
// (docs/protocol.md §5.4), computed by Node.js's built-in crypto (OpenSSL)
// from the x25519 vector of ec_vectors.json.
// Run from this directory: node message_vectors.js > message_vectors.json
'use strict';
const crypto = require('crypto');
const assert = require('assert');

const AAD = Buffer.from('keyrelay/v1/msg');
const ec = require('./ec_vectors.json').find((v) => v.group === 'x25519');
const alice = Buffer.from(ec.alice_public, 'hex');
const bob = Buffer.from(ec.bob_public, 'hex');
const z = Buffer.from(ec.shared_secret, 'hex');

// K, recomputed here (§5.3) and checked against ec_vectors.json.
const [lo, hi] = Buffer.compare(alice, bob) <= 0 ? [alice, bob] : [bob, alice];
const info = Buffer.concat([Buffer.from('keyrelay/v1/key'), Buffer.from([0]), Buffer.from('x25519'), Buffer.from([0]), lo, hi]);
const key = Buffer.from(crypto.hkdfSync('sha256', z, Buffer.alloc(0), info, 32));
assert.strictEqual(key.toString('hex'), ec.key);

const role = (pub) => (Buffer.compare(pub, lo) === 0 ? 0 : 1);

function seal(role, counter, plaintext) {
  const nonce = Buffer.alloc(12);
  nonce.writeUInt32BE(role, 0);
  nonce.writeBigUInt64BE(BigInt(counter), 4);
  const c = Buffer.alloc(8);
  c.writeBigUInt64BE(BigInt(counter), 0);
  const cipher = crypto.createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(AAD);
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { nonce, body: Buffer.concat([c, ct, cipher.getAuthTag()]) };
}

// Plaintexts: empty, "hello", and 1000 bytes of every value 0-249 in turn.
const long = Buffer.alloc(1000);
for (let i = 0; i < long.length; i++) long[i] = i % 250;
const plaintexts = [Buffer.alloc(0), Buffer.from('hello'), long];

const messages = [];
for (const [sender, pub] of [['alice', alice], ['bob', bob]]) {
  for (const counter of [0, 1, 7]) {
    for (const pt of plaintexts) {
      const { nonce, body } = seal(role(pub), counter, pt);
      messages.push({ sender, role: role(pub), counter, plaintext: pt.toString('hex'),
        nonce: nonce.toString('hex'), body: body.toString('hex'), body_base64: body.toString('base64') });
    }
  }
}
console.log(JSON.stringify({
  group: 'x25519', alice_public: ec.alice_public, bob_public: ec.bob_public,
  shared_secret: ec.shared_secret, key: ec.key, aad: AAD.toString(), messages,
}, null, 1));
