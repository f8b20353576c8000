// Events: the domain's log with filters (types, user, pool, period), newest
// first, paged backwards with `before` and forwards with `after`:
// GET .../events?before=&after=&limit=&type=&user_id=&pool=&from=&to=.

import { $, clearErrors, h, num, options, showError, timeEl } from "./dom.js";

const PAGE = 50;
const NEWEST = String(Number.MAX_SAFE_INTEGER); // "before" any event id

export const TYPES = {
  seat_granted: "Seat granted", seat_denied: "Seat denied", seat_released: "Seat released",
  lease_expired: "Lease expired", taken_over: "Taken over", idle_logoff: "Idle log-off",
  released_by_admin: "Released by admin", license_changed: "License changed",
  call_started: "Call started", call_ended: "Call ended", named_login: "Named login",
  named_logout: "Named logout", token_revoked: "Token revoked", pool_full: "Pool full",
  pool_near_capacity: "Pool near capacity", pool_recovered: "Pool recovered",
  webhook_disabled: "Webhook disabled",
};
const TONES = {
  seat_granted: "grant", named_login: "grant", seat_denied: "bad", pool_full: "bad",
  lease_expired: "warn", taken_over: "warn", idle_logoff: "warn", released_by_admin: "warn",
  license_changed: "warn", token_revoked: "warn", pool_near_capacity: "warn", webhook_disabled: "bad",
  call_started: "call",
};

const view = { filters: [], page: [], more: { older: false, newer: false } };

export function init(ctx) {
  $("events-types").replaceChildren(...Object.entries(TYPES).map(([type, label]) =>
    h("label", { class: "choice" }, h("input", { type: "checkbox", name: "type", value: type }), label)));
  $("events-types").addEventListener("change", typesSummary);
  ctx.on("pools", () => {
    const select = $("events-pool");
    const chosen = select.value;
    options(select, [["", "Any pool"], ...ctx.pools.map((p) => [p.id, p.name])]);
    select.value = ctx.pools.some((p) => p.id === chosen) ? chosen : "";
  });
  $("events-user").addEventListener("input", () => suggest(ctx));
  $("events-form").addEventListener("submit", (event) => {
    event.preventDefault();
    apply(ctx);
  });
  $("events-newest").addEventListener("click", () => load(ctx, [["before", NEWEST]]));
  $("events-older").addEventListener("click", () => load(ctx, [["before", String(view.page.at(-1).id)]]));
  $("events-newer").addEventListener("click", () => load(ctx, [["after", String(view.page[0].id)]]));
  window.presenceAdmin.events = view;
}

export async function show(ctx) {
  if (!ctx.usersLoaded) await ctx.reload("users");
  apply(ctx);
}

function typesSummary() {
  const chosen = [...$("events-types").querySelectorAll("input:checked")].map((i) => TYPES[i.value]);
  $("events-types-summary").textContent = chosen.length ? chosen.join(", ") : "All types";
}

const userLabel = (u) => `${u.name} <${u.email}>`;

function suggest(ctx) {
  const q = $("events-user").value.trim().toLowerCase();
  const found = [];
  if (q) {
    for (const u of ctx.users) {
      if (`${u.name}\n${u.email}`.toLowerCase().includes(q)) found.push(u);
      if (found.length === 20) break;
    }
  }
  $("events-user-list").replaceChildren(...found.map((u) => h("option", { value: userLabel(u) })));
}

function resolveUser(ctx, text) {
  const t = text.trim();
  if (!t) return "";
  const lower = t.toLowerCase();
  const exact = ctx.users.filter((u) => userLabel(u) === t || u.email.toLowerCase() === lower || u.id === t);
  if (exact.length === 1) return exact[0].id;
  const named = ctx.users.filter((u) => u.name.toLowerCase() === lower);
  if (named.length === 1) return named[0].id;
  throw {
    field: "user_id",
    message: named.length > 1
      ? `${named.length} users are called ${t}: pick one from the list (with the e-mail).`
      : "No user matches: pick one from the list.",
  };
}

// The form as filters, then the newest page.
function apply(ctx) {
  const form = $("events-form");
  clearErrors(form);
  const e = form.elements;
  try {
    const filters = [...$("events-types").querySelectorAll("input:checked")].map((i) => ["type", i.value]);
    const user = resolveUser(ctx, e.user.value);
    if (user) filters.push(["user_id", user]);
    if (e.pool.value) filters.push(["pool", e.pool.value]);
    if (e.from.value) filters.push(["from", new Date(e.from.value).toISOString()]);
    if (e.to.value) filters.push(["to", new Date(e.to.value).toISOString()]);
    view.filters = filters;
  } catch (error) {
    showError(form, error);
    return;
  }
  load(ctx, [["before", NEWEST]]);
}

async function load(ctx, where) {
  const form = $("events-form");
  let found;
  try {
    found = await ctx.api.get(ctx.path("events"), [...view.filters, ...where, ["limit", String(PAGE)]]);
  } catch (error) {
    if (!error.code) throw error;
    showError(form, error, { not_found: "" });
    return;
  }
  const [direction] = where[0];
  if (direction === "after" && !found.length) {
    view.more.newer = false;
    render(ctx);
    return;
  }
  view.page = found.slice().reverse(); // newest first
  const full = found.length === PAGE;
  if (direction === "before") {
    view.more = { older: full, newer: where[0][1] !== NEWEST };
  } else {
    view.more = { older: true, newer: full };
  }
  render(ctx);
}

function render(ctx) {
  const rows = view.page.map((event) => row(ctx, event));
  $("events-table").tBodies[0].replaceChildren(...rows);
  $("events-empty").hidden = rows.length > 0;
  $("events-older").disabled = !view.more.older;
  $("events-newer").disabled = !view.more.newer;
  $("events-newest").disabled = !view.more.newer;
  $("events-range").textContent = rows.length
    ? `${num(rows.length)} events, #${view.page.at(-1).id}–#${view.page[0].id}`
    : "";
}

function row(ctx, event) {
  const user = event.user_id ? ctx.userById.get(event.user_id) : null;
  const who = !event.user_id ? "—" : user ? user.name : `${event.user_id} (deleted?)`;
  const where = event.pool ? `${ctx.poolName(event.pool)}${event.seat ? ` · seat ${event.seat}` : ""}` : "";
  return h("tr", { dataset: { id: event.id, type: event.type } },
    h("td", { "data-label": "Time" }, timeEl(event.at, "", true)),
    h("td", { "data-label": "Event" }, h("span", { class: `badge tone-${TONES[event.type] ?? "plain"}`, text: TYPES[event.type] ?? event.type })),
    h("td", { "data-label": "User", class: "event-user", title: user?.email ?? "", text: who }),
    h("td", { "data-label": "Pool", text: where }),
    h("td", { "data-label": "Device", class: "mono", text: event.device_id ?? "" }),
    h("td", { "data-label": "Id", class: "num muted", text: `#${event.id}` }));
}
