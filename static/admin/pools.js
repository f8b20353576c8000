// Pools: create, resize, rename, idle log-off, delete; and each pool's seats
// live from the wallboard stream, with a "Release" button on a held seat.

import { $, confirmAction, duration, field, h, num, openEditor, plural } from "./dom.js";
import { LiveStream } from "./live.js";

const KINDS = {
  desktop: "Desktop", phone: "Phone", tablet: "Tablet",
  glasses: "Glasses", browser: "Browser", other: "Other device",
};
const POOL_ERRORS = { already_exists: "id", seats_exceed_licenses: "seats", pool_not_empty: "" };
// Alert settings come with a later server; shown only when pools carry them.
const ALERT_FIELDS = [
  ["alert_interval_s", "Alert interval (s)", "How long a condition lasts before an alert, and at most one pool_full per this interval."],
  ["alert_threshold_pct", "Near-capacity alert at (%)", "Occupancy, 1-100, that counts as near capacity; empty: off."],
];

const view = {
  stream: null,
  cards: new Map(), // pool id -> {el, seats, counts, error, data}
  live: new Map(), // pool id -> the stream's latest entry for it
  offset: 0, // the server's clock minus ours, ms
  clock: 0,
};

export function init(ctx) {
  $("pool-new").addEventListener("click", () => createPool(ctx));
  ctx.on("pools", () => { if (!$("pools").hidden) renderCards(ctx); });
  ctx.on("users", () => { if (!$("pools").hidden) renderCards(ctx); });
  window.presenceAdmin.pools = view;
}

export async function show(ctx) {
  view.ctx = ctx;
  if (!ctx.usersLoaded) await ctx.reload("users");
  renderCards(ctx);
  view.stream = new LiveStream({
    token: ctx.api.token,
    domain: ctx.domainId,
    onState(state, text) {
      const live = $("live");
      live.dataset.state = state;
      live.textContent = text;
    },
    handlers: {
      snapshot(message) {
        view.offset = Date.parse(message.now) - Date.now();
        view.live = new Map(message.presence.pools.map((p) => [p.id, p]));
        renderCards(ctx);
      },
      pool(message) {
        view.live.set(message.pool.id, message.pool);
        if (!ctx.pools.some((p) => p.id === message.pool.id)) ctx.reload("pools").catch(() => {});
        else renderSeats(view.cards.get(message.pool.id), message.pool);
      },
      pool_removed(message) {
        view.live.delete(message.pool);
        ctx.reload("pools").catch(() => {});
      },
    },
  });
  view.clock = setInterval(tick, 1000);
}

export function hide() {
  view.stream?.close();
  view.stream = null;
  clearInterval(view.clock);
}

function tick() {
  const now = Date.now() + view.offset;
  for (const el of document.querySelectorAll("#pool-list .held-clock[data-since]")) {
    el.textContent = duration((now - Date.parse(el.dataset.since)) / 1000);
  }
}

function renderCards(ctx) {
  const list = $("pool-list");
  const keep = new Set(ctx.pools.map((p) => p.id));
  for (const [id, card] of view.cards) {
    if (!keep.has(id)) {
      card.el.remove();
      view.cards.delete(id);
    }
  }
  for (const pool of ctx.pools) {
    let card = view.cards.get(pool.id);
    if (!card) {
      card = makeCard(ctx, pool.id);
      view.cards.set(pool.id, card);
    }
    list.append(card.el); // in the API's order
    card.data = pool;
    renderHead(ctx, card, pool);
    renderSeats(card, view.live.get(pool.id));
  }
}

function makeCard(ctx, id) {
  const card = { id };
  card.title = h("h3", { class: "pool-name" });
  card.facts = h("p", { class: "pool-facts" });
  card.counts = h("ul", { class: "counts", "aria-label": "Seats now" });
  card.error = h("p", { class: "form-error", role: "alert" });
  card.seats = h("ol", { class: "seats", "aria-label": "Seats" });
  card.settings = h("button", { type: "button", onclick: () => editPool(ctx, card.data), text: "Settings…" });
  card.remove = h("button", { type: "button", class: "danger-quiet", onclick: () => deletePool(ctx, card), text: "Delete" });
  card.el = h("section", { class: "pool", dataset: { pool: id } },
    h("header", { class: "pool-head" },
      h("div", { class: "pool-title" }, card.title, card.facts),
      card.counts,
      h("div", { class: "pool-actions" }, card.settings, card.remove)),
    card.error, card.seats);
  return card;
}

