// Notices of a class: the list (notice.list) kept current by notice.published events; my receipts
// (delivered when listed, read when shown, confirm, reply); for teachers, a counter per notice that
// moves on every notice.receipt event of the staff stream, so receipt views reload by themselves.
import { effect, signal } from "@preact/signals";
import { asApiError, type ApiError } from "../api/errors";
import { newClientId } from "../api/ids";
import type { Audience, Notice, NoticeKind, Receipt, StreamEvent } from "../api/types";
import { t } from "../i18n";
import { keep, kept } from "./offline";
import { onReset, onStream, ready, request } from "./session";
import { SnapshotGate } from "./snapshot";
import { toast } from "./toasts";

export interface NoticeBoard {
  list: Notice[]; // newest first
  /** "kept": the list as it was when last connected (offline), read again once connected. */
  state: "none" | "loading" | "loaded" | "kept" | "error";
  error?: ApiError;
}

export const boards = signal<Record<number, NoticeBoard>>({});
/** notice id -> a number that changes whenever one of its receipts changes (teachers). */
export const receiptTicks = signal<Record<number, number>>({});
/** notice ids I was reminded about and have not acted on yet. */
export const reminders = signal<Record<number, { title: string; class_id: number; at: number }>>({});

const gate = new SnapshotGate();

export function boardOf(classId: number): NoticeBoard {
  return boards.value[classId] ?? { list: [], state: "none" };
}

function update(classId: number, fn: (b: NoticeBoard) => NoticeBoard): void {
  boards.value = { ...boards.value, [classId]: fn(boardOf(classId)) };
}

function upsert(list: Notice[], n: Notice): Notice[] {
  const i = list.findIndex((x) => x.id === n.id);
  if (i >= 0) {
    const out = list.slice();
    out[i] = { ...out[i], ...n };
    return out;
  }
  return [n, ...list].sort((a, b) => b.id - a.id);
}

function classOf(stream: string): number {
  return Number(stream.split(":")[1]);
}

let recipientOf: (classId: number) => boolean = () => false;

/** Tells the module whether I receive notices in a class (set by the app: it knows my roles). */
export function setRecipientTest(test: (classId: number) => boolean): void {
  recipientOf = test;
}

function apply(ev: StreamEvent): void {
  if (ev.type !== "notice.published") return;
  const n = ev.data as Notice;
  const known = boardOf(n.class_id).list.some((x) => x.id === n.id);
  update(n.class_id, (b) => ({ ...b, list: upsert(b.list, n) }));
  if (!known && recipientOf(n.class_id)) void markDelivered([n]);
}

onStream("notices", (ev) => {
  // Both audience streams of a class share one board: hold by the class's board key.
  if (!gate.hold({ ...ev, stream: `board:${classOf(ev.stream)}`, seq: ev.seq })) apply(ev);
});

onStream("staff", (ev) => {
  if (ev.type !== "notice.receipt") return;
  const id = Number((ev.data as { notice_id: number }).notice_id);
  receiptTicks.value = { ...receiptTicks.value, [id]: (receiptTicks.value[id] ?? 0) + 1 };
});

onStream("user", (ev) => {
  if (ev.type !== "notice.reminder") return;
  const d = ev.data as { notice_id: number; class_id: number; title: string };
  reminders.value = { ...reminders.value, [d.notice_id]: { title: d.title, class_id: d.class_id, at: ev.at } };
  toast(t("notices.reminderToast", d.title), "info", 8000);
});

const inflight = new Set<number>();

/** Load a class's notices once; `force` reads them again (the list stays on screen meanwhile). */
export async function loadNotices(classId: number, force = false): Promise<void> {
  const b = boardOf(classId);
  if (!ready.value) {
    // Not connected (offline): the list as it was, until the server can be asked.
    const before = b.state === "none" ? kept<Notice[]>(`notices:${classId}`) : null;
    if (before) update(classId, (x) => ({ ...x, list: before, state: "kept" }));
    return;
  }
  if (inflight.has(classId) || (b.state === "loaded" && !force)) return;
  inflight.add(classId);
  // The server's list replaces a kept copy (a notice withdrawn meanwhile goes).
  const keptIds = new Set(b.state === "kept" ? b.list.map((n) => n.id) : []);
  if (b.state !== "loaded" && b.state !== "kept") update(classId, (x) => ({ ...x, state: "loading", error: undefined }));
  // Two streams feed a board; the snapshot is newer than both cursors at request time, and
  // published notices are whole states, so applying a held one again changes nothing.
  const loading = gate.begin(`board:${classId}`);
  try {
    const ack = await request<{ notices: Notice[] }>("notice.list", { class_id: classId });
    update(classId, (x) => {
      let list = ack.notices;
      for (const n of x.list) if (!keptIds.has(n.id) && !list.some((y) => y.id === n.id)) list = upsert(list, n);
      return { ...x, list, state: "loaded" };
    });
    loading.fail(apply); // apply every held event: they are idempotent upserts
    if (recipientOf(classId)) void markDelivered(ack.notices);
  } catch (err) {
    update(classId, (x) => (x.state === "loaded" || x.state === "kept" ? x : { ...x, state: "error", error: asApiError(err) }));
    loading.fail(apply);
  } finally {
    inflight.delete(classId);
  }
}

