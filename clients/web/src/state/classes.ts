// A class's members (REST). Loading it is also how a class page learns whether it may be opened:
// the server refuses people who are not members, and the page shows its reason.
import { signal } from "@preact/signals";
import { asApiError, type ApiError } from "../api/errors";
import { api } from "../api/rest";
import type { Members } from "../api/types";
import { onReset } from "./session";

export interface ClassEntry {
  data?: Members;
  error?: ApiError;
  loading: boolean;
}

export const classes = signal<Record<number, ClassEntry>>({});

function put(classId: number, entry: ClassEntry): void {
  classes.value = { ...classes.value, [classId]: entry };
}

export async function loadClass(classId: number, force = false): Promise<void> {
  const current = classes.value[classId];
  if (current && (current.loading || (current.data && !force))) return;
  put(classId, { ...current, loading: true });
  try {
    put(classId, { data: await api.members(classId), loading: false });
  } catch (err) {
    put(classId, { error: asApiError(err), loading: false });
  }
}

export function memberName(classId: number, userId: number): string {
  return classes.value[classId]?.data?.members.find((m) => m.id === userId)?.name ?? "";
}

onReset(() => (classes.value = {}));
