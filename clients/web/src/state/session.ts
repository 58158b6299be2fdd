// One signed-in session: the connection, catch-up, and the routing of stream events to the state
// modules (chat, notices, questions, ...). A module subscribes by stream kind with onStream();
// the lesson console will subscribe to its own pushes with on().
import { effect, signal } from "@preact/signals";
import { ApiError } from "../api/errors";
import { Connection, type ConnStatus } from "../api/socket";
import type { StreamEvent, SyncAck } from "../api/types";
import { auth, refreshTokens } from "./auth";
import { StreamSync, type Source } from "./sync";

export const status = signal<ConnStatus>("idle");
/** The first catch-up since signing in is done: snapshots may be loaded from now on. */
export const ready = signal(false);

type StreamHandler = (ev: StreamEvent, source: Source) => void;

const streamHandlers = new Map<string, Set<StreamHandler>>();
const syncedHandlers = new Set<(ack: SyncAck) => void>();
const resetHandlers = new Set<() => void>();

let conn: Connection | null = null;
let sync: StreamSync | null = null;
let sessionUser: number | null = null;

/** Events of streams of one kind: "class", "conv", "notices", "qa", "staff", "user". */
export function onStream(kind: string, handler: StreamHandler): () => void {
  let set = streamHandlers.get(kind);
  if (!set) streamHandlers.set(kind, (set = new Set()));
  set.add(handler);
  return () => set!.delete(handler);
}

export function onSynced(handler: (ack: SyncAck) => void): () => void {
  syncedHandlers.add(handler);
  return () => syncedHandlers.delete(handler);
}

/** Forget everything of the person who signed out. */
export function onReset(handler: () => void): () => void {
  resetHandlers.add(handler);
  return () => resetHandlers.delete(handler);
}

const pushes = new Set<{ event: string; listener: (d: unknown) => void; off: null | (() => void) }>();

/** A server push that is not a stream event ("typing", live-session pushes). */
export function on<T>(event: string, listener: (data: T) => void): () => void {
  // Registered on whichever connection is current, now and after a new sign-in.
  const wrapped = { event, listener: listener as (d: unknown) => void, off: null as null | (() => void) };
  pushes.add(wrapped);
  if (conn) wrapped.off = conn.on(event, wrapped.listener);
  return () => {
    wrapped.off?.();
    pushes.delete(wrapped);
  };
}

export function request<T = Record<string, unknown>>(
  event: string,
  payload: Record<string, unknown> = {},
  timeoutMs?: number,
): Promise<T> {
  if (!conn) return Promise.reject(new ApiError("offline", "not signed in"));
  return conn.request<T>(event, payload, timeoutMs);
}

/** The last event number handled in a stream (0 when not followed). */
export function cursor(stream: string): number {
  return sync?.cursors.get(stream) ?? 0;
}

export function isFollowed(stream: string): boolean {
  return !!sync?.cursors.has(stream);
}

/** Follow an extra stream the server does not follow for me by itself (a live session's Q&A),
 *  with its events after `fromSeq`. */
export function follow(stream: string, fromSeq = 0): Promise<void> {
  if (!sync) return Promise.reject(new ApiError("offline", "not signed in"));
  sync.follow(stream, fromSeq);
  return sync.sync();
}

export function connectionError(): ApiError | null {
  return conn?.lastError ?? null;
}

function serializer(): "json" | "msgpack" {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="homeroom-serializer"]');
  return meta?.content === "msgpack" ? "msgpack" : "json";
}

function start(): void {
  const c = new Connection({
    serializer: serializer(),
    token: () => auth.value?.access ?? null,
    renewToken: refreshTokens,
  });
  conn = c;
  c.onStatus((s) => (status.value = s));
  sync = new StreamSync(c, {
    event(ev, source) {
      const kind = ev.stream.split(":", 1)[0];
      const set = streamHandlers.get(kind);
      if (set) for (const h of set) h(ev, source);
    },
    synced(ack) {
      for (const h of syncedHandlers) h(ack);
      ready.value = true;
    },
  });
  for (const p of pushes) p.off = c.on(p.event, p.listener);
  (window as unknown as { homeroom: unknown }).homeroom = {
    stats: sync.stats,
    cursors: sync.cursors,
  };
  void c.start();
}

function stop(): void {
  sync?.close();
  conn?.stop();
  sync = null;
  conn = null;
  ready.value = false;
  status.value = "idle";
  for (const h of resetHandlers) h();
}

effect(() => {
  const user = auth.value?.user.id ?? null;
  if (user === sessionUser) return;
  if (sessionUser !== null) stop();
  sessionUser = user;
  if (user !== null) start();
});
