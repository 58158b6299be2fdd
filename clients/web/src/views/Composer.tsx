// The chat composer: text, files from the picker or the phone's camera, pasted images, dropped
// files (progress bars with cancel), and a voice button (hold to record, Opus via MediaRecorder).
import { useEffect, useRef, useState } from "preact/hooks";
import { uploadFile, type UploadHandle } from "../api/files";
import type { Attachment } from "../api/types";
import { asApiError } from "../api/errors";
import { t, tMaybe } from "../i18n";
import { sendTyping } from "../state/chat";
import { toast } from "../state/toasts";
import { Icon } from "./icons";

const MAX_CHARS = 2000;
const MAX_FILES = 9;

interface Pending {
  key: number;
  name: string;
  progress: number;
  handle: UploadHandle;
  done?: Attachment;
}

let nextKey = 1;

export function Composer(props: {
  stream: string;
  draft: string;
  setDraft: (v: string) => void;
  onSend: (body: string, attachmentIds: string[]) => void;
}) {
  const { stream, draft, setDraft } = props;
  const [pending, setPending] = useState<Pending[]>([]);
  const [dragging, setDragging] = useState(false);
  const [recording, setRecording] = useState(false);
  const picker = useRef<HTMLInputElement>(null);
  const camera = useRef<HTMLInputElement>(null);
  const recorder = useRef<MediaRecorder | null>(null);

  function add(files: Iterable<File>) {
    for (const file of files) {
      if (pending.length >= MAX_FILES) break;
      start(file, file.name || "image.png");
    }
  }

  function start(file: Blob, name: string, sendWhenDone = false) {
    const key = nextKey++;
    const handle = uploadFile(file, name, (progress) =>
      setPending((ps) => ps.map((p) => (p.key === key ? { ...p, progress } : p))),
    );
    setPending((ps) => [...ps, { key, name, progress: 0, handle }]);
    handle.done.then(
      (att) => {
        if (sendWhenDone) {
          setPending((ps) => ps.filter((p) => p.key !== key));
          props.onSend("", [att.id]);
        } else setPending((ps) => ps.map((p) => (p.key === key ? { ...p, done: att, progress: 1 } : p)));
      },
      (err) => {
        setPending((ps) => ps.filter((p) => p.key !== key));
        const e = asApiError(err);
        if (e.code !== "cancelled") toast(t("files.failed", name, tMaybe(`error.${e.code}`, e.message)), "error");
      },
    );
  }

  function cancel(p: Pending) {
    p.handle.cancel();
    setPending((ps) => ps.filter((x) => x.key !== p.key));
  }

  const uploading = pending.some((p) => !p.done);
  const ready = pending.filter((p) => p.done).map((p) => (p.done as Attachment).id);
  const canSend = !uploading && (draft.trim().length > 0 || ready.length > 0) && draft.length <= MAX_CHARS;

  function submit(e?: Event) {
    e?.preventDefault();
    if (!canSend) return;
    props.onSend(draft.trim(), ready);
    setPending([]);
  }

  async function startVoice() {
    if (recording) return;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const type = MediaRecorder.isTypeSupported("audio/webm;codecs=opus") ? "audio/webm;codecs=opus" : "audio/ogg;codecs=opus";
      const rec = new MediaRecorder(stream, { mimeType: type });
      const parts: Blob[] = [];
      rec.ondataavailable = (ev) => parts.push(ev.data);
      rec.onstop = () => {
        stream.getTracks().forEach((tr) => tr.stop());
        const blob = new Blob(parts, { type });
        if (blob.size > 0) start(blob, type.startsWith("audio/webm") ? "voice.webm" : "voice.ogg", true);
      };
      rec.start();
      recorder.current = rec;
      setRecording(true);
    } catch {
      toast(t("files.noMic"), "error");
    }
  }

  function stopVoice() {
    recorder.current?.stop();
    recorder.current = null;
    setRecording(false);
  }

  useEffect(() => () => recorder.current?.stop(), []);

  return (
    <form
      class={`composer${dragging ? " dragging" : ""}`}
      onSubmit={submit}
      onDragOver={(e) => {
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => {
        e.preventDefault();
        setDragging(false);
        if (e.dataTransfer?.files) add(Array.from(e.dataTransfer.files));
      }}
    >
      {pending.length ? (
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
      ) : null}
      {dragging ? <p class="drop-hint">{t("files.dropHere")}</p> : null}
      <input
        ref={picker}
        type="file"
        multiple
        hidden
        data-testid="file-picker"
        accept="image/*,audio/*,video/*,.pdf,.docx,.xlsx,.pptx"
        onChange={(e) => {
          add(Array.from(e.currentTarget.files ?? []));
          e.currentTarget.value = "";
        }}
      />
      <input
        ref={camera}
        type="file"
        hidden
        accept="image/*"
        capture="environment"
        onChange={(e) => {
          add(Array.from(e.currentTarget.files ?? []));
          e.currentTarget.value = "";
        }}
      />
      <button type="button" class="btn icon" onClick={() => picker.current?.click()} aria-label={t("files.attach")}>
        <Icon name="clip" size={18} />
      </button>
      <button type="button" class="btn icon camera" onClick={() => camera.current?.click()} aria-label={t("files.camera")}>
        <Icon name="camera" size={18} />
      </button>
      <label class="sr-only" htmlFor={`composer-${stream}`}>
        {t("chat.inputLabel")}
      </label>
      <textarea
        id={`composer-${stream}`}
        rows={1}
        value={draft}
        maxLength={MAX_CHARS}
        placeholder={t("chat.placeholder")}
        onInput={(e) => {
          setDraft(e.currentTarget.value);
          if (e.currentTarget.value) sendTyping(stream);
        }}
        onPaste={(e) => {
          const files = Array.from(e.clipboardData?.files ?? []);
          if (files.length) {
            e.preventDefault();
            add(files);
          }
        }}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            submit();
          }
        }}
      />
      <button
        type="button"
        class={`btn icon voice-button${recording ? " recording" : ""}`}
        aria-label={recording ? t("files.voiceRecording") : t("files.voiceHold")}
        onPointerDown={(e) => {
          e.preventDefault();
          void startVoice();
        }}
        onPointerUp={stopVoice}
        onPointerLeave={() => recording && stopVoice()}
      >
        <Icon name="mic" size={18} />
      </button>
      <button type="submit" class="btn primary send" disabled={!canSend} aria-label={t("chat.send")}>
        <Icon name="send" size={18} />
        <span class="send-label">{t("chat.send")}</span>
      </button>
    </form>
  );
}
