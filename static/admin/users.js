// Users: a table that stays fast at 10,000 users. GET .../users returns them
// all; searching, filtering and paging happen here, and only the page shown
// is in the DOM.

import { $, confirmAction, field, h, num, openEditor, options, pager, plural, secretBox } from "./dom.js";

const PAGE = 50;
const collator = new Intl.Collator([], { sensitivity: "base", numeric: true });

export const EXPIRIES = [
  ["", "Never (until revoked)"],
  ["3600", "In 1 hour"],
  ["86400", "In 1 day"],
  ["604800", "In 7 days"],
  ["2592000", "In 30 days"],
  ["7776000", "In 90 days"],
  ["31557600", "In 1 year"],
];

// The API's refusals of a user change, and the field each is about.
const USER_ERRORS = {
  license_limit: "license", plan_required: "license", seats_exceed_licenses: "license",
  email_taken: "email", already_exists: "email",
};

const view = {
  sorted: [], // users by name, with a lower-case search key each
  shown: [], // those matching the search and filter
  query: "",
  filter: "",
  page: 0,
};

export function init(ctx) {
  ctx.on("users", () => {
    view.sorted = ctx.users
      .map((user) => ({ user, key: `${user.name}\n${user.email}`.toLowerCase() }))
      .sort((a, b) => collator.compare(a.user.name, b.user.name) || collator.compare(a.user.email, b.user.email));
    if (!$("users").hidden) apply(ctx, false);
  });
  ctx.on("pools", () => fillFilter(ctx));
  $("users-search").addEventListener("input", (event) => {
    const started = performance.now();
    view.query = event.target.value.trim().toLowerCase();
    apply(ctx, true);
    window.presenceAdmin.timings.usersSearch = performance.now() - started;
  });
  $("users-filter").addEventListener("change", (event) => {
    view.filter = event.target.value;
    apply(ctx, true);
  });
  $("user-new").addEventListener("click", () => createUser(ctx));
}

export async function show(ctx) {
  const started = performance.now();
  $("users-count").textContent = "Loading users…";
  await ctx.reload("users");
  apply(ctx, false);
  window.presenceAdmin.timings.usersLoad = performance.now() - started;
}

function fillFilter(ctx) {
  const select = $("users-filter");
  const chosen = select.value;
  options(select, [
    ["", "All"], ["named", "Named"], ["none", "No license"],
    ...ctx.pools.map((pool) => [`seat:${pool.id}`, `Pool: ${pool.name}`]),
  ]);
  select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
  view.filter = select.value;
}

function matches(user) {
  const f = view.filter;
  if (!f) return true;
  if (f.startsWith("seat:")) return user.license.model === "seat" && user.license.pool === f.slice(5);
  return user.license.model === f;
}

// Filter the sorted list, then render one page; `reset` goes back to page 1.
function apply(ctx, reset) {
  const q = view.query;
  view.shown = [];
  for (const entry of view.sorted) {
    if ((!q || entry.key.includes(q)) && matches(entry.user)) view.shown.push(entry.user);
  }
  if (reset) view.page = 0;
  const pages = Math.max(1, Math.ceil(view.shown.length / PAGE));
  view.page = Math.min(view.page, pages - 1);
  render(ctx);
}

function licenseText(ctx, license) {
  if (license.model === "named") return "Named";
  if (license.model === "seat") return `Pool: ${ctx.poolName(license.pool)}`;
  return "No license";
}

function render(ctx) {
  const { shown, page } = view;
  const pages = Math.max(1, Math.ceil(shown.length / PAGE));
  const first = page * PAGE;
  const rows = shown.slice(first, first + PAGE).map((user) => row(ctx, user));
  $("users-table").tBodies[0].replaceChildren(...rows);
  const total = ctx.users.length;
  $("users-count").textContent = shown.length
    ? `${num(first + 1)}–${num(first + rows.length)} of ${plural(shown.length, "user")}` +
      (shown.length < total ? ` (${num(total)} in all)` : "")
    : total ? `No user matches (${num(total)} in all).` : "No user yet.";
  pager($("users-pager"), {
    page, pages, onPage: (n) => { view.page = n; render(ctx); },
  });
}

