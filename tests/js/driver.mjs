// Drives static/client/presence-client.js for the Python tests of tests/js.
//
// Commands come as JSON lines on stdin, each {id, cmd, ...}; every answer and
// every event of the client goes out as a JSON line on stdout:
//
//   {"id": 1, "cmd": "create", "options": {...}, "ws": true}   a new client (the one driven from now on)
//   {"id": 2, "cmd": "start"} / "stop" / "state"
//   {"id": 3, "cmd": "callStart", "callId": "c-1"} / "callEnd"
//
//   {"id": 2, "ok": <value>}  or  {"id": 2, "error": {name, code, message, retryable}}
//   {"event": <message>, "state": <the client's state then>}   for every message and event
//
// `options` are PresenceClient's; `tokens: [...]` instead of `token` becomes a
// getToken handing them out in turn (the last one again and again), and
// `idTokens: [...]` a getIdToken likewise (a null in either: a rejection, as
// when the app cannot get a token), a number as `random` a function always
// returning it, and `ws: true` passes the ws
// package's class as the WebSocket option. `throwing: true` adds listeners
// that throw, and reports what the client reports as {"reported": text}
// ("quiet" removes them). stdin closing ends the process.

import { createInterface } from "node:readline";
import WebSocket from "ws";
import { PresenceClient } from "../../static/client/presence-client.js";

let client = null;
let fetched = 0;
let quieting = []; // removes the failing listeners

function send(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function failure(error) {
  return {
    name: error?.name,
    code: error?.code,
    message: error?.message,
    retryable: error?.retryable,
  };
}

/** A token callback handing out `tokens` in turn, counted in `fetched`. */
function handOut(tokens) {
  return async () => {
    const token = tokens[Math.min(fetched++, tokens.length - 1)];
    if (token === null) throw new Error("no token now: the identity provider is away");
    return token;
  };
}

function create({ options, ws, throwing }) {
  const { tokens, idTokens, random, ...rest } = options;
  if (tokens !== undefined) rest.getToken = handOut(tokens);
  if (idTokens !== undefined) rest.getIdToken = handOut(idTokens);
  if (typeof random === "number") rest.random = () => random;
  if (ws) rest.WebSocket = WebSocket;
  const created = new PresenceClient(rest);
  created.on("message", (message) => send({ event: message, state: created.state }));
  if (throwing) {
    // Listeners that fail, each time: the client reports it and goes on.
    globalThis.reportError = (error) => send({ reported: String(error?.message ?? error) });
    quieting = [
      created.on("message", () => {
        throw new Error("a listener failed on purpose");
      }),
      created.on("availability", async () => {
        throw new Error("an async listener failed on purpose");
      }),
    ];
  }
  client = created;
  return { state: client.state, globalWebSocket: typeof globalThis.WebSocket === "function" };
}

const commands = {
  create,
  start: () => client.start(),
  stop: () => client.stop(),
  callStart: ({ callId }) => client.callStart(callId),
  callEnd: ({ callId }) => client.callEnd(callId),
  state: () => ({
    state: client.state,
    license: client.license,
    availability: client.availability,
    position: client.position,
  }),
  fetched: () => fetched,
  quiet: () => quieting.forEach((off) => off()),
};

async function run(command) {
  try {
    const value = await commands[command.cmd](command);
    send({ id: command.id, ok: value ?? null });
  } catch (error) {
    send({ id: command.id, error: failure(error) });
  }
}

createInterface({ input: process.stdin })
  .on("line", (line) => {
    if (line.trim()) run(JSON.parse(line));
  })
  .on("close", () => process.exit(0));
