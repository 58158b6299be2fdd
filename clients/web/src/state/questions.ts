// The class Q&A board (qa:{cid}): questions kept by id, current through question.* events.
// Classmates see anonymous questions without a name (the server leaves it out); teachers see who.
import { signal } from "@preact/signals";
import { asApiError, type ApiError } from "../api/errors";
import { newClientId } from "../api/ids";
import type { Question, StreamEvent } from "../api/types";
import { onReset, onStream, ready, request } from "./session";
import { SnapshotGate } from "./snapshot";

export interface Board {
  byId: Record<number, Question>;
  state: "none" | "loading" | "loaded" | "error";
  error?: ApiError;
}

export const qaBoards = signal<Record<number, Board>>({});
const gate = new SnapshotGate();

export function qaOf(classId: number): Board {
  return qaBoards.value[classId] ?? { byId: {}, state: "none" };
}

function update(classId: number, fn: (b: Board) => Board): void {
  qaBoards.value = { ...qaBoards.value, [classId]: fn(qaOf(classId)) };
}

function merge(b: Board, q: Question): Board {
  const prev = b.byId[q.id];
  // Events do not say whether I voted or asked it: keep what I know.
  const next = { ...q, voted: q.voted ?? prev?.voted ?? false, mine: q.mine ?? prev?.mine ?? false };
  return { ...b, byId: { ...b.byId, [q.id]: next } };
}

function apply(ev: StreamEvent): void {
  const parts = ev.stream.split(":");
  if (parts.length !== 2) return; // a live session's Q&A: the lesson console's business
  const classId = Number(parts[1]);
  const d = ev.data as Record<string, any>;
  if (ev.type === "question.asked" || ev.type === "question.updated") {
    update(classId, (b) => merge(b, d as Question));
  } else if (ev.type === "question.voted") {
    update(classId, (b) => {
      const q = b.byId[d.question_id];
      return q ? { ...b, byId: { ...b.byId, [q.id]: { ...q, votes: d.votes } } } : b;
    });
  }
}

onStream("qa", (ev) => {
  if (!gate.hold(ev)) apply(ev);
});

export async function loadQuestions(classId: number, force = false): Promise<void> {
  const b = qaOf(classId);
  if (!ready.value || b.state === "loading" || (b.state === "loaded" && !force)) return;
  update(classId, (x) => ({ ...x, state: "loading", error: undefined }));
  const loading = gate.begin(`qa:${classId}`);
  try {
    const ack = await request<{ questions: Question[] }>("question.list", { class_id: classId });
    update(classId, () => {
      let board: Board = { byId: {}, state: "loaded" };
      for (const q of ack.questions) board = merge(board, q);
      return board;
    });
    loading.done(apply);
  } catch (err) {
    update(classId, (x) => ({ ...x, state: "error", error: asApiError(err) }));
    loading.fail(apply);
  }
}

type QAck = { question: Question };

export async function ask(classId: number, body: string, anonymous: boolean, attachments: string[] = []): Promise<void> {
  const ack = await request<QAck>("question.ask", {
    class_id: classId,
    client_id: newClientId(),
    body,
    anonymous,
    attachments,
  });
  update(classId, (b) => merge(b, { ...ack.question, mine: true }));
}

export async function vote(q: Question, up: boolean): Promise<void> {
  const ack = await request<{ votes: number; voted: boolean }>("question.vote", {
    question_id: q.id,
    up,
  });
  update(q.class_id, (b) => {
    const cur = b.byId[q.id];
    return cur ? { ...b, byId: { ...b.byId, [q.id]: { ...cur, votes: ack.votes, voted: ack.voted } } } : b;
  });
}

async function moderate(q: Question, event: string, payload: Record<string, unknown>): Promise<void> {
  const ack = await request<QAck>(event, { question_id: q.id, ...payload });
  update(q.class_id, (b) => merge(b, ack.question));
}

export const answer = (q: Question, text: string, attachments: string[] = []) =>
  moderate(q, "question.answer", attachments.length ? { answer: text, attachments } : { answer: text });
export const answeredLive = (q: Question) => moderate(q, "question.answer", { live: true });
export const dismiss = (q: Question) => moderate(q, "question.dismiss", {});
export const reopen = (q: Question) => moderate(q, "question.reopen", {});
export const withdraw = (q: Question) => moderate(q, "question.withdraw", {});

/** Open questions by votes (most first) then age; the others newest change first. */
export function sorted(b: Board, status: "open" | "answered" | "dismissed"): Question[] {
  const all = Object.values(b.byId);
  if (status === "open") {
    return all.filter((q) => q.status === "open").sort((a, c) => c.votes - a.votes || a.id - c.id);
  }
  const want = status === "answered" ? ["answered", "answered_live"] : ["dismissed"];
  return all.filter((q) => want.includes(q.status)).sort((a, c) => c.updated_at - a.updated_at);
}

onReset(() => {
  qaBoards.value = {};
  gate.clear();
});
