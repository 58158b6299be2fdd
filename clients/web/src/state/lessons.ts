// Live sessions running in a class (session.list), kept current by the session.started /
// session.ended events of the class chat streams (and, for a class's teachers, the requests of
// dual lessons to link it in its staff stream), and starting one (session.start).
import { signal } from "@preact/signals";
import type { SchoolClass, SessionKind, SessionSummary } from "../api/types";
import { api } from "../api/rest";
import { t } from "../i18n";
import { onReset, onStream, ready, request } from "./session";
import { toast } from "./toasts";

export const running = signal<Record<number, SessionSummary[]>>({});
const loaded = new Set<number>();

export function runningIn(classId: number): SessionSummary[] {
  return running.value[classId] ?? [];
}

function put(s: SessionSummary, alive: boolean): void {
  const next = { ...running.value };
  const ids = s.classrooms.length ? s.classrooms.map((c) => c.class_id) : [s.class_id];
  for (const c of s.pending_classrooms ?? []) ids.push(c.class_id);
  for (const cid of ids) {
    const list = (next[cid] ?? []).filter((x) => x.id !== s.id);
    if (alive) list.push(s);
    next[cid] = list;
  }
  running.value = next;
}

export function forgetSession(sessionId: number): void {
  const next: Record<number, SessionSummary[]> = {};
  for (const [cid, list] of Object.entries(running.value)) next[Number(cid)] = list.filter((s) => s.id !== sessionId);
  running.value = next;
}

/** Ask the server which sessions run in a class (once; again with force). */
export async function loadRunning(classId: number, force = false): Promise<void> {
  if (!ready.value || (loaded.has(classId) && !force)) return;
  loaded.add(classId);
  try {
    const ack = await request<{ sessions: SessionSummary[] }>("session.list", { class_id: classId });
    running.value = { ...running.value, [classId]: ack.sessions };
  } catch {
    loaded.delete(classId);
  }
}

onStream("class", (ev) => {
  const kinds = ["session.started", "session.host", "session.moved", "session.ended"];
  if (!kinds.includes(ev.type)) return;
  const s = ev.data as SessionSummary;
  put(s, ev.type !== "session.ended" && !s.ended);
});

onStream("staff", (ev) => {
  if (ev.type !== "session.link_requested" && ev.type !== "session.ended") return;
  const s = ev.data as SessionSummary;
  put(s, ev.type === "session.link_requested" && !s.ended);
  if (ev.type === "session.link_requested") toast(t("live.linkRequested", s.title), "info", 8000);
});

export async function startSession(
  classId: number,
  kind: SessionKind,
  title: string,
  linked: number[] = [],
): Promise<SessionSummary> {
  const ack = await request<{ session: SessionSummary }>("session.start", {
    class_id: classId,
    kind,
    title,
    linked_class_ids: kind === "dual_lesson" ? linked : [],
  });
  put(ack.session, true);
  return ack.session;
}

/** The other classes of my school, to link into a dual-teacher lesson (teachers only). */
let schoolClassesCache: Promise<SchoolClass[]> | null = null;
export function schoolClasses(): Promise<SchoolClass[]> {
  if (!schoolClassesCache) {
    schoolClassesCache = api.schoolClasses().then((r) => r.classes);
    schoolClassesCache.catch(() => (schoolClassesCache = null));
  }
  return schoolClassesCache;
}

onReset(() => {
  running.value = {};
  loaded.clear();
  schoolClassesCache = null;
});
