// The admin console: signing in, the domain being managed, and its sections.
//
// The token comes from the fragment (/admin#token=...&domain=acme) or the
// sign-in form and is kept in sessionStorage for this tab only; it travels in
// request headers and in the live stream's first message, never in a URL.
// Sections are addressed by the fragment too: #/ (the server admin's list of
// domains) and #/<domain>/<section>.

import { Api, ApiError, enc } from "./api.js";
import { $, clearErrors, num, showError } from "./dom.js";
import * as domains from "./domains.js";
import * as events from "./events.js";
import * as identity from "./identity.js";
import * as pools from "./pools.js";
import * as tokens from "./tokens.js";
import * as usage from "./usage.js";
import * as users from "./users.js";
import * as webhooks from "./webhooks.js";

const TOKEN_KEY = "presence.admin.token";
const DOMAIN_KEY = "presence.admin.domain";
const SECTIONS = { users, pools, tokens, usage, events, webhooks, identity };
const TITLES = { identity: "Identity provider" };

// What every section shares: the API, who is signed in, the domain's data.
export const ctx = {
  api: null,
  role: "", // "server" or "admin"
  domainId: "",
  domain: null,
  pools: [],
  users: [],
  listeners: new Map(),

  path(...parts) {
    return ["/domains", enc(this.domainId), ...parts.map(enc)].join("/");
  },
  on(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
  },
  emit(name) {
    for (const fn of this.listeners.get(name) ?? []) fn();
  },
  userById: new Map(),
  usersLoaded: false,
  setUsers(list, loaded = true) {
    this.users = list;
    this.usersLoaded = loaded;
    this.userById = new Map(list.map((u) => [u.id, u]));
    this.emit("users");
  },
  setPools(list) {
    this.pools = list;
    this.emit("pools");
  },
  setDomain(domain) {
    this.domain = domain;
    this.emit("domain");
  },
  poolName(id) {
    return this.pools.find((p) => p.id === id)?.name ?? id;
  },
  userName(id) {
    return this.userById.get(id)?.name ?? "";
  },
  namedUsed() {
    let n = 0;
    for (const u of this.users) if (u.license.model === "named") n++;
    return n;
  },
  members(poolId) {
    let n = 0;
    for (const u of this.users) if (u.license.model === "seat" && u.license.pool === poolId) n++;
    return n;
  },
  async reload(...what) {
    const load = {
      domain: async () => this.setDomain(await this.api.get(this.path())),
      pools: async () => this.setPools(await this.api.get(this.path("pools"))),
      users: async () => this.setUsers(await this.api.get(this.path("users"))),
    };
    await Promise.all(what.map((name) => load[name]()));
  },
  say(text) {
    const status = $("status");
    status.textContent = text;
    clearTimeout(this.sayTimer);
    this.sayTimer = setTimeout(() => (status.textContent = ""), 6000);
  },
};

// A debug handle for tests and curious admins: what the page holds.
window.presenceAdmin = { ctx, timings: {} };

// Signing in and out.

function signedOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(DOMAIN_KEY);
  ctx.api = null;
  ctx.role = "";
  ctx.domainId = "";
  leaveSection();
  showOnly("signin");
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("who").hidden = true;
  $("domain-title").hidden = true;
  $("summary").hidden = true;
  const form = $("signin-form");
  clearErrors(form);
  if (message) form.querySelector('[data-error=""]').textContent = message;
  if (location.hash !== "#/") history.replaceState(null, "", "#/");
  $("signin-token").focus();
}

function refused() {
  signedOut("The server refused the token (unknown, expired or revoked). Sign in again.");
}

// Which kind of token this is: "server" (it may list the domains), or a
// domain's "admin" (it may read its domain). Throws ApiError otherwise.
async function roleOf(api, domainId) {
  try {
    await api.get("/domains");
    return "server";
  } catch (error) {
    // 403: a domain's token; 404/405: a server without the list (then only a domain can be opened).
    if (![403, 404, 405].includes(error.status)) throw error;
  }
  if (!domainId) {
    throw new ApiError(400, {
      code: "bad_request", field: "domain",
      message: "This is not the server admin token: enter the domain it belongs to.",
    });
  }
  try {
    await api.get(`/domains/${enc(domainId)}`);
  } catch (error) {
    if (error.status === 404) error.field = "domain";
    if (error.status === 403) error.message = "This token may not administer the domain (a wallboard or user token?).";
    throw error;
  }
  return "admin";
}

async function signIn(token, domainId) {
  const api = new Api(token);
  const role = await roleOf(api, domainId);
  api.onUnauthorized = refused;
  ctx.api = api;
  ctx.role = role;
  sessionStorage.setItem(TOKEN_KEY, token);
  if (domainId) sessionStorage.setItem(DOMAIN_KEY, domainId);
  else sessionStorage.removeItem(DOMAIN_KEY);
  $("sign-out").hidden = false;
  $("who").hidden = false;
  $("who").textContent = role === "server" ? "Server admin" : `Admin of ${domainId}`;
  document.body.dataset.role = role;
}

// Routing: #/ and #/<domain>/<section>.

let current = null; // the section module shown

