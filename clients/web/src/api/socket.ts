// The Socket.IO connection: authenticate on connect, requests with acknowledgements, pushes.
//
// Every client event is a request acknowledged with {ok:true,...} or {ok:false,error:{code,message}}
// (realtime/transport/socket.py). The server pushes "event" (stream events), "resync" and "typing";
// live sessions will add their own pushes, which anyone may listen to with on().
import { io, type Socket } from "socket.io-client";
import { ApiError, apiErrorOf } from "./errors";
import type { StreamEvent } from "./types";

export type ConnStatus = "idle" | "connecting" | "connected" | "reconnecting" | "refused";

export interface ConnectionOptions {
  serializer: "json" | "msgpack";
  /** The current access token (asked again on every connection attempt). */
  token(): string | null;
  /** Called when the server refuses the token; resolves true when a new one was obtained. */
  renewToken(): Promise<boolean>;
}

type Listener<T> = (value: T) => void;

// socket.io's own reconnection delays (set in start(); put back after a busy node's wait).
const RECONNECTION_DELAY_MS = 500;
const RECONNECTION_DELAY_MAX_MS = 4000;
const RANDOMIZATION = 0.4;

/** How long a node that refused this connection attempt because it is busy with other new
 * connections (HTTP 503 with Retry-After: admission control, docs/protocol.md §2.2) asked us to
 * wait, times a random factor of 0.5 to 1.5 so that the clients of a reconnection storm come back
 * spread out; null when the refusal was anything else. A browser shows nothing of a refused
 * WebSocket upgrade, but socket.io then tries long-polling, whose request (its XMLHttpRequest is
 * the error's context) carries the status and the header. */
export function busyWaitMs(err: unknown): number | null {
  const e = err as { description?: unknown; context?: { getResponseHeader?(h: string): string | null } };
  if (e?.description !== 503 || typeof e.context?.getResponseHeader !== "function") return null;
  const asked = Number(e.context.getResponseHeader("Retry-After"));
  const seconds = Number.isFinite(asked) && asked > 0 ? asked : 2;
  return Math.round(seconds * 1000 * (0.5 + Math.random()));
}

export class Connection {
  private socket: Socket | null = null;
  private statusListeners = new Set<Listener<ConnStatus>>();
  private connectListeners = new Set<() => void>();
  private waiters = new Set<() => void>();
  private pushListeners = new Map<string, Set<Listener<any>>>();
  private renewing = false;
  /** The wait a busy node asked for, while the next attempt keeps to it. */
  private busyWait: number | null = null;
  status: ConnStatus = "idle";
  /** Why the server last refused us, if it did ({code, message}). */
  lastError: ApiError | null = null;

  constructor(private readonly opts: ConnectionOptions) {}

  async start(): Promise<void> {
    if (this.socket) return;
    const parser =
      this.opts.serializer === "msgpack" ? (await import("socket.io-msgpack-parser")).default : undefined;
    const socket = io({
      path: "/socket.io",
      autoConnect: false,
      transports: ["websocket", "polling"],
      tryAllTransports: true,
      reconnectionDelay: RECONNECTION_DELAY_MS,
      reconnectionDelayMax: RECONNECTION_DELAY_MAX_MS,
      randomizationFactor: RANDOMIZATION,
      auth: (cb) => cb({ token: this.opts.token() }),
      ...(parser ? { parser } : {}),
    });
    this.socket = socket;
    socket.on("connect", () => {
      this.lastError = null;
      this.waitAsked(socket, null);
      this.setStatus("connected");
      // Connect listeners first: the catch-up "sync" goes out before any waiting request.
      for (const l of this.connectListeners) l();
      for (const w of this.waiters) w();
      this.waiters.clear();
    });
    socket.on("disconnect", (reason) => {
      if (reason === "io client disconnect") {
        this.setStatus("idle");
        return;
      }
      this.setStatus("reconnecting");
      if (reason === "io server disconnect") {
        // The server closed this connection on purpose; socket.io will not retry by itself.
        setTimeout(() => this.socket === socket && socket.connect(), 1000);
      }
    });
    socket.on("connect_error", (err: Error & { data?: { code?: string; message?: string } }) => {
      if (socket.active) {
        // A transport failure (server down, network gone): socket.io retries with backoff; a
        // node busy with other new connections said when to come back: the next try waits that.
        this.waitAsked(socket, busyWaitMs(err));
        this.setStatus("reconnecting");
        return;
      }
      // The server refused the connection (a bad or expired token): it will not retry by itself.
      const code = err.data?.code ?? "unauthorized";
      this.lastError = apiErrorOf({ message: err.message, ...err.data, code });
      if (code === "unauthorized" && !this.renewing) {
        this.renewing = true;
        this.setStatus("reconnecting");
        this.opts
          .renewToken()
          .then((ok) => {
            if (this.socket !== socket) return; // signed out meanwhile
            // No new token yet (the network is down too): try again a little later.
            if (ok) socket.connect();
            else setTimeout(() => this.socket === socket && !socket.connected && socket.connect(), 5000);
          })
          .finally(() => {
            this.renewing = false;
          });
      } else {
        this.setStatus("refused");
      }
    });
    socket.io.on("reconnect_attempt", () => this.setStatus("reconnecting"));
    socket.onAny((event: string, data: unknown) => {
      const set = this.pushListeners.get(event);
      if (set) for (const l of set) l(data);
    });
    this.setStatus("connecting");
    socket.connect();
  }

