// TypeScript declarations of presence-client.js, the device client of the presence server.

export type DeviceKind = "desktop" | "phone" | "tablet" | "glasses" | "browser" | "other";

export interface Device {
  /** 1-64 printable characters, stable across the device's restarts. */
  id: string;
  kind: DeviceKind;
  /** Shown on the wallboard; at most 128 characters. */
  name?: string;
}

export type NamedLicense = { model: "named" };
export type SeatLicense = {
  model: "seat";
  pool: { id: string; name: string };
  seat: number;
  lease_id: string;
  fencing_token: number;
};
export type License = NamedLicense | SeatLicense;

export type SessionEndReason =
  | "taken_over"
  | "replaced"
  | "lease_expired"
  | "idle_logoff"
  | "license_changed"
  | "user_deleted"
  | "released_by_admin"
  | "server_shutdown"
  | "token_revoked";

export interface WelcomeMessage {
  type: "welcome";
  session_id: string;
  user: { id: string; name: string };
  license: License;
  heartbeat_interval: number;
  lease_ttl: number;
}
export interface AvailabilityMessage {
  type: "availability";
  pool: string;
  seats: number;
  occupied: number;
  in_call: number;
  free: number;
  queued: number;
}
export interface QueuedMessage {
  type: "queued";
  pool: string;
  position: number;
}
export interface HeartbeatAckMessage {
  type: "heartbeat_ack";
  seq: number | string | null;
  expires_in: number;
}
export interface CallStartedMessage {
  type: "call_started";
  call_id: string;
  started_at: string;
}
export interface CallEndedMessage {
  type: "call_ended";
  call_id: string;
  duration: number;
}
export interface SessionEndedMessage {
  type: "session_ended";
  reason: SessionEndReason;
  message: string;
}
export interface ErrorMessage {
  type: "error";
  code: string;
  message: string;
  retryable: boolean;
}
export interface ByeMessage {
  type: "bye";
}

/** Before each wait to connect again; `attempt` counts from 1 after each welcome, `delay` is in seconds. */
export interface ReconnectingEvent {
  type: "reconnecting";
  attempt: number;
  delay: number;
}
/** Logged in again; `recovered`: the license held before (the same seat) is held again. */
export interface ReconnectedEvent {
  type: "reconnected";
  recovered: boolean;
}
/** The client stopped: `final` is what stopped it (a final session_ended, or the error refusing it), or null after stop(). */
export interface StoppedEvent {
  type: "stopped";
  final: SessionEndedMessage | ErrorMessage | null;
}

export interface Events {
  welcome: WelcomeMessage;
  availability: AvailabilityMessage;
  queued: QueuedMessage;
  heartbeat_ack: HeartbeatAckMessage;
  call_started: CallStartedMessage;
  call_ended: CallEndedMessage;
  session_ended: SessionEndedMessage;
  error: ErrorMessage;
  bye: ByeMessage;
  reconnecting: ReconnectingEvent;
  reconnected: ReconnectedEvent;
  stopped: StoppedEvent;
  /** Every message of the server and every event of the client. */
  message: Events[Exclude<keyof Events, "message">];
}

export type State =
  | "idle"
  | "connecting"
  | "holding"
  | "refused"
  | "queued"
  | "reconnecting"
  | "stopping"
  | "stopped";

/** What the client needs of a WebSocket class: the browsers', React Native's, Node 22's, or the ws package's. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: any;
  onmessage: any;
  onerror: any;
  onclose: any;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketClass = new (url: string) => WebSocketLike;

export interface PresenceClientOptions {
  /** The device endpoint: ws://host:port/ws/device or wss://… */
  url: string;
  /** The user token (prs_…). Give exactly one of token, getToken, idToken and getIdToken. */
  token?: string;
  /** Returns the token; called before each connection. */
  getToken?: () => string | Promise<string>;
  /** The domain's id, with idToken or getIdToken: a domain that signs in with its identity provider. */
  domain?: string;
  /** An OpenID Connect ID token (a JWT) from the domain's identity provider; needs domain. */
  idToken?: string;
  /** Returns a fresh ID token; called before each connection, the first and every reconnection. Needs domain. */
  getIdToken?: () => string | Promise<string>;
  device: Device;
  /** Wait in the pool's queue when no seat is free, instead of being refused. Default false. */
  queue?: boolean;
  /** Move the user's seat from another device to this one. Default false. */
  takeover?: boolean;
  /** The WebSocket class; default: the runtime's global one. */
  WebSocket?: WebSocketClass;
  /** Seconds: the bound of the first wait to connect again. Default 0.5. */
  firstDelay?: number;
  /** Seconds: the cap of every wait. Default 20. */
  maxDelay?: number;
  /** Seconds for a connection to open and for hello to be answered. Default 10. */
  timeout?: number;
  /** The jitter's source, a number in [0, 1). Default Math.random. */
  random?: () => number;
}

export type PresenceErrorCode =
  | "seat_occupied"
  | "already_logged_in"
  | "no_license"
  | "unauthorized"
  | "call_in_progress"
  | "unknown_call"
  | "not_logged_in"
  | "connection_failed"
  | "protocol_error"
  | "stopped"
  | (string & {});

export class PresenceError extends Error {
  constructor(code: PresenceErrorCode, message: string, retryable?: boolean);
  readonly name: "PresenceError";
  /** A server error code, or connection_failed, protocol_error, not_logged_in, stopped. */
  code: PresenceErrorCode;
  /** Whether the same request may succeed later. */
  retryable: boolean;
  /** The error an `error` message of the server says. */
  static of(error: { code: unknown; message: unknown; retryable?: unknown }): PresenceError;
}

export class PresenceClient {
  /** Throws TypeError or RangeError for wrong options, or when there is no WebSocket. */
  constructor(options: PresenceClientOptions);
  readonly state: State;
  /** The license held now; null unless holding one. */
  readonly license: License | null;
  /** The last availability of the user's pool, or null. */
  readonly availability: AvailabilityMessage | null;
  /** The place in the pool's queue while waiting in it, else null. */
  readonly position: number | null;
  /** Resolves once stopped: with the final session_ended or the refusing error, or null after stop(). */
  readonly stopped: Promise<SessionEndedMessage | ErrorMessage | null>;
  /** Connect and log in; the welcome's license. Rejects with PresenceError, after which the client is stopped. */
  start(): Promise<License>;
  /** Log out (the seat is freed) and stop; waits at most 5 s for the server's bye. Safe any time. */
  stop(): Promise<void>;
  callStart(callId: string): Promise<CallStartedMessage>;
  callEnd(callId: string): Promise<CallEndedMessage>;
  /** Returns a function that removes the listener. */
  on<K extends keyof Events>(type: K, listener: (message: Events[K]) => unknown): () => void;
  off<K extends keyof Events>(type: K, listener: (message: Events[K]) => unknown): void;
}
