// End-to-end test of web/keyrelay.js's Client against a real keyrelay relay,
// built from ./cmd/keyrelay and started on a free local port.
//
// Node.js 20 has no global WebSocket without --experimental-websocket, and
// `node --test web/test/` passes no flags, so where globalThis.WebSocket is
// missing this file runs itself again as a child process,
// `node --experimental-websocket e2e.test.mjs` with KEYRELAY_E2E_URL set,
// and asserts on the child's exit status and output. The scenario never
// prints keys or plaintexts, only the names of the checks that passed.
import test from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect as netConnect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { Client, SUBPROTOCOL } from "../keyrelay.js";

const thisFile = fileURLToPath(import.meta.url);
const repoRoot = join(dirname(thisFile), "..", "..");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects if p takes longer than ms. */
function within(ms, p, what) {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

/** Collects a client's events, and waits for them. */
function recorder(client) {
  const events = [];
  let wake = () => {};
  client.on("*", (ev) => {
    events.push(ev);
    wake();
  });
  return {
    events,
    async waitFor(pred, what, ms = 10000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const i = events.findIndex(pred);
        if (i >= 0) return events.splice(i, 1)[0];
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => {
          wake = r;
          setTimeout(r, Math.min(left, 200));
        });
      }
    },
    messages() {
      return events.filter((e) => e.type === "message");
    },
  };
}

/** A WebSocket that counts the types of the frames its client sends. */
function countingWebSocket(Base, counts) {
  return class extends Base {
    send(data) {
      const type = JSON.parse(data).type;
      counts[type] = (counts[type] || 0) + 1;
      super.send(data);
    }
  };
}

