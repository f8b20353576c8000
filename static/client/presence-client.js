/**
 * The device client of the presence server: log in once, keep the login.
 *
 * One ES module without dependencies, for browsers, React Native and Node 22+
 * (older runtimes pass a WebSocket class, such as the `ws` package's, as the
 * `WebSocket` option). It speaks the device protocol (docs/protocol.md) and
 * behaves as the Python client `presence.client` does (docs/clients.md).
 *
 *     import { PresenceClient, PresenceError } from "/client/presence-client.js";
 *
 *     const client = new PresenceClient({
 *       url: "wss://presence.example.com/ws/device",
 *       token: "prs_...", // or getToken: async () => "prs_...", asked before each connection
 *       // or domain: "acme" with idToken: "eyJ..." or getIdToken: async () => "eyJ..."
 *       device: { id: "ann-pc", kind: "desktop", name: "Ann's PC" }, // id: stable across restarts
 *     });
 *     client.on("availability", (m) => show(`${m.free} of ${m.seats} seats free`));
 *     client.on("reconnected", (m) => show(m.recovered ? "back on the seat" : "seat lost"));
 *     try {
 *       const license = await client.start(); // the welcome's license
 *       await client.callStart("c-1");
 *       await client.callEnd("c-1");
 *     } catch (error) {
 *       if (!(error instanceof PresenceError)) throw error;
 *       show(`${error.code}: ${error.message}`); // seat_occupied, unauthorized, connection_failed...
 *     }
 *     client.stopped.then((final) => show(final?.message ?? "stopped")); // a final end, or stop()
 *     await client.stop(); // logs out: the seat is free at once
 *
 * Options: `url`; one way of signing in: `token` or `getToken` (called before
 * each connection), or for a domain that signs in with its identity provider
 * (OpenID Connect) `domain` (its id) with `idToken` or `getIdToken` (called
 * before each connection: each sends a fresh ID token); `device`
 * {id, kind, name?}; `queue` (wait in the pool's queue when no seat is free) and
 * `takeover` (move the user's seat from another device), both false by default;
 * `WebSocket` (default: the global one); `firstDelay` and `maxDelay` (seconds,
 * 0.5 and 20: the backoff); `timeout` (seconds, 10: to open a connection and
 * have hello answered); `random` (the jitter's source, default Math.random).
 *
 * Events, with on(type, fn), which returns a function that removes fn: each
 * server message by its type (welcome, availability, queued, heartbeat_ack,
 * call_started, call_ended, session_ended, error, bye), the client's own
 * `reconnecting` {attempt, delay} before each wait to connect again (attempt
 * counts from 1 after each welcome, delay is in seconds), `reconnected`
 * {recovered} once logged in again (recovered: the license held before, the
 * same seat, is held again) and `stopped` {final}, and "message" for all of
 * them. A listener that throws is reported (reportError, or console.error) and
 * the client goes on. `state` is idle, connecting, holding, refused (a seat was
 * refused on reconnecting), queued, reconnecting, stopping or stopped;
 * `license` is null unless holding; `availability` is the last one, `position`
 * the place in the queue.
 *
 * After start() the client keeps the login by itself (docs/clients.md): it sends
 * heartbeats at the interval the server asks for, from its own timers; it
 * notices a dead connection (closed, or silent for a heartbeat interval after a
 * heartbeat, which TCP alone may not notice for minutes) and connects again,
 * with exponential backoff and full jitter, forever until stop() or a final end
 * (`session_ended` with taken_over, replaced, idle_logoff, user_deleted,
 * released_by_admin or token_revoked; `unauthorized` or `no_license` answering
 * a reconnection). Within the lease time the same device gets the same seat
 * back, with a higher fencing_token. A reconnection refused its seat (taken
 * meanwhile) stays connected and asks again when an availability shows a free
 * one. Calls end with their connection and are not resumed. A frame that is
 * not the protocol fails start(), and later drops the connection for a new one.
 * A getToken or getIdToken that throws (or rejects, or resolves to no string)
 * fails that attempt: start() rejects with its error before any server
 * answered, and later the client waits with the backoff and calls it again.
 *
 * Errors are PresenceError {code, message, retryable}: the server's codes, and
 * the client's own: connection_failed (start() reached no presence server at
 * the URL), protocol_error (start() got an answer that is not the protocol, or
 * none within `timeout`), not_logged_in (a call while no license is held) and
 * stopped (the client stopped first). A wrong option throws a TypeError or a
 * RangeError from the constructor.
 */

