/** A refused request: ``code`` is the server's stable error code (realtime/errors.py). */
export class ApiError extends Error {
  readonly code: string;
  readonly status?: number;
  /** The server's structured details: ``reason`` (realtime/errors.py REASONS) and the numbers
   * a message needs (``retry_after_s``). ``message`` is the server's English: never shown. */
  readonly details: ErrorDetails;

  constructor(code: string, message: string, status?: number, details?: unknown) {
    super(message);
    this.code = code;
    this.status = status;
    this.details = details && typeof details === "object" ? (details as ErrorDetails) : {};
  }
}

export type ErrorDetails = { reason?: string; retry_after_s?: number; [k: string]: unknown };

/** The error body of a Socket.IO ack or a REST response. */
export function apiErrorOf(err: any, status?: number): ApiError {
  return new ApiError(String(err?.code ?? "internal"), String(err?.message ?? "no answer"), status, err?.details);
}

/** Errors the client itself raises, beside the server's codes. */
export const CLIENT_CODES = ["network", "timeout", "offline"] as const;

export function asApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ApiError("network", message);
}