function row(ctx, user) {
  const license = user.license;
  return h(
    "tr",
    { dataset: { user: user.id } },
    h("td", { class: "name", "data-label": "Name", text: user.name }),
    h("td", { class: "email", "data-label": "E-mail", text: user.email }),
    h("td", { class: "license", "data-label": "License", dataset: { model: license.model } },
      h("span", { class: `badge ${license.model}`, text: licenseText(ctx, license) })),
    h("td", { class: "row-actions" },
      h("button", { type: "button", onclick: () => editLicense(ctx, user), "aria-label": `Change the license of ${user.name}`, text: "License…" }),
      h("button", { type: "button", onclick: () => newUserToken(ctx, user), "aria-label": `New token for ${user.name}`, text: "Token…" }),
      h("button", { type: "button", class: "danger-quiet", onclick: () => deleteUser(ctx, user), "aria-label": `Delete ${user.name}`, text: "Delete" }),
    ),
  );
}

// The license picker, with what a change would do to the domain's licenses.

function licensePicker(ctx, before) {
  const current = before?.license ?? { model: "named" };
  const radio = (value, label) =>
    h("label", { class: "choice" },
      h("input", { type: "radio", name: "model", value, checked: current.model === value }), label);
  const pool = h("select", { name: "pool", "aria-label": "Seat pool" });
  options(pool, ctx.pools.length
    ? ctx.pools.map((p) => [p.id, `${p.name} (${p.seats} ${p.seats === 1 ? "seat" : "seats"})`])
    : [["", "No pool yet"]]);
  if (current.model === "seat") pool.value = current.pool;
  const impact = h("p", { class: "impact", id: `impact-${Math.random().toString(36).slice(2)}`, "aria-live": "polite" });
  const error = h("p", { class: "field-error", id: `${impact.id}-error`, dataset: { error: "license" } });
  const fieldset = h("fieldset", { class: "license-picker", "aria-describedby": `${impact.id} ${error.id}` },
    h("legend", { text: "License" }),
    h("div", { class: "choices" },
      radio("named", "Named (one user, any number of devices)"),
      h("div", { class: "choice-seat" }, radio("seat", "A seat of pool"), pool),
      radio("none", "None (cannot log in)")),
    impact, error);

  const value = () => {
    const model = fieldset.querySelector("input[name=model]:checked")?.value ?? "named";
    return model === "seat" ? { model, pool: pool.value } : { model };
  };
  const update = () => {
    const chosen = value();
    pool.disabled = chosen.model !== "seat";
    impact.replaceChildren(...impactLines(ctx, before, chosen));
  };
  fieldset.addEventListener("change", update);
  update();
  return { fieldset, value };
}

function impactLines(ctx, before, chosen) {
  const d = ctx.domain;
  const lines = [];
  const was = before?.license;
  const unchanged = was && was.model === chosen.model && was.pool === chosen.pool;
  const used = ctx.namedUsed();
  const after = used - (was?.model === "named" ? 1 : 0) + (chosen.model === "named" ? 1 : 0);
  const namedLine = `Named licenses: ${num(used)} of ${num(d.named_licenses)} used, ${num(Math.max(0, d.named_licenses - used))} left`;
  if (chosen.model === "named") {
    lines.push(h("span", { class: "line", dataset: { impact: "named" } },
      unchanged ? `${namedLine}.` : `${namedLine}; after this: ${num(after)} of ${num(d.named_licenses)}.`));
    if (after > d.named_licenses && !unchanged) {
      lines.push(h("span", { class: "line warn", text: `That is more than the domain's ${num(d.named_licenses)} named licenses: the server will refuse it.` }));
    }
  } else if (chosen.model === "seat") {
    const pool = ctx.pools.find((p) => p.id === chosen.pool);
    if (!pool) {
      lines.push(h("span", { class: "line warn", text: "The domain has no seat pool: create one in Pools first." }));
    } else {
      const members = ctx.members(pool.id);
      const joining = unchanged ? 0 : 1;
      lines.push(h("span", { class: "line", dataset: { impact: "pool" } },
        `${pool.name}: ${plural(members, "member")}${joining ? ` (${num(members + 1)} with this user)` : ""} ` +
        `sharing ${plural(pool.seats, "seat")}, ${num(pool.occupied)} held now.`));
    }
    if (d.plan !== "enterprise") {
      lines.push(h("span", { class: "line warn", text: `Seat pools need the Enterprise plan; this domain is on ${d.plan}.` }));
    }
    if (was?.model === "named") lines.push(h("span", { class: "line", text: `${namedLine}; after this: ${num(after)}.` }));
  } else {
    lines.push(h("span", { class: "line", text: "The user stays, but cannot log in." }));
    if (was?.model === "named") lines.push(h("span", { class: "line", text: `${namedLine}; after this: ${num(after)}.` }));
  }
  if (was && !unchanged) {
    lines.push(h("span", { class: "line note", text: "Saving ends the user's live sessions at once (license changed); their devices log in again under the new license." }));
  }
  return lines;
}

