// Chat: class chats (class:{cid}:students|guardians) and private conversations (conv:{id}).
// Messages are kept by id; the outbox holds what I sent until the server has it (a resend uses
// the same client id, so it never makes a duplicate).
import { effect, signal } from "@preact/signals";
import { ApiError, asApiError } from "../api/errors";
import { newClientId } from "../api/ids";
import type { Conversation, Message, StreamEvent } from "../api/types";
import { auth } from "./auth";
import { keep, kept } from "./offline";
import { isFollowed, on, onReset, onStream, onSynced, ready, request, status } from "./session";
import { SnapshotGate } from "./snapshot";

export interface SystemItem {
  seq: number;
  type: string;
  at: number;
  data: Record<string, unknown>;
}

export interface Outgoing {
  client_id: string;
  body: string;
  /** Upload ids of the files sent with it. */
  attachments?: string[];
  /** The people it @mentions. */
  mentions?: number[];
  state: "sending" | "waiting" | "failed";
  error?: ApiError;
  at: number;
}

export interface ChatState {
  stream: string;
  messages: Message[]; // by seq
  system: SystemItem[];
  outbox: Outgoing[];
  /** "kept": the last messages as they were when last connected (offline). */
  history: "none" | "loading" | "loaded" | "kept" | "error";
  historyError?: ApiError;
  /** The seq to ask for older messages before, or null when the start is reached. */
  olderBefore: number | null;
  loadingOlder: boolean;
  // Unread: the server's count at the last sync plus later messages from others.
  baseUnread: number;
  baseSeq: number;
  readSeq: number;
}

export const chats = signal<Record<string, ChatState>>({});
// Offline, my conversations as they were when last connected (the sync's list replaces them).
export const conversations = signal<Conversation[]>(kept<Conversation[]>("conversations") ?? []);
/** Who is typing where: stream -> name -> until (ms). */
export const typing = signal<Record<string, Record<string, number>>>({});

const gate = new SnapshotGate();

function empty(stream: string): ChatState {
  return {
    stream,
    messages: [],
    system: [],
    outbox: [],
    history: "none",
    olderBefore: null,
    loadingOlder: false,
    baseUnread: 0,
    baseSeq: 0,
    readSeq: 0,
  };
}

export function chatOf(stream: string): ChatState {
  return chats.value[stream] ?? empty(stream);
}

function update(stream: string, fn: (s: ChatState) => ChatState): void {
  const current = chats.value[stream] ?? empty(stream);
  chats.value = { ...chats.value, [stream]: fn(current) };
}

function upsert(list: Message[], msg: Message): Message[] {
  const i = list.findIndex((m) => m.id === msg.id);
  if (i >= 0) {
    const out = list.slice();
    out[i] = msg;
    return out;
  }
  const out = [...list, msg];
  if (out.length > 1 && out[out.length - 2].seq > msg.seq) out.sort((a, b) => a.seq - b.seq);
  return out;
}

function myId(): number {
  return auth.value?.user.id ?? 0;
}

export function unreadOf(s: ChatState): number {
  const after = Math.max(s.baseSeq, s.readSeq);
  const me = myId();
  let n = s.baseUnread;
  for (const m of s.messages) if (m.seq > after && m.sender_id !== me && !m.deleted) n += 1;
  return n;
}

export function unread(stream: string): number {
  return unreadOf(chatOf(stream));
}

