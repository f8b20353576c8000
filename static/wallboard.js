// The wallboard: one domain's presence, live over /ws/wallboard.
//
// The server sends a snapshot, then one message per changed pool, named user
// or event (see presence/wallboard.py). Each message updates only its own part
// of the page, so a board of 50 pools of 50 seats stays smooth.
"use strict";

const TOKEN_KEY = "presence.wallboard.token";
const PING_EVERY = 10_000;
const PONG_WAIT = 5_000;
const RETRY_FIRST = 500;
const RETRY_MAX = 30_000;
const FEED_MAX = 50;
// Close codes after which retrying with the same token cannot help.
const REFUSED = new Set([4401, 4403, 4404]);

const KINDS = {
  desktop: "Desktop", phone: "Phone", tablet: "Tablet",
  glasses: "Glasses", browser: "Browser", other: "Other device",
};

// type -> [tone, icon, label, where]; where(event, pool) says where it happened.
const seatOf = (e, pool) => `${pool} · seat ${e.seat}`;
const seatIfAny = (e, pool) => (e.seat ? seatOf(e, pool) : "");
const EVENTS = {
  seat_granted: ["grant", "login", "Logged in", seatOf],
  seat_denied: ["refused", "blocked", "Refused", (e, pool) => `${pool} is full`],
  seat_released: ["release", "logout", "Logged out", seatOf],
  lease_expired: ["warn", "queue", "Lease expired", seatOf],
  taken_over: ["warn", "swap", "Taken over", seatOf],
  idle_logoff: ["warn", "moon", "Idle log-off", seatOf],
  released_by_admin: ["warn", "shield", "Released by admin", seatOf],
  license_changed: ["warn", "card", "License changed", () => ""],
  call_started: ["call", "headset", "Call started", seatIfAny],
  call_ended: ["release", "hangup", "Call ended", seatIfAny],
  named_login: ["grant", "login", "Online", seatIfAny],
  named_logout: ["release", "logout", "Offline", seatIfAny],
  token_revoked: ["warn", "shield", "Token revoked", () => ""],
  pool_full: ["refused", "blocked", "Pool full", (e, pool) => pool],
  pool_near_capacity: ["warn", "warning", "Near capacity", (e, pool) => pool],
  pool_recovered: ["grant", "free", "Pool recovered", (e, pool) => pool],
  webhook_disabled: ["refused", "offline", "Webhook disabled", () => "deliveries failed for a day"],
};

const $ = (id) => document.getElementById(id);
const clockFormat = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

const board = {
  offset: 0, // the server's clock minus ours, in ms
  pools: new Map(), // pool id -> {el, fields, tiles, data}
  named: new Map(), // user id -> element
  users: new Map(), // user id -> name, learnt from holders and named users
  poolNames: new Map(),
  shown: new Set(), // ids of the events in the feed
};
// Every "held for" clock on the page, with its start in server time (ms).
const clocks = new Map();

function clone(id) {
  return $(id).content.firstElementChild.cloneNode(true);
}

function setIcon(use, name) {
  use.setAttribute("href", `#i-${name}`);
}

function kindLabel(device) {
  const kind = KINDS[device.kind] ?? "Device";
  return device.name ? `${kind} · ${device.name}` : kind;
}

function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const [d, h, m] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60];
  const two = (n) => String(n).padStart(2, "0");
  if (d) return `${d}d ${h}h`;
  return h ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

function startClock(el, since) {
  const start = Date.parse(since);
  clocks.set(el, start);
  el.textContent = duration(Date.now() + board.offset - start);
}

function tick() {
  const now = Date.now() + board.offset;
  $("clock").textContent = clockFormat.format(now);
  for (const [el, start] of clocks) {
    if (el.isConnected) el.textContent = duration(now - start);
    else clocks.delete(el);
  }
}

// Names.

function learn(user) {
  if (!user.name || board.users.get(user.id) === user.name) return;
  board.users.set(user.id, user.name);
  // Events often arrive before the holder that names their user.
  for (const el of $("feed").querySelectorAll(`[data-user="${CSS.escape(user.id)}"]`)) {
    el.textContent = user.name;
  }
}

function nameOf(userId) {
  // The stream names only users who hold something (a refused user may never have).
  return board.users.get(userId) ?? "Someone";
}

// Pools.

function makePool(id) {
  const el = clone("t-pool");
  el.dataset.pool = id;
  const field = (name) => el.querySelector(`.${name}`);
  const fields = Object.fromEntries(
    ["pool-name", "pool-size", "over-text", "n-free", "n-occupied", "n-call", "n-queued", "seats"]
      .map((name) => [name, field(name)]),
  );
  return { el, fields, tiles: [], data: null };
}