/** The scenario: returns the names of the checks that passed. */
async function scenario(url, WebSocketImpl) {
  const checks = [];
  const ok = (name) => checks.push(name);

  // x25519: the whole protocol, with a resume.
  {
    const countsB = {};
    const a = await Client.connect(url, { WebSocket: WebSocketImpl });
    const b = await Client.connect(url, { WebSocket: countingWebSocket(WebSocketImpl, countsB) });
    const ra = recorder(a);
    const rb = recorder(b);
    try {
      const room = await a.create("x25519");
      assert.match(room.room, /^[0-9a-f-]{36}$/);
      assert.equal(room.group, "x25519");
      const joined = await b.join(room.room);
      assert.equal(joined.peers, 2);
      ok("create/join");
      await ra.waitFor((e) => e.type === "peer_joined" && !e.resumed, "peer_joined");

      const [ha, hb] = await within(15000, Promise.all([a.handshake(), b.handshake()]), "handshake");
      assert.equal(ha.group, "x25519");
      assert.equal(ha.safetyNumber, hb.safetyNumber);
      assert.match(ha.safetyNumber, /^\d{5}( \d{5}){11}$/);
      assert.equal(ha.peerPublicKey, hb.publicKey);
      assert.equal(hb.peerPublicKey, ha.publicKey);
      ok("handshake: same safety number");

      // A third peer is refused with the relay's code.
      const c = await Client.connect(url, { WebSocket: WebSocketImpl });
      await assert.rejects(c.join(room.room), (e) => e.code === "room_full" && e.fromRelay === true);
      await c.close();
      ok("room_full rejects with .code");

      const seq1 = await a.send("hello from a");
      assert.equal(seq1, 1);
      const m1 = await rb.waitFor((e) => e.type === "message", "a→b");
      assert.deepEqual([m1.seq, m1.text], [1, "hello from a"]);
      const seq2 = await b.send("héllo from b ✓");
      assert.equal(seq2, 2);
      const m2 = await ra.waitFor((e) => e.type === "message", "b→a");
      assert.deepEqual([m2.seq, m2.text], [2, "héllo from b ✓"]);
      ok("messages both ways");

      // A burst, sent concurrently: delivered in order, acknowledged in batches.
      const n = 30;
      const seqs = await Promise.all(Array.from({ length: n }, (_, i) => a.send(`burst ${i}`)));
      assert.deepEqual(seqs, Array.from({ length: n }, (_, i) => 3 + i));
      for (let i = 0; i < n; i++) {
        const m = await rb.waitFor((e) => e.type === "message", `burst ${i}`);
        assert.equal(m.text, `burst ${i}`);
      }
      await sleep(400); // the delayed ack
      assert.ok(countsB.ack >= 1 && countsB.ack <= 6, `b sent ${countsB.ack} acks for ${n + 1} messages`);
      ok("burst in order, batched acks");

      // b's socket is closed under it: a sees it dropped, sends meanwhile,
      // b resumes and gets exactly what it missed; counters carry on.
      const closed = rb.waitFor((e) => e.type === "closed", "closed event");
      b._conn.ws.close(4000, "test drop");
      const ev = await closed;
      assert.equal(ev.code, 4000);
      await ra.waitFor((e) => e.type === "peer_left" && e.reason === "dropped", "peer_left dropped");
      await assert.rejects(b.send("while away"), { code: "disconnected" });
      await a.send("missed 1");
      await a.send("missed 2");
      const resumed = await within(10000, b.resume(), "resume");
      assert.equal(resumed.room, room.room);
      for (const text of ["missed 1", "missed 2"]) {
        const m = await rb.waitFor((e) => e.type === "message", text);
        assert.equal(m.text, text);
      }
      await ra.waitFor((e) => e.type === "peer_joined" && e.resumed, "peer_joined resumed");
      const hb2 = await b.handshake();
      assert.equal(hb2.safetyNumber, ha.safetyNumber);
      await b.send("back");
      const back = await ra.waitFor((e) => e.type === "message", "after resume");
      assert.equal(back.text, "back");
      await a.send("welcome back");
      assert.equal((await rb.waitFor((e) => e.type === "message", "after resume 2")).text, "welcome back");
      await sleep(300);
      assert.equal(rb.messages().length, 0, "no duplicate after resume");
      assert.equal(ra.events.filter((e) => e.type === "error").length, 0);
      assert.equal(rb.events.filter((e) => e.type === "error").length, 0);
      ok("resume after a forced close");

      await a.leave();
      await rb.waitFor((e) => e.type === "peer_left" && e.reason === "left", "peer_left left");
      await assert.rejects(a.send("x"), { code: "not_in_room" });
      ok("leave");
    } finally {
      await a.close();
      await b.close();
    }
  }

  // modp14 (the fallback where WebCrypto lacks X25519): group fixed by the
  // room, keys exchanged and one message each way, with the async iterator.
  {
    const a = await Client.connect(url, { WebSocket: WebSocketImpl, group: "modp14" });
    const b = await Client.connect(url, { WebSocket: WebSocketImpl }); // default x25519: the room's group wins
    try {
      const room = await a.create("modp14");
      await b.join(room.room);
      const [ha, hb] = await within(15000, Promise.all([a.handshake(), b.handshake()]), "modp14 handshake");
      assert.equal(hb.group, "modp14");
      assert.equal(ha.safetyNumber, hb.safetyNumber);
      const it = b.events();
      await a.send("modp hello");
      for (;;) {
        const { value } = await within(10000, it.next(), "iterator");
        if (value.type === "message") {
          assert.equal(value.text, "modp hello");
          break;
        }
      }
      await it.return();
      ok("modp14 handshake and message, async iterator");
    } finally {
      await a.close();
      await b.close();
    }
  }
  return checks;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts the relay binary on a free port, with more args; resolves with {url, stop}. */
async function startRelay(bin, t, args = []) {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const proc = spawn(bin, ["--addr", `127.0.0.1:${port}`, "--log-level", "warn", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    proc.stdout.on("data", (d) => (output += d));
    proc.stderr.on("data", (d) => (output += d));
    let exited = false;
    proc.on("exit", () => (exited = true));
    const stop = async () => {
      if (exited) return;
      proc.kill("SIGTERM");
      const t0 = Date.now();
      while (!exited && Date.now() - t0 < 5000) await sleep(50);
      if (!exited) proc.kill("SIGKILL");
    };
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline && !exited) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`);
        if (res.ok) return { url: `ws://127.0.0.1:${port}/v1/ws`, stop, output: () => output };
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    await stop();
    if (attempt >= 3) throw new Error(`the relay did not become healthy:\n${output}`);
    t.diagnostic(`relay start attempt ${attempt} failed; retrying`);
  }
}

const haveRedis = spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0;

/** Resolves once a Redis answers PING on port, or rejects after ms. */
async function waitRedis(port, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const sock = netConnect(port, "127.0.0.1");
      let got = "";
      sock.on("connect", () => sock.write("PING\r\n"));
      sock.on("data", (d) => {
        got += d;
        if (got.includes("PONG")) {
          sock.destroy();
          resolve(true);
        }
      });
      sock.on("error", () => resolve(false));
      setTimeout(() => {
        sock.destroy();
        resolve(false);
      }, 500);
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer`);
    await sleep(50);
  }
}

/** Starts a redis-server without persistence on a free port; resolves with {url, stop}. */
async function startRedis() {
  const port = await freePort();
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  let exited = false;
  proc.on("exit", () => (exited = true));
  const stop = async () => {
    if (exited) return;
    proc.kill("SIGTERM");
    const t0 = Date.now();
    while (!exited && Date.now() - t0 < 5000) await sleep(50);
    if (!exited) proc.kill("SIGKILL");
  };
  try {
    await waitRedis(port);
  } catch (e) {
    await stop();
    throw e;
  }
  return { url: `redis://127.0.0.1:${port}`, stop };
}

/**
 * Failover between two relays sharing one real Redis: B is on instance 1
 * (its first URL), A on instance 2. Instance 1 stops (SIGTERM: close
 * 1001); B's resume() tries instance 1, then instance 2, which gives the
 * seat back, reporting each attempt; nothing is lost or repeated.
 */
async function failoverScenario(bin, WebSocketImpl) {
  const checks = [];
  const stubT = { diagnostic: () => {} };
  const redis = await startRedis();
  const stops = [redis.stop];
  try {
    const r1 = await startRelay(bin, stubT, ["--redis-url", redis.url]);
    stops.unshift(r1.stop);
    const r2 = await startRelay(bin, stubT, ["--redis-url", redis.url]);
    stops.unshift(r2.stop);
    const a = await Client.connect([r2.url], { WebSocket: WebSocketImpl });
    const b = await Client.connect([r1.url, r2.url], { WebSocket: WebSocketImpl });
    const ra = recorder(a);
    const rb = recorder(b);
    try {
      assert.equal(b.url, r1.url);
      const room = await a.create("x25519");
      assert.equal(room.resumeGraceMs, 120000);
      await b.join(room.room, { group: "x25519" });
      const [ha, hb] = await within(15000, Promise.all([a.handshake(), b.handshake()]), "handshake across instances");
      assert.equal(ha.safetyNumber, hb.safetyNumber);
      await a.send("before");
      assert.equal((await rb.waitFor((e) => e.type === "message", "before")).text, "before");

      const closed = rb.waitFor((e) => e.type === "closed", "closed event");
      await r1.stop();
      assert.equal((await closed).code, 1001);
      await a.send("while away");
      const resumed = await within(15000, b.resume(), "resume on the other instance");
      assert.equal(resumed.room, room.room);
      assert.equal(b.url, r2.url);
      const tries = rb.events.filter((e) => e.type === "reconnecting");
      assert.deepEqual(tries.map((e) => [e.url, e.attempt]), [[r1.url, 1], [r2.url, 2]]);
      assert.ok(tries.every((e) => e.leftMs > 100000 && e.leftMs <= 120000), JSON.stringify(tries));
      assert.equal((await rb.waitFor((e) => e.type === "message", "while away")).text, "while away");
      await b.send("back");
      assert.equal((await ra.waitFor((e) => e.type === "message", "back")).text, "back");
      await sleep(300);
      assert.equal(rb.messages().length + ra.messages().length, 0, "no duplicate after the failover");
      checks.push("failover to another instance");
    } finally {
      await a.close();
      await b.close();
    }
  } finally {
    for (const stop of stops) await stop();
  }
  return checks;
}

if (process.env.KEYRELAY_E2E_URL) {
  // Child mode: run the scenario, report on stdout, exit 0 or 1.
  const timer = setTimeout(() => {
    console.log("E2E-FAIL timed out");
    process.exit(1);
  }, 90000);
  try {
    const checks = await scenario(process.env.KEYRELAY_E2E_URL, globalThis.WebSocket);
    if (process.env.KEYRELAY_E2E_BIN) checks.push(...(await failoverScenario(process.env.KEYRELAY_E2E_BIN, globalThis.WebSocket)));
    console.log("E2E-OK " + JSON.stringify(checks));
    clearTimeout(timer);
    process.exit(0);
  } catch (e) {
    console.log("E2E-FAIL " + (e && e.stack ? e.stack : String(e)));
    process.exit(1);
  }
} else {
  const haveGo = spawnSync("go", ["version"], { stdio: "ignore" }).status === 0;
  test("two Clients through a real keyrelay relay", { timeout: 240000, skip: haveGo ? false : "go is not on PATH: cannot build ./cmd/keyrelay" }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "keyrelay-e2e-"));
    const bin = join(dir, "keyrelay");
    const relay = { stop: async () => {} };
    try {
      const built = spawnSync("go", ["build", "-o", bin, "./cmd/keyrelay"], { cwd: repoRoot, encoding: "utf8", timeout: 180000 });
      assert.equal(built.status, 0, `go build ./cmd/keyrelay failed:\n${built.stderr}`);
      Object.assign(relay, await startRelay(bin, t));
      const failover = haveRedis || process.env.KEYRELAY_REQUIRE_REDIS === "1";
      if (!failover) t.diagnostic("redis-server is not installed: the failover scenario is skipped");
      let checks;
      if (typeof globalThis.WebSocket === "function") {
        checks = await scenario(relay.url, globalThis.WebSocket);
        if (failover) checks.push(...(await failoverScenario(bin, globalThis.WebSocket)));
      } else {
        t.diagnostic("no global WebSocket: running the scenario in `node --experimental-websocket`");
        const child = spawn(process.execPath, ["--experimental-websocket", "--no-warnings", thisFile], {
          env: { ...process.env, KEYRELAY_E2E_URL: relay.url, ...(failover ? { KEYRELAY_E2E_BIN: bin } : {}) },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let out = "";
        child.stdout.on("data", (d) => (out += d));
        child.stderr.on("data", (d) => (out += d));
        const code = await within(120000, new Promise((r) => child.on("exit", r)), "child scenario").catch((e) => {
          child.kill("SIGKILL");
          throw e;
        });
        const line = out.split("\n").find((l) => l.startsWith("E2E-"));
        assert.equal(code, 0, `child failed (exit ${code}):\n${out}\nrelay log:\n${relay.output()}`);
        assert.ok(line && line.startsWith("E2E-OK "), out);
        checks = JSON.parse(line.slice("E2E-OK ".length));
      }
      for (const c of checks) t.diagnostic(`passed: ${c}`);
      assert.deepEqual(checks, [
        "create/join",
        "handshake: same safety number",
        "room_full rejects with .code",
        "messages both ways",
        "burst in order, batched acks",
        "resume after a forced close",
        "leave",
        "modp14 handshake and message, async iterator",
        ...(failover ? ["failover to another instance"] : []),
      ]);
    } finally {
      await relay.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("Client.connect without a WebSocket implementation fails clearly", { skip: typeof globalThis.WebSocket === "function" ? "a global WebSocket exists" : false }, async () => {
  await assert.rejects(Client.connect("ws://127.0.0.1:1/v1/ws"), { code: "connect_failed" });
  assert.equal(SUBPROTOCOL, "keyrelay.v1");
});