function renderHead(ctx, card, pool) {
  card.title.replaceChildren(pool.name, " ", h("code", { class: "pool-id", text: pool.id }));
  card.el.setAttribute("aria-label", `Pool ${pool.name}`);
  const facts = [
    plural(pool.seats, "seat"),
    plural(ctx.members(pool.id), "member"),
    pool.idle_logoff_s ? `idle log-off after ${duration(pool.idle_logoff_s)}` : "no idle log-off",
  ];
  if ("alert_threshold_pct" in pool || "alert_interval_s" in pool) {
    facts.push(pool.alert_threshold_pct == null ? "near-capacity alert off" : `alert at ${pool.alert_threshold_pct}%`);
  }
  card.facts.textContent = facts.join(" · ");
  card.settings.setAttribute("aria-label", `Settings of pool ${pool.name}`);
  card.remove.setAttribute("aria-label", `Delete pool ${pool.name}`);
}

function renderSeats(card, live) {
  if (!card) return;
  const pool = card.data;
  const counts = live ?? { free: pool.seats - pool.occupied, occupied: pool.occupied, in_call: "–", queued: "–" };
  card.counts.replaceChildren(
    ...[["free", "free"], ["occupied", "occupied"], ["in_call", "in call"], ["queued", "queued"]].map(([key, label]) =>
      h("li", { class: `count count-${key}` }, h("b", { class: `n-${key}`, text: String(counts[key]) }), ` ${label}`)),
  );
  card.el.classList.toggle("over", Boolean(live && live.occupied > live.seats));
  if (!live) {
    card.seats.replaceChildren();
    return;
  }
  const bySeat = new Map(live.holders.map((holder) => [holder.seat, holder]));
  const count = Math.max(live.seats, ...bySeat.keys());
  const tiles = [];
  let free = live.free;
  for (let seat = 1; seat <= count; seat++) {
    const holder = bySeat.get(seat);
    const open = !holder && seat <= live.seats && free-- > 0;
    tiles.push(tile(card, seat, holder, open, seat > live.seats));
  }
  card.seats.replaceChildren(...tiles);
}

function tile(card, seat, holder, open, beyond) {
  const el = h("li", { class: `seat-tile${beyond ? " beyond" : ""}`, dataset: { seat } }, h("span", { class: "seat-no", text: `Seat ${seat}` }));
  if (!holder) {
    el.dataset.state = open ? "free" : "blocked";
    el.append(h("span", { class: "seat-state", text: open ? "Free" : "Unavailable" }));
    return el;
  }
  el.dataset.state = holder.in_call ? "call" : "held";
  el.dataset.lease = holder.lease_id;
  const device = KINDS[holder.device.kind] ?? "Device";
  const label = holder.device.name ? `${device} · ${holder.device.name}` : device;
  el.append(
    h("span", { class: "seat-state", text: holder.in_call ? "In call" : "Held" }),
    h("span", { class: "holder", text: holder.user.name }),
    h("span", { class: "device-label", text: label }),
    h("span", { class: "held-for" }, "for ", h("span", { class: "held-clock", dataset: { since: holder.since },
      text: duration((Date.now() + view.offset - Date.parse(holder.since)) / 1000) })),
    h("button", {
      type: "button", class: "release",
      "aria-label": `Release seat ${seat} held by ${holder.user.name}`,
      onclick: () => release(card, seat, holder, label),
      text: "Release",
    }),
  );
  return el;
}

async function release(card, seat, holder, device) {
  const { ctx } = view;
  const ok = await confirmAction(
    `Release seat ${seat}?`,
    `${holder.user.name} holds seat ${seat} of ${card.data.name} on ${device}. Releasing it ends that session at once (released by admin) and frees the seat.`,
    "Release seat",
  );
  if (!ok) return;
  try {
    await ctx.api.delete(ctx.path("leases", holder.lease_id));
    card.error.textContent = "";
    ctx.say(`Released seat ${seat} of ${card.data.name}.`);
  } catch (error) {
    card.error.textContent = error.message;
  }
}

