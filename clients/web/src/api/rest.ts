// REST under /api/v1 (realtime/transport/rest.py): JSON in and out, errors as {ok:false, error}.
import { locale } from "../i18n";
import { ApiError, apiErrorOf } from "./errors";
import type {
  LinkRequest,
  Me,
  Members,
  Rollup,
  SchoolClass,
  Tokens,
} from "./types";
import type { RosterResult, SchoolLink, SchoolOverview, SchoolStorage } from "./school";

/** Where the access token comes from, and how to get a new one when it is refused. */
export interface TokenSource {
  access(): string | null;
  /** Trade the refresh token for new tokens; false when the person must sign in again. */
  refresh(): Promise<boolean>;
}

let tokens: TokenSource = { access: () => null, refresh: async () => false };

export function setTokenSource(source: TokenSource): void {
  tokens = source;
}

/** The current access token (for requests fetch cannot make: uploads with progress). */
export function accessToken(): string | null {
  return tokens.access();
}

interface Options {
  auth?: boolean;
  body?: unknown;
}

async function send(method: string, path: string, opts: Options): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const token = opts.auth === false ? null : tokens.access();
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    return await fetch(path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      credentials: "omit",
    });
  } catch (err) {
    throw new ApiError("network", err instanceof Error ? err.message : String(err));
  }
}

async function errorOf(resp: Response): Promise<ApiError> {
  try {
    const body = await resp.json();
    if (body && body.ok === false && body.error) {
      return apiErrorOf(body.error, resp.status);
    }
  } catch {
    // not JSON: fall through
  }
  return new ApiError(resp.status >= 500 ? "internal" : "bad_request", resp.statusText, resp.status);
}

/** One request; an expired access token is refreshed once and the request repeated. */
async function call(method: string, path: string, opts: Options = {}): Promise<Response> {
  let resp = await send(method, path, opts);
  if (resp.status === 401 && opts.auth !== false && (await tokens.refresh())) {
    resp = await send(method, path, opts);
  }
  if (!resp.ok) throw await errorOf(resp);
  return resp;
}

export async function rest<T>(method: string, path: string, opts: Options = {}): Promise<T> {
  const resp = await call(method, path, opts);
  return (await resp.json()) as T;
}

/** A roster CSV (all rows or none). A refusal keeps its rejected lines: {line, reason}. */
export async function uploadRoster(
  classId: number,
  text: string,
): Promise<{ ok: true; result: RosterResult } | { ok: false; error: ApiError; rejected: { line: number; reason: string }[] }> {
  const headers: Record<string, string> = { "Content-Type": "text/csv; charset=utf-8", Accept: "application/json" };
  const token = tokens.access();
  if (token) headers.Authorization = `Bearer ${token}`;
  const resp = await fetch(`/api/v1/classes/${classId}/roster`, { method: "POST", headers, body: text, credentials: "omit" });
  const body = await resp.json().catch(() => null);
  if (resp.ok && body) return { ok: true, result: body as RosterResult };
  const error = body?.error ? apiErrorOf(body.error, resp.status) : new ApiError("internal", resp.statusText, resp.status);
  return { ok: false, error, rejected: Array.isArray(body?.error?.rejected) ? body.error.rejected : [] };
}

/** An image behind the bearer token, as an object URL (revoke it when done). */
export async function objectUrl(path: string): Promise<string> {
  const resp = await call("GET", path);
  return URL.createObjectURL(await resp.blob());
}

/** A file behind the bearer token (a plain link cannot carry it): fetch it and save the blob. */
export async function download(path: string, fallbackName: string): Promise<void> {
  const resp = await call("GET", path);
  const blob = await resp.blob();
  const disposition = resp.headers.get("Content-Disposition") ?? "";
  const match = /filename="?([^";]+)"?/.exec(disposition);
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = match ? match[1] : fallbackName;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// --- typed endpoints ---------------------------------------------------------------------------

export const api = {
  login: (username: string, password: string) =>
    rest<Tokens>("POST", "/api/v1/auth/login", { auth: false, body: { username, password } }),
  refresh: (refresh_token: string) =>
    rest<Tokens>("POST", "/api/v1/auth/refresh", { auth: false, body: { refresh_token } }),
  logout: (refresh_token: string) =>
    rest<object>("POST", "/api/v1/auth/logout", { auth: false, body: { refresh_token } }),
  register: (body: { username: string; password: string; display_name: string; join_code: string }) =>
    rest<Tokens>("POST", "/api/v1/auth/register", { auth: false, body }),
  me: () => rest<Me>("GET", "/api/v1/me"),
  join: (body: { join_code: string; child_name: string; relationship: string; phone?: string }) =>
    rest<{ link_id?: number }>("POST", "/api/v1/join", { body }),
  schoolClasses: () => rest<{ classes: SchoolClass[] }>("GET", "/api/v1/classes"),
  members: (classId: number) => rest<Members>("GET", `/api/v1/classes/${classId}/members`),
  links: (classId: number) =>
    rest<{ links: LinkRequest[] }>("GET", `/api/v1/classes/${classId}/links`),
  approveLink: (linkId: number) => rest<object>("POST", `/api/v1/links/${linkId}/approve`),
  rejectLink: (linkId: number) => rest<object>("POST", `/api/v1/links/${linkId}/reject`),
  school: () => rest<SchoolOverview>("GET", "/api/v1/school"),
  schoolLinks: () => rest<{ links: SchoolLink[] }>("GET", "/api/v1/school/links"),
  setTimeZone: (time_zone: string) => rest<object>("PUT", "/api/v1/school/settings", { body: { time_zone } }),
  setGuardianHistory: (open: boolean) =>
    rest<object>("PUT", "/api/v1/school/settings", { body: { guardian_chat_history: open } }),
  schoolStorage: () => rest<SchoolStorage>("GET", "/api/v1/school/storage"),
  setRetention: (retention_days: number) =>
    rest<SchoolStorage>("PUT", "/api/v1/school/storage", { body: { retention_days } }),
  createYear: (name: string) => rest<object>("POST", "/api/v1/school/years", { body: { name } }),
  archiveYear: (id: number) => rest<object>("POST", `/api/v1/school/years/${id}/archive`),
  createClass: (name: string, school_year_id: number | null) =>
    rest<object>("POST", "/api/v1/school/classes", { body: { name, school_year_id } }),
  archiveClass: (id: number) => rest<object>("POST", `/api/v1/classes/${id}/archive`),
  assignTeacher: (classId: number, user_id: number, role: string) =>
    rest<object>("POST", `/api/v1/classes/${classId}/teachers`, { body: { user_id, role } }),
  moveStudent: (classId: number, student_id: number, to_class_id: number) =>
    rest<object>("POST", `/api/v1/classes/${classId}/move`, { body: { student_id, to_class_id } }),
  receipts: (noticeId: number) => rest<Rollup>("GET", `/api/v1/notices/${noticeId}/receipts`),
  // Headers, 是/否 and states in the page's language; times in the school's zone.
  receiptsCsv: (noticeId: number) =>
    download(
      `/api/v1/notices/${noticeId}/receipts.csv?lang=${encodeURIComponent(locale.value)}`,
      `notice-${noticeId}-receipts.csv`,
    ),
};
