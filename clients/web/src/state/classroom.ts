// Polls and quizzes, homework and learning records (issue #14). Polls are kept per class, current
// through the poll.* events of the notices streams and, for teachers, the coalesced poll.counts
// pushes; homework and records are read when a page opens (request/response), and reloaded when
// a homework.* event says something changed; a guardian's weekly digests (record.digest in their
// own stream) are kept, the latest per child.
import { signal } from "@preact/signals";
import { newClientId } from "../api/ids";
import type { StreamEvent } from "../api/types";
import { t } from "../i18n";
import { on, onReset, onStream, request } from "./session";
import type { Source } from "./sync";
import { toast } from "./toasts";

export type PollKind = "single" | "multiple" | "true_false" | "text";

export interface PollResults {
  answered: number;
  counts: Record<string, number>;
  correct_count: number | null;
}

export interface Poll {
  id: number;
  class_id: number;
  session_id: number | null;
  classrooms: number[];
  kind: PollKind;
  question: string;
  options: string[];
  quiz: boolean;
  anonymous: boolean;
  audience: "students" | "guardians";
  /** A dual lesson's poll: each student answers, or each linked classroom once (its teacher). */
  answer_by: AnswerBy;
  status: "open" | "closed" | "published";
  closes_at: number | null;
  created_at: number;
  correct?: string[];
  mine?: string[] | null;
  results?: PollResults;
  answers?: { user_id: number; name: string; class_id: number; answer: string[]; correct: boolean | null }[];
}

export type AnswerBy = "person" | "classroom";

/** class id -> poll id -> poll (newest first when listed). */
export const polls = signal<Record<number, Record<number, Poll>>>({});
/** A number that moves whenever something about homework changed (pages reload on it). */
export const homeworkTick = signal(0);

/** The weekly digest a guardian received for one child (record.digest in their own stream). */
export interface Digest {
  class_id: number;
  student_id: number;
  name: string;
  since: number;
  until: number;
  record: Record<string, unknown>;
}

/** "class:student" -> the latest digest of that child. */
export const digests = signal<Record<string, Digest>>({});

export function digestOf(classId: number, studentId: number): Digest | undefined {
  return digests.value[`${classId}:${studentId}`];
}

/** Merge what is known of a poll into every class it is listed under, and under ``key``: a dual
 *  lesson's poll belongs to the master's class but is listed in each linked classroom's. */
function put(p: Partial<Poll> & { id: number }, key?: number): void {
  const next = { ...polls.value };
  const keys = new Set<number>(key != null ? [key] : []);
  for (const [k, cls] of Object.entries(next)) if (cls[p.id]) keys.add(Number(k));
  for (const k of keys) {
    const cls = { ...(next[k] ?? {}) };
    cls[p.id] = { ...(cls[p.id] ?? ({} as Poll)), ...p } as Poll;
    next[k] = cls;
  }
  polls.value = next;
}

function findPoll(id: number): Poll | undefined {
  for (const cls of Object.values(polls.value)) if (cls[id]) return cls[id];
  return undefined;
}

function apply(ev: StreamEvent, source: Source): void {
  if (ev.type === "record.digest") {
    const d = ev.data as Digest;
    const key = `${d.class_id}:${d.student_id}`;
    if ((digests.value[key]?.until ?? 0) <= d.until) digests.value = { ...digests.value, [key]: d };
    if (source === "live") toast(t("rec.digestToast", d.name), "info");
  } else if (ev.type.startsWith("poll.")) {
    // Listed under the class whose stream told it (notices:{cid}:{audience}).
    const [kind, cid] = ev.stream.split(":");
    put(ev.data as Poll, kind === "notices" ? Number(cid) : (ev.data as Poll).class_id);
  } else if (ev.type.startsWith("homework.")) {
    homeworkTick.value += 1;
  }
}

onStream("notices", apply);
onStream("staff", apply);
onStream("user", apply);
on<{ poll_id: number } & PollResults>("poll.counts", (d) => {
  const p = findPoll(d.poll_id);
  if (p) put({ id: p.id, results: { answered: d.answered, counts: d.counts, correct_count: d.correct_count } });
});
onReset(() => {
  polls.value = {};
  digests.value = {};
});

/** Open polls of a session that wait for my answer (a classroom's, in classroom mode). */
export function waitingPolls(classId: number, sessionId: number, forClassroom: boolean): Poll[] {
  return pollsOf(classId, sessionId).filter(
    (p) =>
      p.status === "open" &&
      !p.mine &&
      (p.answer_by === "classroom") === forClassroom &&
      (p.closes_at == null || p.closes_at * 1000 > Date.now()),
  );
}

export function pollsOf(classId: number, sessionId?: number | null): Poll[] {
  const all = Object.values(polls.value[classId] ?? {});
  return all
    .filter((p) => p.question !== undefined && (sessionId == null || p.session_id === sessionId))
    .sort((a, b) => b.id - a.id);
}

export async function loadPolls(classId: number, sessionId?: number | null): Promise<void> {
  const payload: Record<string, unknown> = { class_id: classId };
  if (sessionId != null) payload.session_id = sessionId;
  const ack = await request<{ polls: Poll[] }>("poll.list", payload);
  for (const p of ack.polls) put(p, classId);
}

/** A poll in full as I may see it (teachers: live results and named answers). */
export async function refreshPoll(classId: number, pollId: number): Promise<void> {
  const ack = await request<{ poll: Poll; results?: PollResults; answers?: Poll["answers"]; mine?: string[] | null }>(
    "poll.get",
    { poll_id: pollId },
  );
  put({ ...ack.poll, results: ack.results, answers: ack.answers, ...(ack.mine !== undefined ? { mine: ack.mine } : {}) }, classId);
}

export interface PollDraft {
  question: string;
  kind: PollKind;
  options: string[];
  correct: string[];
  anonymous: boolean;
  audience: "students" | "guardians";
  time_limit_s: number | null;
  answer_by?: AnswerBy;
}

export async function createPoll(classId: number, draft: PollDraft, sessionId?: number | null): Promise<Poll> {
  const payload: Record<string, unknown> = {
    class_id: classId,
    client_id: newClientId(),
    kind: draft.kind,
    question: draft.question,
    options: draft.kind === "single" || draft.kind === "multiple" ? draft.options : [],
    correct: draft.correct,
    anonymous: draft.anonymous,
    audience: draft.audience,
  };
  if (sessionId != null) payload.session_id = sessionId;
  if (draft.time_limit_s) payload.time_limit_s = draft.time_limit_s;
  if (draft.answer_by) payload.answer_by = draft.answer_by;
  const ack = await request<{ poll: Poll }>("poll.create", payload);
  put(ack.poll, classId);
  return ack.poll;
}

export async function answerPoll(p: Poll, answer: string[]): Promise<void> {
  const ack = await request<{ answer: string[] }>("poll.answer", { poll_id: p.id, answer });
  put({ id: p.id, mine: ack.answer });
}

export async function finishPoll(p: Poll, publish: boolean): Promise<void> {
  const ack = await request<{ poll: Poll }>(publish ? "poll.publish" : "poll.close", { poll_id: p.id });
  put(ack.poll);
  await refreshPoll(p.class_id, p.id);
}
