// app.js: keyrelay's chat page. All cryptography happens in this browser,
// through keyrelay.js: the key pair is generated here, the relay gets only
// the public key and ciphertext. The room ID and its group travel in the
// URL fragment (/#room=<id>&group=x25519), which the browser never sends to
// the server.
//
// The page insists on one group per room and shows it ("Encryption group:
// x25519") from the moment it knows it: the group chosen when creating, or
// the share link's when joining. keyrelay.js refuses a relay that reports
// another group; the page then says "The relay changed the encryption group
// from x25519 to modp5; this room is not safe." An old link without a group
// is accepted with the room's group, unless that is a legacy group (modp5),
// which the page never accepts.
//
// Never log: no key, token, room ID or plaintext goes to the console or into
// a URL.

import {
  Client, CloseCode, Code, DEFAULT_GROUP, DHCode, FALLBACK_GROUP, GROUPS, LEGACY_GROUPS, LocalCode, Reason,
  isGroupSupported, relayURLs,
} from "./keyrelay.js";

const $ = (id) => document.getElementById(id);

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// Labels of the groups offered by "Create room", in the picker's order. The
// legacy groups (modp5) are not offered: the page never allows them.
const GROUP_LABELS = {
  x25519: "X25519 (recommended)",
  p256: "P-256 (NIST curve)",
  modp14: "MODP 2048-bit (RFC 3526 group 14)",
  modp15: "MODP 3072-bit (group 15)",
  modp16: "MODP 4096-bit (group 16)",
  modp17: "MODP 6144-bit (group 17, slow)",
  modp18: "MODP 8192-bit (group 18, slow)",
};

// What each state says; the state name is also body[data-state], which the
// CSS and the end-to-end tests read. A function builds the text from the
// state's detail.
const STATES = {
  loading: "Loading…",
  start: "Create a room to start.",
  connecting: "Connecting to the relay…",
  waiting: "Waiting for the other person to open the link…",
  handshake: "Exchanging keys…",
  chat: "Connected. Messages are end-to-end encrypted.",
  "peer-dropped": "The other person's connection dropped. Waiting for them to come back; what you send now is delivered when they do.",
  "peer-left": "The other person left the room.",
  "invalid-key": "The other person's key is invalid or changed. This room is not safe: start a new one.",
  "room-full": "This room already has two people. Ask for a new link.",
  reconnecting: ({ relay, left }) => (relay
    ? `Connection lost. Reconnecting through ${relay}… (the relay keeps your place ${left} more)`
    : "Connection lost. Reconnecting…"),
  lost: "The connection could not be restored while the relay kept your place. Start a new room.",
  expired: "This room has expired or no longer exists. Start a new one.",
  left: "You left the room.",
  "bad-link": "This link is not a valid room link. Check it, or start a new room.",
  "group-changed": ({ expected, got }) => `The relay changed the encryption group from ${expected} to ${got || "none"}; this room is not safe.`,
  "weak-group": ({ got }) => `This room uses ${got}, a legacy encryption group too weak for this page; this room is not safe.`,
  superseded: "This room was opened again in another tab or window, which took over; this page has stopped.",
  error: "Something went wrong.",
};

// States after which the room cannot be used any more.
const FINAL = new Set(["invalid-key", "room-full", "expired", "lost", "left", "bad-link", "group-changed", "weak-group", "superseded", "error"]);

/** The page's state; only this module's functions change it. */
const app = {
  client: null,
  state: "loading",
  handshakeDone: false,
  chatShown: false, // a handshake completed once: keep the history visible
  hsGen: 0, // bumped to abandon a handshake in progress
  reconnecting: false,
  x25519: true,
  group: null, // the group the page insists on: chosen, from the link, or the room's
  roomID: null, // the room this page is in (or joining)
  href: "", // the page's URL for that room: a different one was typed or pasted
  episode: null, // the peer's current run of drops and returns (see peerDropped)
};

