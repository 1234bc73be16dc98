// Checks that the protocol vocabulary of the JavaScript client (wire.js, as
// keyrelay.js exports it) is exactly wire/codes.json, which Go's package
// wire writes from its declarations: every frame type, relay error code,
// close code and peer_left reason, the subprotocol and the path, no more and
// no fewer. A code added in Go fails here until the JavaScript has it.
import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import * as kr from "../keyrelay.js";

const codes = JSON.parse(readFileSync(new URL("../../wire/codes.json", import.meta.url), "utf8"));

/** The values of an upper-case-keyed table, checking each key is its value in upper case. */
function valuesOf(name, table) {
  assert.ok(Object.isFrozen(table), `${name} is frozen`);
  for (const [k, v] of Object.entries(table)) assert.equal(k, v.toUpperCase(), `${name}.${k}`);
  return Object.values(table);
}

const sorted = (a) => [...a].sort();

test("SUBPROTOCOL and PATH are wire.Subprotocol and wire.Path", () => {
  assert.equal(kr.SUBPROTOCOL, codes.subprotocol);
  assert.equal(kr.PATH, codes.path);
});

test("FrameType is every frame type of codes.json", () => {
  const got = valuesOf("FrameType", kr.FrameType);
  assert.deepEqual(sorted(got), sorted(codes.frame_types));
  assert.equal(new Set(got).size, got.length, "no duplicates");
});

test("Code is every relay error code of codes.json", () => {
  const got = valuesOf("Code", kr.Code);
  assert.deepEqual(sorted(got), sorted(codes.codes));
  assert.equal(new Set(got).size, got.length, "no duplicates");
});

test("CloseCode is every close code of codes.json", () => {
  assert.ok(Object.isFrozen(kr.CloseCode), "CloseCode is frozen");
  const got = Object.fromEntries(Object.entries(kr.CloseCode).map(([k, v]) => [k.toLowerCase(), v]));
  assert.deepEqual(got, codes.close_codes);
});

test("Reason is every peer_left reason of codes.json", () => {
  const got = valuesOf("Reason", kr.Reason);
  assert.deepEqual(sorted(got), sorted(codes.peer_left_reasons));
});

test("LocalCode holds only codes the relay never sends", () => {
  const got = valuesOf("LocalCode", kr.LocalCode);
  const relay = new Set(codes.codes);
  for (const c of got) assert.ok(!relay.has(c), `LocalCode ${c} is a relay code: it belongs in Code`);
});
