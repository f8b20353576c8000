// The server admin's domains: list (GET /api/v1/domains), create, and change
// plan and license counts (PATCH, the server admin's alone).

import { enc } from "./api.js";
import { $, field, h, num, openEditor, options } from "./dom.js";

const PLANS = [["standard", "Standard"], ["business", "Business"], ["enterprise", "Enterprise"]];
const DOMAIN_ERRORS = {
  already_exists: "id", plan_required: "plan", license_limit: "named_licenses", seats_exceed_licenses: "seat_licenses",
};

const view = { domains: [], query: "" };

export function init(ctx) {
  $("domain-new").addEventListener("click", () => create(ctx));
  $("domains-search").addEventListener("input", (event) => {
    view.query = event.target.value.trim().toLowerCase();
    render();
  });
}

export async function show(ctx) {
  try {
    view.domains = await ctx.api.get("/domains");
    $("domains-error").textContent = "";
  } catch (error) {
    view.domains = [];
    $("domains-error").textContent = error.status === 405 || error.status === 404
      ? "This server does not list its domains: open one with its id in the address (#/<domain>/users)."
      : error.message;
  }
  render();
}

function render() {
  const q = view.query;
  const shown = view.domains.filter((d) => !q || `${d.id}\n${d.name}`.toLowerCase().includes(q));
  $("domains-table").tBodies[0].replaceChildren(...shown.map((d) => h("tr", { dataset: { domain: d.id } },
    h("td", { "data-label": "Domain" }, h("a", { href: `#/${enc(d.id)}/users`, text: d.name }), " ", h("code", { class: "pool-id", text: d.id })),
    h("td", { "data-label": "Plan", text: d.plan }),
    h("td", { "data-label": "Named licenses", class: "num", text: num(d.named_licenses) }),
    h("td", { "data-label": "Seat licenses", class: "num", text: num(d.seat_licenses) }),
    h("td", { class: "row-actions" },
      h("a", { class: "button", href: `#/${enc(d.id)}/users`, "aria-label": `Manage ${d.name}`, text: "Manage" }),
      h("button", { type: "button", "aria-label": `Edit ${d.name}`, onclick: () => edit(window.presenceAdmin.ctx, d), text: "Edit…" })),
  )));
  $("domains-empty").hidden = shown.length > 0;
  $("domains-empty").textContent = view.domains.length ? "No domain matches." : "No domain yet.";
}

function countInput(value) {
  return h("input", { type: "number", min: 0, step: 1, inputmode: "numeric", value: value ?? 0 });
}

function planSelect(value) {
  const select = h("select", {});
  options(select, PLANS, value);
  return select;
}

const asNumber = (text) => (text.trim() !== "" && Number.isFinite(Number(text)) ? Number(text) : text);

function create(ctx) {
  openEditor({
    title: "New domain",
    action: "Create domain",
    errorFields: DOMAIN_ERRORS,
    build(body) {
      body.append(
        field("Id", "id", h("input", { required: true, autocomplete: "off", spellcheck: "false", placeholder: "acme" }),
          "Lower-case letters, digits and dashes; it cannot change later."),
        field("Name", "name", h("input", { required: true, maxlength: 200, autocomplete: "off", placeholder: "Acme" })),
        field("Plan", "plan", planSelect("enterprise"), "Only Enterprise domains may have seat licenses and pools."),
        field("Named licenses", "named_licenses", countInput(0)),
        field("Seat licenses", "seat_licenses", countInput(0)),
      );
    },
    async submit(form) {
      const e = form.elements;
      const made = await ctx.api.post("/domains", {
        id: e.id.value.trim(), name: e.name.value, plan: e.plan.value,
        named_licenses: asNumber(e.named_licenses.value), seat_licenses: asNumber(e.seat_licenses.value),
      });
      ctx.say(`Created domain ${made.name}.`);
      await show(ctx);
    },
  });
}

// Also opened from a domain's summary strip.
export function edit(ctx, domain) {
  openEditor({
    title: `Plan and licenses of ${domain.name}`,
    action: "Save",
    errorFields: DOMAIN_ERRORS,
    build(body) {
      body.append(
        h("p", { class: "note", text: "Fewer licenses than are in use, or a plan without pools while the domain has some, are refused: nothing changes then." }),
        field("Name", "name", h("input", { required: true, maxlength: 200, value: domain.name, autocomplete: "off" })),
        field("Plan", "plan", planSelect(domain.plan)),
        field("Named licenses", "named_licenses", countInput(domain.named_licenses)),
        field("Seat licenses", "seat_licenses", countInput(domain.seat_licenses)),
      );
    },
    async submit(form) {
      const e = form.elements;
      const changes = {};
      if (e.name.value !== domain.name) changes.name = e.name.value;
      if (e.plan.value !== domain.plan) changes.plan = e.plan.value;
      for (const key of ["named_licenses", "seat_licenses"]) {
        const value = asNumber(e[key].value);
        if (value !== domain[key]) changes[key] = value;
      }
      if (!Object.keys(changes).length) return;
      const changed = await ctx.api.patch(`/domains/${enc(domain.id)}`, changes);
      ctx.say(`Saved ${changed.name}.`);
      if (ctx.domainId === changed.id) ctx.setDomain(changed);
      else await show(ctx);
    },
  });
}
