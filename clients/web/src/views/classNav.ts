// What a class page offers to whom, and the numbers on its navigation.
import type { ClassInfo } from "../api/types";
import { t } from "../i18n";
import { pendingLinks } from "../state/alerts";
import { chats, conversations, unreadOf } from "../state/chat";
import { rolesIn } from "../state/me";
import { boardOf, needsAction } from "../state/notices";
import type { Section } from "../router";
import type { IconName } from "./icons";

export interface NavItem {
  section: Section;
  sub?: string;
  label: string;
  icon: IconName;
  unread?: number;
  /** What the number means, for screen readers (default: unread messages). */
  badgeLabel?: string;
}

export function chatStream(classId: number, audience: "students" | "guardians"): string {
  return `class:${classId}:${audience}`;
}

function streamUnread(stream: string): number {
  const s = chats.value[stream];
  return s ? unreadOf(s) : 0;
}

export function conversationsUnread(classId: number): number {
  return conversations.value
    .filter((c) => c.class_id === classId)
    .reduce((n, c) => n + streamUnread(c.stream), 0);
}

export function classUnread(classId: number): number {
  return (
    streamUnread(chatStream(classId, "students")) +
    streamUnread(chatStream(classId, "guardians")) +
    conversationsUnread(classId)
  );
}

export function navItems(classId: number): NavItem[] {
  const r = rolesIn(classId);
  const items: NavItem[] = [];
  if (r.staff) items.push({ section: "home", label: t("nav.overview"), icon: "home" });
  if (r.staff || r.student) {
    items.push({
      section: "chat",
      sub: "students",
      label: r.staff ? t("nav.studentChat") : t("nav.classChat"),
      icon: "chat",
      unread: streamUnread(chatStream(classId, "students")),
    });
  }
  if (r.staff || r.guardian) {
    items.push({
      section: "chat",
      sub: "guardians",
      label: t("nav.guardianChat"),
      icon: "family",
      unread: streamUnread(chatStream(classId, "guardians")),
    });
  }
  const todo = r.staff ? 0 : boardOf(classId).list.filter((n) => needsAction(n) || !n.receipt?.read_at).length;
  items.push({
    section: "notices",
    label: t("nav.notices"),
    icon: "megaphone",
    unread: todo,
    badgeLabel: t("notices.pendingAria", todo),
  });
  items.push({ section: "messages", label: t("nav.messages"), icon: "mail", unread: conversationsUnread(classId) });
  if (r.staff || r.student) items.push({ section: "qa", label: t("nav.qa"), icon: "question" });
  items.push({ section: "polls", label: t("nav.polls"), icon: "chart" });
  items.push({ section: "homework", label: t("nav.homework"), icon: "book" });
  items.push({ section: "records", label: r.staff ? t("nav.classRecords") : t("nav.records"), icon: "record" });
  if (r.teacher) {
    const pending = pendingLinks.value[classId] ?? 0;
    items.push({
      section: "links",
      label: t("nav.links"),
      icon: "link",
      unread: pending,
      badgeLabel: t("links.pendingAria", pending),
    });
  }
  items.push({ section: "members", label: r.guardian && !r.staff ? t("nav.children") : t("nav.members"), icon: "users" });
  items.push({ section: "lessons", label: r.guardian && !r.staff && !r.student ? t("nav.meetings") : t("nav.lessons"), icon: "video" });
  return items;
}

/** Where a class opens: teachers their overview, students the chat, guardians the notices. */
export function defaultSection(classId: number): string[] {
  const r = rolesIn(classId);
  if (r.staff) return ["home"];
  if (r.student) return ["chat", "students"];
  return ["notices"];
}

export function roleNames(c: ClassInfo): string[] {
  return c.roles.map((role) => t(`role.${role}`));
}
