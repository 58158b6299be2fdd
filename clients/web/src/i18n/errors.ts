// Errors in the person's language: the server's stable code (realtime/errors.py CODES) and its
// structured details (REASONS, retry_after_s) pick a text of the catalogue. The server's English
// message is never shown; tests/test_error_catalogue.py checks every code and reason has a text.
import type { ApiError } from "../api/errors";
import { t, tDynamic, tMaybe } from ".";

/** "59 分钟" / "59 minutes": a wait, rounded up to the unit a person reads. */
export function formatWait(seconds: number): string {
  const s = Math.max(1, Math.ceil(seconds));
  if (s < 60) return t("error.wait.s", s);
  if (s < 3600) return t("error.wait.m", Math.ceil(s / 60));
  return t("error.wait.h", Math.ceil(s / 3600));
}

/** The heading for a refused request: the reason's own text when there is one (a locked
 * meeting says it is locked), else what the code means. */
export function describeError(err: ApiError): string {
  const reason = typeof err.details.reason === "string" ? err.details.reason : undefined;
  const wait = formatWait(Number(err.details.retry_after_s ?? 1));
  if (reason) {
    const text = tDynamic(`error.${err.code}.${reason}`, wait);
    if (text) return text;
  }
  return tDynamic(`error.${err.code}`) ?? t("error.generic");
}

/** Why the browser refused a camera, microphone or screen, in the person's language (the
 * browser's own message is English whatever the page's language). */
export function describeDeviceError(err: unknown): string {
  const name = err instanceof DOMException || err instanceof Error ? err.name : "";
  return tMaybe(`device.${name}`, t("device.other"));
}
