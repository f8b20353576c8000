// Building the page from data: elements made one by one, text set as text.
// Nothing from the API ever goes through innerHTML.

export const $ = (id) => document.getElementById(id);

// h("td", {class: "num", dataset: {id}}, "text", child) -> an element.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  el.append(...children.flat().filter((c) => c != null && c !== false));
  return el;
}

const numbers = new Intl.NumberFormat();
export const num = (n) => numbers.format(n);

const dateTime = new Intl.DateTimeFormat([], { dateStyle: "medium", timeStyle: "short" });
const dateTimeSeconds = new Intl.DateTimeFormat([], { dateStyle: "medium", timeStyle: "medium" });

// A <time> for an ISO time; "never" (or the text given) for null.
export function timeEl(iso, none = "—", seconds = false) {
  if (!iso) return h("span", { class: "muted", text: none });
  const at = new Date(iso);
  return h("time", { datetime: iso, title: iso, text: (seconds ? dateTimeSeconds : dateTime).format(at) });
}

export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const [d, hh, m] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60];
  const two = (n) => String(n).padStart(2, "0");
  if (d) return `${d}d ${hh}h`;
  return hh ? `${hh}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

export const plural = (n, one, many = `${one}s`) => `${num(n)} ${n === 1 ? one : many}`;

// Forms: errors beside their field, or at the top of the form.

export function clearErrors(form) {
  for (const slot of form.querySelectorAll("[data-error]")) slot.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

// Show an API error in `form`: beside the field it names (or that `fields`
// maps its code to), else at the top. The form keeps what the admin typed.
export function showError(form, error, fields = {}) {
  clearErrors(form);
  const field = error.field ?? fields[error.code] ?? "";
  let slot = field ? form.querySelector(`[data-error="${CSS.escape(field)}"]`) : null;
  // "license.pool" and the like: the closest slot that exists.
  if (!slot && field.includes(".")) {
    slot = form.querySelector(`[data-error="${CSS.escape(field.split(".")[0])}"]`);
  }
  slot ??= form.querySelector('[data-error=""]');
  slot.textContent = error.message;
  slot.dataset.code = error.code ?? "";
  const input = slot.id ? form.querySelector(`[aria-describedby~="${CSS.escape(slot.id)}"]`) : null;
  if (input) {
    input.setAttribute("aria-invalid", "true");
    const focusable = input.tagName === "FIELDSET"
      ? input.querySelector("input:checked") ?? input.querySelector("input, select")
      : input;
    focusable?.focus();
  }
}

// One labelled field for dialogs: label, input (or select), error slot.
let fieldSeq = 0;
export function field(label, name, control, note) {
  const id = `f-${name.replace(/\W/g, "-")}-${++fieldSeq}`;
  control.id = id;
  control.name ||= name;
  const error = h("p", { class: "field-error", id: `${id}-error`, dataset: { error: name } });
  const described = [`${id}-error`];
  let noteEl = null;
  if (note) {
    noteEl = h("p", { class: "note", id: `${id}-note` }, note);
    described.push(noteEl.id);
  }
  control.setAttribute("aria-describedby", described.join(" "));
  return h("div", { class: "field" }, h("label", { for: id, text: label }), control, noteEl, error);
}

export function options(select, items, selected) {
  select.replaceChildren(...items.map(([value, label]) => h("option", { value, text: label })));
  if (selected !== undefined) select.value = selected;
}

// The confirmation dialog: resolves true when the admin confirms.
export function confirmAction(title, text, action) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  $("confirm-cancel").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// The editor dialog: `build(body)` fills it; `submit(form)` runs on submit and
// closes it when it resolves; a thrown API error stays shown in the form.
export function openEditor({ title, action, build, submit, errorFields = {}, danger = false }) {
  const dialog = $("editor");
  const form = $("editor-form");
  $("editor-title").textContent = title;
  const button = $("editor-submit");
  button.textContent = action;
  button.className = danger ? "danger" : "primary";
  button.disabled = false;
  clearErrors(form);
  const body = $("editor-body");
  body.replaceChildren();
  build(body);
  form.onsubmit = async (event) => {
    event.preventDefault();
    clearErrors(form);
    button.disabled = true;
    try {
      const keepOpen = await submit(form);
      if (!keepOpen) dialog.close();
    } catch (error) {
      if (!error.code) throw error;
      showError(form, error, errorFields);
    } finally {
      button.disabled = false;
    }
  };
  $("editor-cancel").onclick = () => dialog.close();
  dialog.showModal();
  form.querySelector("input:not([type=hidden]):not([readonly]), select, textarea")?.focus();
  return dialog;
}

// A pager: "Previous · Page n of m · Next" for a list rendered a page at a time.
export function pager(nav, { page, pages, onPage, label = "Page" }) {
  const go = (n) => () => onPage(Math.min(pages - 1, Math.max(0, n)));
  nav.replaceChildren(
    h("button", { type: "button", onclick: go(0), disabled: page === 0, "aria-label": "First page", text: "«" }),
    h("button", { type: "button", onclick: go(page - 1), disabled: page === 0, text: "Previous" }),
    h("span", { class: "page-of", text: `${label} ${num(page + 1)} of ${num(Math.max(1, pages))}` }),
    h("button", { type: "button", onclick: go(page + 1), disabled: page >= pages - 1, text: "Next" }),
    h("button", {
      type: "button", onclick: go(pages - 1), disabled: page >= pages - 1, "aria-label": "Last page", text: "»",
    }),
  );
}

// A one-time secret: shown in a read-only field (named `label`) with a copy button.
export function secretBox(secret, { title, hint, link, label = "Token" }) {
  const input = h("input", { readonly: true, value: secret, class: "secret", spellcheck: "false", "aria-label": label });
  const copied = h("span", { class: "copied", role: "status" });
  const copy = h("button", {
    type: "button",
    class: "primary",
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(secret);
      } catch {
        input.select();
        document.execCommand("copy");
      }
      copied.textContent = "Copied";
    },
    text: "Copy",
  });
  const box = h(
    "div",
    { class: "secret-box", role: "region", "aria-label": title },
    h("p", { class: "secret-title" }, h("strong", { text: title }), " ", hint),
    h("div", { class: "secret-row" }, input, copy, copied),
    link ? h("p", { class: "note" }, "Open with it: ", h("a", { href: link, text: link, target: "_blank", rel: "noopener" })) : null,
  );
  return box;
}