function number(name, value, attrs = {}) {
  return h("input", { type: "number", name, min: 0, step: 1, inputmode: "numeric", value: value ?? "", ...attrs });
}

function createPool(ctx) {
  openEditor({
    title: "New seat pool",
    action: "Create pool",
    errorFields: POOL_ERRORS,
    build(body) {
      const inPools = ctx.pools.reduce((sum, p) => sum + p.seats, 0);
      body.append(
        h("p", { class: "note", text: `Seats in pools: ${num(inPools)} of the domain's ${num(ctx.domain.seat_licenses)} seat licenses.` }),
        field("Id", "id", h("input", { required: true, pattern: "[a-z0-9][a-z0-9-]{0,62}", autocomplete: "off", spellcheck: "false", placeholder: "helpdesk" }),
          "Lower-case letters, digits and dashes; it cannot change later."),
        field("Name", "name", h("input", { required: true, maxlength: 200, autocomplete: "off", placeholder: "Help desk" })),
        field("Seats", "seats", number("seats", 1)),
        field("Idle log-off (seconds, 0 = off)", "idle_logoff_s", number("idle_logoff_s", 0)),
      );
    },
    async submit(form) {
      const e = form.elements;
      await ctx.api.post(ctx.path("pools"), {
        id: e.id.value.trim(), name: e.name.value, seats: toNumber(e.seats.value), idle_logoff_s: toNumber(e.idle_logoff_s.value),
      });
      await ctx.reload("pools");
      ctx.say(`Created pool ${e.name.value}.`);
    },
  });
}

// A number field's value: a number when it is one, else the text (the server says what is wrong).
function toNumber(text) {
  return text.trim() !== "" && Number.isFinite(Number(text)) ? Number(text) : text;
}

function editPool(ctx, pool) {
  const alerts = ALERT_FIELDS.filter(([key]) => key in pool || ALERT_FIELDS.some(([other]) => other in pool));
  openEditor({
    title: `Settings of ${pool.name}`,
    action: "Save",
    errorFields: POOL_ERRORS,
    build(body) {
      body.append(
        h("p", { class: "note", text: `Pool ${pool.id}: ${plural(pool.occupied, "seat")} held now. A pool may shrink below that: holders keep their seats, and no seat is granted until it is below the new size.` }),
        field("Name", "name", h("input", { required: true, maxlength: 200, value: pool.name, autocomplete: "off" })),
        field("Seats", "seats", number("seats", pool.seats)),
        field("Idle log-off (seconds, 0 = off)", "idle_logoff_s", number("idle_logoff_s", pool.idle_logoff_s)),
        ...alerts.map(([key, label, note]) => field(label, key, number(key, pool[key], key === "alert_threshold_pct" ? { min: 1, max: 100 } : {}), note)),
      );
    },
    async submit(form) {
      const e = form.elements;
      const changes = {};
      if (e.name.value !== pool.name) changes.name = e.name.value;
      for (const key of ["seats", "idle_logoff_s", ...alerts.map(([k]) => k)]) {
        const text = e[key].value;
        const before = pool[key] ?? null;
        const value = text.trim() === "" ? null : toNumber(text);
        if (value !== before) changes[key] = value;
      }
      if (!Object.keys(changes).length) return;
      await ctx.api.patch(ctx.path("pools", pool.id), changes);
      await ctx.reload("pools");
      ctx.say(`Saved pool ${e.name.value}.`);
    },
  });
}

async function deletePool(ctx, card) {
  const pool = card.data;
  const ok = await confirmAction(
    `Delete pool ${pool.name}?`,
    `The pool ${pool.name} (${pool.id}) and its ${plural(pool.seats, "seat")} are deleted. A pool that still has users is refused: move them first.`,
    "Delete pool",
  );
  if (!ok) return;
  try {
    await ctx.api.delete(ctx.path("pools", pool.id));
  } catch (error) {
    card.error.textContent = error.message;
    card.error.dataset.code = error.code;
    return;
  }
  await ctx.reload("pools");
  ctx.say(`Deleted pool ${pool.name}.`);
}
