#!/usr/bin/env python3
"""Writes seed_vectors.json: known answers for package dh, computed by an
independent implementation in Python.

- "seed": the tutorial's DiffieHellman code (public key hex(pow(2, x, p))[2:],
  shared key sha256(str(pow(y, x, p)).encode()).hexdigest(), validation
  2 <= y <= p-2 and pow(y, (p-1)//2, p) == 1), with the RFC 3526 primes that
  Node printed (rfc3526-node.json) instead of the tutorial's corrupted ones.
- "derived": the keyrelay/v1 HKDF key and safety number of docs/protocol.md,
  written from the spec with hashlib/hmac only.

Run from this directory: python3 seed_vectors.py > seed_vectors.json
"""
import hashlib, hmac, json

primes = json.load(open("rfc3526-node.json"))["primes"]

def seed_public(x, p):
    return hex(pow(2, x, p))[2:]

def seed_valid(y, p):
    return 2 <= y <= p - 2 and pow(y, (p - 1) // 2, p) == 1

def seed_shared(x_hex, y_hex, p):
    x, y = int(x_hex, 16), int(y_hex, 16)
    if not seed_valid(y, p):
        raise ValueError("Invalid public key")
    return hashlib.sha256(str(pow(y, x, p)).encode()).hexdigest()

def hkdf_sha256(ikm, salt, info, length):
    prk = hmac.new(salt or b"\x00" * 32, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]

def transcript(label, group, a, b):
    lo, hi = sorted([a, b])
    return label.encode() + b"\x00" + group.encode() + b"\x00" + lo + hi

def safety_number(group, a, b):
    h = hashlib.sha512(transcript("keyrelay/v1/safety-number", group, a, b)).digest()
    return " ".join("%05d" % (int.from_bytes(h[5 * i:5 * i + 5], "big") % 100000) for i in range(12))

out = {"seed": [], "derived": []}
for name, p_hex in primes.items():
    p = int(p_hex, 16)
    size = (p.bit_length() + 7) // 8
    # 256-bit exponents as the tutorial makes them (urandom(32)), derived from
    # fixed labels so the file is reproducible; one of 252 bits for an odd hex length.
    xa = int(hashlib.sha256(("alice-" + name).encode()).hexdigest(), 16)
    xb = int(hashlib.sha256(("bob-" + name).encode()).hexdigest(), 16) >> 4
    a_priv, b_priv = hex(xa)[2:], hex(xb)[2:]
    a_pub, b_pub = seed_public(xa, p), seed_public(xb, p)
    shared_a = seed_shared(a_priv, b_pub, p)
    shared_b = seed_shared(b_priv, a_pub, p)
    assert shared_a == shared_b
    try:
        seed_shared(a_priv, hex(p - 1)[2:], p)
        raise SystemExit("p-1 accepted")
    except ValueError as e:
        assert str(e) == "Invalid public key"
    out["seed"].append({"group": name, "alice_private": a_priv, "alice_public": a_pub,
                        "bob_private": b_priv, "bob_public": b_pub, "shared_key": shared_a})
    z = pow(int(b_pub, 16), xa, p).to_bytes(size, "big")
    ka, kb = int(a_pub, 16).to_bytes(size, "big"), int(b_pub, 16).to_bytes(size, "big")
    out["derived"].append({"group": name, "alice_public": a_pub, "bob_public": b_pub,
                           "shared_secret": z.hex(),
                           "key": hkdf_sha256(z, b"", transcript("keyrelay/v1/key", name, ka, kb), 32).hex(),
                           "safety_number": safety_number(name, ka, kb)})
print(json.dumps(out, indent=1))
