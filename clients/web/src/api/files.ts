// Attachments (docs/protocol.md §13): resumable uploads in chunks, signed download links.
import { ApiError } from "./errors";
import { accessToken, rest } from "./rest";
import type { Attachment } from "./types";

const CHUNK = 1024 * 1024;

interface Upload {
  id: string;
  size: number;
  offset: number;
  status: "uploading" | "ready";
  attachment?: Attachment;
}

export interface UploadHandle {
  done: Promise<Attachment>;
  cancel(): void;
}

/** PATCH one chunk with progress events (fetch cannot report upload progress). */
function patch(id: string, offset: number, blob: Blob, onProgress: (sent: number) => void, xhrs: XMLHttpRequest[]): Promise<Upload> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhrs.push(xhr);
    xhr.open("PATCH", `/api/v1/uploads/${id}`);
    const t = accessToken();
    if (t) xhr.setRequestHeader("Authorization", `Bearer ${t}`);
    xhr.setRequestHeader("Upload-Offset", String(offset));
    xhr.setRequestHeader("Content-Type", "application/offset+octet-stream");
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      let body: { ok?: boolean; error?: { code: string; message: string }; upload?: Upload } = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // not JSON
      }
      if (xhr.status < 300 && body.upload) resolve(body.upload);
      else reject(new ApiError(body.error?.code ?? "internal", body.error?.message ?? xhr.statusText, xhr.status));
    };
    xhr.onerror = () => reject(new ApiError("network", "the connection dropped"));
    xhr.onabort = () => reject(new ApiError("cancelled", "cancelled"));
    xhr.send(blob);
  });
}

// Errors after which an upload goes on from the offset the server has: the connection dropped
// (a phone in a lift), the chunk was cut off or sent at another offset, the access token expired
// (asking the offset refreshes it), the server or a proxy in front of it is briefly unavailable.
const RESUMABLE = ["network", "conflict", "bad_request", "unauthorized", "unavailable", "internal"];
// Tries in a row without progress before the upload is given up (about five minutes of waiting).
const MAX_FAILURES = 25;
const MAX_WAIT_MS = 15_000;

/** Wait ``ms``, or less if the browser says the network is back; at once if cancelled. */
function pause(ms: number, cancelled: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      clearInterval(poll);
      window.removeEventListener("online", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const poll = setInterval(() => cancelled() && done(), 200);
    window.addEventListener("online", done);
  });
}

/** Upload a file in chunks. An interrupted one continues from the offset the server has, not
 * from the start: it waits for the network to come back (backing off, up to MAX_FAILURES tries
 * in a row) and asks the server where to go on. */
export function uploadFile(file: Blob, name: string, onProgress: (fraction: number) => void): UploadHandle {
  const xhrs: XMLHttpRequest[] = [];
  let cancelled = false;
  let uploadId: string | null = null;
  const isCancelled = () => cancelled;
  const done = (async () => {
    const created = await rest<{ upload: Upload }>("POST", "/api/v1/uploads", { body: { name, size: file.size } });
    let up = created.upload;
    uploadId = up.id;
    let failures = 0;
    // After a failed try: wait, then ask the server for its offset (which may fail too).
    const recover = async (err: unknown): Promise<Upload> => {
      for (;;) {
        const e = err as ApiError;
        if (cancelled) throw new ApiError("cancelled", "cancelled");
        if (!RESUMABLE.includes(e.code) || ++failures > MAX_FAILURES) throw err;
        if (failures > 1 || e.code === "network") {
          await pause(Math.min(500 * 2 ** (failures - 1), MAX_WAIT_MS), isCancelled);
        }
        if (cancelled) throw new ApiError("cancelled", "cancelled");
        try {
          return (await rest<{ upload: Upload }>("GET", `/api/v1/uploads/${up.id}`)).upload;
        } catch (again) {
          err = again;
        }
      }
    };
    try {
      while (up.status === "uploading") {
        if (cancelled) throw new ApiError("cancelled", "cancelled");
        const start = up.offset;
        const end = Math.min(start + CHUNK, file.size);
        try {
          up = await patch(up.id, start, file.slice(start, end), (sent) => onProgress((start + sent) / file.size), xhrs);
          failures = 0;
        } catch (err) {
          const before = start;
          up = await recover(err);
          if (up.offset > before) failures = 0; // the server kept part of the cut chunk
        }
      }
    } catch (err) {
      // Given up (too large for its kind, the network never came back): the declared size
      // stops counting against the school's quota now, not when the server drops it a day later.
      if (!cancelled) void rest("DELETE", `/api/v1/uploads/${up.id}`).catch(() => undefined);
      throw err;
    }
    onProgress(1);
    return up.attachment as Attachment;
  })();
  return {
    done,
    cancel() {
      cancelled = true;
      for (const x of xhrs) x.abort();
      if (uploadId) void rest("DELETE", `/api/v1/uploads/${uploadId}`).catch(() => undefined);
    },
  };
}

type Variant = "original" | "preview" | "thumb";
const cache = new Map<string, { url: string; expires: number }>();

/** Signed links (cached until shortly before they expire). */
export async function fileLinks(ids: string[], variant: Variant): Promise<Record<string, string>> {
  const now = Date.now() / 1000;
  const out: Record<string, string> = {};
  const missing: string[] = [];
  for (const id of ids) {
    const hit = cache.get(`${variant}:${id}`);
    if (hit && hit.expires - 30 > now) out[id] = hit.url;
    else missing.push(id);
  }
  if (missing.length) {
    const got = await rest<{ links: Record<string, string>; expires: number }>("POST", "/api/v1/uploads/links", {
      body: { ids: missing, variant },
    });
    for (const [id, url] of Object.entries(got.links)) {
      cache.set(`${variant}:${id}`, { url, expires: got.expires });
      out[id] = url;
    }
  }
  return out;
}
