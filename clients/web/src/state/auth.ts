// Tokens: a short-lived access token and a refresh token, kept in sessionStorage (this tab only)
// or, when the person asks to stay signed in, localStorage. Refreshed before the access token
// expires, and whenever the server says it is no longer good.
import { signal } from "@preact/signals";
import { api, setTokenSource } from "../api/rest";
import type { Tokens } from "../api/types";

const KEY = "homeroom.auth";

export interface Auth {
  access: string;
  refresh: string;
  /** When the access token expires (ms since the epoch, by this machine's clock). */
  expiresAt: number;
  user: Tokens["user"];
  remember: boolean;
}

function load(): Auth | null {
  for (const store of [sessionStorage, localStorage]) {
    try {
      const raw = store.getItem(KEY);
      if (raw) return JSON.parse(raw) as Auth;
    } catch {
      // unreadable: ignore
    }
  }
  return null;
}

export const auth = signal<Auth | null>(load());
/** Why the person was signed out (shown on the sign-in screen), as a message key or text. */
export const signedOutReason = signal<string | null>(null);

function save(value: Auth | null): void {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
  if (value) (value.remember ? localStorage : sessionStorage).setItem(KEY, JSON.stringify(value));
  auth.value = value;
  schedule();
}

function adopt(tokens: Tokens, remember: boolean): void {
  save({
    access: tokens.access_token,
    refresh: tokens.refresh_token,
    expiresAt: Date.now() + tokens.expires_in * 1000,
    user: tokens.user,
    remember,
  });
}

let timer: ReturnType<typeof setTimeout> | null = null;

function schedule(): void {
  if (timer) clearTimeout(timer);
  timer = null;
  const a = auth.value;
  if (!a) return;
  // Refresh at four fifths of the token's life, at least 5 s from now.
  const life = a.expiresAt - Date.now();
  timer = setTimeout(() => void refreshTokens(), Math.max(5000, life * 0.8));
}

let inflight: Promise<boolean> | null = null;

/** Trade the refresh token for new tokens (one at a time); false means: sign in again. */
export function refreshTokens(): Promise<boolean> {
  if (inflight) return inflight;
  inflight = (async () => {
    const current = auth.value;
    if (!current) return false;
    try {
      adopt(await api.refresh(current.refresh), current.remember);
      return true;
    } catch (err) {
      // Another tab may have rotated the shared token meanwhile: take theirs.
      const stored = load();
      if (stored && stored.refresh !== current.refresh) {
        auth.value = stored;
        schedule();
        return true;
      }
      const code = (err as { code?: string }).code;
      if (code === "unauthorized") signOut("auth.expired");
      return false;
    } finally {
      inflight = null;
    }
  })();
  return inflight;
}

export async function signIn(username: string, password: string, remember: boolean): Promise<void> {
  adopt(await api.login(username, password), remember);
  signedOutReason.value = null;
}

export async function register(body: {
  username: string;
  password: string;
  display_name: string;
  join_code: string;
}): Promise<void> {
  adopt(await api.register(body), false);
  signedOutReason.value = null;
}

export function signOut(reason: string | null = null): void {
  const current = auth.value;
  if (current) void api.logout(current.refresh).catch(() => undefined);
  signedOutReason.value = reason;
  save(null);
}

setTokenSource({ access: () => auth.value?.access ?? null, refresh: refreshTokens });

window.addEventListener("storage", (e) => {
  if (e.key !== KEY || e.storageArea !== localStorage) return;
  const next = load();
  if (next && auth.value?.remember) {
    auth.value = next;
    schedule();
  }
});

schedule();
