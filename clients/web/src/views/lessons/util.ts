import type { LiveParticipant, SessionView } from "../../api/types";
import { locale } from "../../i18n";

/** "山村小学五年级 / Village School A, Grade 5": the part in the page's language. */
export function localName(name: string): string {
  const parts = name.split(" / ");
  if (parts.length !== 2) return name;
  return locale.value === "zh-CN" ? parts[0] : parts[1];
}

export function classroomName(view: SessionView, classId: number): string {
  return localName(view.classrooms.find((c) => c.class_id === classId)?.name ?? "");
}

export function personName(view: SessionView, userId: number): string {
  return view.participants.find((p) => p.user_id === userId)?.name ?? "";
}

/** The key of this person's raised hand in view.hands. */
export function handOf(p: LiveParticipant): string {
  return `user:${p.user_id}`;
}
