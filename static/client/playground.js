// The device playground: one PresenceClient driven from a form, and everything
// it says shown live. The token may come in the URL's fragment
// (/client/#token=prs_...), which the browser never sends to the server.

import { PresenceClient } from "./presence-client.js";

const $ = (id) => document.getElementById(id);
/** Log entries kept on the page. */
const LOG_LIMIT = 300;
const DEVICE_ID_KEY = "presence-playground-device-id";

let client = null;
let call = null; // the call id in progress, if any

function newDeviceId() {
  const random = globalThis.crypto?.randomUUID?.() ?? Math.random().toString(16).slice(2);
  return `browser-${random.slice(0, 8)}`;
}

function setUp() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  $("url").value = `${scheme}://${location.host}/ws/device`;
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.has("token")) $("token").value = fragment.get("token");
  $("device-id").value = localStorage.getItem(DEVICE_ID_KEY) ?? newDeviceId();
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    start();
  });
  $("stop").addEventListener("click", () => client?.stop());
  $("call-start").addEventListener("click", () => callStart());
  $("call-end").addEventListener("click", () => callEnd());
  $("clear").addEventListener("click", () => $("log").replaceChildren());
  $("show-heartbeats").addEventListener("change", (event) => {
    $("log").classList.toggle("with-heartbeats", event.target.checked);
  });
  // States that no event announces (connecting again after a wait) show up too.
  setInterval(render, 250);
  render();
}

async function start() {
  showFailure(null);
  const device = { id: $("device-id").value.trim(), kind: $("device-kind").value };
  if ($("device-name").value.trim()) device.name = $("device-name").value.trim();
  let started;
  try {
    started = new PresenceClient({
      url: $("url").value.trim(),
      token: $("token").value.trim(),
      device,
      queue: $("queue").checked,
      takeover: $("takeover").checked,
    });
  } catch (error) {
    showFailure(error.message);
    return;
  }
  localStorage.setItem(DEVICE_ID_KEY, device.id);
  client = started;
  call = null;
  $("log").replaceChildren();
  client.on("message", (message) => {
    log(message);
    if (message.type === "stopped" && message.final !== null) {
      showFailure(`Stopped: ${message.final.message}`);
    }
    if (call !== null && (message.type === "reconnecting" || message.type === "stopped")) {
      $("call").textContent = `No call: ${call} ended with its connection.`;
      call = null;
    }
    render();
  });
  render();
  try {
    await client.start();
  } catch (error) {
    showFailure(`${error.code ?? error.name}: ${error.message}`);
  }
  render();
}

async function callStart() {
  const id = $("call-id").value.trim();
  try {
    const started = await client.callStart(id);
    call = id;
    $("call").textContent = `In call ${id} since ${started.started_at}`;
  } catch (error) {
    $("call").textContent = `Call ${id} refused: ${error.code ?? error.name}: ${error.message}`;
  }
  render();
}

async function callEnd() {
  const id = $("call-id").value.trim();
  try {
    const ended = await client.callEnd(id);
    call = null;
    $("call").textContent = `Call ${id} ended after ${ended.duration.toFixed(1)} s`;
  } catch (error) {
    $("call").textContent = `Call ${id} not ended: ${error.code ?? error.name}: ${error.message}`;
  }
  render();
}

function render() {
  const state = client?.state ?? "idle";
  const live = client !== null && state !== "stopped";
  $("state").textContent = state;
  $("state").dataset.state = state;
  $("start").disabled = live;
  $("stop").disabled = !live || state === "stopping";
  $("call-start").disabled = state !== "holding" || call !== null;
  $("call-end").disabled = state !== "holding";
  for (const field of $("login").querySelectorAll("input, select")) field.disabled = live;

  const license = client?.license ?? null;
  $("license-model").textContent = license?.model ?? "–";
  $("license-pool").textContent = license?.pool ? `${license.pool.name} (${license.pool.id})` : "–";
  $("license-seat").textContent = license?.seat ?? "–";
  $("license-fencing").textContent = license?.fencing_token ?? "–";
  const availability = client?.availability ?? null;
  $("availability").textContent = availability
    ? `${availability.free} of ${availability.seats} free, ${availability.in_call} in a call, ` +
      `${availability.queued} queued`
    : "–";
  $("position").textContent = client?.position ?? "–";
}

function describe(message) {
  switch (message.type) {
    case "welcome":
      return message.license.model === "seat"
        ? `seat ${message.license.seat} of ${message.license.pool.name}, fencing token ${message.license.fencing_token}`
        : "named license";
    case "availability":
      return `${message.free} of ${message.seats} free, ${message.in_call} in a call, ${message.queued} queued`;
    case "queued":
      return `position ${message.position}`;
    case "reconnecting":
      return `attempt ${message.attempt}, waiting ${message.delay.toFixed(2)} s`;
    case "reconnected":
      return `recovered: ${message.recovered}`;
    case "session_ended":
      return `${message.reason}: ${message.message}`;
    case "error":
      return `${message.code}: ${message.message}`;
    case "stopped":
      return message.final === null ? "by stop()" : `${message.final.reason ?? message.final.code}`;
    case "heartbeat_ack":
      return `seq ${message.seq}`;
    case "call_started":
    case "call_ended":
      return message.call_id;
    default:
      return "";
  }
}

function log(message) {
  const entry = document.createElement("li");
  entry.dataset.type = message.type;
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  const type = document.createElement("strong");
  type.textContent = message.type;
  const text = document.createElement("span");
  text.textContent = describe(message);
  entry.append(time, type, text);
  const list = $("log");
  list.prepend(entry);
  while (list.childElementCount > LOG_LIMIT) list.lastElementChild.remove();
}

function showFailure(text) {
  $("failure").hidden = text === null;
  $("failure").textContent = text ?? "";
}

setUp();