function apply(ev: StreamEvent): void {
  const d = ev.data as Record<string, any>;
  switch (ev.type) {
    case "chat.message": {
      const msg = d as Message;
      update(ev.stream, (s) => ({
        ...s,
        messages: upsert(s.messages, msg),
        outbox: msg.sender_id === myId() ? s.outbox.filter((o) => o.client_id !== msg.client_id) : s.outbox,
      }));
      clearTyping(ev.stream, msg.sender_name);
      break;
    }
    case "chat.edited":
      update(ev.stream, (s) => ({
        ...s,
        messages: s.messages.map((m) =>
          m.id === d.message_id ? { ...m, body: d.body, edited_at: d.edited_at } : m,
        ),
      }));
      break;
    case "chat.deleted":
      update(ev.stream, (s) => ({
        ...s,
        messages: s.messages.map((m) => (m.id === d.message_id ? { ...m, body: "", deleted: true } : m)),
      }));
      break;
    case "hidden":
      // About a message from before I joined this chat: only its number reaches me.
      break;
    default:
      // Announcements in a chat (a live lesson started or ended): shown as a line of their own.
      update(ev.stream, (s) =>
        s.system.some((x) => x.seq === ev.seq)
          ? s
          : { ...s, system: [...s.system, { seq: ev.seq, type: ev.type, at: ev.at, data: d }] },
      );
  }
}

function handle(ev: StreamEvent): void {
  if (!gate.hold(ev)) apply(ev);
}

onStream("class", handle);
onStream("conv", handle);

onStream("user", (ev) => {
  if (ev.type === "conversation.opened") addConversation(ev.data as Conversation);
  if (ev.type === "chat.read") readElsewhere(ev.data as { stream: string; read_seq: number; unread: number });
});

/** How far each guardian has read, per guardians' chat, as told live since the page opened
 * (teachers: `chat.read_by` in staff:{cid}); "read by" of a message moves with it. */
export const guardianReads = signal<Record<string, Record<number, number>>>({});

onStream("staff", (ev) => {
  if (ev.type !== "chat.read_by") return;
  const d = ev.data as { stream: string; user_id: number; read_seq: number };
  const mine = guardianReads.value[d.stream] ?? {};
  if ((mine[d.user_id] ?? 0) >= d.read_seq) return;
  guardianReads.value = { ...guardianReads.value, [d.stream]: { ...mine, [d.user_id]: d.read_seq } };
});

/** "Read by" of a message as last fetched, moved on by what guardians read since. */
export function readByNow(info: ReadBy, m: Message): ReadBy {
  const reads = guardianReads.value[m.stream] ?? {};
  const now = info.unread.filter((p) => (reads[p.id] ?? 0) >= m.seq);
  if (!now.length) return info;
  return {
    ...info,
    read: [...info.read, ...now],
    unread: info.unread.filter((p) => !now.includes(p)),
  };
}

// Another device of mine read a chat: take the server's count, which covers every message I
// have so far; later messages add to it as usual.
function readElsewhere(d: { stream: string; read_seq: number; unread: number }): void {
  update(d.stream, (x) => {
    if (d.read_seq <= x.readSeq) return x;
    const last = x.messages.length ? x.messages[x.messages.length - 1].seq : 0;
    return {
      ...x,
      baseUnread: d.unread,
      baseSeq: Math.max(x.baseSeq, last, d.read_seq),
      readSeq: d.read_seq,
    };
  });
}

function addConversation(c: Conversation): void {
  if (!conversations.value.some((x) => x.id === c.id)) conversations.value = [...conversations.value, c];
}

onSynced((ack) => {
  for (const c of ack.conversations) addConversation(c);
  const next = { ...chats.value };
  for (const s of ack.streams) {
    if (s.unread === undefined) continue;
    const cur = next[s.stream] ?? empty(s.stream);
    next[s.stream] = { ...cur, baseUnread: s.unread, baseSeq: s.last_seq, readSeq: s.read_seq ?? 0 };
  }
  chats.value = next;
  // What could not be sent while away goes out now (same client ids: no duplicates).
  for (const s of Object.values(chats.value)) {
    for (const o of s.outbox) if (o.state === "waiting") void deliver(s.stream, o.client_id, o.body, o.attachments ?? [], o.mentions ?? []);
  }
});

// --- history ------------------------------------------------------------------------------------

interface HistoryAck {
  messages: Message[];
  next_before: number | null;
}

