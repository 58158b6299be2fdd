// Who I am: my classes with my roles there, my children (guardians), my pending link requests.
import { effect, signal } from "@preact/signals";
import { asApiError, type ApiError } from "../api/errors";
import { api } from "../api/rest";
import type { ClassInfo, Me, Role } from "../api/types";
import { auth } from "./auth";
import { keep, kept, unreachable } from "./offline";
import { onReset, onStream, onSynced } from "./session";

export const me = signal<Me | null>(null);
export const meError = signal<ApiError | null>(null);

let loading: Promise<void> | null = null;

export function loadMe(): Promise<void> {
  if (loading) return loading;
  loading = api
    .me()
    .then((value) => {
      me.value = value;
      meError.value = null;
      keep("me", value);
    })
    .catch((err) => {
      const e = asApiError(err);
      // Offline: who I was when last connected (read again once connected).
      const before = unreachable(e) ? (me.value ?? kept<Me>("me")) : null;
      if (before) me.value = before;
      else meError.value = e;
    })
    .finally(() => {
      loading = null;
    });
  return loading;
}

const STAFF: Role[] = ["head_teacher", "teacher", "assistant_teacher"];
const TEACHING: Role[] = ["head_teacher", "teacher"];

export function classInfo(classId: number): ClassInfo | undefined {
  return me.value?.classes.find((c) => c.id === classId);
}

export interface ClassRoles {
  staff: boolean;
  teacher: boolean;
  student: boolean;
  guardian: boolean;
}

/** What I am to a class (an unknown class: nothing). */
export function rolesIn(classId: number): ClassRoles {
  const info = classInfo(classId);
  const roles = info?.roles ?? [];
  return {
    staff: roles.some((r) => STAFF.includes(r)),
    teacher: roles.some((r) => TEACHING.includes(r)),
    student: roles.includes("student"),
    guardian: roles.includes("guardian") && (info?.children.length ?? 0) > 0,
  };
}

// A link decided or a conversation opened changes my classes: read them again.
onStream("user", (ev) => {
  if (ev.type === "link.decided") void loadMe();
});
let lastStreams = "";
onSynced((ack) => {
  const key = ack.streams
    .map((s) => s.stream)
    .filter((s) => !s.startsWith("conv:"))
    .sort()
    .join(",");
  if (key !== lastStreams) {
    lastStreams = key;
    void loadMe();
  }
});
onReset(() => {
  me.value = null;
  meError.value = null;
  lastStreams = "";
});

let signedInAs: number | null = null;
effect(() => {
  const user = auth.value?.user.id ?? null;
  if (user !== signedInAs) {
    signedInAs = user;
    if (user !== null) void loadMe();
  }
});
