// Tokens: create a domain admin or wallboard token (user tokens are made from
// the user's row), its secret shown once with a copy button; every token of
// the domain listed with when it was made, expires and was last used; revoke.

import { enc } from "./api.js";
import { $, clearErrors, confirmAction, h, num, options, pager, plural, secretBox, showError, timeEl } from "./dom.js";
import { EXPIRIES } from "./users.js";

const PAGE = 50;
const ROLES = { admin: "Domain admin", wallboard: "Wallboard", user: "User", server: "Server admin" };

const view = { tokens: [], shown: [], page: 0, query: "", role: "" };

export function init(ctx) {
  options($("token-expires"), EXPIRIES, "");
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    create(ctx, event.currentTarget);
  });
  $("tokens-search").addEventListener("input", (event) => {
    view.query = event.target.value.trim().toLowerCase();
    apply(ctx, true);
  });
  $("tokens-filter").addEventListener("change", (event) => {
    view.role = event.target.value;
    apply(ctx, true);
  });
  ctx.on("tokens", () => { if (!$("tokens").hidden) load(ctx); });
}

export async function show(ctx) {
  $("token-secret-slot").replaceChildren();
  await Promise.all([ctx.usersLoaded || ctx.reload("users"), load(ctx)]);
}

async function load(ctx) {
  const listed = await ctx.api.get(ctx.path("tokens"));
  // Newest first; tokens from before the server knew ids have no time.
  view.tokens = listed.reverse();
  apply(ctx, false);
}

function owner(ctx, token) {
  return token.user_id ? ctx.userName(token.user_id) || token.user_id : "";
}

function apply(ctx, reset) {
  const q = view.query;
  view.shown = view.tokens.filter((t) =>
    (!view.role || t.role === view.role) &&
    (!q || `${t.label ?? ""}\n${owner(ctx, t)}\n${t.id}`.toLowerCase().includes(q)));
  if (reset) view.page = 0;
  view.page = Math.min(view.page, Math.max(0, Math.ceil(view.shown.length / PAGE) - 1));
  render(ctx);
}

function render(ctx) {
  const pages = Math.max(1, Math.ceil(view.shown.length / PAGE));
  const first = view.page * PAGE;
  const rows = view.shown.slice(first, first + PAGE).map((t) => row(ctx, t));
  $("tokens-table").tBodies[0].replaceChildren(...rows);
  $("tokens-count").textContent = view.shown.length
    ? `${num(first + 1)}–${num(first + rows.length)} of ${plural(view.shown.length, "token")}`
    : view.tokens.length ? "No token matches." : "No token yet.";
  pager($("tokens-pager"), { page: view.page, pages, onPage: (n) => { view.page = n; render(ctx); } });
}

function row(ctx, token) {
  const expired = token.expires_at && Date.parse(token.expires_at) <= Date.now();
  const label = token.label ?? "(no label)";
  return h("tr", { dataset: { token: token.id }, class: expired ? "expired" : "" },
    h("td", { "data-label": "Label", class: token.label ? "" : "muted", text: label }),
    h("td", { "data-label": "Role" }, h("span", { class: `badge ${token.role}`, text: ROLES[token.role] ?? token.role })),
    h("td", { "data-label": "User", text: owner(ctx, token) }),
    h("td", { "data-label": "Created" }, timeEl(token.created_at, "before ids")),
    h("td", { "data-label": "Expires" }, timeEl(token.expires_at, "never"), expired ? h("span", { class: "badge warn", text: "expired" }) : null),
    h("td", { "data-label": "Last used" }, timeEl(token.last_used_at, "never")),
    h("td", { class: "row-actions" }, h("button", {
      type: "button", class: "danger-quiet", text: "Revoke",
      "aria-label": `Revoke ${ROLES[token.role] ?? token.role} token ${label}${token.user_id ? ` of ${owner(ctx, token)}` : ""}`,
      onclick: () => revoke(ctx, token, label),
    })));
}

async function create(ctx, form) {
  clearErrors(form);
  const body = { role: form.role.value };
  if (form.label.value.trim()) body.label = form.label.value;
  if (form.expires_in.value) body.expires_in = Number(form.expires_in.value);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  let made;
  try {
    made = await ctx.api.post(ctx.path("tokens"), body);
  } catch (error) {
    if (!error.code) throw error;
    showError(form, error);
    return;
  } finally {
    button.disabled = false;
  }
  form.reset();
  const link = made.role === "wallboard"
    ? `${location.origin}/#token=${enc(made.token)}`
    : `${location.origin}/admin#token=${enc(made.token)}&domain=${enc(ctx.domainId)}`;
  const box = secretBox(made.token, {
    title: `${ROLES[made.role]} token${made.label ? ` “${made.label}”` : ""} created. Copy it now:`,
    hint: "it is shown this once, never again.",
    link,
  });
  box.append(h("button", { type: "button", class: "quiet", text: "Done", onclick: () => box.remove() }));
  $("token-secret-slot").replaceChildren(box);
  box.querySelector("input").focus();
  box.querySelector("input").select();
  await load(ctx);
}

async function revoke(ctx, token, label) {
  const whose = token.user_id ? ` of ${owner(ctx, token)}` : "";
  const ok = await confirmAction(
    `Revoke “${label}”?`,
    `The ${ROLES[token.role] ?? token.role} token “${label}”${whose} stops working at once: every device or wallboard opened with it is cut off, and a seat it holds is freed.`,
    "Revoke token",
  );
  if (!ok) return;
  try {
    await ctx.api.delete(ctx.path("tokens", token.id));
  } catch (error) {
    $("tokens-error").textContent = error.message;
    return;
  }
  $("tokens-error").textContent = "";
  ctx.say(`Revoked “${label}”.`);
  await load(ctx);
}
