// A class's members (REST). Loading it is also how a class page learns whether it may be opened:
// the server refuses people who are not members, and the page shows its reason.
import { signal } from "@preact/signals";
import { asApiError, type ApiError } from "../api/errors";
import { api } from "../api/rest";
import type { Members } from "../api/types";
import { keep, kept, unreachable } from "./offline";
import { onReset, onSynced } from "./session";

export interface ClassEntry {
  data?: Members;
  error?: ApiError;
  loading: boolean;
  /** ``data`` is the copy kept from before (offline): read again once connected. */
  kept?: boolean;
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
    const data = await api.members(classId);
    put(classId, { data, loading: false });
    keep(`class:${classId}`, data);
  } catch (err) {
    const e = asApiError(err);
    const before = unreachable(e) ? (current?.data ?? kept<Members>(`class:${classId}`)) : null;
    put(classId, before ? { data: before, loading: false, kept: true } : { error: e, loading: false });
  }
}

// Connected again: classes shown from the kept copy, or not reached, are read afresh.
onSynced(() => {
  for (const [id, entry] of Object.entries(classes.value)) {
    const again = entry.kept || (entry.error && unreachable(entry.error));
    if (again && !entry.loading) void loadClass(Number(id), true);
  }
});

export function memberName(classId: number, userId: number): string {
  return classes.value[classId]?.data?.members.find((m) => m.id === userId)?.name ?? "";
}

onReset(() => (classes.value = {}));
