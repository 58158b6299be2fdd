// The chat composer: text, files from the picker or the phone's camera, pasted images, dropped
// files (progress bars with cancel), and a voice button (hold to record, Opus via MediaRecorder).
import { useEffect, useRef, useState } from "preact/hooks";
import { t } from "../i18n";
import { sendTyping } from "../state/chat";
import { toast } from "../state/toasts";
import { Icon } from "./icons";
import { AttachButtons, dropFiles, PendingFiles, pasteFiles, useUploads } from "./PendingFiles";
import type { Person } from "./chatParts";

const MAX_CHARS = 2000;
// A voice message shorter than this was a tap, not something said: not sent.
const MIN_VOICE_MS = 1000;
export function Composer(props: {
  stream: string;
  draft: string;
  setDraft: (v: string) => void;
  onSend: (body: string, attachmentIds: string[], mentions: number[]) => void;
  /** Who can be @mentioned here (class chats); none: no mentions. */
  people?: Person[];
}) {
  const { stream, draft, setDraft } = props;
  const input = useRef<HTMLTextAreaElement>(null);
  // The people picked from the @ list; sent as mentions while their "@name" is in the text.
  const [picked, setPicked] = useState<Person[]>([]);
  const [query, setQuery] = useState<string | null>(null);
  const [active, setActive] = useState(0);
  const suggestions =
    query === null ? [] : (props.people ?? []).filter((p) => p.name.toLowerCase().includes(query.toLowerCase())).slice(0, 8);

  function lookForMention(el: HTMLTextAreaElement) {
    const before = el.value.slice(0, el.selectionStart ?? el.value.length);
    const m = /(?:^|\s)@([^\s@]{0,20})$/.exec(before);
    setQuery(m && props.people?.length ? m[1] : null);
    setActive(0);
  }

  function choose(p: Person) {
    const el = input.current;
    const caret = el?.selectionStart ?? draft.length;
    const before = draft.slice(0, caret).replace(/@([^\s@]{0,20})$/, `@${p.name} `);
    const next = before + draft.slice(caret);
    setDraft(next);
    setPicked((xs) => (xs.some((x) => x.id === p.id) ? xs : [...xs, p]));
    setQuery(null);
    // The caret goes after the name at once: set on the next frame, a key typed meanwhile
    // landed at the end and the rest of the word before it ("天请带体检表明").
    if (el) {
      el.value = next;
      el.focus();
      el.setSelectionRange(before.length, before.length);
    }
  }
  const uploads = useUploads();
  const [dragging, setDragging] = useState(false);
  const [recording, setRecording] = useState(false);
  const recorder = useRef<MediaRecorder | null>(null);

  const canSend = !uploads.uploading && (draft.trim().length > 0 || uploads.ready.length > 0) && draft.length <= MAX_CHARS;

  function submit(e?: Event) {
    e?.preventDefault();
    if (!canSend) return;
    const body = draft.trim();
    props.onSend(
      body,
      uploads.ready,
      picked.filter((p) => body.includes(`@${p.name}`)).map((p) => p.id),
    );
    uploads.clear();
    setPicked([]);
    setQuery(null);
  }

  // Whether the voice button is held now. The microphone is granted asynchronously (on a phone,
  // the first time, after a permission prompt that the finger leaves the button to answer): a
  // button let go before that records nothing, rather than a recording nobody stops.
  const held = useRef(false);
  // Set when the press ends in a way that must not send (the browser took the gesture over).
  const discard = useRef(false);

  async function startVoice() {
    if (recorder.current) return;
    held.current = true;
    discard.current = false;
    let stream: MediaStream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch {
      held.current = false;
      toast(t("files.noMic"), "error");
      return;
    }
    if (!held.current || recorder.current) {
      stream.getTracks().forEach((tr) => tr.stop());
      toast(t("files.voiceHoldHint"));
      return;
    }
    const type = MediaRecorder.isTypeSupported("audio/webm;codecs=opus") ? "audio/webm;codecs=opus" : "audio/ogg;codecs=opus";
    let rec: MediaRecorder;
    try {
      rec = new MediaRecorder(stream, { mimeType: type }); // a browser that records no Opus throws
    } catch {
      stream.getTracks().forEach((tr) => tr.stop());
      held.current = false;
      toast(t("files.noMic"), "error");
      return;
    }
    const parts: Blob[] = [];
    const began = performance.now();
    rec.ondataavailable = (ev) => parts.push(ev.data);
    rec.onstop = () => {
      stream.getTracks().forEach((tr) => tr.stop());
      if (discard.current) return;
      if (performance.now() - began < MIN_VOICE_MS) {
        toast(t("files.voiceShort"));
        return;
      }
      const blob = new Blob(parts, { type });
      const name = type.startsWith("audio/webm") ? "voice.webm" : "voice.ogg";
      if (blob.size > 0) uploads.start(blob, name, (att) => props.onSend("", [att.id], []));
    };
    rec.start();
    recorder.current = rec;
    setRecording(true);
  }

  /** The button is let go (``send``) or the press is taken away (a call, a system gesture). */
  function stopVoice(send = true) {
    held.current = false;
    if (!send) discard.current = true;
    recorder.current?.stop();
    recorder.current = null;
    setRecording(false);
  }

  useEffect(
    () => () => {
      // Leaving the page ends a recording without sending it.
      held.current = false;
      discard.current = true;
      recorder.current?.stop();
    },
    [],
  );

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
      {suggestions.length ? (
        <ul class="mention-list" role="listbox" aria-label={t("chat.mentionList")}>
          {suggestions.map((p, i) => (
            <li
              key={p.id}
              role="option"
              aria-selected={i === active}
              class={i === active ? "active" : ""}
              onMouseDown={(e) => {
                e.preventDefault();
                choose(p);
              }}
            >
              @{p.name}
            </li>
          ))}
        </ul>
      ) : null}
      <textarea
        id={`composer-${stream}`}
        ref={input}
        rows={1}
        value={draft}
        maxLength={MAX_CHARS}
        placeholder={props.people?.length ? t("chat.placeholderMention") : t("chat.placeholder")}
        onInput={(e) => {
          setDraft(e.currentTarget.value);
          lookForMention(e.currentTarget);
          if (e.currentTarget.value) sendTyping(stream);
        }}
        onPaste={pasteFiles(uploads)}
        onKeyDown={(e) => {
          if (suggestions.length && !e.isComposing) {
            if (e.key === "ArrowDown" || e.key === "ArrowUp") {
              e.preventDefault();
              const step = e.key === "ArrowDown" ? 1 : suggestions.length - 1;
              setActive((a) => (a + step) % suggestions.length);
              return;
            }
            if (e.key === "Enter" || e.key === "Tab") {
              e.preventDefault();
              choose(suggestions[active] ?? suggestions[0]);
              return;
            }
            if (e.key === "Escape") {
              setQuery(null);
              return;
            }
          }
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
        onPointerUp={() => stopVoice()}
        onPointerLeave={() => held.current && stopVoice()}
        onPointerCancel={() => stopVoice(false)}
        onContextMenu={(e) => e.preventDefault()}
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