// Create, change the license, make a token, delete.

function createUser(ctx) {
  let picker;
  openEditor({
    title: "New user",
    action: "Create user",
    errorFields: USER_ERRORS,
    build(body) {
      picker = licensePicker(ctx, null);
      body.append(
        field("Name", "name", h("input", { required: true, maxlength: 200, autocomplete: "off" })),
        field("E-mail", "email", h("input", { type: "email", required: true, maxlength: 254, autocomplete: "off", spellcheck: "false" })),
        picker.fieldset,
      );
    },
    async submit(form) {
      const user = await ctx.api.post(ctx.path("users"), {
        name: form.elements.name.value, email: form.elements.email.value, license: picker.value(),
      });
      ctx.setUsers([...ctx.users, user]);
      ctx.say(`Created ${user.name} (${licenseText(ctx, user.license)}).`);
    },
  });
}

function editLicense(ctx, user) {
  let picker;
  openEditor({
    title: `License of ${user.name}`,
    action: "Save license",
    errorFields: USER_ERRORS,
    build(body) {
      picker = licensePicker(ctx, user);
      body.append(
        h("p", { class: "who-line" }, h("strong", { text: user.name }), " ", h("span", { class: "muted", text: user.email })),
        h("p", { class: "note", text: "The API has no rename: a user's name and e-mail stay as created (delete and create again to change them). What changes here is the license." }),
        picker.fieldset,
      );
    },
    async submit() {
      const license = picker.value();
      const changed = await ctx.api.put(ctx.path("users", user.id, "license"), license);
      ctx.setUsers(ctx.users.map((u) => (u.id === changed.id ? changed : u)));
      // Occupancy and members of the pools moved.
      ctx.reload("pools").catch(() => {});
      ctx.say(`${changed.name}: ${licenseText(ctx, changed.license)}.`);
    },
  });
}

function newUserToken(ctx, user) {
  const dialog = openEditor({
    title: `New token for ${user.name}`,
    action: "Create token",
    build(body) {
      const expires = h("select", {});
      options(expires, EXPIRIES, "");
      body.append(
        h("p", { class: "note", text: "A user token logs this user's devices in. Make one per device to revoke them one by one." }),
        field("Label", "label", h("input", { maxlength: 200, placeholder: "Front desk PC", autocomplete: "off" })),
        field("Expires", "expires_in", expires),
      );
    },
    async submit(form) {
      const body = {};
      if (form.elements.label.value.trim()) body.label = form.elements.label.value;
      if (form.elements.expires_in.value) body.expires_in = Number(form.elements.expires_in.value);
      const made = await ctx.api.post(ctx.path("users", user.id, "tokens"), body);
      $("editor-body").replaceChildren(secretBox(made.token, {
        title: "Copy the token now:", hint: "it is shown this once, never again.",
      }));
      $("editor-submit").hidden = true;
      $("editor-cancel").textContent = "Done";
      dialog.addEventListener("close", () => {
        $("editor-submit").hidden = false;
        $("editor-cancel").textContent = "Cancel";
      }, { once: true });
      ctx.emit("tokens");
      return true;
    },
  });
}

async function deleteUser(ctx, user) {
  const ok = await confirmAction(
    `Delete ${user.name}?`,
    `${user.name} (${user.email}) is deleted: their live sessions end and every token of theirs is revoked. This cannot be undone.`,
    "Delete user",
  );
  if (!ok) return;
  try {
    await ctx.api.delete(ctx.path("users", user.id));
  } catch (error) {
    $("users-error").textContent = error.message;
    return;
  }
  $("users-error").textContent = "";
  ctx.setUsers(ctx.users.filter((u) => u.id !== user.id));
  ctx.say(`Deleted ${user.name}.`);
}