function setReceipt(classId: number, noticeId: number, receipt: Receipt): void {
  update(classId, (b) => ({
    ...b,
    list: b.list.map((n) => (n.id === noticeId ? { ...n, receipt } : n)),
  }));
}

async function markDelivered(list: Notice[]): Promise<void> {
  const ids = list.filter((n) => !n.receipt?.delivered_at).map((n) => n.id);
  if (!ids.length) return;
  try {
    await request("notice.delivered", { notice_ids: ids });
    const now = Date.now() / 1000;
    for (const n of list) {
      if (ids.includes(n.id)) {
        setReceipt(n.class_id, n.id, {
          ...(n.receipt ?? emptyReceipt(n.id)),
          delivered_at: n.receipt?.delivered_at ?? now,
        });
      }
    }
  } catch {
    // delivered again at the next listing
  }
}

function emptyReceipt(userId: number): Receipt {
  return {
    user_id: userId,
    state: "sent",
    delivered_at: null,
    read_at: null,
    confirmed_at: null,
    reply: null,
    replied_at: null,
  };
}

type ReceiptAck = { receipt: Receipt & { notice_id: number } };

/** The notice has been shown to me. */
export async function markRead(n: Notice): Promise<void> {
  if (n.receipt?.read_at) return;
  const ack = await request<ReceiptAck>("notice.read", { notice_id: n.id });
  setReceipt(n.class_id, n.id, ack.receipt);
}

export async function confirm(n: Notice): Promise<void> {
  const ack = await request<ReceiptAck>("notice.confirm", { notice_id: n.id });
  setReceipt(n.class_id, n.id, ack.receipt);
  clearReminder(n.id);
}

export async function reply(n: Notice, choice: string): Promise<void> {
  const ack = await request<ReceiptAck>("notice.reply", { notice_id: n.id, reply: choice });
  setReceipt(n.class_id, n.id, ack.receipt);
  clearReminder(n.id);
}

function clearReminder(id: number): void {
  if (!(id in reminders.value)) return;
  const { [id]: _gone, ...rest } = reminders.value;
  reminders.value = rest;
}

export interface NoticeDraft {
  audience: Audience;
  kind: NoticeKind;
  title: string;
  body: string;
  choices: string[];
  deadline: number | null;
  attachments?: string[];
}

export async function publish(classId: number, draft: NoticeDraft, clientId = newClientId()): Promise<Notice> {
  const ack = await request<{ notice: Notice; recipients?: number }>("notice.publish", {
    class_id: classId,
    client_id: clientId,
    ...draft,
  });
  update(classId, (b) => ({ ...b, list: upsert(b.list, ack.notice) }));
  return ack.notice;
}

/** Does this notice still ask something of me? */
export function needsAction(n: Notice): boolean {
  const r = n.receipt;
  if (n.kind === "confirm_required") return !r?.confirmed_at;
  if (n.kind === "reply_required") return !r?.reply;
  if (n.kind === "read_required") return !r?.read_at;
  return false;
}

onReset(() => {
  boards.value = {};
  receiptTicks.value = {};
  reminders.value = {};
  inflight.clear();
  gate.clear();
});

// What each class's notices were when last connected, kept for opening offline.
let keepTimer: ReturnType<typeof setTimeout> | null = null;
effect(() => {
  const all = boards.value;
  if (keepTimer) clearTimeout(keepTimer);
  keepTimer = setTimeout(() => {
    for (const [id, b] of Object.entries(all)) if (b.state === "loaded") keep(`notices:${id}`, b.list.slice(0, 50));
  }, 500);
});
