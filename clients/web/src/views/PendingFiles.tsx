// Files being attached to something not yet sent: uploads with progress and cancel, and the ways
// to add them (picker, camera, paste, drop). Used by the chat composer, the notice form and the
// Q&A forms (a question, an answer), and homework (assigning it, handing it in).
import { useRef, useState } from "preact/hooks";
import { asApiError } from "../api/errors";
import { uploadFile, type UploadHandle } from "../api/files";
import type { Attachment } from "../api/types";
import { t, tMaybe } from "../i18n";
import { toast } from "../state/toasts";
import { Icon } from "./icons";

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
        // too_large's general text is about texts ("too long"): a file is too big.
        const why = e.code === "too_large" ? t("files.tooLarge") : tMaybe(`error.${e.code}`, e.message);
        if (e.code !== "cancelled") toast(t("files.failed", name, why), "error");
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

export type Uploads = ReturnType<typeof useUploads>;
export const ACCEPT = "image/*,audio/*,video/*,.pdf,.docx,.xlsx,.pptx";

/** Handlers that make an element take dropped files (``setDragging`` shows a hint meanwhile). */
export function dropFiles(uploads: Uploads, setDragging?: (on: boolean) => void) {
  return {
    onDragOver(e: DragEvent) {
      e.preventDefault();
      setDragging?.(true);
    },
    onDragLeave() {
      setDragging?.(false);
    },
    onDrop(e: DragEvent) {
      e.preventDefault();
      setDragging?.(false);
      if (e.dataTransfer?.files?.length) uploads.add(Array.from(e.dataTransfer.files));
    },
  };
}

/** A paste handler for a text field: pasted files (a screenshot, a copied photo) are attached. */
export function pasteFiles(uploads: Uploads) {
  return (e: ClipboardEvent) => {
    const files = Array.from(e.clipboardData?.files ?? []);
    if (files.length) {
      e.preventDefault();
      uploads.add(files);
    }
  };
}

/** The paper-clip (file picker) and camera buttons. */
export function AttachButtons(props: { uploads: Uploads; testId?: string }) {
  const picker = useRef<HTMLInputElement>(null);
  const camera = useRef<HTMLInputElement>(null);
  const take = (e: Event) => {
    const input = e.currentTarget as HTMLInputElement;
    props.uploads.add(Array.from(input.files ?? []));
    input.value = "";
  };
  return (
    <>
      <input ref={picker} type="file" multiple hidden data-testid={props.testId ?? "file-picker"} accept={ACCEPT} onChange={take} />
      <input ref={camera} type="file" hidden accept="image/*" capture="environment" onChange={take} />
      <button type="button" class="btn icon" onClick={() => picker.current?.click()} aria-label={t("files.attach")}>
        <Icon name="clip" size={18} />
      </button>
      <button type="button" class="btn icon camera" onClick={() => camera.current?.click()} aria-label={t("files.camera")}>
        <Icon name="camera" size={18} />
      </button>
    </>
  );
}

export function PendingFiles(props: { uploads: Uploads }) {
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
