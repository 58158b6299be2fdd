// Being told when something happens, wherever one is in the app: a toast for a new private
// message, a notice or a link request (reminders have theirs in notices.ts), the unread count in
// the tab's title, and the number of pending link requests on each class a teacher teaches.
import { effect, signal } from "@preact/signals";
import { api } from "../api/rest";
import type { Message, StreamEvent } from "../api/types";
import { t } from "../i18n";
import { route } from "../router";
import { auth } from "./auth";
import { chats, conversations, otherPerson, unreadOf } from "./chat";
import { me, rolesIn } from "./me";
import { boardOf, needsAction } from "./notices";
import { onReset, onStream, onSynced, ready } from "./session";
import { toast } from "./toasts";

/** Pending guardian link requests per class, for its teachers (classId -> count). */
export const pendingLinks = signal<Record<number, number>>({});

const PREVIEW_CHARS = 40;

function myId(): number | null {
  return auth.value?.user.id ?? null;
}

function looking(stream: string): boolean {
  const r = route.value;
  if (document.visibilityState !== "visible" || r.name !== "class") return false;
  if (stream.startsWith("conv:")) return r.section === "messages" && r.id === Number(stream.slice(5));
  const [kind, cid, part] = stream.split(":");
  if (kind === "class") return r.section === "chat" && r.classId === Number(cid) && r.sub === part;
  return false;
}

onStream("conv", (ev: StreamEvent<Message>, source) => {
  if (source !== "live" || ev.type !== "chat.message") return;
  const m = ev.data;
  if (m.sender_id === myId() || looking(ev.stream)) return;
  const preview = m.body.length > PREVIEW_CHARS ? `${m.body.slice(0, PREVIEW_CHARS)}…` : m.body;
  toast(t("alerts.message", m.sender_name, preview), "info", 8000);
});

// The first message of a new conversation can come before the page follows its stream: the
// catch-up that follows it then starts after that message, which is counted as unread but
// never arrives as a live event. Such a stream, new since the first catch-up, is told here.
const knownConvs = new Set<string>();
let primed = false;
onSynced((ack) => {
  for (const s of ack.streams) {
    if (!s.stream.startsWith("conv:") || knownConvs.has(s.stream)) continue;
    knownConvs.add(s.stream);
    if (!primed || !(s.unread ?? 0) || looking(s.stream)) continue;
    const c = [...ack.conversations, ...conversations.value].find((x) => x.stream === s.stream);
    if (c) toast(t("alerts.newConversation", otherPerson(c).name), "info", 8000);
  }
  primed = true;
});

onStream("notices", (ev, source) => {
  if (source !== "live" || ev.type !== "notice.published") return;
  const d = ev.data as { author_id: number; title: string };
  if (d.author_id === myId()) return;
  toast(t("alerts.notice", d.title), "info", 8000);
});

async function loadPending(classId: number): Promise<void> {
  try {
    const n = (await api.links(classId)).links.length;
    pendingLinks.value = { ...pendingLinks.value, [classId]: n };
  } catch {
    // Not a teacher there (any more), or offline: the badge keeps what it had.
  }
}

onStream("staff", (ev, source) => {
  const classId = Number(ev.stream.split(":")[1]);
  if (!rolesIn(classId).teacher) return;
  if (["link.requested", "link.decided", "roster.imported"].includes(ev.type)) void loadPending(classId);
  if (source === "live" && ev.type === "link.requested") {
    const d = ev.data as { guardian_name: string; student_name: string };
    toast(t("alerts.linkRequest", d.guardian_name, d.student_name), "info", 8000);
  }
});

// Someone @mentioned me in a class chat I am not looking at.
onStream("user", (ev, source) => {
  if (source !== "live" || ev.type !== "chat.mentioned") return;
  const d = ev.data as { stream: string; sender_name: string };
  if (looking(d.stream)) return;
  const where = d.stream.endsWith(":guardians") ? t("nav.guardianChat") : t("nav.classChat");
  toast(t("alerts.mention", d.sender_name, where), "info", 8000);
});

// Homework due soon (the server's sweep tells each student who has not handed it in, and their
// guardians, once per homework).
onStream("user", (ev, source) => {
  if (source !== "live" || ev.type !== "homework.due") return;
  const d = ev.data as { title: string; student_name: string; student_id: number };
  const mine = d.student_id === myId();
  toast(mine ? t("alerts.homeworkDueMine", d.title) : t("alerts.homeworkDue", d.student_name, d.title), "info", 10000);
});

// A teacher's reminder to hand homework in (to the student and their guardians).
onStream("user", (ev, source) => {
  if (source !== "live" || ev.type !== "homework.reminder") return;
  const d = ev.data as { title: string; student_name: string; student_id: number };
  const mine = d.student_id === myId();
  toast(mine ? t("alerts.homeworkReminderMine", d.title) : t("alerts.homeworkReminder", d.student_name, d.title), "info", 10000);
});

// Once caught up and knowing my classes: how many requests wait in each class I teach.
let loadedFor = "";
effect(() => {
  const classes = me.value?.classes ?? [];
  if (!ready.value) return;
  const mine = classes.filter((c) => rolesIn(c.id).teacher).map((c) => c.id);
  const key = mine.join(",");
  if (key === loadedFor) return;
  loadedFor = key;
  for (const id of mine) void loadPending(id);
});

onReset(() => {
  pendingLinks.value = {};
  loadedFor = "";
  knownConvs.clear();
  primed = false;
});

/** Unread private and class messages, and notices waiting for me: the number in the title. */
export function unreadTotal(): number {
  let n = 0;
  for (const s of Object.values(chats.value)) n += unreadOf(s);
  for (const c of me.value?.classes ?? []) {
    if (rolesIn(c.id).staff) continue;
    n += boardOf(c.id).list.filter((x) => needsAction(x) || !x.receipt?.read_at).length;
  }
  return n;
}

export function appTitle(): string {
  const n = auth.value ? unreadTotal() : 0;
  return n > 0 ? `(${n > 99 ? "99+" : n}) ${t("app.name")}` : t("app.name");
}

effect(() => {
  document.title = appTitle();
});