function setState(state, detail) {
  app.state = state;
  document.body.dataset.state = state;
  const text = STATES[state];
  $("status").textContent = typeof text === "function" ? text(detail || {}) : detail ? `${text} ${detail}` : text;
  showGroup();
  const inRoom = !FINAL.has(state) && state !== "start" && state !== "loading";
  const chatting = app.handshakeDone && inRoom;
  $("start-panel").hidden = state !== "start";
  $("share-panel").hidden = !(state === "waiting" || (state === "handshake" && $("share-link").value !== ""));
  $("progress-panel").hidden = !(state === "waiting" || state === "handshake");
  // The safety number is the current peer's: hidden once there is none
  // (they left, or this page did), so nobody marks a gone key as verified.
  const hasPeer = chatting && state !== "peer-left";
  $("verify-panel").hidden = !hasPeer;
  $("verify").disabled = !hasPeer;
  $("chat-panel").hidden = !app.chatShown;
  // While reconnecting the composer stays open: what is typed is queued,
  // marked as such, and sent once the connection is back (sendMessage).
  const canSend = chatting && (state === "chat" || state === "peer-dropped" || state === "reconnecting");
  $("message").disabled = !canSend;
  $("send").disabled = !canSend;
  $("message").placeholder = state === "reconnecting" ? "Sent once reconnected" : "Message (Enter sends)";
  $("leave").hidden = !inRoom;
  $("new-room").hidden = inRoom || state === "start" || state === "loading";
  if (FINAL.has(state) && app.client) {
    app.hsGen++;
    app.client.close(); // its "closed" event finds a final state: no resume
  }
}

// showGroup shows the group the page insists on, above the room's panels,
// from the moment it is known (before the handshake) until the page is done.
function showGroup() {
  const room = app.client && app.client.room;
  if (room && room.group) app.group = room.group;
  $("room-group-name").textContent = app.group || "";
  // (Not for a refused legacy group: the page never insisted on that one.)
  $("room-group").hidden = !app.group || ["loading", "start", "bad-link", "weak-group"].includes(app.state);
}

function markStep(step) {
  const li = document.querySelector(`#steps [data-step="${step}"]`);
  if (li) li.classList.add("done");
}

function resetSteps() {
  for (const li of document.querySelectorAll("#steps li")) li.classList.remove("done");
}

// ---------------------------------------------------------------------------
// Messages

function addMessage(kind, text) {
  const li = document.createElement("li");
  li.className = `msg ${kind}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = kind === "mine" ? "You" : kind === "theirs" ? "Them" : "";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text; // text, never HTML
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (kind !== "system") li.append(who);
  li.append(body, meta);
  const list = $("messages");
  list.append(li);
  list.scrollTop = list.scrollHeight;
  return li;
}

function system(text) {
  return addMessage("system", text);
}

// sendMessage shows text as the user's and sends it. Typed while the page
// reconnects, it is queued: marked "queued: sent once reconnected" (like a
// chat app's clock mark) and sent by keyrelay.js once resume() succeeds,
// after any message still unconfirmed from before the drop.
async function sendMessage(text) {
  const li = addMessage("mine", text);
  li.classList.add("pending");
  const queued = app.state === "reconnecting";
  li.classList.toggle("queued", queued);
  li.querySelector(".meta").textContent = queued ? "queued: sent once reconnected" : "sending…";
  try {
    const seq = await app.client.send(text, { queue: true });
    li.classList.remove("pending", "queued");
    li.dataset.seq = String(seq);
    li.querySelector(".meta").textContent = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  } catch (e) {
    li.classList.remove("pending", "queued");
    li.classList.add("failed");
    li.querySelector(".meta").textContent = sendFailure(e);
    if (isKeyError(e)) setState("invalid-key");
  }
}

// A message whose connection drops before the relay confirms it stays
// "sending…", and one typed while reconnecting "queued": keyrelay.js sends
// both once reconnected. What it reports here is why one was not sent.
function sendFailure(e) {
  switch (e && e.code) {
    case Code.MAILBOX_FULL:
      return "not sent: the other person has too many unread messages; try again later";
    case Code.RATE_LIMITED:
      return "not sent: too fast; try again";
    case LocalCode.TOO_LARGE:
      return "not sent: too long";
    case LocalCode.CLOSED:
      // Queued or unconfirmed when the page stopped.
      return app.state === "left" ? "not sent: you left the room first" : "not sent: the connection did not come back";
    default:
      return `not sent (${(e && e.code) || "error"})`;
  }
}

// ---------------------------------------------------------------------------
// Room lifecycle

const KEY_ERRORS = new Set([
  DHCode.INVALID_PUBLIC_KEY, DHCode.MALFORMED_KEY, DHCode.SAME_KEY, DHCode.BAD_HEX, LocalCode.PEER_KEY_CHANGED, Code.GROUP_MISMATCH,
]);

function isKeyError(e) {
  return !!e && KEY_ERRORS.has(e.code);
}

function showSafetyNumber(hs) {
  const el = $("safety-number");
  el.textContent = "";
  const groups = hs.safetyNumber.split(" ");
  groups.forEach((g, i) => {
    if (i > 0) el.append(" ");
    const span = document.createElement("span");
    span.textContent = g;
    el.append(span);
  });
  $("group-used").textContent = `Key exchange: ${hs.group}`;
  setVerified(false);
}

function setVerified(on) {
  const b = $("verify");
  b.setAttribute("aria-pressed", on ? "true" : "false");
  b.textContent = on ? "✓ Verified" : "Mark as verified";
  $("verify-panel").classList.toggle("verified", on);
}

// handshake runs the key exchange with the current peer, showing progress.
async function handshake() {
  const gen = ++app.hsGen;
  const c = app.client;
  app.handshakeDone = false;
  resetSteps();
  const room = c.room;
  setState(room && room.peers < 2 ? "waiting" : "handshake");
  try {
    await c.sendKey();
    if (gen !== app.hsGen) return;
    markStep("keypair");
    markStep("sent");
    const hs = await c.handshake();
    if (gen !== app.hsGen) return;
    markStep("peer");
    markStep("derived");
    app.handshakeDone = true;
    app.chatShown = true;
    showSafetyNumber(hs);
    setState("chat");
    $("message").focus();
  } catch (e) {
    if (gen !== app.hsGen) return;
    handleError(e);
  }
}

// refuseGroup shows why the page refused the room's group (an error or
// an "error" event of keyrelay.js, which has left the room); false if the
// code is not a refusal.
function refuseGroup(e) {
  switch (e.code) {
    case LocalCode.GROUP_CHANGED:
      setState("group-changed", { expected: e.expected || app.group, got: e.got });
      return true;
    case Code.GROUP_NOT_ALLOWED:
      setState("weak-group", { got: e.got || app.group });
      return true;
    default:
      return false;
  }
}

function handleError(e) {
  const code = e && e.code;
  if (code === LocalCode.DISCONNECTED) return; // the "closed" event starts a resume
  if (code === LocalCode.CLOSED || code === LocalCode.ABORTED) return;
  if (code === LocalCode.RESUME_GAVE_UP) return setState("lost");
  if (FINAL.has(app.state)) return; // already said why (a refusal is also an "error" event)
  if (refuseGroup(e)) return;
  if (isKeyError(e)) return setState("invalid-key");
  switch (code) {
    case LocalCode.SUPERSEDED:
      return setState("superseded");
    case Code.ROOM_FULL:
      return setState("room-full");
    case Code.ROOM_NOT_FOUND:
    case Code.ROOM_EXPIRED:
    case Code.RESUME_EXPIRED:
    case Code.INVALID_RESUME:
    case Code.NOT_IN_ROOM:
      return setState("expired");
    case DHCode.UNSUPPORTED_GROUP:
      return setState("error", `This browser cannot do this room's key exchange (${app.group || "X25519"}). Ask the other person to create a room with MODP 2048-bit.`);
    case LocalCode.CONNECT_FAILED:
      return setState("error", "The relay cannot be reached.");
    case Code.TOO_MANY_ROOMS:
      return setState("error", "The relay is full; try again later.");
    default:
      return setState("error", code ? `(${code})` : "");
  }
}

