// Identity provider: the domain's OpenID Connect provider, whose ID tokens its
// devices may sign in with (hello {domain, id_token}) instead of a presence
// token. Shown if set (GET .../identity answers 404 when none is), set or
// changed (PUT), removed (DELETE, confirmed).

import { $, clearErrors, confirmAction, h, options, plural, showError } from "./dom.js";

// The refusals of a PUT that name no field, and the field each is about.
const IDENTITY_ERRORS = { plan_required: "provision", license_limit: "provision", seats_exceed_licenses: "provision" };

const view = { identity: undefined }; // undefined: not read yet; null: none set

export function init(ctx) {
  const form = $("identity-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    save(ctx, form);
  });
  form.addEventListener("change", (event) => {
    if (event.target.name === "provision" || event.target.name === "pool") provisionNote(ctx);
  });
  $("identity-remove").addEventListener("click", () => remove(ctx));
  ctx.on("pools", () => fillPools(ctx));
  ctx.on("domain", () => { if (!$("identity").hidden) provisionNote(ctx); });
  window.presenceAdmin.identity = view;
}

export async function show(ctx) {
  $("identity-error").textContent = "";
  $("identity-hello").textContent = JSON.stringify({ domain: ctx.domainId, id_token: "<JWT>" });
  view.identity = undefined;
  renderCurrent(ctx);
  clearErrors($("identity-form"));
  await load(ctx);
  fill(ctx, view.identity);
}

async function load(ctx) {
  try {
    view.identity = await ctx.api.get(ctx.path("identity"));
  } catch (error) {
    if (error.status !== 404) throw error;
    view.identity = null;
  }
  renderCurrent(ctx);
}

// What new users get, in words.
function provisionText(ctx, provision) {
  if (!provision) return "Not created: a sign-in whose e-mail address no user has is refused";
  if (provision.model === "named") return "Created with a named license";
  if (provision.model === "seat") return `Created with a seat of pool ${ctx.poolName(provision.pool)}`;
  return "Created with no license";
}

function renderCurrent(ctx) {
  const identity = view.identity;
  $("identity-loading").hidden = identity !== undefined;
  $("identity-none").hidden = identity !== null;
  $("identity-set").hidden = !identity;
  $("identity-current").dataset.state = identity === undefined ? "loading" : identity ? "set" : "none";
  $("identity-form-title").textContent = identity ? "Change the identity provider" : "Set an identity provider";
  if (!identity) return;
  $("identity-issuer").textContent = identity.issuer;
  $("identity-audience").textContent = identity.audience;
  $("identity-claim").textContent = identity.email_claim;
  const provision = $("identity-provision");
  provision.textContent = provisionText(ctx, identity.provision);
  provision.dataset.model = identity.provision?.model ?? "";
}

// The form, as the identity is (or empty, with the defaults, when none is set).
function fill(ctx, identity) {
  const e = $("identity-form").elements;
  e.issuer.value = identity?.issuer ?? "";
  e.audience.value = identity?.audience ?? "";
  e.email_claim.value = identity?.email_claim ?? "email";
  const model = identity?.provision?.model ?? "";
  for (const radio of e.provision) radio.checked = radio.value === model;
  fillPools(ctx, identity?.provision?.pool);
}

function fillPools(ctx, chosen) {
  const select = $("identity-pool");
  const keep = chosen ?? select.value;
  options(select, ctx.pools.length
    ? ctx.pools.map((p) => [p.id, `${p.name} (${plural(p.seats, "seat")})`])
    : [["", "No pool yet"]]);
  if (ctx.pools.some((p) => p.id === keep)) select.value = keep;
  provisionNote(ctx);
}

function chosenModel() {
  return $("identity-form").querySelector("input[name=provision]:checked")?.value ?? "";
}

function provisionNote(ctx) {
  const model = chosenModel();
  const select = $("identity-pool");
  select.disabled = model !== "seat";
  const note = $("identity-provision-note");
  note.classList.remove("warn");
  const d = ctx.domain;
  if (model === "seat" && d && d.plan !== "enterprise") {
    note.textContent = `Seat pools need the Enterprise plan; this domain is on ${d.plan}.`;
    note.classList.add("warn");
  } else if (model === "seat" && !ctx.pools.length) {
    note.textContent = "The domain has no seat pool: create one in Pools first.";
    note.classList.add("warn");
  } else if (model === "seat") {
    note.textContent = "The pool cannot be deleted while new users are put in it.";
  } else if (model === "named") {
    note.textContent = "Each user created takes one of the domain's named licenses; when none is left, the sign-in is refused (license_limit).";
  } else if (model === "none") {
    note.textContent = "Their sign-ins are refused (no_license) until an admin gives them a license in Users.";
  } else {
    note.textContent = "Only the domain's users sign in: create them in Users, with their e-mail addresses.";
  }
}

// The body of the PUT, from the form; a seat with no pool to choose is said
// beside the pool before asking the server.
function body(ctx, form) {
  const e = form.elements;
  const model = chosenModel();
  let provision = null;
  if (model === "seat") {
    if (!e.pool.value) {
      throw ctx.domain?.plan !== "enterprise"
        ? { code: "plan_required", field: "provision", message: `Seat pools need the Enterprise plan; this domain is on ${ctx.domain?.plan}.` }
        : { code: "bad_request", field: "provision.pool", message: "The domain has no seat pool: create one in Pools first." };
    }
    provision = { model, pool: e.pool.value };
  } else if (model) {
    provision = { model };
  }
  return {
    issuer: e.issuer.value.trim(),
    audience: e.audience.value.trim(),
    email_claim: e.email_claim.value.trim() || "email",
    provision,
  };
}

async function save(ctx, form) {
  clearErrors(form);
  const button = $("identity-save");
  button.disabled = true;
  let saved;
  try {
    saved = await ctx.api.put(ctx.path("identity"), body(ctx, form));
  } catch (error) {
    if (!error.code) throw error;
    showError(form, error, IDENTITY_ERRORS);
    return;
  } finally {
    button.disabled = false;
  }
  view.identity = saved;
  renderCurrent(ctx);
  fill(ctx, saved);
  ctx.say(`Saved: devices of ${ctx.domain?.name ?? ctx.domainId} may sign in with ID tokens from ${saved.issuer}.`);
}

async function remove(ctx) {
  const identity = view.identity;
  if (!identity) return;
  const ok = await confirmAction(
    "Remove the identity provider?",
    `Devices can no longer sign in with ID tokens from ${identity.issuer}: each such sign-in is refused from now on. ` +
      "Sessions open now are not ended, and the users it created stay, with their licenses.",
    "Remove identity provider",
  );
  if (!ok) return;
  try {
    await ctx.api.delete(ctx.path("identity"));
  } catch (error) {
    if (!error.code) throw error;
    if (error.status !== 404) {
      $("identity-error").textContent = error.message;
      return;
    }
  }
  $("identity-error").textContent = "";
  view.identity = null;
  renderCurrent(ctx);
  fill(ctx, null);
  clearErrors($("identity-form"));
  ctx.say("Removed the identity provider: devices sign in with presence tokens only.");
  $("identity-issuer-input").focus();
}