/** Load the latest page once, after the first catch-up has set the stream's cursor. */
export async function ensureHistory(stream: string): Promise<void> {
  const s = chatOf(stream);
  if (!ready.value) {
    // Not connected (offline): the last messages as they were, until the server can be asked.
    const before = s.history === "none" ? kept<Message[]>(`chat:${stream}`) : null;
    // Counted as seen (what is unread is the server's to say once connected).
    const last = before?.length ? before[before.length - 1].seq : 0;
    if (before) update(stream, (x) => ({ ...x, messages: before, history: "kept", baseSeq: Math.max(x.baseSeq, last) }));
    return;
  }
  if (s.history === "loading" || s.history === "loaded") return;
  // The server's page replaces a kept copy (a message deleted meanwhile goes).
  const keptIds = new Set(s.history === "kept" ? s.messages.map((m) => m.id) : []);
  update(stream, (x) => ({ ...x, history: "loading", historyError: undefined }));
  const loading = gate.begin(stream);
  try {
    const ack = await request<HistoryAck>("chat.history", { stream, limit: 50 });
    update(stream, (x) => {
      let messages = x.messages.filter((m) => !keptIds.has(m.id));
      for (const m of ack.messages) messages = upsert(messages, m);
      return { ...x, messages, history: "loaded", olderBefore: ack.next_before };
    });
    loading.done(apply);
  } catch (err) {
    update(stream, (x) => ({ ...x, history: "error", historyError: asApiError(err) }));
    loading.fail(apply);
  }
}

export async function loadOlder(stream: string): Promise<void> {
  const s = chatOf(stream);
  if (s.olderBefore === null || s.loadingOlder) return;
  update(stream, (x) => ({ ...x, loadingOlder: true }));
  try {
    const ack = await request<HistoryAck>("chat.history", { stream, limit: 50, before: s.olderBefore });
    update(stream, (x) => {
      let messages = x.messages;
      for (const m of ack.messages) if (!messages.some((y) => y.id === m.id)) messages = upsert(messages, m);
      return { ...x, messages, olderBefore: ack.next_before, loadingOlder: false };
    });
  } catch {
    update(stream, (x) => ({ ...x, loadingOlder: false }));
  }
}

// --- sending ------------------------------------------------------------------------------------

export function send(stream: string, body: string, attachments: string[] = [], mentions: number[] = []): void {
  const client_id = newClientId();
  update(stream, (s) => ({
    ...s,
    outbox: [...s.outbox, { client_id, body, attachments, mentions, state: "sending", at: Date.now() / 1000 }],
  }));
  void deliver(stream, client_id, body, attachments, mentions);
}

// "unavailable": the server was restarting (nothing stored); the outbox resends after the catch-up.
const RETRYABLE = new Set(["timeout", "offline", "network", "internal", "unavailable"]);

async function deliver(
  stream: string,
  client_id: string,
  body: string,
  attachments: string[] = [],
  mentions: number[] = [],
): Promise<void> {
  if (status.value !== "connected") {
    // Offline: say so at once; the catch-up after reconnecting sends it (same client id).
    setOutgoing(stream, client_id, { state: "waiting", error: undefined });
    return;
  }
  setOutgoing(stream, client_id, { state: "sending", error: undefined });
  try {
    const payload: Record<string, unknown> = { stream, client_id, body };
    if (attachments.length) payload.attachments = attachments;
    if (mentions.length) payload.mentions = mentions;
    const ack = await request<{ message: Message }>("chat.send", payload);
    update(stream, (s) => ({
      ...s,
      messages: upsert(s.messages, ack.message),
      outbox: s.outbox.filter((o) => o.client_id !== client_id),
    }));
  } catch (err) {
    const e = asApiError(err);
    setOutgoing(stream, client_id, { state: RETRYABLE.has(e.code) ? "waiting" : "failed", error: e });
  }
}

function setOutgoing(stream: string, client_id: string, change: Partial<Outgoing>): void {
  update(stream, (s) => ({
    ...s,
    outbox: s.outbox.map((o) => (o.client_id === client_id ? { ...o, ...change } : o)),
  }));
}

