// Webhooks: the domain's endpoints, which receive its events as they are
// logged. Create one (its signing secret shown once, with a copy button),
// change its URL, description and event types, disable it and enable it again
// (delivery then resumes at the first event it had not received), delete it;
// and read an endpoint's latest delivery attempts, newest first:
// GET .../webhooks/{id}/deliveries?limit=.

import { $, clearErrors, confirmAction, field, h, num, openEditor, secretBox, showError, timeEl } from "./dom.js";
import { TYPES } from "./events.js";

const LOG_LIMIT = 100;
const LOG_EVERY = 5000; // ms between reloads of an open delivery log
const ALL = Object.keys(TYPES);
const clock = new Intl.DateTimeFormat([], { timeStyle: "medium" });

const view = {
  hooks: [],
  picker: null, // the new endpoint form's event types
  log: { hook: null, timer: 0, loading: null },
};

export function init(ctx) {
  view.picker = eventsPicker(null);
  $("webhook-events-slot").replaceChildren(view.picker.fieldset);
  $("webhook-form").addEventListener("submit", (event) => {
    event.preventDefault();
    create(ctx, event.currentTarget);
  });
  $("webhook-log-refresh").addEventListener("click", () => loadLog(ctx));
  $("webhook-log-close").addEventListener("click", () => closeLog(true));
  window.presenceAdmin.webhooks = view;
}

export async function show(ctx) {
  $("webhook-secret-slot").replaceChildren();
  closeLog(false);
  await load(ctx);
}

export function hide() {
  closeLog(false);
}

async function load(ctx) {
  view.hooks = await ctx.api.get(ctx.path("webhooks"));
  render(ctx);
}

// The event types an endpoint receives: every one ("All events", the
// default), or those checked. `value()` is null for all, else the list.
let pickerSeq = 0;
function eventsPicker(selected) {
  const id = `events-picker-${++pickerSeq}`;
  const every = isAll(selected);
  const all = h("input", { type: "checkbox", name: "all_events", checked: every });
  const boxes = ALL.map((type) =>
    h("input", { type: "checkbox", name: "event_type", value: type, checked: !every && selected.includes(type) }));
  const grid = h("div", { class: "event-checks", id: `${id}-types`, role: "group", "aria-label": "Event types" },
    ...boxes.map((box) => h("label", { class: "choice" }, box, TYPES[box.value])));
  const error = h("p", { class: "field-error", id: `${id}-error`, dataset: { error: "events" } });
  const note = h("p", { class: "note", id: `${id}-note` });
  const fieldset = h("fieldset", { class: "field event-types", "aria-describedby": `${id}-note ${id}-error` },
    h("legend", { text: "Events" }),
    h("label", { class: "choice" }, all, "All events"),
    grid, note, error);
  const sync = () => {
    grid.hidden = all.checked;
    const n = boxes.filter((b) => b.checked).length;
    note.textContent = all.checked
      ? "Every type of event, those of capacity alerts and disabled webhooks included."
      : n ? `${num(n)} of ${num(ALL.length)} types chosen.` : "Choose the types to send.";
  };
  fieldset.addEventListener("change", sync);
  sync();
  return {
    fieldset,
    sync,
    value: () => (all.checked ? null : boxes.filter((b) => b.checked).map((b) => b.value)),
  };
}

// Whether a list of types is every type the console knows: the API answers
// the full list for an endpoint made without `events`.
function isAll(events) {
  return !events || ALL.every((type) => events.includes(type));
}

function eventsText(events) {
  return isAll(events) ? "All events" : events.map((type) => TYPES[type] ?? type).join(", ");
}

const nameOf = (hook) => hook.description || hook.url;

function chosenEvents(picker) {
  const events = picker.value();
  if (events && !events.length) {
    throw { code: "bad_request", field: "events", message: "Choose at least one type of event, or All events." };
  }
  return events;
}

function render(ctx) {
  const rows = view.hooks.map((hook) => row(ctx, hook));
  $("webhooks-table").tBodies[0].replaceChildren(...rows);
  $("webhooks-empty").hidden = rows.length > 0;
  $("webhooks-table").closest(".table-wrap").hidden = rows.length === 0;
  const open = view.log.hook && view.hooks.find((hook) => hook.id === view.log.hook.id);
  if (view.log.hook && !open) closeLog(false);
  else if (open) {
    view.log.hook = open;
    logHead(open);
  }
}

