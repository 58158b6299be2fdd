/** A refused request: ``code`` is the server's stable error code (realtime/errors.py). */
export class ApiError extends Error {
  readonly code: string;
  readonly status?: number;

  constructor(code: string, message: string, status?: number) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** Errors the client itself raises, beside the server's codes. */
export const CLIENT_CODES = ["network", "timeout", "offline"] as const;

export function asApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ApiError("network", message);
}
