// Files being attached to something not yet sent: uploads with progress and cancel. Used by the
// chat composer, the notice form and homework (assigning it, handing it in).
import { useState } from "preact/hooks";
import { asApiError } from "../api/errors";
import { uploadFile, type UploadHandle } from "../api/files";
import type { Attachment } from "../api/types";
import { t, tMaybe } from "../i18n";
import { toast } from "../state/toasts";

export const MAX_FILES = 9;

export interface Pending {
  key: number;
  name: string;
  progress: number;
  handle: UploadHandle;
  done?: Attachment;
}

let nextKey = 1;

export function useUploads() {
  const [pending, setPending] = useState<Pending[]>([]);

  /** Start uploading; ``then`` (if given) takes the finished file instead of the list. */
  function start(file: Blob, name: string, then?: (att: Attachment) => void) {
    const key = nextKey++;
    const handle = uploadFile(file, name, (progress) =>
      setPending((ps) => ps.map((p) => (p.key === key ? { ...p, progress } : p))),
    );
    setPending((ps) => [...ps, { key, name, progress: 0, handle }]);
    handle.done.then(
      (att) => {
        if (then) {
          setPending((ps) => ps.filter((p) => p.key !== key));
          then(att);
        } else setPending((ps) => ps.map((p) => (p.key === key ? { ...p, done: att, progress: 1 } : p)));
      },
      (err) => {
        setPending((ps) => ps.filter((p) => p.key !== key));
        const e = asApiError(err);
        if (e.code !== "cancelled") toast(t("files.failed", name, tMaybe(`error.${e.code}`, e.message)), "error");
      },
    );
  }

  return {
    pending,
    add(files: Iterable<File>) {
      let n = pending.length;
      for (const file of files) if (n++ < MAX_FILES) start(file, file.name || "image.png");
    },
    start,
    cancel(p: Pending) {
      p.handle.cancel();
      setPending((ps) => ps.filter((x) => x.key !== p.key));
    },
    clear: () => setPending([]),
    uploading: pending.some((p) => !p.done),
    ready: pending.filter((p) => p.done).map((p) => (p.done as Attachment).id),
  };
}

export function PendingFiles(props: { uploads: ReturnType<typeof useUploads> }) {
  const { pending, cancel } = props.uploads;
  if (!pending.length) return null;
  return (
    <ul class="pending-files">
      {pending.map((p) => (
        <li key={p.key} data-upload={p.done ? "ready" : "uploading"}>
          <span class="pending-name">{p.name}</span>
          <progress max={1} value={p.progress} aria-label={t("files.uploading", p.name)} />
          <button type="button" class="link-button" onClick={() => cancel(p)} aria-label={p.done ? t("files.remove") : t("files.cancel")}>
            ×
          </button>
        </li>
      ))}
    </ul>
  );
}

/** A form field: pick files (or take a photo on a phone), see them upload, cancel one. */
export function FileField(props: { uploads: ReturnType<typeof useUploads>; testId: string; label?: string }) {
  const label = props.label ?? t("files.attach");
  return (
    <div class="field">
      <span class="field-label">{label}</span>
      <PendingFiles uploads={props.uploads} />
      <input
        type="file"
        multiple
        data-testid={props.testId}
        aria-label={label}
        accept="image/*,audio/*,video/*,.pdf,.docx,.xlsx,.pptx"
        onChange={(e) => {
          props.uploads.add(Array.from(e.currentTarget.files ?? []));
          e.currentTarget.value = "";
        }}
      />
    </div>
  );
}