const KINDS = ["desktop", "phone", "tablet", "glasses", "browser", "other"];
/** Session endings after which the client stops instead of logging in again. */
const FINAL_REASONS = new Set([
  "taken_over",
  "replaced",
  "idle_logoff",
  "user_deleted",
  "released_by_admin",
  "token_revoked",
]);
/** Refused a seat: the connection stays open, holding nothing. */
const SEAT_REFUSALS = new Set(["seat_occupied", "already_logged_in"]);
/** Refused the user: the token or the license is no good, and trying again never helps. */
const USER_REFUSALS = new Set(["unauthorized", "no_license"]);
/** Seconds stop() waits for the server's bye. */
const STOP_TIMEOUT = 5;
/** Until a welcome says the heartbeat interval: heartbeats per lease time (which acks say). */
const BEATS_PER_LEASE = 3;
/** Doublings of the backoff's bound: enough for any maxDelay, and no overflow. */
const MAX_DOUBLINGS = 32;
const OPEN = 1; // WebSocket.OPEN, which not every implementation has as a static
/** Python's str.isprintable(), which the server checks device ids with. Where
 * RegExp has no Unicode properties (older React Native), only the controls. */
const PRINTABLE = pattern("^(?:[^\\p{C}\\p{Z}]| )+$", "u") ?? /^[^\0-\x1f\x7f-\x9f\u2028\u2029]+$/;
/** What the server cannot store as text: a lone surrogate, or NUL. */
const NOT_TEXT = pattern("[\\p{Cs}\\0]", "u") ?? /\0/;

const clock =
  typeof globalThis.performance?.now === "function" ? () => performance.now() : () => Date.now();

/** An error the client reports: a server's `error` code, or one of the client's own. */
export class PresenceError extends Error {
  constructor(code, message, retryable = false) {
    super(message);
    this.name = "PresenceError";
    this.code = code;
    this.retryable = retryable;
  }

  /** The error an `error` message of the server says. */
  static of(error) {
    return new PresenceError(String(error.code), String(error.message), error.retryable === true);
  }
}

/** The connection is over (closed, dropped, or ended by the server): connect again. */
class Lost extends Error {}
/** No answer within the timeout. */
class Silent extends Error {}
/** start()'s login was refused by the server; `answer` is its `error` message. */
class Refusal extends Error {
  constructor(answer) {
    super(String(answer.message));
    this.answer = answer;
  }
}
/** stop() ended a wait of the client's own. */
const HALTED = new Error("halted");

const protocolError = (text) => new PresenceError("protocol_error", text);
const failed = (text) => new PresenceError("connection_failed", text);
const notLoggedIn = (text) => new PresenceError("not_logged_in", text, true);

/**
 * One WebSocket connection: its frames in order, its heartbeats and its death.
 * After each heartbeat the server must say something within a heartbeat
 * interval, or the connection is dropped as dead.
 */
class Connection {
  #ws;
  #inbox = []; // {message} or {error}, in the order the frames came
  #reader = null; // the waiting() of a receive()
  #opening = null; // the waiting() of open()
  #end = null; // the Lost that ended it
  #seq = 0;
  #timer = null;
  #learnt = null; // goes on beating once the interval is known

