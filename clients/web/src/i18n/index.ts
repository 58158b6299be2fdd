// Message catalogues and locale-aware formatting. Simplified Chinese by default; the choice is
// kept in localStorage. Every visible text comes from a catalogue: zh-CN.ts is the reference
// (its type is the catalogue's type), en.ts must have every key.
import { signal } from "@preact/signals";
import en from "./en";
import zhCN, { type Messages } from "./zh-CN";

export type Locale = "zh-CN" | "en";
export const LOCALES: Locale[] = ["zh-CN", "en"];
export type MessageKey = keyof Messages;
type Args<K extends MessageKey> = Messages[K] extends (...a: infer A) => string ? A : [];

const catalogues: Record<Locale, Messages> = { "zh-CN": zhCN, en };
const STORAGE_KEY = "homeroom.locale";

function initial(): Locale {
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (saved && (LOCALES as string[]).includes(saved)) return saved as Locale;
  } catch {
    // storage unavailable
  }
  return "zh-CN";
}

export const locale = signal<Locale>(initial());
document.documentElement.lang = locale.value;

export function setLocale(next: Locale): void {
  locale.value = next;
  document.documentElement.lang = next;
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    // storage unavailable: the choice lasts for this page only
  }
}

/** The text of a key in the current locale (reading it subscribes the component). */
export function t<K extends MessageKey>(key: K, ...args: Args<K>): string {
  const entry = (catalogues[locale.value][key] ?? zhCN[key]) as unknown;
  return typeof entry === "function" ? (entry as (...a: unknown[]) => string)(...args) : String(entry);
}

/** A key built at run time (an error code, a state name); the fallback when it is unknown. */
export function tMaybe(key: string, fallback: string): string {
  const cat = catalogues[locale.value] as Record<string, unknown>;
  const entry = cat[key];
  return typeof entry === "string" ? entry : fallback;
}

/** A key built at run time whose entry may take arguments; undefined when it is unknown. */
export function tDynamic(key: string, ...args: unknown[]): string | undefined {
  const entry = (catalogues[locale.value] as Record<string, unknown>)[key];
  if (typeof entry === "function") return (entry as (...a: unknown[]) => string)(...args);
  return typeof entry === "string" ? entry : undefined;
}

// --- dates, times, numbers (Intl, in the chosen locale) ---------------------------------------

function fmt(opts: Intl.DateTimeFormatOptions) {
  const cache = new Map<string, Intl.DateTimeFormat>();
  return (l: Locale) => {
    let f = cache.get(l);
    if (!f) cache.set(l, (f = new Intl.DateTimeFormat(l, opts)));
    return f;
  };
}
const timeFmt = fmt({ hour: "2-digit", minute: "2-digit" });
const dateTimeFmt = fmt({ dateStyle: "medium", timeStyle: "short" });
const dayFmt = fmt({ month: "short", day: "numeric", weekday: "short" });

/** Server times are seconds since the epoch. */
export function formatTime(ts: number): string {
  return timeFmt(locale.value).format(new Date(ts * 1000));
}

export function formatDateTime(ts: number): string {
  return dateTimeFmt(locale.value).format(new Date(ts * 1000));
}

export function formatDay(ts: number): string {
  return dayFmt(locale.value).format(new Date(ts * 1000));
}

/** "14:05" today, "Mon, Nov 24 14:05" another day. */
export function formatWhen(ts: number): string {
  const d = new Date(ts * 1000);
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return formatTime(ts);
  return `${formatDay(ts)} ${formatTime(ts)}`;
}

export function formatRelative(ts: number): string {
  const diff = ts - Date.now() / 1000;
  const rtf = new Intl.RelativeTimeFormat(locale.value, { numeric: "auto" });
  const abs = Math.abs(diff);
  if (abs < 60) return rtf.format(Math.round(diff), "second");
  if (abs < 3600) return rtf.format(Math.round(diff / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(diff / 3600), "hour");
  return rtf.format(Math.round(diff / 86400), "day");
}

export function formatPercent(part: number, whole: number): string {
  const value = whole ? part / whole : 0;
  return new Intl.NumberFormat(locale.value, { style: "percent", maximumFractionDigits: 0 }).format(
    value,
  );
}

/** A size in bytes, in the unit that fits: "512 KB", "1.5 GB". */
export function formatBytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit >= 2 && value < 100 ? 1 : 0;
  const text = new Intl.NumberFormat(locale.value, { maximumFractionDigits: digits }).format(value);
  return `${text} ${units[unit]}`;
}

/** "A、B和C" / "A, B, and C". */
export function formatList(items: string[]): string {
  return new Intl.ListFormat(locale.value, { style: "long", type: "conjunction" }).format(items);
}