function makeTile(seat) {
  const el = clone("t-tile");
  el.dataset.seat = seat;
  el.querySelector(".seat-no").textContent = seat;
  const q = (name) => el.querySelector(`.${name}`);
  return {
    el, key: "",
    statusIcon: q("status-icon"), statusText: q("status-text"), holder: q("holder"),
    deviceIcon: q("device-icon"), deviceLabel: q("device-label"), clock: q("held-clock"),
  };
}

function renderPool(data) {
  let pool = board.pools.get(data.id);
  if (!pool) {
    pool = makePool(data.id);
    board.pools.set(data.id, pool);
    $("pools").append(pool.el);
  }
  pool.data = data;
  board.poolNames.set(data.id, data.name);
  const f = pool.fields;
  f["pool-name"].textContent = data.name;
  f["pool-size"].textContent = `${data.seats} ${data.seats === 1 ? "seat" : "seats"}`;
  f["n-free"].textContent = data.free;
  f["n-occupied"].textContent = data.occupied;
  f["n-call"].textContent = data.in_call;
  f["n-queued"].textContent = data.queued;
  const over = data.occupied > data.seats;
  pool.el.classList.toggle("over", over);
  f["over-text"].textContent = over ? `Over capacity: ${data.occupied} held, ${data.seats} allowed` : "";

  const bySeat = new Map();
  for (const holder of data.holders) {
    learn(holder.user);
    bySeat.set(holder.seat, holder);
  }
  const count = Math.max(data.seats, ...bySeat.keys());
  while (pool.tiles.length < count) {
    const tile = makeTile(pool.tiles.length + 1);
    pool.tiles.push(tile);
    f.seats.append(tile.el);
  }
  while (pool.tiles.length > count) pool.tiles.pop().el.remove();
  // After a shrink, an empty seat within the size may still not be grantable.
  let free = data.free;
  pool.tiles.forEach((tile, i) => {
    const seat = i + 1;
    const holder = bySeat.get(seat);
    const open = !holder && seat <= data.seats && free-- > 0;
    renderTile(tile, holder, seat > data.seats, open);
  });
}

function renderTile(tile, holder, beyond, open) {
  const key = holder
    ? `${holder.lease_id}|${holder.in_call}|${holder.user.name}|${beyond}`
    : `${open ? "free" : "blocked"}|${beyond}`;
  if (tile.key === key) return;
  tile.key = key;
  const el = tile.el;
  el.classList.toggle("beyond", beyond);
  if (!holder) {
    el.dataset.state = open ? "free" : "blocked";
    setIcon(tile.statusIcon, open ? "free" : "blocked");
    tile.statusText.textContent = open ? "Free" : "Unavailable";
    tile.holder.textContent = "";
    tile.deviceLabel.textContent = "";
    clocks.delete(tile.clock);
    tile.clock.textContent = "";
    el.title = open ? `Seat ${el.dataset.seat}: free` : `Seat ${el.dataset.seat}: not available while over capacity`;
    return;
  }
  el.dataset.state = holder.in_call ? "call" : "held";
  setIcon(tile.statusIcon, holder.in_call ? "headset" : "person");
  tile.statusText.textContent = holder.in_call ? "In call" : "Logged in";
  tile.holder.textContent = holder.user.name;
  setIcon(tile.deviceIcon, KINDS[holder.device.kind] ? holder.device.kind : "other");
  tile.deviceLabel.textContent = kindLabel(holder.device);
  startClock(tile.clock, holder.since);
  el.title = `Seat ${el.dataset.seat}: ${holder.user.name} on ${kindLabel(holder.device)}`;
}

function removePool(id) {
  board.pools.get(id)?.el.remove();
  board.pools.delete(id);
}

// Named users.

function renderNamed({ user, devices }) {
  learn(user);
  let el = board.named.get(user.id);
  if (!devices.length) {
    el?.remove();
    board.named.delete(user.id);
    return;
  }
  if (!el) {
    el = clone("t-named");
    el.dataset.user = user.id;
    board.named.set(user.id, el);
    $("named").append(el);
  }
  el.querySelector(".named-name").textContent = nameOf(user.id);
  el.querySelector(".named-devices").replaceChildren(...devices.map(namedDevice));
}

function namedDevice(device) {
  const el = clone("t-named-device");
  el.dataset.device = device.id;
  el.dataset.state = device.in_call ? "call" : "held";
  setIcon(el.querySelector(".device-icon"), KINDS[device.kind] ? device.kind : "other");
  el.querySelector(".device-label").textContent = kindLabel(device);
  startClock(el.querySelector(".held-clock"), device.since);
  return el;
}

// Events.