function onEvent(ev) {
  switch (ev.type) {
    case "message":
      addMessage("theirs", ev.text);
      break;
    case "peer_key":
      markStep("peer");
      break;
    case "peer_joined":
      if (app.state === "waiting") setState("handshake");
      if (ev.resumed) {
        if (app.handshakeDone && app.state === "peer-dropped") peerBack();
      } else if (app.state === "peer-left") {
        // A new person took the free place: new key, new safety number.
        app.episode = null;
        system("Someone new joined: compare the new safety number before trusting them.");
        handshake();
      }
      break;
    case "peer_left":
      if (FINAL.has(app.state)) break;
      if (ev.reason === Reason.LEFT || ev.reason === Reason.EXPIRED) {
        // Gone for good: left, or dropped and not back within the relay's
        // grace period.
        if (app.handshakeDone) {
          system(ev.reason === Reason.LEFT ? "The other person left the room." : "The other person's connection did not come back in time.");
        }
        app.episode = null;
        app.hsGen++;
        app.handshakeDone = false;
        setState("peer-left");
        // If someone joins in their place, handshake() runs again.
      } else if (app.handshakeDone) {
        peerDropped();
      }
      break;
    case "error":
      if (ev.code === LocalCode.BAD_MESSAGE) system("A message could not be decrypted and was dropped.");
      else if (ev.code === Code.ROOM_EXPIRED) {
        app.hsGen++;
        setState("expired");
      } else if (ev.code === Code.RATE_LIMITED) system("Slow down: the relay ignored a request.");
      else if (ev.code === Code.UNAVAILABLE) system("The relay is having trouble; retrying…");
      else if (!FINAL.has(app.state)) refuseGroup(ev);
      break;
    case "reconnecting":
      // resume() is about to try a relay: say which, and for how long
      // it will go on trying.
      if (!FINAL.has(app.state)) setState("reconnecting", { relay: relayName(ev.url), left: duration(ev.leftMs) });
      break;
    case "closed":
      if (FINAL.has(app.state)) break;
      if (ev.final || ev.code === CloseCode.SUPERSEDED) {
        app.hsGen++;
        setState("superseded"); // another tab resumed this place: resuming here would take it back
      } else {
        reconnect();
      }
      break;
  }
}

