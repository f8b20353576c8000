// The wallboard stream (/ws/wallboard), as the wallboard page reads it: a
// snapshot, then one message per changed pool, named user or event (see
// presence/wallboard.py). Reconnects with backoff and jitter, and pings to
// notice a line that died silently.

const PING_EVERY = 10_000;
const PONG_WAIT = 5_000;
const RETRY_FIRST = 500;
const RETRY_MAX = 30_000;
// Close codes after which retrying with the same token cannot help.
const REFUSED = new Set([4401, 4403, 4404]);

export class LiveStream {
  // handlers: {snapshot, pool, pool_removed, named, event}; onState(state, text).
  constructor({ token, domain, handlers, onState }) {
    this.token = token;
    this.domain = domain;
    this.handlers = handlers;
    this.onState = onState;
    this.socket = null;
    this.attempt = 0;
    this.timers = {};
    this.refusal = "";
    this.closed = false;
    this.open();
  }

  open() {
    this.onState("connecting", "Connecting…");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/wallboard`);
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: "hello", token: this.token, domain: this.domain }));
    socket.onmessage = (frame) => this.receive(socket, JSON.parse(frame.data));
    socket.onclose = (closed) => this.lost(socket, closed.code);
  }

  receive(socket, message) {
    if (socket !== this.socket) return;
    if (message.type === "snapshot") this.live(socket);
    if (message.type === "pong") clearTimeout(this.timers.pong);
    if (message.type === "error") this.refusal = message.message;
    this.handlers[message.type]?.(message);
  }

  live(socket) {
    this.attempt = 0;
    this.onState("live", "Live");
    clearInterval(this.timers.ping);
    this.timers.ping = setInterval(() => {
      socket.send(JSON.stringify({ type: "ping" }));
      this.timers.pong = setTimeout(() => {
        socket.close();
        this.lost(socket, 0);
      }, PONG_WAIT);
    }, PING_EVERY);
  }

  lost(socket, code) {
    if (socket !== this.socket) return;
    this.socket = null;
    clearInterval(this.timers.ping);
    clearTimeout(this.timers.pong);
    if (this.closed) return;
    if (REFUSED.has(code)) {
      this.onState("refused", `Not connected: ${this.refusal || "the token was refused"}`);
      return;
    }
    const delay = Math.min(RETRY_MAX, RETRY_FIRST * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
    this.onState("offline", `Disconnected · retrying in ${Math.ceil(delay / 1000)} s`);
    this.timers.retry = setTimeout(() => this.open(), delay);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.ping);
    clearTimeout(this.timers.pong);
    const socket = this.socket;
    this.socket = null;
    socket?.close();
  }
}