function row(ctx, hook) {
  const name = nameOf(hook);
  return h("tr", { dataset: { webhook: hook.id, enabled: String(hook.enabled) }, class: hook.enabled ? "" : "disabled" },
    h("td", { "data-label": "URL", class: "url mono", text: hook.url }),
    h("td", { "data-label": "Description", class: hook.description ? "" : "muted", text: hook.description ?? "—" }),
    h("td", { "data-label": "Events", class: "hook-events", text: eventsText(hook.events) }),
    h("td", { "data-label": "State" },
      h("span", { class: `badge ${hook.enabled ? "on" : "off"}`, text: hook.enabled ? "Enabled" : "Disabled" })),
    h("td", { "data-label": "Created" }, timeEl(hook.created_at)),
    h("td", { class: "row-actions" },
      h("button", { type: "button", text: "Deliveries", "aria-label": `Deliveries to ${name}`, onclick: () => openLog(ctx, hook) }),
      h("button", { type: "button", text: "Edit…", "aria-label": `Edit ${name}`, onclick: () => edit(ctx, hook) }),
      hook.enabled
        ? h("button", { type: "button", text: "Disable", "aria-label": `Disable ${name}`, onclick: () => disable(ctx, hook) })
        : h("button", { type: "button", text: "Enable", "aria-label": `Enable ${name}`, onclick: () => enable(ctx, hook) }),
      h("button", { type: "button", class: "danger-quiet", text: "Delete", "aria-label": `Delete ${name}`, onclick: () => remove(ctx, hook) })));
}

async function create(ctx, form) {
  clearErrors(form);
  const e = form.elements;
  const body = { url: e.url.value.trim() };
  if (e.description.value.trim()) body.description = e.description.value;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  let made;
  try {
    const events = chosenEvents(view.picker);
    if (events) body.events = events;
    made = await ctx.api.post(ctx.path("webhooks"), body);
  } catch (error) {
    if (!error.code) throw error;
    showError(form, error);
    return;
  } finally {
    button.disabled = false;
  }
  form.reset();
  view.picker.sync();
  const box = secretBox(made.secret, {
    title: `Endpoint ${nameOf(made)} created. Copy its signing secret now:`,
    hint: "it is shown only now, never again. The receiver checks each delivery's webhook-signature header with it.",
    label: "Signing secret",
  });
  box.append(h("button", { type: "button", class: "quiet", text: "Done", onclick: () => box.remove() }));
  $("webhook-secret-slot").replaceChildren(box);
  box.querySelector("input").focus();
  box.querySelector("input").select();
  await load(ctx);
}

function edit(ctx, hook) {
  let picker;
  openEditor({
    title: `Edit ${nameOf(hook)}`,
    action: "Save",
    build(body) {
      picker = eventsPicker(hook.events);
      body.append(
        field("URL", "url", h("input", {
          type: "url", inputmode: "url", required: true, maxlength: 2000, value: hook.url, autocomplete: "off", spellcheck: "false",
        }), "A new URL starts a fresh retry schedule: the event it stopped at is tried at once."),
        field("Description", "description", h("input", { maxlength: 500, value: hook.description ?? "", autocomplete: "off" })),
        picker.fieldset,
      );
    },
    async submit(form) {
      const e = form.elements;
      const changes = {};
      const url = e.url.value.trim();
      if (url !== hook.url) changes.url = url;
      const description = e.description.value.trim() ? e.description.value : null;
      if (description !== hook.description) changes.description = description;
      const events = chosenEvents(picker);
      if (!sameEvents(events, hook.events)) changes.events = events;
      if (!Object.keys(changes).length) return;
      await ctx.api.patch(ctx.path("webhooks", hook.id), changes);
      await load(ctx);
      ctx.say(`Saved ${description || url}.`);
    },
  });
}

function sameEvents(chosen, before) {
  if (!chosen) return isAll(before);
  return !isAll(before) && chosen.length === before.length && chosen.every((type) => before.includes(type));
}

async function setEnabled(ctx, hook, enabled) {
  try {
    await ctx.api.patch(ctx.path("webhooks", hook.id), { enabled });
  } catch (error) {
    $("webhooks-error").textContent = error.message;
    return false;
  }
  $("webhooks-error").textContent = "";
  await load(ctx);
  if (view.log.hook?.id === hook.id) loadLog(ctx);
  // The row is drawn again: keep the keyboard on its new Enable/Disable button.
  document.querySelector(`#webhooks-table tr[data-webhook="${CSS.escape(hook.id)}"] button[aria-label^="${enabled ? "Disable" : "Enable"} "]`)?.focus();
  return true;
}