// ---------------------------------------------------------------------------
// The peer's drops and returns

// A drop within EPISODE_MS of the peer's last drop or return belongs to the
// same episode, which has one entry in the history, updated in place and
// moved to the end: whether the connection dropped once or often, over how
// long, and whether they are back. A flapping connection so makes one line
// ("The other person's connection is unstable: it dropped 5 times in 12 s.
// They are back."), not one per drop and per return.
const EPISODE_MS = 60_000;

// peerDropped records that the peer's connection dropped (unless the
// current episode already has them away) and shows it.
function peerDropped() {
  const now = Date.now();
  let ep = app.episode;
  if (!ep || now - ep.last > EPISODE_MS) {
    ep = app.episode = { li: system(""), drops: 0, first: now, lastDrop: now, last: now, back: false, backAfter: 0 };
  }
  if (ep.drops === 0 || ep.back) {
    ep.drops++;
    ep.lastDrop = ep.last = now;
    ep.back = false;
    showEpisode(ep);
  }
  setState("peer-dropped");
}

// peerBack records that the peer is back (if the episode had them away)
// and shows it.
function peerBack() {
  const ep = app.episode;
  if (ep && !ep.back) {
    ep.last = Date.now();
    ep.back = true;
    ep.backAfter = ep.last - ep.lastDrop;
    showEpisode(ep);
  }
  setState("chat");
}

function showEpisode(ep) {
  const waiting = "Waiting for them to come back…";
  let text;
  if (ep.drops === 1) {
    text = ep.back
      ? `The other person's connection dropped and came back ${ep.backAfter < 1000 ? "within a second" : `after ${duration(ep.backAfter)}`}.`
      : `The other person's connection dropped. ${waiting}`;
  } else {
    const span = ep.lastDrop - ep.first;
    text = `The other person's connection is unstable: it dropped ${ep.drops} times in ${span < 1000 ? "under a second" : duration(span)}. ${ep.back ? "They are back." : waiting}`;
  }
  ep.li.querySelector(".text").textContent = text;
  const list = $("messages");
  if (list.lastElementChild !== ep.li) list.append(ep.li); // the latest news last
  list.scrollTop = list.scrollHeight;
}

// relayName is how the page names a relay: its host (and port).
function relayName(url) {
  try {
    return new URL(url).host;
  } catch {
    return "the relay";
  }
}

// duration says a number of milliseconds as "1 min 52 s" or "40 s".
function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

// reconnect resumes the room after the connection dropped. keyrelay.js
// tries every relay the page knows, with backoff, for as long as the relay
// keeps the place (its grace period, 2 minutes by default), and reports
// each attempt ("reconnecting" events, shown by onEvent).
async function reconnect() {
  if (app.reconnecting) return;
  app.reconnecting = true;
  setState("reconnecting");
  try {
    const room = await app.client.resume();
    if (!app.handshakeDone) return handshake();
    // The peer may have dropped, or come back, while this page was away.
    if (room.peers < 2) peerDropped();
    else peerBack();
  } catch (e) {
    // The place is gone, taken by another tab, the group refused, or the
    // grace period over (resume_gave_up).
    handleError(e);
  } finally {
    app.reconnecting = false;
  }
}

// The relays of this page: its own, then the other instances the page's
// <meta name="keyrelay-relays"> lists, to fail over to.
function pageRelays() {
  const meta = document.querySelector('meta[name="keyrelay-relays"]');
  return relayURLs(location, meta ? meta.content : "");
}

async function connect() {
  setState("connecting");
  const c = await Client.connect(pageRelays(), { group: app.x25519 ? DEFAULT_GROUP : FALLBACK_GROUP });
  app.client = c;
  c.onevent = onEvent;
  return c;
}

async function createRoom(group) {
  app.group = group;
  try {
    const c = await connect();
    const room = await c.create(group);
    app.roomID = room.room;
    const link = new URL(location.href);
    link.search = "";
    // The group goes with the room ID, so the joiner's page insists on it.
    link.hash = new URLSearchParams({ room: room.room, group: room.group }).toString();
    $("share-link").value = link.href;
    handshake();
    $("copy").focus();
  } catch (e) {
    handleError(e);
  }
}