function addEvent(event) {
  if (board.shown.has(event.id)) return;
  if (event.user) learn(event.user);
  const [tone, icon, label, where] = EVENTS[event.type] ?? ["release", "other", event.type, () => ""];
  const el = clone("t-event");
  el.dataset.id = event.id;
  el.dataset.type = event.type;
  el.classList.add(`tone-${tone}`);
  const at = el.querySelector(".event-time");
  at.dateTime = event.at;
  at.textContent = clockFormat.format(Date.parse(event.at));
  setIcon(el.querySelector(".event-icon"), icon);
  el.querySelector(".event-label").textContent = label;
  const who = el.querySelector(".event-who");
  // Alerts about a pool or a webhook are nobody's.
  who.textContent = event.user_id ? nameOf(event.user_id) : "";
  if (event.user_id && !board.users.has(event.user_id)) who.dataset.user = event.user_id;
  el.querySelector(".event-where").textContent =
    where(event, board.poolNames.get(event.pool) ?? event.pool);
  const feed = $("feed");
  feed.prepend(el);
  board.shown.add(event.id);
  while (feed.children.length > FEED_MAX) {
    board.shown.delete(Number(feed.lastElementChild.dataset.id));
    feed.lastElementChild.remove();
  }
}

// The header's totals, over every pool and named user.

function renderTotals() {
  let seats = 0, occupied = 0, inCall = 0, queued = 0;
  for (const { data } of board.pools.values()) {
    seats += data.seats;
    occupied += data.occupied;
    inCall += data.in_call;
    queued += data.queued;
  }
  const named = board.named.size;
  $("totals").textContent =
    `${occupied} of ${seats} seats held · ${inCall} in call · ${queued} queued · ` +
    `${named} named ${named === 1 ? "user" : "users"} online`;
}

// Messages from the server.

const handlers = {
  snapshot(message) {
    board.offset = Date.parse(message.now) - Date.now();
    $("domain-name").textContent = message.domain.name;
    document.title = `${message.domain.name} · Presence wallboard`;
    const { pools, named } = message.presence;
    const keep = new Set(pools.map((p) => p.id));
    for (const id of [...board.pools.keys()]) if (!keep.has(id)) removePool(id);
    for (const pool of pools) {
      renderPool(pool);
      $("pools").append(board.pools.get(pool.id).el); // the snapshot's order
    }
    const online = new Set(named.map((n) => n.user.id));
    for (const id of [...board.named.keys()]) if (!online.has(id)) renderNamed({ user: { id }, devices: [] });
    named.forEach(renderNamed);
    $("feed").replaceChildren();
    board.shown.clear();
    message.events.forEach(addEvent);
    $("board").hidden = false;
    line.live();
  },
  pool(message) { renderPool(message.pool); },
  pool_removed(message) { removePool(message.pool); },
  named(message) { renderNamed(message); },
  event(message) { addEvent(message.event); },
  pong() { line.answered(); },
  error(message) { line.refusal = message.message; },
};

function receive(frame) {
  const message = JSON.parse(frame.data);
  handlers[message.type]?.(message);
  if (message.type === "snapshot" || message.type === "pool" || message.type === "named") renderTotals();
}

// The connection: reconnects with backoff and jitter, and pings to find a dead line.

const line = {
  token: "",
  socket: null,
  attempt: 0,
  pingTimer: 0,
  pongTimer: 0,
  refusal: "",

  open() {
    this.show("connecting", "Connecting…");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/wallboard`);
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: "hello", token: this.token }));
    socket.onmessage = receive;
    socket.onclose = (closed) => this.lost(socket, closed.code);
  },

  live() {
    this.attempt = 0;
    document.body.classList.remove("stale");
    this.show("live", "Live");
    clearInterval(this.pingTimer);
    const socket = this.socket;
    this.pingTimer = setInterval(() => {
      socket.send(JSON.stringify({ type: "ping" }));
      // A silently dropped line never reports its close; stop waiting for it.
      this.pongTimer = setTimeout(() => {
        socket.close();
        this.lost(socket, 0);
      }, PONG_WAIT);
    }, PING_EVERY);
  },

  answered() {
    clearTimeout(this.pongTimer);
  },

  lost(socket, code) {
    if (socket !== this.socket) return;
    this.socket = null;
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    document.body.classList.add("stale");
    if (REFUSED.has(code)) {
      this.show("refused", `Not connected: ${this.refusal || "the token was refused"}`);
      return;
    }
    const delay = Math.min(RETRY_MAX, RETRY_FIRST * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
    this.show("offline", `Disconnected · retrying in ${Math.ceil(delay / 1000)} s`);
    setTimeout(() => this.open(), delay);
  },

  show(state, text) {
    const el = $("connection");
    el.dataset.state = state;
    setIcon(el.querySelector("use"), { live: "live", connecting: "connecting" }[state] ?? "offline");
    el.querySelector(".connection-text").textContent = text;
  },
};

// The token: from the fragment (kept for reloads in this tab), never in a URL.

function takeToken() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return token || sessionStorage.getItem(TOKEN_KEY);
}

function start() {
  addEventListener("hashchange", () => location.reload());
  tick();
  setInterval(tick, 1000);
  line.token = takeToken();
  if (!line.token) {
    $("help-origin").textContent = location.origin;
    $("help").hidden = false;
    line.show("refused", "No token");
    return;
  }
  line.open();
}

start();
