// What the app had, kept so that it opens offline with it (issue #16): who I am, my classes,
// their notices and the last messages of each chat I opened. Kept where the sign-in is kept
// (this tab's sessionStorage, or localStorage with "keep me signed in"), under the person's id,
// and forgotten when they sign out, so a shared device never shows the last person's things.
// Only what was shown is kept; the server's answers replace it as soon as the app is connected.
import { effect } from "@preact/signals";
import type { ApiError } from "../api/errors";
import { auth } from "./auth";

const PREFIX = "homeroom.offline:";

function where(): { store: Storage; key: (name: string) => string } | null {
  const a = auth.value;
  if (!a) return null;
  return { store: a.remember ? localStorage : sessionStorage, key: (name) => `${PREFIX}${a.user.id}:${name}` };
}

/** Keep a copy of what the app shows under ``name``. */
export function keep(name: string, value: unknown): void {
  const w = where();
  if (!w) return;
  try {
    w.store.setItem(w.key(name), JSON.stringify(value));
  } catch {
    // full or refused: the app then opens offline without it
  }
}

/** The copy kept under ``name``, or null. */
export function kept<T>(name: string): T | null {
  const w = where();
  if (!w) return null;
  try {
    const raw = w.store.getItem(w.key(name));
    return raw ? (JSON.parse(raw) as T) : null;
  } catch {
    return null;
  }
}

/** A request that failed because the network is gone (not because it was refused). */
export function unreachable(err: ApiError): boolean {
  return err.code === "network" || err.code === "offline" || err.code === "timeout";
}

function forgetAll(): void {
  for (const store of [localStorage, sessionStorage]) {
    for (let i = store.length - 1; i >= 0; i--) {
      const k = store.key(i);
      if (k?.startsWith(PREFIX)) store.removeItem(k);
    }
  }
}

// Signing out (or another person signing in) forgets everything kept.
let keptFor: number | null = auth.value?.user.id ?? null;
effect(() => {
  const user = auth.value?.user.id ?? null;
  if (user === keptFor) return;
  if (keptFor !== null) forgetAll();
  keptFor = user;
});