  constructor(WebSocketClass, url) {
    this.heardAt = clock();
    this.interval = null; // seconds between heartbeats, once known
    this.welcomed = false;
    this.authenticated = false;
    this.pending = null; // the waiting() of the call waiting for its answer
    this.#ws = new WebSocketClass(url);
    this.#ws.onopen = () => {
      this.#opening?.resolve();
      this.#opening = null;
    };
    this.#ws.onmessage = (event) => this.#arrive(event.data);
    this.#ws.onerror = (event) => {
      if (this.#opening !== null) this.#finish(new Lost(event?.message || "the connection failed"));
    };
    this.#ws.onclose = (event) => {
      const reason = event.reason ? `, ${event.reason}` : "";
      this.#finish(new Lost(`closed with code ${event.code}${reason}`));
    };
  }

  /** Wait until open; rejects with Lost, or Silent after `timeout` seconds. */
  open(timeout) {
    if (this.#end !== null) return Promise.reject(this.#end);
    this.#opening = waiting(timeout);
    return this.#opening.promise;
  }

  /** Send a message; false if the connection is not open. */
  send(message) {
    if (this.#end !== null || this.#ws.readyState !== OPEN) return false;
    try {
      this.#ws.send(JSON.stringify(message));
      return true;
    } catch {
      return false;
    }
  }

  /** The next message. Rejects with Lost once the connection is over, with a
   * protocol_error for a frame that is not a message, and with Silent when
   * `timeout` seconds (unless null) pass first. */
  receive(timeout = null) {
    const next = this.#inbox.shift();
    if (next?.error) return Promise.reject(next.error);
    if (next !== undefined) return Promise.resolve(next.message);
    if (this.#end !== null) return Promise.reject(this.#end);
    this.#reader = waiting(timeout);
    return this.#reader.promise;
  }

  /** Send a call's message; its answer, or Lost if the connection ends first. */
  ask(message) {
    const pending = waiting(null);
    if (this.send(message)) this.pending = pending;
    else pending.reject(this.#end ?? new Lost("the connection is not open"));
    return pending.promise;
  }

  /** Hand `message` to the call waiting for an answer. */
  answer(message) {
    this.pending?.resolve(message);
    this.pending = null;
  }

  /** The server took the login (a welcome, a queue place or a refused seat):
   * heartbeats from now on. `timeout`: seconds for the first answer when the
   * interval is not known yet. */
  keepAlive(timeout) {
    this.authenticated = true;
    if (this.#seq === 0) this.#beat(timeout);
  }

  /** Drop the connection at once, without waiting for the other side. */
  abort(lost) {
    this.#finish(lost);
    try {
      if (typeof this.#ws.terminate === "function") this.#ws.terminate();
      else this.#ws.close();
    } catch {
      // closed already
    }
  }

  /** Close the connection; its closing handshake goes on without us. */
  close() {
    this.#finish(new Lost("closed by the client"));
    try {
      this.#ws.close(1000);
    } catch {
      // closed already
    }
  }

  #beat(timeout) {
    if (this.#end !== null) return;
    const sent = clock();
    this.#seq += 1;
    this.send({ type: "heartbeat", seq: this.#seq });
    const check = () => {
      this.#timer = setTimeout(
        () => {
          if (this.heardAt < sent) this.abort(new Lost("a heartbeat went unanswered"));
          else this.#beat(timeout);
        },
        Math.max(0, sent + this.interval * 1000 - clock()),
      );
    };
    if (this.interval !== null) return check();
    this.#learnt = check;
    this.#timer = setTimeout(
      () => this.abort(new Lost("no answer to a heartbeat")),
      timeout * 1000,
    );
  }

  #arrive(data) {
    if (this.#end !== null) return;
    let item;
    try {
      item = { message: this.#parse(data) };
    } catch (error) {
      item = { error };
    }
    if (this.#learnt !== null && this.interval !== null) {
      clearTimeout(this.#timer);
      this.#learnt();
      this.#learnt = null;
    }
    const reader = this.#reader;
    this.#reader = null;
    if (reader === null || reader.settled) this.#inbox.push(item);
    else if (item.error) reader.reject(item.error);
    else reader.resolve(item.message);
  }

  #parse(data) {
    if (typeof data !== "string") throw protocolError("The server sent a binary frame.");
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      throw protocolError(`The server's frame is not JSON: ${data.slice(0, 200)}`);
    }
    if (!isObject(message) || typeof message.type !== "string") {
      throw protocolError(`The server's frame is not a message with a type: ${data.slice(0, 200)}`);
    }
    this.heardAt = clock();
    if (message.type === "heartbeat_ack") {
      const leaseTtl = seconds(message.expires_in);
      if (!this.welcomed && leaseTtl !== null) this.interval = leaseTtl / BEATS_PER_LEASE;
    } else if (message.type === "welcome") {
      const interval = seconds(message.heartbeat_interval);
      if (interval === null) {
        throw protocolError(`A welcome without heartbeat_interval: ${data.slice(0, 200)}`);
      }
      this.interval = interval;
      this.welcomed = true;
    }
    return message;
  }

  #finish(lost) {
    if (this.#end !== null) return;
    this.#end = lost;
    clearTimeout(this.#timer);
    this.#learnt = null;
    for (const waiter of [this.#opening, this.#reader, this.pending]) waiter?.reject(lost);
    this.#opening = this.#reader = this.pending = null;
  }
}

/**
 * One device's login to a presence server, kept through drops and restarts.
 * See the module's documentation, and presence-client.d.ts for the options.
 */
export class PresenceClient {
  #options; // checked, with their defaults
  #state = "idle";
  #license = null;
  #availability = null;
  #position = null;
  #heldBefore = null; // the license held when a connection was lost
  #seatTaken = false; // refused a seat since then: what it gets is not the same
  #attempt = 0; // attempts to connect since the last welcome
  #reached = false; // a server answered once
  #conn = null;
  #listeners = new Map();
  #asking = Promise.resolve(); // the call requests, one at a time
  #starting = null; // resolve and reject of start()
  #startSettled = false;
  #running = null; // the promise of #run()
  #halted = false;
  #wakers = new Set(); // wake the waits of #untilHalted on stop
  #stopped;
  #resolveStopped;

  constructor(options) {
    this.#options = checkOptions(options);
    this.#stopped = new Promise((resolve) => (this.#resolveStopped = resolve));
  }

  /** idle, connecting, holding, refused, queued, reconnecting, stopping or stopped. */
  get state() {
    return this.#state;
  }

  /** The license held now, as the welcome gave it; null unless holding one. */
  get license() {
    return this.#license;
  }

  /** The last availability of the user's pool, or null. */
  get availability() {
    return this.#availability;
  }

  /** The place in the pool's queue while waiting in it, else null. */
  get position() {
    return this.#position;
  }

  /** Resolves once the client stops: with the message that stopped it (a final
   * session_ended, or the error refusing it), or null after stop(). */
  get stopped() {
    return this.#stopped;
  }

  /** Connect and log in; resolves with the welcome's license. Call it once. */
  start() {
    if (this.#state === "stopped") return Promise.reject(stoppedError());
    if (this.#state !== "idle") return Promise.reject(new Error("start() is called once."));
    const started = new Promise((resolve, reject) => (this.#starting = { resolve, reject }));
    const { url } = this.#options;
    if (/^wss?:\/\/[^\s/?#]/i.test(url)) {
      this.#state = "connecting";
      this.#running = this.#run();
    } else {
      this.#settleStart(failed(`${url} is not a ws:// or wss:// URL.`));
      this.#finish(null);
    }
    return started;
  }

  /** Log out, which frees the seat, and stop; resolves once stopped. Waits at
   * most 5 s for the server's bye. Safe at any time and more than once. */
  async stop() {
    if (this.#state === "idle") this.#finish(null);
    if (this.#state !== "stopping" && this.#state !== "stopped") {
      this.#state = "stopping";
      const conn = this.#conn;
      if (conn !== null && conn.authenticated && conn.send({ type: "logout" })) {
        await within(this.#running, STOP_TIMEOUT); // ended by bye and close
      }
      this.#halt();
    }
    await this.#running;
  }

  /** Start a call; resolves with call_started. One call request at a time. */
  callStart(callId) {
    return this.#ask({ type: "call_start", call_id: callId });
  }

  /** End a call; resolves with call_ended. */
  callEnd(callId) {
    return this.#ask({ type: "call_end", call_id: callId });
  }

  /** Call `listener` with each message of `type` ("message": every one);
   * returns a function that removes it. */
  on(type, listener) {
    if (typeof type !== "string" || typeof listener !== "function") {
      throw new TypeError("on(type, listener) takes a message type and a function.");
    }
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  /** Remove a listener added with on(). */
  off(type, listener) {
    this.#listeners.get(type)?.delete(listener);
  }

  // Calls.

  #ask(message) {
    const length = typeof message.call_id === "string" ? [...message.call_id].length : 0;
    if (length < 1 || length > 128) {
      return Promise.reject(new TypeError("A call id is a string of 1 to 128 characters."));
    }
    const asked = this.#asking.then(() => this.#askNow(message));
    this.#asking = asked.catch(() => {});
    return asked;
  }

  async #askNow(message) {
    if (this.#state === "stopping" || this.#state === "stopped") throw stoppedError();
    const conn = this.#conn;
    if (conn === null || this.#state !== "holding") {
      throw notLoggedIn("No license is held now: the client is not logged in.");
    }
    let answer;
    try {
      answer = await conn.ask(message);
    } catch {
      if (this.#state === "stopping" || this.#state === "stopped") throw stoppedError();
      throw notLoggedIn("The connection was lost; the client is reconnecting.");
    }
    if (answer.type === "error") throw PresenceError.of(answer);
    return answer;
  }

  // Connecting, and again.

  async #run() {
    let final = null;
    try {
      final = await this.#keepConnected();
    } catch (error) {
      if (this.#state === "stopping" || error === HALTED) {
        final = null;
      } else if (error instanceof Refusal) {
        final = error.answer;
        this.#settleStart(PresenceError.of(error.answer));
      } else if (this.#startSettled) {
        report(error); // a bug: say so, rather than stop without a word
      } else {
        this.#settleStart(error); // start() failed, or getToken or getIdToken did
      }
    } finally {
      this.#finish(final);
    }
    return final;
  }

  /** Connect, and again after each loss, until stopped; the message of a final end. */
  async #keepConnected() {
    for (;;) {
      const final = await this.#connectOnce();
      if (final !== null) return final;
      if (this.#state === "stopping") return null;
      if (this.#license !== null) {
        this.#heldBefore = this.#license;
        this.#license = null;
      }
      this.#position = null;
      const { firstDelay, maxDelay, random } = this.#options;
      const delay =
        random() * Math.min(maxDelay, firstDelay * 2 ** Math.min(this.#attempt, MAX_DOUBLINGS));
      this.#attempt += 1;
      this.#enter("reconnecting");
      this.#emit({ type: "reconnecting", attempt: this.#attempt, delay });
      await this.#sleep(delay);
      this.#enter("connecting");
    }
  }

  /** One connection, from its opening to its end: the message of a final end,
   * or null when the connection was lost or could not be opened. */
  async #connectOnce() {
    const { url, timeout, WebSocket } = this.#options;
    let credentials;
    try {
      credentials = await this.#untilHalted(this.#credentials());
    } catch (error) {
      if (error === HALTED || !this.#reached) throw error;
      return null;
    }
    let conn;
    try {
      conn = new Connection(WebSocket, url);
    } catch (error) {
      if (this.#reached) return null;
      throw failed(`Cannot open a WebSocket to ${url}: ${error.message}`);
    }
    this.#conn = conn;
    try {
      try {
        await conn.open(timeout);
      } catch (error) {
        if (this.#reached) return null;
        const why = error instanceof Silent ? `not open within ${timeout} s` : error.message;
        throw failed(`Cannot open a WebSocket to ${url}: ${why}.`);
      }
      return await this.#serve(conn, credentials);
    } finally {
      if (this.#conn === conn) this.#conn = null;
      conn.close();
    }
  }

  /** What hello signs in with: {token}, or {domain, id_token}; from the
   * callback, if one was given, asked again for each connection. */
  async #credentials() {
    const { domain, secret, getSecret } = this.#options;
    let fetched = secret;
    if (getSecret !== null) {
      fetched = await getSecret();
      const name = domain === null ? "getToken" : "getIdToken";
      if (typeof fetched !== "string") throw new TypeError(`${name} must resolve to a string.`);
    }
    return domain === null ? { token: fetched } : { domain, id_token: fetched };
  }

  /** Log in on `conn` and follow it to its end; the message of a final end, or
   * null when the connection was lost. Throws what fails start(). */
  async #serve(conn, credentials) {
    const { url, timeout, device, queue, takeover } = this.#options;
    try {
      conn.send({ type: "hello", ...credentials, device, queue, takeover });
      let answering = timeout; // until the first answer
      for (;;) {
        const message = await conn.receive(answering);
        answering = null;
        this.#reached = true;
        const final = this.#on(conn, message);
        if (final !== null) return final;
      }
    } catch (error) {
      // Before start() has its outcome, what is no presence server fails it.
      if (error instanceof Silent && !this.#startSettled) {
        throw protocolError(`${url} did not answer hello within ${timeout} s.`);
      }
      if (error instanceof Lost && !this.#reached) {
        throw failed(`${url} closed without answering hello: ${error.message}.`);
      }
      if (error?.code === "protocol_error" && this.#startSettled) return null;
      if (!(error instanceof Silent || error instanceof Lost)) throw error;
      return null;
    }
  }

  /** Act on a message of the server; the message itself if it stops the client.
   * Throws Lost when the connection is to be replaced. */
  #on(conn, message) {
    switch (message.type) {
      case "welcome":
        this.#welcomed(conn, message);
        return null;
      case "queued":
        this.#position = message.position ?? null;
        this.#authenticated(conn, "queued");
        this.#emit(message);
        return null;
      case "availability":
        this.#availability = message;
        this.#emit(message);
        if (this.#state === "refused" && typeof message.free === "number" && message.free > 0) {
          const { queue, takeover } = this.#options;
          conn.send({ type: "acquire", queue, takeover });
        }
        return null;
      case "call_started":
      case "call_ended":
        this.#emit(message);
        conn.answer(message);
        return null;
      case "error":
        return this.#refused(conn, message);
      case "session_ended":
        this.#emit(message);
        if (FINAL_REASONS.has(message.reason)) return message;
        throw new Lost(`the session ended: ${message.reason}`);
      default:
        this.#emit(message);
        return null;
    }
  }

  #welcomed(conn, welcome) {
    const license = welcome.license;
    if (!isObject(license)) {
      throw protocolError(`A welcome without a license: ${JSON.stringify(welcome)}`);
    }
    this.#license = license;
    this.#position = null;
    this.#attempt = 0;
    this.#authenticated(conn, "holding");
    this.#emit(welcome);
    if (!this.#startSettled) {
      this.#settleStart(null, license);
    } else if (this.#heldBefore !== null) {
      const recovered = !this.#seatTaken && sameLicense(this.#heldBefore, license);
      this.#heldBefore = null;
      this.#seatTaken = false;
      this.#emit({ type: "reconnected", recovered });
    }
  }

  #refused(conn, error) {
    const code = error.code;
    if (SEAT_REFUSALS.has(code) && this.#startSettled) {
      this.#license = null;
      this.#seatTaken = true;
      this.#authenticated(conn, "refused");
    }
    this.#emit(error);
    const loginRefusal = SEAT_REFUSALS.has(code) || USER_REFUSALS.has(code);
    if (conn.pending !== null && !loginRefusal) {
      conn.answer(error); // a call's
    } else if (!this.#startSettled && (loginRefusal || error.retryable !== true)) {
      throw new Refusal(error);
    } else if (USER_REFUSALS.has(code)) {
      return error;
    } else if (!conn.authenticated && error.retryable === true) {
      throw new Lost(`refused for now: ${code}`); // unavailable, rate_limited...: come back later
    }
    return null;
  }

  #authenticated(conn, state) {
    this.#enter(state);
    conn.keepAlive(this.#options.timeout);
  }

  /** Move to `state`, unless stopping or stopped, which nothing leaves. */
  #enter(state) {
    if (this.#state !== "stopping" && this.#state !== "stopped") this.#state = state;
  }

  #emit(message) {
    for (const type of [message.type, "message"]) {
      const listeners = this.#listeners.get(type);
      if (listeners === undefined) continue;
      for (const listener of [...listeners]) {
        try {
          const result = listener(message);
          if (typeof result?.then === "function") result.then(undefined, report);
        } catch (error) {
          report(error);
        }
      }
    }
  }

  // Waiting, and stopping.

  /** `promise`, or a rejection with HALTED as soon as the client is halted. */
  #untilHalted(promise) {
    if (this.#halted) return Promise.reject(HALTED);
    return new Promise((resolve, reject) => {
      const wake = () => reject(HALTED);
      this.#wakers.add(wake);
      promise.then(resolve, reject).finally(() => this.#wakers.delete(wake));
    });
  }

  async #sleep(delay) {
    let timer;
    const slept = new Promise((resolve) => (timer = setTimeout(resolve, delay * 1000)));
    try {
      await this.#untilHalted(slept);
    } finally {
      clearTimeout(timer);
    }
  }

  /** End every wait and the connection now. */
  #halt() {
    this.#halted = true;
    for (const wake of this.#wakers) wake();
    this.#wakers.clear();
    this.#conn?.abort(new Lost("stopped"));
  }

  #finish(final) {
    if (this.#state === "stopped") return;
    this.#state = "stopped";
    this.#license = null;
    this.#position = null;
    this.#halt();
    this.#settleStart(stoppedError("The client stopped before it logged in."));
    this.#resolveStopped(final);
    this.#emit({ type: "stopped", final });
  }

  #settleStart(error, license = null) {
    if (this.#startSettled || this.#starting === null) return;
    this.#startSettled = true;
    if (error === null) this.#starting.resolve(license);
    else this.#starting.reject(error);
  }
}

function checkOptions(options) {
  need(isObject(options), TypeError, "PresenceClient takes an options object.");
  const {
    url,
    token = null,
    getToken = null,
    domain = null,
    idToken = null,
    getIdToken = null,
    device,
    queue = false,
    takeover = false,
    WebSocket = globalThis.WebSocket,
    firstDelay = 0.5,
    maxDelay = 20,
    timeout = 10,
    random = Math.random,
  } = options;
  need(typeof url === "string", TypeError, "url must be a string: ws://host:port/ws/device.");
  const ways = [token, getToken, idToken, getIdToken].filter((way) => way !== null).length;
  need(ways === 1, TypeError, "Give one of token, getToken, idToken and getIdToken.");
  need(token === null || typeof token === "string", TypeError, "token must be a string.");
  need(getToken === null || typeof getToken === "function", TypeError, "getToken: a function.");
  need(idToken === null || typeof idToken === "string", TypeError, "idToken must be a string.");
  const idFunction = getIdToken === null || typeof getIdToken === "function";
  need(idFunction, TypeError, "getIdToken: a function.");
  const federated = idToken !== null || getIdToken !== null;
  const domainId = typeof domain === "string" && domain !== "";
  need(!federated || domainId, TypeError, "idToken and getIdToken need the domain's id as domain.");
  need(federated || domain === null, TypeError, "domain goes with idToken or getIdToken.");
  need(typeof queue === "boolean", TypeError, "queue must be true or false.");
  need(typeof takeover === "boolean", TypeError, "takeover must be true or false.");
  for (const [name, value] of Object.entries({ firstDelay, maxDelay, timeout })) {
    need(Number.isFinite(value), TypeError, `${name} must be a number of seconds.`);
  }
  need(0 <= firstDelay && firstDelay <= maxDelay, RangeError, "Need 0 <= firstDelay <= maxDelay.");
  need(timeout > 0, RangeError, "timeout must be more than 0 seconds.");
  need(typeof random === "function", TypeError, "random must be a function returning [0, 1).");
  const noSocket = "There is no WebSocket here: pass a WebSocket class as the WebSocket option.";
  need(typeof WebSocket === "function", TypeError, noSocket);
  // An ID token stands where a token would, with its domain beside it.
  const [secret, getSecret] = federated ? [idToken, getIdToken] : [token, getToken];
  return {
    ...{ url, domain, secret, getSecret, device: checkDevice(device), queue, takeover },
    ...{ WebSocket, firstDelay, maxDelay, timeout, random },
  };
}

function checkDevice(device) {
  need(isObject(device), TypeError, "device must be an object {id, kind, name?}.");
  const { id, kind, name = null } = device;
  need(typeof id === "string", TypeError, "device.id must be a string.");
  const printable = [...id].length <= 64 && PRINTABLE.test(id);
  need(printable, RangeError, "device.id must be 1 to 64 printable characters.");
  need(KINDS.includes(kind), RangeError, `device.kind must be one of ${KINDS.join(", ")}.`);
  if (name === null) return { id, kind };
  need(typeof name === "string", TypeError, "device.name must be a string.");
  const text = [...name].length <= 128 && !NOT_TEXT.test(name);
  need(text, RangeError, "device.name must be text of at most 128 characters.");
  return { id, kind, name };
}

function pattern(source, flags) {
  try {
    return new RegExp(source, flags);
  } catch {
    return null;
  }
}

function need(condition, Kind, text) {
  if (!condition) throw new Kind(text);
}

/** Whether `now` is the license held `before`: for a seat, the same seat of the same pool. */
function sameLicense(before, now) {
  if (before.model !== now.model) return false;
  if (now.model !== "seat") return true;
  return before.pool?.id === now.pool?.id && before.seat === now.seat;
}

function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `value` if it is a positive number, else null. */
function seconds(value) {
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? value : null;
}

function stoppedError(text = "The client is stopped.") {
  return new PresenceError("stopped", text);
}

/** A promise and its resolve and reject, which clear the timer that rejects it
 * with Silent after `timeout` seconds (none if null); `settled` once settled. */
function waiting(timeout) {
  const waiter = { settled: false };
  let timer = null;
  waiter.promise = new Promise((resolve, reject) => {
    const settle = (how) => (value) => {
      waiter.settled = true;
      clearTimeout(timer);
      how(value);
    };
    waiter.resolve = settle(resolve);
    waiter.reject = settle(reject);
  });
  if (timeout !== null) timer = setTimeout(() => waiter.reject(new Silent()), timeout * 1000);
  return waiter;
}

function within(promise, timeout) {
  let timer;
  const late = new Promise((resolve) => (timer = setTimeout(resolve, timeout * 1000)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** A listener failed (or the client did): say so where the runtime reports errors. */
function report(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else console.error("presence-client:", error);
}