export function retry(stream: string, client_id: string): void {
  const o = chatOf(stream).outbox.find((x) => x.client_id === client_id);
  if (o) void deliver(stream, client_id, o.body, o.attachments ?? [], o.mentions ?? []);
}

export function discard(stream: string, client_id: string): void {
  update(stream, (s) => ({ ...s, outbox: s.outbox.filter((o) => o.client_id !== client_id) }));
}

export async function deleteMessage(messageId: number): Promise<void> {
  await request("chat.delete", { message_id: messageId });
}

/** One's own message may be changed this long after sending (the server's chat_edit_window_s). */
export const EDIT_WINDOW_S = 15 * 60;

export async function editMessage(messageId: number, body: string): Promise<void> {
  await request("chat.edit", { message_id: messageId, body });
}

export interface ReadBy {
  message_id: number;
  read: { id: number; name: string }[];
  unread: { id: number; name: string }[];
}

/** Which guardians have read a message of the guardians' chat (teachers). */
export async function readBy(messageId: number): Promise<ReadBy> {
  return request<ReadBy>("chat.read_by", { message_id: messageId });
}

// --- read positions -----------------------------------------------------------------------------

/** Everything up to the newest message shown has been read. */
export function markRead(stream: string): void {
  const s = chatOf(stream);
  const last = s.messages.length ? s.messages[s.messages.length - 1].seq : 0;
  const upTo = Math.max(last, s.baseSeq);
  if (unreadOf(s) === 0 && upTo <= s.readSeq) return;
  update(stream, (x) => ({ ...x, baseUnread: 0, baseSeq: Math.max(x.baseSeq, upTo), readSeq: upTo }));
  if (isFollowed(stream)) void request("chat.read", { stream, seq: upTo }).catch(() => undefined);
}

// --- typing -------------------------------------------------------------------------------------

let lastTypingSent = 0;

export function sendTyping(stream: string): void {
  const now = Date.now();
  if (now - lastTypingSent < 3000) return;
  lastTypingSent = now;
  void request("chat.typing", { stream }).catch(() => undefined);
}

function clearTyping(stream: string, name: string): void {
  const cur = typing.value[stream];
  if (!cur || !(name in cur)) return;
  const { [name]: _gone, ...rest } = cur;
  typing.value = { ...typing.value, [stream]: rest };
}

on<{ stream: string; name: string }>("typing", (d) => {
  const until = Date.now() + 5000;
  typing.value = { ...typing.value, [d.stream]: { ...typing.value[d.stream], [d.name]: until } };
  setTimeout(() => {
    if ((typing.value[d.stream]?.[d.name] ?? 0) <= Date.now()) clearTyping(d.stream, d.name);
  }, 5100);
});

// --- conversations ------------------------------------------------------------------------------

export async function openConversation(classId: number, userId: number): Promise<Conversation> {
  const ack = await request<{ conversation: Conversation }>("conversation.open", {
    class_id: classId,
    user_id: userId,
  });
  addConversation(ack.conversation);
  return ack.conversation;
}

export function otherPerson(c: Conversation): { id: number; name: string } {
  const me = myId();
  return c.people.find((p) => p.id !== me) ?? c.people[0];
}

onReset(() => {
  chats.value = {};
  conversations.value = [];
  typing.value = {};
  guardianReads.value = {};
  gate.clear();
});

// The last messages of each chat, as shown when last connected, kept for opening offline.
let keepTimer: ReturnType<typeof setTimeout> | null = null;
effect(() => {
  const all = chats.value;
  if (keepTimer) clearTimeout(keepTimer);
  keepTimer = setTimeout(() => {
    for (const [stream, c] of Object.entries(all)) if (c.history === "loaded") keep(`chat:${stream}`, c.messages.slice(-50));
  }, 500);
});
effect(() => {
  const list = conversations.value;
  if (list.length) keep("conversations", list);
});
