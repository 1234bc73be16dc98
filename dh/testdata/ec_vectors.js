// Writes ec_vectors.json: known answers for package dh's x25519 and p256
// groups, computed by Node.js's crypto (OpenSSL) from the keyrelay/v1 spec.
// Run from this directory: node ec_vectors.js > ec_vectors.json
'use strict';
const crypto = require('crypto');

function transcript(label, group, a, b) {
  const [lo, hi] = Buffer.compare(a, b) <= 0 ? [a, b] : [b, a];
  return Buffer.concat([Buffer.from(label), Buffer.from([0]), Buffer.from(group), Buffer.from([0]), lo, hi]);
}
function safetyNumber(group, a, b) {
  const h = crypto.createHash('sha512').update(transcript('keyrelay/v1/safety-number', group, a, b)).digest();
  const out = [];
  for (let i = 0; i < 12; i++) out.push(String(Number(h.readUIntBE(5 * i, 5) % 100000)).padStart(5, '0'));
  return out.join(' ');
}
function derive(group, z, a, b) {
  return Buffer.from(crypto.hkdfSync('sha256', z, Buffer.alloc(0), transcript('keyrelay/v1/key', group, a, b), 32));
}

const out = [];
// x25519: the RFC 7748 §6.1 keys.
{
  const pkcs8 = (k) => crypto.createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), k]), format: 'der', type: 'pkcs8' });
  const aPriv = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex');
  const bPriv = Buffer.from('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb', 'hex');
  const ka = pkcs8(aPriv), kb = pkcs8(bPriv);
  const aPub = crypto.createPublicKey(ka).export({ format: 'der', type: 'spki' }).subarray(-32);
  const bPub = crypto.createPublicKey(kb).export({ format: 'der', type: 'spki' }).subarray(-32);
  const z = crypto.diffieHellman({ privateKey: ka, publicKey: crypto.createPublicKey(kb) });
  out.push({ group: 'x25519', alice_private: aPriv.toString('hex'), alice_public: aPub.toString('hex'),
    bob_private: bPriv.toString('hex'), bob_public: bPub.toString('hex'), shared_secret: z.toString('hex'),
    key: derive('x25519', z, aPub, bPub).toString('hex'), safety_number: safetyNumber('x25519', aPub, bPub) });
}
// p256: fixed scalars.
{
  const aPriv = crypto.createHash('sha256').update('alice-p256').digest();
  const bPriv = crypto.createHash('sha256').update('bob-p256').digest();
  const a = crypto.createECDH('prime256v1'); a.setPrivateKey(aPriv);
  const b = crypto.createECDH('prime256v1'); b.setPrivateKey(bPriv);
  const aPub = a.getPublicKey(), bPub = b.getPublicKey();
  const z = a.computeSecret(bPub);
  out.push({ group: 'p256', alice_private: aPriv.toString('hex'), alice_public: aPub.toString('hex'),
    bob_private: bPriv.toString('hex'), bob_public: bPub.toString('hex'), shared_secret: z.toString('hex'),
    key: derive('p256', z, aPub, bPub).toString('hex'), safety_number: safetyNumber('p256', aPub, bPub) });
}
console.log(JSON.stringify(out, null, 1));