function showOnly(id) {
  for (const section of document.querySelectorAll("main > .section")) section.hidden = section.id !== id;
}

function leaveSection() {
  current?.hide?.();
  current = null;
}

async function route() {
  if (!ctx.api) return;
  const [, domainId = "", section = ""] = location.hash.split("/");
  const home = sessionStorage.getItem(DOMAIN_KEY);
  if (!domainId) {
    if (ctx.role !== "server") {
      location.hash = `#/${enc(home)}/users`;
      return;
    }
    leaveSection();
    ctx.domainId = "";
    $("domain-title").hidden = true;
    $("summary").hidden = true;
    markNav("domains");
    showOnly("domains");
    document.title = "Domains · Presence admin";
    await domains.show(ctx);
    return;
  }
  const name = SECTIONS[section] ? section : "users";
  const id = decodeURIComponent(domainId);
  if (ctx.role !== "server" && id !== home) {
    location.hash = `#/${enc(home)}/${name}`;
    return;
  }
  leaveSection();
  if (ctx.domainId !== id) {
    ctx.domainId = id;
    ctx.domain = null;
    ctx.setPools([]);
    ctx.setUsers([], false);
  }
  markNav(name);
  showOnly(name);
  $("summary").hidden = false;
  current = SECTIONS[name];
  try {
    await ctx.reload("domain", "pools");
  } catch (error) {
    if (error.status === 404) {
      ctx.say(error.message);
      if (ctx.role === "server") location.hash = "#/";
      return;
    }
    throw error;
  }
  document.title = `${TITLES[name] ?? name[0].toUpperCase() + name.slice(1)} · ${ctx.domain.name} · Presence admin`;
  if (current === SECTIONS[name]) await current.show(ctx);
}

function markNav(active) {
  $("nav").hidden = false;
  for (const link of $("nav").querySelectorAll("a[data-section]")) {
    const section = link.dataset.section;
    if (section !== "domains") link.href = `#/${enc(ctx.domainId || sessionStorage.getItem(DOMAIN_KEY) || "")}/${section}`;
    if (section === active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
    // Without a domain open, only the list of domains.
    link.parentElement.hidden = (section === "domains" && ctx.role !== "server") || (section !== "domains" && !ctx.domainId);
  }
}

function renderSummary() {
  const d = ctx.domain;
  if (!d) return;
  const title = $("domain-title");
  title.hidden = false;
  title.textContent = `${d.name} (${d.id})`;
  $("sum-plan").textContent = d.plan[0].toUpperCase() + d.plan.slice(1);
  const named = ctx.namedUsed();
  $("sum-named").textContent = ctx.usersLoaded
    ? `${num(named)} of ${num(d.named_licenses)} used · ${num(Math.max(0, d.named_licenses - named))} left`
    : `${num(d.named_licenses)}`;
  const inPools = ctx.pools.reduce((sum, p) => sum + p.seats, 0);
  $("sum-seats").textContent = `${num(inPools)} of ${num(d.seat_licenses)} in pools · ${num(Math.max(0, d.seat_licenses - inPools))} left`;
  $("domain-edit").hidden = ctx.role !== "server";
}

function takeFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (!token) return null;
  const domainId = params.get("domain") ?? "";
  history.replaceState(null, "", domainId ? `#/${enc(domainId)}/users` : "#/");
  return { token, domainId };
}

async function start() {
  ctx.on("domain", renderSummary);
  ctx.on("pools", renderSummary);
  ctx.on("users", renderSummary);
  for (const module of [domains, ...Object.values(SECTIONS)]) module.init?.(ctx);
  $("domain-edit").addEventListener("click", () => domains.edit(ctx, ctx.domain));

  $("sign-out").addEventListener("click", () => signedOut("Signed out. The token was forgotten in this tab."));
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    clearErrors(form);
    const token = form.token.value.trim();
    const domainId = form.domain.value.trim();
    if (!token) {
      showError(form, { field: "token", message: "Enter a token." });
      return;
    }
    try {
      await signIn(token, domainId);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      showError(form, error, { unauthorized: "token", not_found: "domain" });
      return;
    }
    form.reset();
    const target = domainId ? `#/${enc(domainId)}/users` : "#/";
    if (location.hash === target) route();
    else location.hash = target;
  });
  addEventListener("hashchange", () => {
    const given = takeFragment();
    if (given) begin(given);
    else route().catch(report);
  });

  const given = takeFragment() ?? {
    token: sessionStorage.getItem(TOKEN_KEY),
    domainId: sessionStorage.getItem(DOMAIN_KEY) ?? "",
  };
  if (!given.token) {
    signedOut();
    return;
  }
  await begin(given);
}

async function begin({ token, domainId }) {
  try {
    await signIn(token, domainId);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    signedOut();
    $("signin-domain").value = domainId;
    showError($("signin-form"), error, { unauthorized: "token", not_found: "domain" });
    return;
  }
  if (ctx.role !== "server" && !location.hash.startsWith(`#/${enc(domainId)}/`)) {
    history.replaceState(null, "", `#/${enc(domainId)}/users`);
  }
  await route();
}

function report(error) {
  if (error instanceof ApiError) ctx.say(error.message);
  else throw error;
}

start().catch(report);
