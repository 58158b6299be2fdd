// The chat composer: text, files from the picker or the phone's camera, pasted images, dropped
// files (progress bars with cancel), and a voice button (hold to record, Opus via MediaRecorder).
import { useEffect, useRef, useState } from "preact/hooks";
import { t } from "../i18n";
import { sendTyping } from "../state/chat";
import { toast } from "../state/toasts";
import { Icon } from "./icons";
import { AttachButtons, dropFiles, PendingFiles, pasteFiles, useUploads } from "./PendingFiles";

const MAX_CHARS = 2000;
export function Composer(props: {
  stream: string;
  draft: string;
  setDraft: (v: string) => void;
  onSend: (body: string, attachmentIds: string[]) => void;
}) {
  const { stream, draft, setDraft } = props;
  const uploads = useUploads();
  const [dragging, setDragging] = useState(false);
  const [recording, setRecording] = useState(false);
  const recorder = useRef<MediaRecorder | null>(null);

  const canSend = !uploads.uploading && (draft.trim().length > 0 || uploads.ready.length > 0) && draft.length <= MAX_CHARS;

  function submit(e?: Event) {
    e?.preventDefault();
    if (!canSend) return;
    props.onSend(draft.trim(), uploads.ready);
    uploads.clear();
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
        const name = type.startsWith("audio/webm") ? "voice.webm" : "voice.ogg";
        if (blob.size > 0) uploads.start(blob, name, (att) => props.onSend("", [att.id]));
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
      {...dropFiles(uploads, setDragging)}
    >
      <PendingFiles uploads={uploads} />
      {dragging ? <p class="drop-hint">{t("files.dropHere")}</p> : null}
      <AttachButtons uploads={uploads} />
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
        onPaste={pasteFiles(uploads)}
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