async function disable(ctx, hook) {
  const name = nameOf(hook);
  const ok = await confirmAction(
    `Disable ${name}?`,
    `No event is sent to ${hook.url} while it is disabled. The events go on being logged: enabling it again delivers them, from the first one it had not received.`,
    "Disable endpoint",
  );
  if (!ok) return;
  if (await setEnabled(ctx, hook, false)) ctx.say(`Disabled ${name}: nothing is sent to it until it is enabled again.`);
}

async function enable(ctx, hook) {
  const name = nameOf(hook);
  if (await setEnabled(ctx, hook, true)) {
    ctx.say(`Enabled ${name}: delivery resumes from where it stopped, with the first event it had not received; nothing is lost.`);
  }
}

async function remove(ctx, hook) {
  const name = nameOf(hook);
  const ok = await confirmAction(
    `Delete ${name}?`,
    `The endpoint ${hook.url} receives no more events, and its delivery log is deleted with it. Its secret cannot be had again: a new endpoint gets a new one.`,
    "Delete endpoint",
  );
  if (!ok) return;
  try {
    await ctx.api.delete(ctx.path("webhooks", hook.id));
  } catch (error) {
    $("webhooks-error").textContent = error.message;
    return;
  }
  $("webhooks-error").textContent = "";
  ctx.say(`Deleted ${name}.`);
  await load(ctx);
}

// The delivery log of one endpoint, reloaded every few seconds while it is open.

function logHead(hook) {
  $("webhook-log-title").textContent = `Deliveries to ${nameOf(hook)}`;
  $("webhook-log-url").textContent = `${hook.url} · ${hook.enabled ? "enabled" : "disabled"} · the latest ${num(LOG_LIMIT)} attempts, newest first`;
}

function openLog(ctx, hook) {
  closeLog(false);
  view.log.hook = hook;
  logHead(hook);
  $("webhook-log-table").tBodies[0].replaceChildren();
  $("webhook-log-empty").hidden = true;
  $("webhook-log").hidden = false;
  $("webhook-log").dataset.webhook = hook.id;
  $("webhook-log-title").focus();
  loadLog(ctx);
  view.log.timer = setInterval(() => { if (!document.hidden) loadLog(ctx); }, LOG_EVERY);
}

function closeLog(refocus) {
  const hook = view.log.hook;
  clearInterval(view.log.timer);
  view.log = { hook: null, timer: 0, loading: null };
  $("webhook-log").hidden = true;
  delete $("webhook-log").dataset.webhook;
  if (refocus && hook) {
    document.querySelector(`#webhooks-table tr[data-webhook="${CSS.escape(hook.id)}"] button`)?.focus();
  }
}

async function loadLog(ctx) {
  const hook = view.log.hook;
  if (!hook || view.log.loading) return;
  const current = () => view.log.hook?.id === hook.id;
  const button = $("webhook-log-refresh");
  button.disabled = true;
  let found;
  try {
    view.log.loading = ctx.api.get(ctx.path("webhooks", hook.id, "deliveries"), [["limit", String(LOG_LIMIT)]]);
    found = await view.log.loading;
  } catch (error) {
    if (!current()) return;
    if (!error.code) throw error;
    $("webhook-log-error").textContent = error.message;
    return;
  } finally {
    if (current()) view.log.loading = null;
    button.disabled = false;
  }
  if (!current()) return; // closed, or another one opened meanwhile
  $("webhook-log-error").textContent = "";
  $("webhook-log-table").tBodies[0].replaceChildren(...found.map(logRow));
  $("webhook-log-empty").hidden = found.length > 0;
  $("webhook-log-updated").textContent = `Updated ${clock.format(new Date())}`;
}

function logRow(delivery) {
  const ok = delivery.error == null;
  return h("tr", { dataset: { event: delivery.event_id, attempt: delivery.attempt, ok: String(ok) } },
    h("td", { "data-label": "Event", class: "num", text: `#${delivery.event_id}` }),
    h("td", { "data-label": "Attempt", class: "num", text: num(delivery.attempt) }),
    h("td", { "data-label": "Time" }, timeEl(delivery.at, "", true)),
    h("td", { "data-label": "Status" },
      h("span", { class: `badge ${ok ? "ok" : "failed"}`, text: delivery.status == null ? "No answer" : String(delivery.status) })),
    h("td", { "data-label": "Error", class: ok ? "muted" : "delivery-error", text: delivery.error ?? "—" }),
    h("td", { "data-label": "Duration", class: "num", text: `${num(Math.round(delivery.duration_ms))} ms` }));
}