  stop(): void {
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.removeAllListeners();
      socket.io.removeAllListeners();
      socket.disconnect();
    }
    this.setStatus("idle");
  }

  get connected(): boolean {
    return !!this.socket?.connected;
  }

  onStatus(l: Listener<ConnStatus>): () => void {
    this.statusListeners.add(l);
    return () => this.statusListeners.delete(l);
  }

  /** Called on every (re)connection, before any request is answered. */
  onConnect(l: () => void): () => void {
    this.connectListeners.add(l);
    return () => this.connectListeners.delete(l);
  }

  /** A server push: "event", "resync", "typing", or a live session's. */
  on<T = unknown>(event: string, l: Listener<T>): () => void {
    let set = this.pushListeners.get(event);
    if (!set) this.pushListeners.set(event, (set = new Set()));
    set.add(l);
    return () => set!.delete(l);
  }

  onStreamEvent(l: Listener<StreamEvent>): () => void {
    return this.on<StreamEvent>("event", l);
  }

  /** Send a request and wait for its acknowledgement; a refusal rejects with ApiError. */
  async request<T = Record<string, unknown>>(
    event: string,
    payload: Record<string, unknown> = {},
    timeoutMs = 10_000,
  ): Promise<T> {
    await this.waitConnected(timeoutMs);
    const socket = this.socket!;
    let ack: any;
    try {
      ack = await socket.timeout(timeoutMs).emitWithAck(event, payload);
    } catch {
      throw new ApiError("timeout", `no answer to ${event} within ${Math.round(timeoutMs / 1000)} s`);
    }
    if (!ack || ack.ok !== true) {
      throw apiErrorOf(ack?.error ?? {});
    }
    return ack as T;
  }

  private waitConnected(timeoutMs: number): Promise<void> {
    if (this.socket?.connected) return Promise.resolve();
    if (!this.socket) return Promise.reject(new ApiError("offline", "not connected"));
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(done);
        reject(new ApiError("offline", "not connected"));
      }, timeoutMs);
      this.waiters.add(done);
    });
  }

  /** The next reconnection attempt waits ``ms`` (a busy node's Retry-After, with jitter), or
   * socket.io's usual backoff again when null. socket.io computes the next delay right after
   * "connect_error", from these bounds (its own jitter off: ``ms`` has ours). */
  private waitAsked(socket: Socket, ms: number | null): void {
    if (ms === null) {
      if (this.busyWait === null) return;
      this.busyWait = null;
      socket.io.reconnectionDelay(RECONNECTION_DELAY_MS);
      socket.io.reconnectionDelayMax(RECONNECTION_DELAY_MAX_MS);
      socket.io.randomizationFactor(RANDOMIZATION);
      return;
    }
    this.busyWait = ms;
    socket.io.reconnectionDelay(ms);
    socket.io.reconnectionDelayMax(ms);
    socket.io.randomizationFactor(0);
  }

  private setStatus(status: ConnStatus): void {
    if (status === this.status) return;
    this.status = status;
    for (const l of this.statusListeners) l(status);
  }
}