// joinRoom joins room id, pinning group (the link's; null for an old link
// without one: the room's group is then accepted unless legacy).
async function joinRoom(id, group) {
  app.group = group;
  app.roomID = id;
  try {
    const c = await connect();
    await c.join(id, { group });
    await handshake();
  } catch (e) {
    handleError(e);
  }
}

async function leaveRoom() {
  const c = app.client;
  app.hsGen++;
  $("leave").disabled = true;
  try {
    if (c) await c.leave();
  } catch {
    // gone already
  }
  setState("left"); // and closes the connection
}

// ---------------------------------------------------------------------------
// The address bar

// onLocationChange follows a room link typed or pasted into this tab's
// address bar, or reached with Back or Forward: the fragment changes, the
// browser does not reload, so the page must. With no room in use (the start
// page, or a room that ended: left, expired, full…) it opens the new
// address at once, as a fresh page, the way a link opens. In a room, opening
// another room would end this one, so the page asks first (#switch-panel),
// and "Stay" puts this room's address back. An address without a room, or
// with this room's ID, changes nothing in a room.
function onLocationChange() {
  if (location.href === app.href) {
    $("switch-panel").hidden = true; // back at this room's address
    return;
  }
  if (app.state === "loading") return; // main() reads the address once set up
  const { room } = linkFromFragment();
  if (app.state === "start" || FINAL.has(app.state)) {
    if (room !== null || app.state !== "start") location.reload();
    return;
  }
  if (room === null || room === app.roomID) return;
  $("switch-panel").hidden = false;
  $("switch-panel").focus();
}

async function switchRoom() {
  $("switch-go").disabled = true;
  await leaveRoom();
  location.reload(); // the address is the new room's
}

function stayInRoom() {
  history.replaceState(history.state, "", app.href);
  $("switch-panel").hidden = true;
  if (!$("message").disabled) $("message").focus();
}

// ---------------------------------------------------------------------------
// Set-up

async function setupGroups() {
  try {
    app.x25519 = await isGroupSupported("x25519");
  } catch {
    app.x25519 = false;
  }
  const select = $("group");
  const order = ["x25519", "p256", "modp14", "modp15", "modp16", "modp17", "modp18"].filter((g) => GROUPS.includes(g) && !LEGACY_GROUPS.includes(g));
  for (const g of order) {
    const opt = document.createElement("option");
    opt.value = g;
    opt.textContent = GROUP_LABELS[g] || g;
    if (g === "x25519" && !app.x25519) {
      opt.disabled = true;
      opt.textContent += " – not supported by this browser";
    }
    select.append(opt);
  }
  select.value = app.x25519 ? DEFAULT_GROUP : FALLBACK_GROUP;
  $("group-note").textContent = app.x25519
    ? "Both browsers generate a fresh key pair for this room."
    : "This browser has no WebCrypto X25519, so the room uses MODP 2048-bit (group 14) instead.";
}

// linkFromFragment reads the share link's fragment: {room, group}, each
// null when absent (old links carry no group).
function linkFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  return { room: params.get("room"), group: params.get("group") };
}

async function main() {
  $("create-form").addEventListener("submit", (e) => {
    e.preventDefault();
    $("create").disabled = true;
    createRoom($("group").value);
  });
  $("send-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("message");
    const text = input.value;
    if (text.trim() === "" || input.disabled) return;
    input.value = "";
    sendMessage(text);
  });
  $("copy").addEventListener("click", async () => {
    const input = $("share-link");
    try {
      await navigator.clipboard.writeText(input.value);
      $("copy-note").textContent = "Copied.";
    } catch {
      input.select();
      $("copy-note").textContent = "Selected: copy it with Ctrl+C (⌘C).";
    }
  });
  $("share-link").addEventListener("focus", (e) => e.target.select());
  $("verify").addEventListener("click", () => setVerified($("verify").getAttribute("aria-pressed") !== "true"));
  $("leave").addEventListener("click", leaveRoom);
  $("switch-go").addEventListener("click", switchRoom);
  $("switch-stay").addEventListener("click", stayInRoom);
  window.addEventListener("hashchange", onLocationChange);
  window.addEventListener("popstate", onLocationChange);

  await setupGroups();
  app.href = location.href;
  const { room, group } = linkFromFragment();
  if (room === null) {
    setState("start");
    return;
  }
  if (!UUID_RE.test(room) || (group !== null && !GROUPS.includes(group))) {
    setState("bad-link");
    return;
  }
  joinRoom(room, group);
}

main();
