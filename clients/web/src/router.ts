// Hash routes (the server serves index.html at "/" only): #/class/3/notices/12 and so on.
import { signal } from "@preact/signals";

export type Section =
  | "home"
  | "chat"
  | "messages"
  | "notices"
  | "qa"
  | "links"
  | "members"
  | "lessons"
  | "polls"
  | "homework"
  | "records"
  | "attendance";

export type Route =
  | { name: "login" }
  | { name: "register" }
  | { name: "home" }
  | { name: "join"; code?: string }
  | { name: "school" }
  /** A private conversation by its id alone (where a push notification of a message leads). */
  | { name: "conv"; id: number }
  | { name: "class"; classId: number; section: Section; sub: string | null; id: number | null }
  | { name: "notfound"; path: string };

const SECTIONS: Section[] = [
  "home",
  "chat",
  "messages",
  "notices",
  "qa",
  "links",
  "members",
  "lessons",
  "polls",
  "homework",
  "records",
  "attendance",
];

export function parse(hash: string): Route {
  const path = hash.replace(/^#/, "") || "/";
  const parts = path.split("/").filter(Boolean);
  if (parts.length === 0) return { name: "home" };
  if (parts[0] === "login" && parts.length === 1) return { name: "login" };
  if (parts[0] === "register" && parts.length === 1) return { name: "register" };
  if (parts[0] === "join" && parts.length === 1) return { name: "join" };
  // A class's QR code: the join page with its code filled in.
  if (parts[0] === "join" && parts.length === 2) return { name: "join", code: decodeURIComponent(parts[1]) };
  if (parts[0] === "school" && parts.length === 1) return { name: "school" };
  if (parts[0] === "conv" && parts.length === 2 && /^\d+$/.test(parts[1])) return { name: "conv", id: Number(parts[1]) };
  if (parts[0] === "class" && parts.length >= 2 && /^\d+$/.test(parts[1])) {
    const section = (parts[2] ?? "home") as Section;
    if (!SECTIONS.includes(section) || parts.length > 4) return { name: "notfound", path };
    const sub = parts[3] ?? null;
    const id = sub !== null && /^\d+$/.test(sub) ? Number(sub) : null;
    return { name: "class", classId: Number(parts[1]), section, sub, id };
  }
  return { name: "notfound", path };
}

export const route = signal<Route>(parse(location.hash));

window.addEventListener("hashchange", () => {
  route.value = parse(location.hash);
});

export function navigate(path: string, replace = false): void {
  const hash = `#${path}`;
  if (location.hash === hash) return;
  if (replace) {
    history.replaceState(null, "", hash);
    route.value = parse(hash);
  } else {
    location.hash = hash;
  }
}

export const classPath = (classId: number, ...rest: (string | number)[]) =>
  ["/class", classId, ...rest].join("/");
